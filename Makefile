# The README's two commands. Each creates .venv (pip) on first use and installs the package into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint install

$(BIN)/inceptionnet $(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(VENV)/.installed

install: $(VENV)/.installed

# Main job: train on the built-in demo data.
demo: install
	$(BIN)/inceptionnet train

# Lint (ruff; import-linter's layer contract in pyproject.toml), then the default test run
# (slow, gpu and network tests are left out; see pyproject.toml).
test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports
