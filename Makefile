# The README's two commands. Each creates .venv (pip) on first use and installs the package into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint install gpu-check triton-check slurm-check

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
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

# The GPU check (docs/performance.md, "GPU check"): ours against timm on one CUDA GPU, 8 minutes at most;
# writes gpu-check.json, gpu-check.md and gpu-check.log into $(GPU_CHECK_OUT): $OUT/gpu-check where $OUT
# is set (the folder a lent device returns), else ./gpu-check. It installs nothing: it runs from the
# source tree with the venv's Python, or, where there is no venv (a GPU machine with its own PyTorch,
# torchvision and timm), with $(PYTHON); the same as the documented line
#   PYTHONPATH=src:benchmarks PYTHONUNBUFFERED=1 python3 -m gpucheck --out "$OUT/gpu-check"
# The CPU self-test: make gpu-check GPU_CHECK_ARGS=--tiny
GPU_CHECK_OUT    ?= $(if $(OUT),$(OUT)/gpu-check,gpu-check)
GPU_CHECK_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
gpu-check:
	PYTHONPATH=src:benchmarks PYTHONUNBUFFERED=1 $(GPU_CHECK_PYTHON) -m gpucheck --out "$(GPU_CHECK_OUT)" $(GPU_CHECK_ARGS)

# The Triton check (docs/export.md, "Triton check"): a real Triton Inference Server, the tritonserver that the
# nvidia-pytriton wheel bundles (Python backend only), loads what `inceptionnet export --format triton
# --triton-backend python` writes and answers over HTTP and gRPC (Triton's tritonclient) what `inceptionnet
# predict --json` answers, dynamic batching included. .venv-triton holds the server, onnxruntime and the client,
# at the versions of constraints-triton.txt (numpy < 2); .venv makes the network, the repository and the
# reference. CPU only: under a minute with .venv-triton created, about 25 s after; benchmarks/tritoncheck/.
TRITON_VENV := .venv-triton
$(TRITON_VENV)/.installed: constraints-triton.txt
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TRITON_VENV)/bin/python -m pip install --quiet -c constraints-triton.txt \
		nvidia-pytriton onnxruntime "tritonclient[all]" pillow
	touch $(TRITON_VENV)/.installed

triton-check: install $(TRITON_VENV)/.installed
	PYTHONPATH=benchmarks PYTHONUNBUFFERED=1 $(TRITON_VENV)/bin/python -m tritoncheck.local --venv $(VENV)

# The Slurm check (docs/training.md, "Slurm"): a real Slurm of two nodes on this machine (Debian's slurm-wlm and
# munge, installed here when missing; munged, slurmctld and two slurmd on 127.0.0.1, all their files in one
# temporary folder, stopped and removed afterwards) runs deploy/slurm/'s scripts as written but for their sizes:
# a time-limit warning, a requeue, the finished run against an uninterrupted one, predict over a folder.
# About 3 minutes on 2 cores; benchmarks/slurmcheck/. `make slurm-check SLURM_CHECK_ARGS="--keep DIR"` keeps the
# cluster's folder (logs, job outputs, results.json).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
slurm-check: install
	@command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null || { \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q slurm-wlm munge; }
	PYTHONPATH=src:benchmarks PYTHONUNBUFFERED=1 $(BIN)/python -m slurmcheck $(SLURM_CHECK_ARGS)
