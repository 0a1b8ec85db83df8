"""Export: BatchNorm folding, each format checked by its own runtime against eager PyTorch, the CLI."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inceptionnet import create_model
from inceptionnet.cli import main
from inceptionnet.inference.export import ExportError, export_model, fold_batchnorm, load_torchscript
from inceptionnet.models.layers import ConvBN
from inceptionnet.weights import save_weights


def randomised(name: str, **options) -> nn.Module:
    """A small network with random BN statistics, so folding has something to fold."""
    torch.manual_seed(0)
    model = create_model(name, width=0.25, **options)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("name", ["inception_v3", "inception_resnet_v2"])
def test_folding_batchnorm_keeps_the_logits(name):
    model = randomised(name)
    folded, count = fold_batchnorm(model)
    assert count == sum(isinstance(m, ConvBN) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max().item() <= 1e-4  # float rounding of the folded weights


def test_onnx_with_dynamic_batch_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnxruntime as ort

    model = randomised("inception_v3")
    result = export_model(model, format="onnx", output=tmp_path / "v3.onnx", input_size=107, dynamic_batch=True)
    assert result.path.is_file() and result.max_abs_diff <= 1e-4 and result.folded_batchnorms > 90
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "images" and inp.shape[1:] == [3, 107, 107] and not isinstance(inp.shape[0], int)
    x = torch.randn(4, 3, 107, 107)
    (logits,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        assert (torch.from_numpy(logits) - model(x)).abs().max().item() <= 1e-4


def test_torchscript_export_and_parity_failure_is_an_error(tmp_path):
    model = randomised("inception_v3")
    path = tmp_path / "v3.pt"
    # an impossible tolerance makes the check fail after the file is written: the error path, for free
    with pytest.raises(ExportError, match=r"does not reproduce the eager network: max abs difference of the logits"):
        export_model(model, format="torchscript", output=path, input_size=99, tolerance=-1.0)
    loaded = load_torchscript(path)
    x = torch.randn(1, 3, 99, 99)
    with torch.no_grad():
        out = loaded(x)
        assert isinstance(out, torch.Tensor)  # logits only, never the auxiliary tuple
        assert (out - model(x)).abs().max().item() <= 1e-4
    with pytest.raises(ValueError, match="unknown export format"):
        export_model(model, format="tflite")
    with pytest.raises(ValueError, match=r"name the output .*v3\.pt2"):
        export_model(model, format="exported-program", output=tmp_path / "v3.ep")
    with pytest.raises(ValueError, match="below the 75x75 minimum"):
        export_model(model, format="torchscript", input_size=64)


def test_cli_exports_a_checkpoint_as_an_exported_program(tmp_path, capsys):
    model = randomised("inception_v3", aux_logits=True)  # the aux head is never exported
    ckpt = save_weights(model, tmp_path / "v3.safetensors")
    out = tmp_path / "v3.pt2"
    argv = ["export", "inception_v3", "--weights", str(ckpt), "--format", "exported-program", "--output", str(out)]
    assert main([*argv, "--input-size", "107", "--dynamic-batch"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "max abs difference vs eager PyTorch" in printed
    program = torch.export.load(str(out)).module()
    x = torch.randn(3, 3, 107, 107)
    with torch.no_grad():
        assert (program(x) - model(x)).abs().max().item() <= 1e-4
