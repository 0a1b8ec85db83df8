"""One way to need an extra (inceptionnet.extras): each optional module made unimportable gives every command
that needs it one `error:` line naming the extra, status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from inceptionnet.cli import main
from inceptionnet.data import DEMO_DATA
from inceptionnet.extras import EXTRAS, MissingExtra, install_line, require


def test_require_returns_the_module_or_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require("json", extra="report", purpose="x").dumps([1]) == "[1]"
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if not installed
    with pytest.raises(MissingExtra, match=r"^the report needs scikit-learn: pip install 'inceptionnet\[report\]'$"):
        require("sklearn.metrics", extra="report", purpose="the report")
    with pytest.raises(ImportError) as raised:  # what it is; and a ValueError: bad input to the command line
        require("sklearn", extra="report", purpose="p")
    assert isinstance(raised.value, ValueError) and raised.value.extra == "report" and raised.value.name == "sklearn"
    assert install_line(None, "timm.data") == "pip install timm"
    with pytest.raises(KeyError, match="no extra named 'gpu'"):
        install_line("gpu", "x")
    assert set(EXTRAS) == {"onnxruntime", "openvino", "shards", "hf", "report", "explain", "serve", "retrieval"}


# (what is blocked, the extra named, the command line given the tiny network's weights file and a folder)
CASES: dict[str, tuple[tuple[str, ...], str, Callable[[Path, Path], list[str]]]] = {
    "quantize": (("onnxruntime",), "onnxruntime", lambda w, d: ["quantize", str(w), "--calibration", str(d)]),
    "predict on openvino": (
        ("openvino",),
        "openvino",
        lambda w, d: ["predict", str(d), "--model", str(w), "--engine", "openvino"],
    ),
    "shards": (("webdataset",), "shards", lambda w, d: ["shards", str(DEMO_DATA), str(d / "shards")]),
    "train on a hub dataset": (("datasets",), "hf", lambda w, d: ["train", "--data", "hf:org/name", "--epochs", "1"]),
    "eval --report": (
        ("sklearn",),
        "report",
        lambda w, d: ["eval", "--data", str(d), "--model", str(w), "--engine", "torch", "--report", str(d / "r")],
    ),
    "explain": (("pytorch_grad_cam",), "explain", lambda w, d: ["explain", str(d / "a" / "0.jpg"), "--model", str(w)]),
    "serve": (("fastapi",), "serve", lambda w, d: ["serve", str(w)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_extra_missing_is_one_error_line(
    case: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tiny_classifier: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocked, extra, argv = CASES[case]
    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    for i, src in enumerate(sorted((DEMO_DATA / "val" / "cat").iterdir())[:2]):
        (images / "a" / f"{i}.jpg").write_bytes(src.read_bytes())
    for module in blocked:
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it fails
    assert main(argv(tiny_classifier, images)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    assert install_line(extra, blocked[0]) in err[0]


def test_onnx_export_without_onnxscript_is_one_error_line(tiny_classifier: Path, tmp_path: Path) -> None:
    """In a fresh process: torch's exporter keeps the onnxscript it imported once, so blocking it here would not."""
    argv = ["export", str(tiny_classifier), "--format", "onnx", "--output", str(tmp_path / "x.onnx")]
    code = f"import sys; sys.modules['onnxscript'] = None; from inceptionnet.cli import main; sys.exit(main({argv!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: ONNX export needs onnxscript: {install_line('onnxruntime', 'onnxscript')}"
    ]
