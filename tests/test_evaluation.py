"""Multi-view and ensemble evaluation (docs/evaluation.md): arithmetic on fake networks with known
outputs, class mapping, bad input, and tiny real networks through the library and the command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from inceptionnet import Preprocessing, create_model
from inceptionnet import evaluation as ev
from inceptionnet.card import ModelCard
from inceptionnet.cli import main
from inceptionnet.data import eval_transform
from inceptionnet.evaluation import evaluate, map_classes, view_probabilities
from inceptionnet.factory import parse_model_spec
from inceptionnet.weights import save_weights

PRE75 = Preprocessing(input_size=75)

# Probabilities of the fake network below: P_RIGHT when a view's right half is brighter, P_LEFT otherwise.
# Their arithmetic mean ranks class 0 first; the mean of their logits would rank class 1 first.
P_RIGHT = torch.tensor([0.90, 0.05, 0.05])
P_LEFT = torch.tensor([0.01, 0.50, 0.49])


class FakeNet(nn.Module):
    """Base of the fake networks: evaluation reads what a network is from its model card."""

    num_classes: int
    preprocessing = PRE75
    class_names: tuple[str, ...] | None = None

    @property
    def card(self) -> ModelCard:
        pre, names = self.preprocessing, self.class_names
        return ModelCard(type(self).__name__, self.num_classes, preprocessing=pre, class_names=names)


class SideNet(FakeNet):
    """Fake 3-class network: which half of a view is brighter picks one of two known distributions."""

    num_classes = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        right = x[..., -half:].mean(dim=(1, 2, 3)) > x[..., :half].mean(dim=(1, 2, 3))
        return torch.where(right[:, None], P_RIGHT, P_LEFT).log()


class ConstantNet(FakeNet):
    """Fake network that gives every view the same distribution."""

    def __init__(self, probs: list[float]) -> None:
        super().__init__()
        self.probs = torch.tensor(probs)
        self.num_classes = len(probs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probs.log().expand(x.shape[0], -1)


class BrightnessNet(FakeNet):
    """Fake network: dark views vote for output `dark`, bright ones for output `bright`; output 0 is huge."""

    def __init__(self, num_outputs: int, dark: int, bright: int) -> None:
        super().__init__()
        self.num_classes, self.dark, self.bright = num_outputs, dark, bright

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], self.num_classes)
        logits[:, 0] = 50.0  # a background logit, for the 1001-way case
        bright = x.mean(dim=(1, 2, 3)) > 0
        logits[bright, self.bright] = 100.0
        logits[~bright, self.dark] = 100.0
        return logits


def ramp(height: int, width: int, *, rising: bool = True) -> Image.Image:
    """A horizontal grey ramp: every view's right half is brighter (rising) or darker (falling)."""
    row = np.linspace(0, 250, width).astype(np.uint8)
    row = row if rising else row[::-1]
    return Image.fromarray(np.repeat(np.tile(row, (height, 1))[..., None], 3, axis=2))


def flat(value: int, height: int = 90, width: int = 110) -> Image.Image:
    return Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8))


def make_folder(root: Path, images: dict[str, list[Image.Image]]) -> Path:
    for cls, items in images.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(items):
            image.save(root / cls / f"{i}.png")
    return root


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("inception_v4", num_classes=3, width=0.25)
    model.preprocessing = dataclasses.replace(model.preprocessing, input_size=75)
    return model


@pytest.fixture
def random_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    images = {
        c: [Image.fromarray(rng.integers(0, 256, (80 + 9 * i, 100, 3), dtype=np.uint8)) for i in range(2)]
        for c in ("cat", "dog", "eel")
    }
    return make_folder(tmp_path / "val", images)


# -- averaging arithmetic --------------------------------------------------------------------------------------


@pytest.mark.parametrize("crops", [1, 10, 12, 144])
def test_view_probabilities_average_softmax_over_views(crops: int) -> None:
    transform = ev.MultiViewTransform(crops, [ev.ViewConfig(75, 0.875, "bicubic")])
    views = torch.stack([transform(ramp(90, 130))[0], transform(ramp(130, 90, rising=False))[0]])
    # 7 views per forward pass: chunks cut across the two images' views
    probs = view_probabilities(SideNet(), views, preprocessing=PRE75, batch_size=7)
    mean = (P_RIGHT + P_LEFT) / 2  # half the views are mirrored
    expected = torch.stack([P_RIGHT, P_LEFT]) if crops == 1 else torch.stack([mean, mean])
    torch.testing.assert_close(probs, expected)


class RecordingNet(FakeNet):
    """Fake 3-class network that keeps every input it sees."""

    num_classes = 3

    def __init__(self, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.preprocessing = preprocessing
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return torch.zeros(x.shape[0], 3)


@pytest.mark.parametrize("workers", [0, 1])
def test_single_crop_input_is_eval_transform(tmp_path: Path, workers: int) -> None:
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (97, 131, 3), dtype=np.uint8))
    folder = make_folder(tmp_path, {"a": [image], "b": [flat(3)], "c": [flat(4)]})
    pre = Preprocessing(input_size=75, crop_fraction=0.8975, interpolation="bilinear", mean=(0.4, 0.5, 0.6))
    net = RecordingNet(pre)
    evaluate(net, folder, crops=1, workers=workers, max_images=1)
    (seen,) = net.seen
    assert torch.equal(seen[0], eval_transform(pre)(Image.open(folder / "a" / "0.png").convert("RGB")))


def test_evaluate_ranks_the_mean_of_probabilities(tmp_path: Path) -> None:
    # a flat image has equal halves: P_LEFT for every view
    images = {"a": [ramp(90, 130), ramp(100, 120)], "b": [ramp(90, 130, rising=False)], "c": [flat(128)]}
    folder = make_folder(tmp_path, images)
    one = evaluate(SideNet(), folder, crops=1, workers=0)
    ten = evaluate(SideNet(), folder, crops=10, batch_size=4, workers=0)
    # 1 crop: rising ramps -> class 0 (a: right), falling and flat -> class 1 (b: right, c: wrong)
    assert (one.images, one.scores[0].top1_correct) == (4, 3)
    # 10 crops: ramps average to (0.455, 0.275, 0.27) -> class 0; the flat image stays P_LEFT -> class 1
    assert ten.scores[0].top1_correct == 2
    assert [c.top1_correct for c in ten.scores[0].per_class] == [2, 0, 0]
    assert ten.scores[0].top5_correct == 4  # 3 classes: top-5 always holds the answer
    assert ten.scores[0].top1_error == pytest.approx(50.0)


def test_ensemble_averages_members(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {"a": [flat(10)], "b": [flat(20)], "c": [flat(30)]})
    members = {"A": ConstantNet([0.6, 0.39, 0.01]), "B": ConstantNet([0.01, 0.39, 0.6])}
    result = evaluate(members, folder, crops=12, workers=0)
    assert [s.model for s in result.scores] == ["A", "B", "ensemble of 2"]
    assert result.ensemble is result.scores[2]
    # A says a, B says c, their mean (0.305, 0.39, 0.305) says b
    assert [[c.top1_correct for c in s.per_class] for s in result.scores] == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    table = result.table()
    assert "| ensemble of 2 | 12 | 66.67 | 0.00 | 33.33 | 100.00 | 33.33 | 3 |" in table


def test_ensemble_of_one_and_of_twins_equal_the_model(tiny: nn.Module, random_folder: Path) -> None:
    alone = evaluate(tiny, random_folder, crops=10, batch_size=8, workers=0)
    listed = evaluate([tiny], random_folder, crops=10, batch_size=8, workers=0)
    assert alone.scores == listed.scores and len(alone.scores) == 1
    twins = evaluate({"x": tiny, "y": tiny}, random_folder, crops=10, batch_size=8, workers=0)
    per = lambda s: (s.top1_correct, s.top5_correct, s.per_class)  # noqa: E731
    assert per(twins.scores[0]) == per(twins.scores[1]) == per(twins.scores[2]) == per(alone.scores[0])


def test_workers_give_the_same_result(tiny: nn.Module, random_folder: Path) -> None:
    serial = evaluate(tiny, random_folder, crops=1, workers=0)
    parallel = evaluate(tiny, random_folder, crops=1, workers=2)
    assert serial.scores == parallel.scores and parallel.images == 6
    for mode in (True, False):  # evaluate runs in eval mode and restores the mode the network was in
        tiny.train(mode)
        evaluate(tiny, random_folder, crops=1, workers=0, max_images=1)
        assert tiny.training is mode


# -- which output is which class ---------------------------------------------------------------------------------


def test_map_classes_rules() -> None:
    m = map_classes(["n01443537", "n15075141"], 1000)
    assert (m.offset, m.num_classes, m.target_index, m.rule) == (0, 1000, (1, 999), "imagenet synsets")
    m = map_classes(["n01443537", "n15075141"], 1001)
    assert (m.offset, m.num_classes, m.target_index) == (1, 1000, (1, 999))
    m = map_classes(["x", "y", "z"], 3)
    assert (m.offset, m.target_index, m.rule) == (0, (0, 1, 2), "folder order")
    with pytest.raises(ValueError, match=r"3 class folders .* but net has 5 outputs"):
        map_classes(["x", "y", "z"], 5, model="net")
    with pytest.raises(ValueError, match="not ILSVRC-2012 synsets"):
        map_classes(["n01443537", "n99999999"], 1000)


def test_map_classes_by_the_networks_class_names() -> None:
    m = map_classes(["dog", "eel"], 3, class_names=["cat", "dog", "eel"])  # a subset of the classes, by name
    assert (m.offset, m.num_classes, m.target_index, m.rule) == (0, 3, (1, 2), "class names")
    with pytest.raises(ValueError, match=r"differ from those of run: fox are not among its 3 classes .*folder: cat"):
        map_classes(["dog", "fox"], 3, model="run", class_names=["cat", "dog", "eel"])
    with pytest.raises(ValueError, match="names 2 classes but has 3 outputs"):
        map_classes(["dog"], 3, class_names=["cat", "dog"])


class NamedNet(ConstantNet):
    """A ConstantNet that names its classes, as a run or published weights do."""

    def __init__(self, probs: list[float], names: tuple[str, ...]) -> None:
        super().__init__(probs)
        self.class_names = names


def test_folder_classes_map_by_name_and_ensembles_share_them(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {"c": [flat(10)], "a": [flat(20)]})  # sorted: a, c
    # the network's outputs are (c, b, a): output 2 is folder class a, output 0 folder class c
    result = evaluate(NamedNet([0.1, 0.3, 0.6], ("c", "b", "a")), folder, workers=0)
    assert [c.top1_correct for c in result.scores[0].per_class] == [1, 0]
    assert result.config["class_mapping"] == "class names"
    other = NamedNet([0.1, 0.3, 0.6], ("b", "a", "d"))  # knows a but not c
    with pytest.raises(ValueError, match="c are not among its 3 classes"):
        evaluate([other], folder, workers=0)
    reordered = NamedNet([0.1, 0.3, 0.6], ("a", "b", "c"))
    with pytest.raises(ValueError, match=r"do not share their classes .*an ensemble needs"):
        evaluate({"x": NamedNet([0.1, 0.3, 0.6], ("c", "b", "a")), "y": reordered}, folder, workers=0)


@pytest.mark.parametrize("outputs", [1000, 1001])
def test_synset_folders_and_the_background_class(tmp_path: Path, outputs: int) -> None:
    # n01443537 is ImageNet class 1, n15075141 class 999; raw outputs are shifted by one in a 1001-way net.
    offset = outputs - 1000
    folder = make_folder(tmp_path, {"n01443537": [flat(20), flat(30)], "n15075141": [flat(230)]})
    net = BrightnessNet(outputs, dark=1 + offset, bright=999 + offset)
    result = evaluate(net, folder, crops=10, workers=0)
    assert result.scores[0].top1_correct == 3  # output 0 (50.0) would win every image if it were kept
    assert result.config["class_mapping"] == "imagenet synsets"
    assert result.config["background_class_dropped"] == [outputs == 1001]


# -- bad input -----------------------------------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        evaluate(SideNet(), tmp_path / "nowhere", workers=0)


def test_folder_that_does_not_match_the_model(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {"a": [flat(1)], "b": [flat(2)]})
    with pytest.raises(ValueError, match="2 class folders"):
        evaluate(SideNet(), folder, workers=0)


def test_ensemble_members_must_share_classes(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {"a": [flat(1)], "b": [flat(2)], "c": [flat(3)]})
    with pytest.raises(ValueError, match=r"3 class folders \(a, b, c\) but ConstantNet #2 has 2 outputs"):
        evaluate([SideNet(), ConstantNet([0.5, 0.5])], folder, workers=0)


def test_corrupt_image_is_skipped_and_counted(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {"a": [ramp(90, 130)], "b": [ramp(90, 130, rising=False)], "c": [flat(5)]})
    (folder / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (folder / "c" / "truncated.png").write_bytes((folder / "c" / "0.png").read_bytes()[:60])
    result = evaluate(SideNet(), folder, crops=12, batch_size=5, workers=0)
    assert (result.images, result.skipped) == (3, 2)
    assert result.to_dict()["skipped"] == 2


def test_result_json_has_every_number(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {"a": [flat(1)], "b": [flat(2)], "c": [flat(3)]})
    d = evaluate(SideNet(), folder, crops=10, workers=0).to_dict(per_class=True)
    json.dumps(d, allow_nan=False)
    assert {"version", "config", "crops", "images", "skipped", "seconds", "images_per_s", "views_per_s"} <= set(d)
    (row,) = d["results"]
    assert {"top1_error", "top5_error", "top1_accuracy", "top5_accuracy"} <= set(row)
    assert [c["class"] for c in row["per_class"]] == ["a", "b", "c"]


# -- building networks and the command ------------------------------------------------------------------------


def test_model_spec_names_a_network_and_optional_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_model_spec("inception_v4") == ("inception_v4", None)
    assert parse_model_spec("inception_v4:runs/a:b.safetensors") == ("inception_v4", "runs/a:b.safetensors")
    assert parse_model_spec("inception_v4:tf_in1k") == ("inception_v4", "tf_in1k")
    assert parse_model_spec("inception_v4.tf_in1k") == ("inception_v4", "tf_in1k")  # timm's name of the tag
    # paths and hub addresses name their own network
    assert parse_model_spec("runs/v4") == (None, "runs/v4")
    assert parse_model_spec("best.pt") == (None, "best.pt")
    assert parse_model_spec("hf-hub:org/name") == (None, "hf-hub:org/name")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myrun").mkdir()
    assert parse_model_spec("myrun") == (None, "myrun")  # an existing folder
    with pytest.raises(ValueError, match="names no weights"):
        parse_model_spec("inception_v4:")
    with pytest.raises(ValueError, match=r"unknown model 'inception_v9': name a network \(inception_resnet_v1, "):
        parse_model_spec("inception_v9")


def test_cli_eval_ensemble_json(random_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    args = ["eval", "--data", str(random_folder), "--crops", "10", "--workers", "0", "--batch-size", "8"]
    args += ["--model", "inception_v4", "--model", "inception_resnet_v2", "--width", "0.25", "--num-classes", "3"]
    args += ["--engine", "torch"]  # random networks: an ONNX export for the CPU engines would cost more than it saves
    assert main([*args, "--input-size", "75", "--json", str(out), "--per-class"]) == 0
    printed = capsys.readouterr().out
    assert "| model | crops | top-1 error | top-5 error |" in printed and "ensemble of 2" in printed
    d = json.loads(out.read_text())
    assert main([*args, "--input-size", "75", "--json", "-", "--max-images", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 1  # `--json -`: only the JSON, on stdout
    assert [r["model"] for r in d["results"]] == ["inception_v4", "inception_resnet_v2", "ensemble of 2"]
    assert d["images"] == 6 and d["skipped"] == 0 and len(d["results"][2]["per_class"]) == 3
    # IR-v2's 0.8975 crop fraction gives it views of its own
    fractions = [m["preprocessing"]["crop_fraction"] for m in d["config"]["members"]]
    assert fractions == [0.875, 0.8975]


def test_cli_measures_loading(random_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", "--crops", "12", "--input-size", "75", "--workers", "0"]
    assert main([*base, "--data", str(random_folder), "--data-only"]) == 0
    assert "data loading: 6 images, 72 views (12 per image)" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the network alone is `inceptionnet bench`'s measurement
        main([*base, "--model", "inception_v4", "--model-only"])


def test_cli_eval_with_a_local_weights_file(tiny: nn.Module, random_folder: Path, tmp_path: Path) -> None:
    path = save_weights(tiny, tmp_path / "tiny.safetensors")  # records width, classes and the 75 px input
    out = tmp_path / "r.json"
    args = ["eval", "--data", str(random_folder), "--model", f"inception_v4:{path}", "--crops", "10"]
    assert main([*args, "--workers", "0", "--batch-size", "8", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    (direct,) = evaluate(tiny, random_folder, crops=10, batch_size=8, workers=0).scores
    assert (row["top1_correct"], row["top5_correct"]) == (direct.top1_correct, direct.top5_correct)
