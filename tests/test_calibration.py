"""Calibrated probabilities and unknown images: the temperature and the unknown-image rule of the card, fitted on
validation images (`inceptionnet calibrate`, and at the end of training), carried by every file that carries the
card (here, and in tests/test_card_files.py: ONNX metadata, engines, int8 folders), applied wherever probabilities
are given; a card without them gives the numbers it gave before; predict and serve answer "unknown"; `eval --ood`
measures the scores. (slow) The demo network trained on three CIFAR-10 classes, end to end."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path

import pytest
import torch

from inceptionnet import Preprocessing, create_model
from inceptionnet.card import CardError, ModelCard, UnknownRule
from inceptionnet.cli import main
from inceptionnet.data import DEMO_DATA, eval_transform, read_image
from inceptionnet.evaluation import evaluate, view_probabilities
from inceptionnet.evaluation.calibrate import calibrate_network, fit_calibration
from inceptionnet.evaluation.calibration import check_calibration, fit_temperature
from inceptionnet.evaluation.logits import folder_logits, split_logits
from inceptionnet.evaluation.unknown import detection, fit_unknown_rule
from inceptionnet.export.fuse import fuse_for_inference
from inceptionnet.inference.engines import inference_network
from inceptionnet.inference.predict import output_probabilities, predict
from inceptionnet.models import InceptionNetwork
from inceptionnet.models.outputs import scaled_logits, unknown_scores
from inceptionnet.serving.client import LocalServer
from inceptionnet.training.loop import train
from inceptionnet.training.presets import preset
from inceptionnet.weights import save_model_folder, save_weights
from inceptionnet.weights.artifact import update_folder_card

pytestmark = pytest.mark.usefixtures("one_thread")

KNOWN = ("airplane", "automobile", "bird")
UNKNOWN = ("frog", "ship")
RULE = UnknownRule(score="energy", threshold=1.25, known_kept=0.9)


def demo_images(root: Path, classes: tuple[str, ...], part: slice, split: str = "val") -> Path:
    """root/<class>/*.jpg: the demo data's images `part` of each class of `split`."""
    for name in classes:
        (root / name).mkdir(parents=True)
        for src in sorted((DEMO_DATA / split / name).iterdir())[part]:
            shutil.copy(src, root / name / src.name)
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Validation (fit), held-out (measure) and unknown images from the demo data, 20 per class each."""
    root = tmp_path_factory.mktemp("images")
    return {
        "val": demo_images(root / "val", KNOWN, slice(0, 20)),
        "heldout": demo_images(root / "heldout", KNOWN, slice(20, 40)),
        "unknown": demo_images(root / "unknown", UNKNOWN, slice(0, 20)),
    }


def tiny(scale: float = 1.0) -> InceptionNetwork:
    """An eighth-width Inception-v3 of the three known classes at 75 px; `scale` multiplies its logits (a
    network far more confident than it is right)."""
    torch.manual_seed(0)
    net = create_model("inception_v3", width=0.125, num_classes=len(KNOWN)).eval()
    net.preprocessing = Preprocessing(input_size=75)
    net.class_names = KNOWN
    with torch.no_grad():
        net.head.fc.weight.mul_(scale)
        net.head.fc.bias.mul_(scale)
    return net


@pytest.fixture(scope="module")
def calibrated(images: dict[str, Path]) -> InceptionNetwork:
    """The overconfident tiny network with the temperature and rule `calibrate` fits on the validation images."""
    net = tiny(scale=200.0)
    net.apply_card(calibrate_network(net, images["val"]).card)
    return net


# -- the card -------------------------------------------------------------------------------------------------------


def test_the_new_fields_round_trip_and_are_checked() -> None:
    card = ModelCard(model_name="inception_v3", num_classes=3, temperature=1.75, unknown=RULE)
    back = ModelCard.from_dict(json.loads(card.to_json()))
    assert back == card and back.unknown == RULE
    older = {k: v for k, v in card.to_dict().items() if k not in ("temperature", "unknown")}
    assert ModelCard.from_dict(older).temperature is None and ModelCard.from_dict(older).unknown is None
    with pytest.raises(CardError, match="the temperature must be a positive number, got 0"):
        card.replace(temperature=0.0)
    with pytest.raises(CardError, match="unknown-image score must be one of msp, energy"):
        UnknownRule(score="knn", threshold=1.0)
    with pytest.raises(CardError, match="are for single-label networks"):
        card.replace(label_mode="multi")
    with pytest.raises(CardError, match="not a readable model card"):
        ModelCard.from_dict({**card.to_dict(), "unknown": "energy"})


def test_every_file_that_carries_the_card_carries_the_calibration(calibrated: InceptionNetwork, tmp_path: Path) -> None:
    card = calibrated.card
    assert card.temperature is not None and card.unknown is not None
    assert create_model(card=card).card.unknown == card.unknown
    assert fuse_for_inference(calibrated).card == card
    weights = save_weights(calibrated, tmp_path / "w.safetensors")
    assert create_model(weights=weights).card == card.replace(weights_name=str(weights))
    folder = save_model_folder(tmp_path / "folder", calibrated)
    config = json.loads((folder / "config.json").read_text())
    assert (config["temperature"], config["unknown"]) == (card.temperature, card.unknown.to_dict())
    assert create_model(weights=folder).card == card.replace(weights_name=str(folder))
    fresh = create_model(weights=folder, num_classes=5)  # a new classifier: its calibration goes with the old one
    assert fresh.card.temperature is None and fresh.card.unknown is None


def test_export_with_preprocessing_divides_the_logits_in_the_graph(
    calibrated: InceptionNetwork, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from inceptionnet.export.formats import run_onnx
    from inceptionnet.export.preprocessing import export_onnx_with_preprocessing

    path = export_onnx_with_preprocessing(calibrated, tmp_path / "p.onnx").path
    pixels = torch.randint(0, 256, (1, 75, 75, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    x = (pixels.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        logits = calibrated(x)
    got = run_onnx(path, pixels).float()
    assert torch.allclose(got, (logits / calibrated.temperature).softmax(1), atol=1e-4)
    assert not torch.allclose(got, logits.softmax(1), atol=1e-2)  # the temperature is in the graph


# -- a card without calibration gives today's numbers -----------------------------------------------------------


def test_a_card_without_a_temperature_gives_the_softmax_exactly(images: dict[str, Path]) -> None:
    net = tiny()
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert scaled_logits(logits, None) is logits
    assert torch.equal(output_probabilities(logits, net.card), logits.softmax(dim=1))
    files = sorted((images["heldout"] / "bird").iterdir())[:3]
    x = torch.stack([eval_transform(net.preprocessing)(read_image(f)) for f in files])
    fused = inference_network(net, "torch", device="cpu")  # what predict runs
    with torch.inference_mode():
        expected = fused(x).float().softmax(dim=1)
    got = predict(files, model=fused, top_k=3, batch_size=3)
    for result, row in zip(got, expected, strict=True):
        assert [t.probability for t in result.top] == row.sort(descending=True).values.tolist()
        assert result.unknown is None and result.unknown_score is None
    views = (x[:, None] * 0.5 + 0.5).mul(255).round().to(torch.uint8)
    with torch.no_grad():
        old = net((views[:, 0].float() / 255 - 0.5) / 0.5).softmax(dim=-1)
    assert torch.equal(view_probabilities(net, views, preprocessing=net.preprocessing), old)


# -- fitting and measuring ---------------------------------------------------------------------------------------


def test_calibrated_probabilities_have_a_lower_calibration_error_on_held_out_images(
    calibrated: InceptionNetwork, images: dict[str, Path]
) -> None:
    held = split_logits(calibrated, images["heldout"])
    assert held.targets is not None and len(held.targets) == 60
    check = check_calibration(held.logits, held.targets, calibrated.temperature)
    assert check.temperature > 1 and check.ece_after < check.ece_before - 0.1
    assert check.nll_after < check.nll_before
    # the top class and so top-1 do not move
    with torch.no_grad():
        plain = evaluate(calibrated, images["heldout"], workers=0, keep_predictions=True)
    uncalibrated = tiny(scale=200.0)
    assert plain.scores[0].top1_correct == evaluate(uncalibrated, images["heldout"], workers=0).scores[0].top1_correct
    assert plain.predictions is not None and plain.predictions.uncalibrated is not None


def test_the_temperature_minimises_the_log_likelihood_and_the_threshold_keeps_its_share() -> None:
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (400,), generator=g)
    logits = 6 * (torch.randn(400, 4, generator=g) + 1.5 * torch.nn.functional.one_hot(targets, 4))
    t = fit_temperature(logits, targets)
    nll = [torch.nn.functional.cross_entropy(logits / s, targets) for s in (0.9 * t, t, 1.1 * t)]
    assert nll[1] < nll[0] and nll[1] < nll[2]
    temperature, rule = fit_calibration(logits, targets, score="msp", known_kept=0.9)
    kept = unknown_scores(logits, "msp", temperature=temperature) >= rule.threshold
    assert temperature == t and 0.9 <= kept.double().mean() < 0.9 + 1 / 400 + 1e-9
    assert fit_unknown_rule(torch.arange(20.0), known_kept=0.95).threshold == 1.0  # 19 of 20 kept
    perfect = detection("energy", torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0]))
    assert (perfect.auroc, perfect.fpr_at_95_tpr) == (1.0, 0.0)


def test_calibrate_writes_a_model_folder_and_refuses_what_it_cannot_calibrate(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = save_model_folder(tmp_path / "m", tiny(scale=200.0))
    readme = (folder / "README.md").read_text()
    assert main(["calibrate", str(folder), "--data", str(images["val"]), "--json", str(tmp_path / "c.json")]) == 0
    fitted = json.loads((tmp_path / "c.json").read_text())
    card = create_model(weights=folder).card
    assert card.temperature == pytest.approx(fitted["temperature"]) and card.unknown is not None
    assert card.unknown.to_dict() == fitted["unknown"] and fitted["ece_after"] < fitted["ece_before"]
    assert (folder / "README.md").read_text() == readme
    assert update_folder_card(folder, temperature=None, unknown=None).temperature is None
    assert main(["calibrate", str(tmp_path / "w.safetensors"), "--data", str(images["val"])]) == 2
    assert "neither a model folder nor a training run" in capsys.readouterr().err
    multi = tiny()
    multi.label_mode = "multi"
    with pytest.raises(ValueError, match="multi-label network is calibrated by its per-class thresholds"):
        calibrate_network(multi, images["val"])


# -- answering "unknown" ---------------------------------------------------------------------------------------------


def rule_between(net: InceptionNetwork, images: dict[str, Path]) -> InceptionNetwork:
    """A copy of `net` with an energy threshold halfway between the two middle scores of the held-out and unknown
    images: some of them on each side, none near it."""
    both = torch.cat([folder_logits(net, images[s]).logits for s in ("heldout", "unknown")])
    scores = unknown_scores(both, "energy", temperature=net.temperature).sort().values
    middle = len(scores) // 2
    copy = deepcopy(net)
    copy.unknown = UnknownRule(score="energy", threshold=float(scores[middle - 1 : middle + 1].mean()))
    return copy


def test_predict_reject_unknown(
    calibrated: InceptionNetwork, images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = rule_between(calibrated, images)
    weights = save_weights(net, tmp_path / "w.safetensors")
    files = sorted(images["unknown"].rglob("*.jpg"))[:6]
    argv = ["predict", *map(str, files), "--model", str(weights), "--engine", "torch", "--json", "-"]
    assert main([*argv, "--reject-unknown"]) == 0
    records = json.loads(capsys.readouterr().out)["results"]
    threshold = net.card.unknown.threshold
    assert all(r["unknown"] == (r["unknown_score"] < threshold) for r in records)
    assert main(argv) == 0 and "unknown" not in json.loads(capsys.readouterr().out)["results"][0]
    assert main([*argv[:-2], "--reject-unknown"]) == 0
    shown = capsys.readouterr().out
    assert shown.count("unknown: none of the classes") == sum(r["unknown"] for r in records)
    plain = save_weights(tiny(), tmp_path / "plain.safetensors")
    assert main(["predict", str(files[0]), "--model", str(plain), "--engine", "torch", "--reject-unknown"]) == 2
    assert "inceptionnet calibrate" in capsys.readouterr().err


def test_serve_reject_unknown_over_http(
    calibrated: InceptionNetwork,
    images: dict[str, Path],
    tmp_path: Path,
    start_server: Callable[..., LocalServer],
    server: LocalServer,
) -> None:
    net = rule_between(calibrated, images)
    weights = save_weights(net, tmp_path / "served.safetensors")
    files = sorted(images["unknown"].rglob("*.jpg"))[:3] + sorted(images["heldout"].rglob("*.jpg"))[:3]
    want = predict(files, model=net, engine="torch", reject_unknown=True)
    served = start_server(model=weights)
    card = json.loads(served.call("/v1/model")[2])
    assert card["temperature"] == net.temperature and card["unknown"] == net.unknown.to_dict()
    for f, expected in zip(files, want, strict=True):
        status, _, body = served.call("/v1/predict?reject_unknown=true", f.read_bytes(), {"Content-Type": "image/jpeg"})
        (answer,) = json.loads(body)["predictions"]
        assert status == 200 and answer["unknown"] == expected.unknown
        assert answer["unknown_score"] == pytest.approx(expected.unknown_score, abs=1e-4)
        assert answer["top"][0]["probability"] == pytest.approx(expected.top[0].probability, abs=1e-5)
    plain = served.call("/v1/predict", files[0].read_bytes(), {"Content-Type": "image/jpeg"})[2]
    assert "unknown" not in json.loads(plain)["predictions"][0]
    bad = served.call("/v1/predict?reject_unknown=maybe", files[0].read_bytes(), {"Content-Type": "image/jpeg"})
    assert bad[0] == 400 and "reject_unknown must be true or false" in json.loads(bad[2])["error"]
    refused = server.call("/v1/predict?reject_unknown=1", files[0].read_bytes(), {"Content-Type": "image/jpeg"})
    assert refused[0] == 400 and "inceptionnet calibrate" in json.loads(refused[2])["error"]


def test_eval_ood_adds_the_scores_and_the_report_shows_before_and_after(
    calibrated: InceptionNetwork, images: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("sklearn")
    weights = save_weights(calibrated, tmp_path / "w.safetensors")
    out, report = tmp_path / "eval.json", tmp_path / "report"
    argv = ["eval", "--data", str(images["heldout"]), "--model", str(weights), "--engine", "torch", "--workers", "0"]
    assert main([*argv, "--ood", str(images["unknown"]), "--json", str(out), "--report", str(report)]) == 0
    unknown = json.loads(out.read_text())["unknown"]
    assert [s["score"] for s in unknown["scores"]] == ["msp", "energy"]
    assert (unknown["known_images"], unknown["unknown_images"]) == (60, 40)
    assert all(0 <= s["auroc"] <= 1 and 0 <= s["fpr_at_95_tpr"] <= 1 for s in unknown["scores"])
    assert unknown["card_rule"] == calibrated.unknown.to_dict() and unknown["unknown_rejected"] is not None
    summary = json.loads((report / "calibration.json").read_text())
    assert summary["calibration"]["ece"] < summary["calibration_before_temperature"]["ece"]
    assert (report / "reliability_before.png").is_file() and (report / "unknown.json").is_file()
    assert "Unknown images" in (report / "index.html").read_text()


# -- (slow) a trained network, end to end ------------------------------------------------------------------------------


def cifar_links(dst: Path, cifar10: Path, split: str, classes: tuple[str, ...], part: slice) -> Path:
    """dst/<class>/: links to the images `part` of each class of CIFAR-10's `split`."""
    for name in classes:
        (dst / name).mkdir(parents=True)
        for f in sorted((cifar10 / split / name).iterdir())[part]:
            (dst / name / f.name).symlink_to(f)
    return dst


@pytest.mark.slow
def test_a_trained_network_rejects_unseen_classes_more_often_and_is_better_calibrated(
    tmp_path: Path, cifar10: Path
) -> None:
    """The demo network trained on three CIFAR-10 classes (1,000 images each, 5 epochs, about a minute): training
    fits the card's calibration at its end; on 900 held-out images of those classes and 900 images of three
    classes it never saw, its threshold answers "unknown" more often for the unseen ones, and its temperature
    lowers the held-out images' calibration error."""
    known, unseen = ("airplane", "automobile", "bird"), ("dog", "frog", "horse")
    data = tmp_path / "data"
    cifar_links(data / "train", cifar10, "train", known, slice(0, 1000))
    cifar_links(data / "val", cifar10, "test", known, slice(0, 300))
    heldout = cifar_links(tmp_path / "heldout", cifar10, "test", known, slice(300, 600))
    others = cifar_links(tmp_path / "unseen", cifar10, "test", unseen, slice(0, 300))
    train(preset("demo", data=str(data), out_dir=str(tmp_path / "run"), epochs=5, num_workers=0, progress=False))
    net = create_model(weights=tmp_path / "run")
    assert net.temperature is not None and net.unknown is not None and net.unknown.score == "energy"
    rejected = {}
    for name, folder in (("known", heldout), ("unseen", others)):
        answers = predict([folder], model=net, engine="torch", reject_unknown=True)
        rejected[name] = sum(bool(a.unknown) for a in answers) / len(answers)
    assert rejected["unseen"] > rejected["known"], rejected
    held = split_logits(net, heldout)
    assert held.targets is not None
    check = check_calibration(held.logits, held.targets, net.temperature)
    assert check.ece_after < check.ece_before, check
