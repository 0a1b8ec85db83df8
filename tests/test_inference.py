"""Inference: the fused network computes what the plain network computes (every network of the package),
export checked by each format's own runtime, and `inceptionnet predict`."""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from inceptionnet import create_model, list_models
from inceptionnet.cli import main
from inceptionnet.data import eval_transform, imagenet_classes, imagenet_synsets
from inceptionnet.export import formats
from inceptionnet.export.blocks import MergedHeads
from inceptionnet.export.folding import ConvReLU, fold_batchnorm
from inceptionnet.export.formats import ExportError, export_model, load_torchscript, read_export_metadata
from inceptionnet.export.fuse import fuse_for_inference, top1_agreement
from inceptionnet.inference.predict import predict
from inceptionnet.models import Preprocessing
from inceptionnet.models.layers import ConvBN
from inceptionnet.weights import WeightsError, save_weights

GOLDEN_RETRIEVER = 207


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


def small(name: str, randomize_bn: Callable[..., nn.Module], **options: object) -> nn.Module:
    """A quarter-width network in eval mode with non-trivial BN statistics, so folding has something to fold."""
    torch.manual_seed(0)
    return randomize_bn(create_model(name, width=0.25, **options)).eval()


# Fusion for inference

CASES = [(name, {}) for name in list_models()] + [("inception_v3", {"count_include_pad": True})]


@pytest.mark.parametrize(("name", "options"), CASES, ids=[n + ("-pad" if o else "") for n, o in CASES])
def test_fused_matches_plain(name: str, options: dict, randomize_bn: Callable[..., nn.Module]) -> None:
    model = small(name, randomize_bn, **options)
    fused = fuse_for_inference(model)
    x = torch.randn(1, 3, 91, 91)
    with torch.no_grad():
        logits, feats = model(x), model.forward_features(x)
        assert rel_err(logits, fused(x)) < 1e-4
        fused_feats = fused.forward_features(x)
        assert rel_err(feats, fused_feats) < 1e-4
        assert (
            rel_err(model.forward_head(feats, pre_logits=True), fused.forward_head(fused_feats, pre_logits=True)) < 1e-4
        )
    # Nothing of the plain conv unit is left, and every block merged its 1x1 heads.
    assert not any(isinstance(m, ConvBN | nn.BatchNorm2d) for m in fused.modules())
    n_blocks = sum(len(getattr(model, s)) for s in ("blocks_a", "blocks_b", "blocks_c"))
    assert sum(isinstance(m, MergedHeads) for m in fused.modules()) >= n_blocks + 1  # + Reduction-B


def test_fused_in_channels_last_matches_plain(randomize_bn: Callable[..., nn.Module]) -> None:
    model = small("inception_resnet_v2", randomize_bn)
    fused = fuse_for_inference(model).to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        assert rel_err(model(x), fused(x.contiguous(memory_format=torch.channels_last))) < 1e-4


def test_merged_heads_of_inception_a() -> None:
    # Inception-A at width 1: branch0 96 | branch1 64 | branch2 64 | pool branch 96, in that order.
    heads = fuse_for_inference(create_model("inception_v4", width=1.0).blocks_a[0]).branches.heads
    assert heads.sizes == [96, 64, 64, 96]
    assert heads.relu_channels == 96 + 64 + 64  # the pool branch's ReLU comes after its pool
    assert heads.conv.in_channels == 384


@pytest.mark.slow
def test_full_width_inception_v4_at_299(randomize_bn: Callable[..., nn.Module]) -> None:
    torch.manual_seed(0)
    model = randomize_bn(create_model("inception_v4")).eval()
    fused = fuse_for_inference(model)
    x = torch.randn(1, 3, 299, 299)
    with torch.no_grad():
        assert rel_err(model(x), fused(x)) < 1e-4


def test_original_untouched_and_training_refused() -> None:
    model = create_model("inception_v4", width=0.25)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    assert model.training  # the argument keeps its mode and its modules
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, ConvBN) for m in model.modules())
    assert not any(p.requires_grad for p in fused.parameters())
    fused.train()
    with pytest.raises(RuntimeError, match="inference-only"):
        fused(torch.randn(1, 3, 75, 75))
    assert isinstance(fused.stem.conv1a, ConvReLU)


@pytest.mark.slow
def test_compiled_fused_matches_plain(randomize_bn: Callable[..., nn.Module]) -> None:
    # torch.compile (inductor) needs a C++ compiler and minutes on 2 cores: slow-marked.
    model = small("inception_v3", randomize_bn)
    compiled = torch.compile(fuse_for_inference(model))
    x = torch.randn(1, 3, 91, 91)
    with torch.no_grad():
        assert rel_err(model(x), compiled(x)) < 1e-4


def test_bf16_top1_agrees_with_fp32_on_real_images(imagenet_sample: Path) -> None:
    torch.manual_seed(0)
    model = create_model("inception_v4", width=0.25, num_classes=1000)
    model.preprocessing = replace(model.preprocessing, input_size=107)
    images = sorted(imagenet_sample.glob("*.JPEG"))[::125]  # 8 classes spread over the synsets
    a = top1_agreement(model, images, dtype="bf16", batch_size=8)
    assert a.images == 8
    assert a.max_rel_logit_diff < 0.1  # bf16 keeps 8 bits of mantissa: percent-level logit error
    assert a.top1_agreement >= 0.75


def test_top1_agreement_names_bad_arguments() -> None:
    model = create_model("inception_v3", width=0.25)
    with pytest.raises(ValueError, match="dtype must be one of"):
        top1_agreement(model, [Path("a.jpg")], dtype="int8")
    with pytest.raises(ValueError, match="no images to compare on"):
        top1_agreement(model, [])


# Export


@pytest.mark.parametrize("name", ["inception_v3", "inception_resnet_v2"])
def test_folding_batchnorm_keeps_the_logits(name: str, randomize_bn: Callable[..., nn.Module]) -> None:
    model = small(name, randomize_bn)
    folded, count = fold_batchnorm(model)
    assert count == sum(isinstance(m, ConvBN) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max().item() <= 1e-4  # float rounding of the folded weights


def test_onnx_with_dynamic_batch_runs_in_onnxruntime(tmp_path: Path, randomize_bn: Callable[..., nn.Module]) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnxruntime as ort

    model = small("inception_v3", randomize_bn)
    model.class_names = tuple(f"c{i}" for i in range(model.num_classes))
    result = export_model(model, format="onnx", output=tmp_path / "v3.onnx", input_size=107, dynamic_batch=True)
    assert result.path.is_file() and result.max_abs_diff <= 1e-4 and result.folded_batchnorms > 90
    meta = read_export_metadata(result.path)  # ONNX metadata_props
    assert meta["class_names"] == list(model.class_names) and meta["model_name"] == "inception_v3"
    assert meta["preprocessing"]["input_size"] == 107 and meta["model_options"]["width"] == 0.25
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "images" and inp.shape[1:] == [3, 107, 107] and not isinstance(inp.shape[0], int)
    x = torch.randn(4, 3, 107, 107)
    (logits,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        assert (torch.from_numpy(logits) - model(x)).abs().max().item() <= 1e-4


def test_the_export_check_is_relative_to_the_logits_scale(
    tmp_path: Path, randomize_bn: Callable[..., nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = small("inception_v3", randomize_bn)
    with torch.no_grad():
        model.head.fc.weight.mul_(1e5)  # logits in the thousands, as after a brief fine-tuning from fresh weights
        scale = model(torch.randn(1, 3, 99, 99)).abs().max().item()
    assert scale > 1000
    result = export_model(model, format="torchscript", output=tmp_path / "big.pt", input_size=99)
    assert result.max_abs_diff <= 1e-4 * scale  # float32 rounding of large logits: accepted

    def off_by_a_tenth_of_a_percent(path: Path):  # a real mismatch: 1e-3 of the logits
        loaded = load_torchscript(path)
        return lambda x: loaded(x) * 1.001

    monkeypatch.setattr(formats, "load_torchscript", off_by_a_tenth_of_a_percent)
    with pytest.raises(ExportError, match=r"max abs difference of the logits .* x their scale"):
        export_model(model, format="torchscript", output=tmp_path / "wrong.pt", input_size=99)


def test_torchscript_export_and_parity_failure_is_an_error(
    tmp_path: Path, randomize_bn: Callable[..., nn.Module]
) -> None:
    model = small("inception_v3", randomize_bn)
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


def test_cli_exports_a_checkpoint_as_an_exported_program(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], randomize_bn: Callable[..., nn.Module]
) -> None:
    model = small("inception_v3", randomize_bn, aux_logits=True)  # the aux head is never exported
    ckpt = save_weights(model, tmp_path / "v3.safetensors")
    out = tmp_path / "v3.pt2"
    argv = ["export", "inception_v3", "--weights", str(ckpt), "--format", "exported-program", "--output", str(out)]
    assert main([*argv, "--input-size", "107", "--dynamic-batch"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "max abs difference vs eager PyTorch" in printed
    program = torch.export.load(str(out)).module()
    meta = read_export_metadata(out)
    assert meta["weights_name"] == str(ckpt) and meta["class_names"] is None and meta["input_size"] == 107
    x = torch.randn(3, 3, 107, 107)
    with torch.no_grad():
        assert (program(x) - model(x)).abs().max().item() <= 1e-4


# Prediction with class names


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small 1000-class Inception-v3 whose classifier strongly prefers class 207, at 107 px."""
    torch.manual_seed(0)
    model = create_model("inception_v3", width=0.25)
    with torch.no_grad():
        model.head.fc.bias[GOLDEN_RETRIEVER] = 50.0
    model.preprocessing = Preprocessing(input_size=107)
    model.class_names = imagenet_synsets()  # as for a network fine-tuned from ImageNet weights on ImageNet
    return save_weights(model, tmp_path_factory.mktemp("ckpt") / "tiny_v3.safetensors")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(1)
    pixels = (torch.rand(90, 120, 3, generator=g) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(root / "noise.png")
    Image.fromarray(pixels[:, ::-1].copy()).save(root / "flipped.jpg", quality=90)
    data = (root / "flipped.jpg").read_bytes()
    (root / "corrupt.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    (root / "notes.txt").write_text("not an image\n")
    return {p.stem: p for p in root.iterdir()}


def test_class_table_ships_with_the_package() -> None:
    classes = imagenet_classes()
    assert len(classes) == 1000
    synsets = [c.synset for c in classes]
    assert synsets == sorted(synsets) and len(set(synsets)) == 1000
    assert (classes[0].synset, classes[0].name) == ("n01440764", "tench")
    assert classes[GOLDEN_RETRIEVER].name == "golden retriever"
    assert classes[999].name == "toilet tissue"


def test_class_table_matches_the_imagenet_sample_file_names(imagenet_sample: Path) -> None:
    names = sorted(p.stem.split("_", 1) for p in imagenet_sample.glob("*.JPEG"))
    assert [(c.synset, c.name) for c in imagenet_classes()] == [(s, n.replace("_", " ")) for s, n in names]


def test_predict_returns_top_k_with_the_network_probabilities(checkpoint: Path, images: dict[str, Path]) -> None:
    results = predict([images["noise"], images["flipped"]], model="inception_v3", weights=checkpoint, top_k=3)
    model = create_model("inception_v3", weights=checkpoint).eval()
    for result, path in zip(results, [images["noise"], images["flipped"]], strict=True):
        assert result.ok and len(result.top) == 3
        assert result.top[0].index == GOLDEN_RETRIEVER and result.top[0].name == "golden retriever"
        with Image.open(path) as f:
            x = eval_transform(model.preprocessing)(f.convert("RGB"))
        with torch.no_grad():
            probs = model(x[None]).softmax(1)[0]
        values, indices = probs.topk(3)
        assert [t.index for t in result.top] == indices.tolist()
        assert [t.probability for t in result.top] == pytest.approx(values.tolist(), abs=1e-6)


def test_cli_reports_bad_files_and_still_classifies_the_rest(
    checkpoint: Path, images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.jpg"
    argv = ["predict", str(images["noise"]), str(images["corrupt"]), str(images["notes"]), str(missing)]
    code = main([*argv, "--model", "inception_v3", "--weights", str(checkpoint), "--top-k", "2", "--json", "-"])
    out = capsys.readouterr()
    assert code == 1
    assert "3 of 4 files could not be classified" in out.err
    report = json.loads(out.out)  # `--json -`: the JSON alone on stdout
    assert report["model"] == "inception_v3" and report["weights"] == str(checkpoint)
    assert report["preprocessing"]["input_size"] == 107
    rows = {Path(r["path"]).name: r for r in report["results"]}
    assert rows["noise.png"]["error"] is None and len(rows["noise.png"]["top"]) == 2
    assert rows["noise.png"]["top"][0]["label"] == "n02099601"
    assert rows["noise.png"]["top"][0]["name"] == "golden retriever"
    assert "not a readable image" in rows["corrupt.jpg"]["error"]
    assert "not a readable image" in rows["notes.txt"]["error"]
    assert rows["missing.jpg"]["error"] == "no such file"

    code = main(["predict", str(images["flipped"]), "--model", "inception_v3", "--weights", str(checkpoint)])
    out = capsys.readouterr()
    assert code == 0
    assert "golden retriever (n02099601, class 207)" in out.out


def test_predict_without_weights_offline_says_what_to_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], images: dict[str, Path]
) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("INCEPTIONNET_WEIGHTS_DIR", str(tmp_path / "manual"))
    with pytest.raises(WeightsError, match=r"Download https://huggingface.co/timm/inception_v4.tf_in1k/"):
        predict([images["noise"]])
    assert main(["predict", str(images["noise"])]) == 2
    assert "inception_v4.tf_in1k.safetensors" in capsys.readouterr().err


def test_predict_names_only_the_classes_the_network_knows(images: dict[str, Path]) -> None:
    """A network that names no classes gets output indices, never ImageNet names it may not have."""
    torch.manual_seed(0)
    net = create_model("inception_v3", width=0.25, num_classes=10)
    net.preprocessing = Preprocessing(input_size=75)
    (result,) = predict([images["noise"]], model=net, device="cpu")
    assert [t.label for t in result.top] == [None] * 5
    assert all(t.name == f"class {t.index}" for t in result.top)
    with pytest.raises(ValueError, match="top-k must be between 1 and the 10 classes"):
        predict([images["noise"]], model=net, top_k=11)
    with pytest.raises(ValueError, match="has no classifier"):
        predict([images["noise"]], model=create_model("inception_v3", width=0.25, num_classes=0))


def test_predict_takes_folders_recursively(checkpoint: Path, images: dict[str, Path], tmp_path: Path) -> None:
    nested = tmp_path / "photos" / "b"
    nested.mkdir(parents=True)
    shutil.copy(images["flipped"], nested / "x.jpg")
    shutil.copy(images["noise"], tmp_path / "photos" / "a.png")
    (tmp_path / "photos" / "notes.txt").write_text("not an image, and not an image name\n")
    results = predict([tmp_path / "photos", images["noise"]], model=f"inception_v3:{checkpoint}", top_k=1)
    assert [Path(r.path).name for r in results] == ["a.png", "x.jpg", "noise.png"]
    assert all(r.ok and r.top[0].name == "golden retriever" for r in results)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"folder .*empty holds no images"):
        predict([tmp_path / "empty"], model=f"inception_v3:{checkpoint}")
    # a folder of links to folders (as the docs link CIFAR-10's splits) holds their images, a link loop ends
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "photos").symlink_to(tmp_path / "photos", target_is_directory=True)
    (tmp_path / "photos" / "b" / "loop").symlink_to(tmp_path / "photos", target_is_directory=True)
    found = predict([tmp_path / "linked"], model=f"inception_v3:{checkpoint}", top_k=1)
    assert [Path(r.path).relative_to(tmp_path / "linked").as_posix() for r in found] == [
        "photos/a.png",
        "photos/b/x.jpg",
    ]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_full_disk_is_one_line_naming_the_file(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxscript")

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    weights = save_weights(create_model("inception_v3", num_classes=3, width=0.25), tmp_path / "small.safetensors")
    monkeypatch.setattr(formats, "atomic_write", disk_full)
    out = tmp_path / f"v3.{'onnx' if fmt == 'onnx' else 'pt'}"
    status = main(["export", str(weights), "--format", fmt, "--input-size", "75", "--output", str(out)])
    err = capsys.readouterr().err
    assert status == 1 and not out.exists() and "Traceback" not in err
    assert err.startswith(f"error: could not write {out}: No space left on device; nothing was written there")
