"""The optional parts of the package: one way to import a module of an extra, one error when it is missing.

`require("sklearn.metrics", extra="report", purpose="the evaluation report")` returns the module, or raises
MissingExtra naming what needs it and the line that installs it (`pip install 'inceptionnet[report]'`).
MissingExtra is an ImportError (what it is) and a ValueError (what the command line prints as one
`error:` line with status 2, never a traceback); the server answers it with HTTP 501.

Any layer may import this module.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The extras of pyproject.toml and what each adds (docs: README, "Install").
EXTRAS = {
    "onnxruntime": "ONNX export and the ONNX Runtime engine",
    "openvino": "the OpenVINO engine (and ONNX Runtime)",
    "shards": "writing WebDataset shards",
    "hf": "Hugging Face datasets",
    "report": "eval --report (scikit-learn)",
    "explain": "Grad-CAM (pytorch-grad-cam)",
    "serve": "the HTTP server (FastAPI, uvicorn, python-multipart)",
    "retrieval": "embed (pyarrow) and similar (FAISS)",
}


# Import names whose package is called otherwise on the package index.
PACKAGE_NAMES = {"sklearn": "scikit-learn", "pytorch_grad_cam": "pytorch-grad-cam", "multipart": "python-multipart"}


class MissingExtra(ImportError, ValueError):
    """A module of an optional extra is not installed; the message names what needs it and how to install it."""

    def __init__(self, message: str, *, extra: str | None, module: str) -> None:
        super().__init__(message, name=module)
        self.extra = extra


def install_line(extra: str | None, module: str) -> str:
    """`pip install 'inceptionnet[EXTRA]'`, or `pip install MODULE` for a module of no extra (timm: dev only)."""
    if extra is None:
        return f"pip install {_package(module)}"
    if extra not in EXTRAS:
        raise KeyError(f"no extra named {extra!r}; the extras: {', '.join(EXTRAS)}")
    return f"pip install 'inceptionnet[{extra}]'"


def missing(module: str, *, extra: str | None, purpose: str) -> MissingExtra:
    """The error for `purpose` (a phrase: "ONNX export") lacking `module`."""
    message = f"{purpose} needs {_package(module)}: {install_line(extra, module)}"
    return MissingExtra(message, extra=extra, module=module)


def require(module: str, *, extra: str | None, purpose: str) -> ModuleType:
    """`module` imported, or MissingExtra naming `purpose` and the extra (None: the module itself) to install."""
    try:
        importlib.import_module(module.split(".")[0])  # the package first: a submodule may be loaded already
        return importlib.import_module(module)
    except ImportError as err:
        raise missing(err.name or module, extra=extra, purpose=purpose) from None


def installed(module: str) -> bool:
    """Whether `module` can be imported (it is imported to know: an install that fails to import is missing)."""
    try:
        importlib.import_module(module.split(".")[0])
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _package(module: str) -> str:
    top = module.split(".")[0]
    return PACKAGE_NAMES.get(top, top)
