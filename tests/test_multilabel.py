"""Multi-label end to end on a tiny network: a metadata.csv folder with several labels per image trains with
binary cross-entropy, tunes per-class thresholds, and evaluates, predicts, exports and quantizes as
multi-label."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from inceptionnet import create_model
from inceptionnet.cli import main
from inceptionnet.data import DEMO_DATA, eval_transform, open_split
from inceptionnet.data.crops import render_views, views_for
from inceptionnet.evaluation.multilabel import multilabel_scores, tune_thresholds
from inceptionnet.export.formats import read_export_metadata
from inceptionnet.training.loop import train
from inceptionnet.training.losses import training_loss
from inceptionnet.weights.runfolder import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["cat", "dog", "outdoor"]
# Each image's labels: some have two.
LABELS = [["cat"], ["cat", "outdoor"], ["dog"], ["dog", "outdoor"], ["cat", "dog"], ["cat"], ["outdoor"], ["dog"]]


def make_multilabel_folder(root: Path, *, train: int = 8, val: int = 6) -> Path:
    """root/{train,val}/metadata.csv (`labels` column, ;-separated) with demo images: 3 classes."""
    images = sorted((DEMO_DATA / "train").rglob("*.png")) + sorted((DEMO_DATA / "train").rglob("*.jpg"))
    for split, count in (("train", train), ("val", val)):
        (root / split).mkdir(parents=True)
        rows = []
        for n in range(count):
            shutil.copy(images[n], root / split / f"i{n}{images[n].suffix}")
            rows.append(f"i{n}{images[n].suffix},{';'.join(LABELS[n % len(LABELS)])}")
        (root / split / "metadata.csv").write_text("file_name,labels\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory, make_train_config, one_thread):
    """One multi-label run of 2 epochs of 2 steps (8 training images, batch 3 -> 2 full batches)."""
    tmp = tmp_path_factory.mktemp("multilabel")
    data = make_multilabel_folder(tmp / "data")
    result = train(make_train_config(data, tmp / "run"))
    return data, result


def test_multilabel_run_trains_and_its_card_says_multi_with_thresholds(multilabel_run) -> None:
    _, result = multilabel_run
    assert (result.epoch, result.stopped_by) == (2, None)
    net = create_model(weights=str(result.out_dir))
    assert net.card.label_mode == "multi" and net.card.class_names == tuple(CLASSES)
    assert net.card.thresholds is not None and len(net.card.thresholds) == 3
    assert {"val_map", "val_exact_match"} <= set(net.card.metrics)
    payload = read_checkpoint(result.out_dir)
    assert payload["label_mode"] == "multi" and payload["thresholds"] == list(net.card.thresholds)


def test_resume_of_a_multilabel_run_equals_the_uninterrupted_run(
    multilabel_run, make_train_config, tmp_path, after_step
) -> None:
    data, straight = multilabel_run
    cfg = make_train_config(data, tmp_path / "run")
    with after_step(3):  # in the second epoch: the first validation has tuned thresholds already
        assert train(cfg).stopped_by == "SIGTERM"
    assert read_checkpoint(tmp_path / "run")["thresholds"] is not None
    resumed = train(cfg, resume=tmp_path / "run")
    for a, b in ((resumed.model, straight.model), (resumed.averaged, straight.averaged)):
        for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y), key
    assert resumed.val_top1_error == straight.val_top1_error
    assert (
        create_model(weights=str(tmp_path / "run")).card.thresholds
        == create_model(weights=str(straight.out_dir)).card.thresholds
    )


def test_forcing_single_label_on_multilabel_data_is_refused(multilabel_run, make_train_config, tmp_path) -> None:
    data, _ = multilabel_run
    with pytest.raises(ValueError, match="use --label-mode multi"):
        train(make_train_config(data, tmp_path / "run", label_mode="single"))


def test_multilabel_loss_is_binary_cross_entropy_and_single_label_is_unchanged() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.5, 0.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    by_hand = -(targets * torch.log(torch.sigmoid(logits)) + (1 - targets) * torch.log(1 - torch.sigmoid(logits)))
    assert torch.allclose(training_loss(logits, targets, multi_label=True), by_hand.mean())
    smoothed = targets * 0.8 + 0.1
    expected = F.binary_cross_entropy_with_logits(logits, smoothed)
    assert torch.allclose(training_loss(logits, targets, label_smoothing=0.2, multi_label=True), expected)
    indices = torch.tensor([0, 2])
    assert torch.equal(
        training_loss(logits, indices, label_smoothing=0.1), F.cross_entropy(logits, indices, label_smoothing=0.1)
    )
    mixed = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.3, 0.7]])  # probability targets (mixed labels) still work
    assert torch.equal(training_loss(logits, mixed), F.cross_entropy(logits, mixed))
    with pytest.raises(ValueError, match="shaped like the logits"):
        training_loss(logits, indices, multi_label=True)


def test_threshold_tuning_picks_the_f1_maximising_threshold() -> None:
    # Class 0: positives at 0.9, 0.6, 0.3; negatives at 0.7, 0.2. F1 at each cut: >=0.9 2/4, >=0.7 2/5,
    # >=0.6 4/6, >=0.3 6/7 (best), >=0.2 6/8. Class 1: positives at 0.8, 0.4; >=0.8 (F1 2/3) ties with
    # >=0.4 (4/6): the lower wins. Class 2 has no positive: 0.5.
    probs = torch.tensor([[0.9, 0.8, 0.1], [0.7, 0.1, 0.2], [0.6, 0.4, 0.3], [0.3, 0.5, 0.4], [0.2, 0.45, 0.5]])
    targets = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]])
    assert tune_thresholds(probs, targets) == pytest.approx([0.3, 0.4, 0.5])
    scores = multilabel_scores(probs, targets, [0.3, 0.4, 0.5])
    assert scores.f1[:2] == pytest.approx([600 / 7, 200 / 3]) and scores.ap[2] is None


def test_eval_reports_the_map_of_scikit_learn(multilabel_run, tmp_path, capsys) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    data, result = multilabel_run
    argv = ["eval", "--data", str(data / "val"), "--model", str(result.out_dir), "--workers", "0"]
    assert main([*argv, "--json", "-"]) == 0
    got = json.loads(capsys.readouterr().out)
    net = create_model(weights=str(result.out_dir)).eval()
    source_probs, truth = _val_predictions(net, data)
    assert got["map"] == pytest.approx(100 * metrics.average_precision_score(truth, source_probs, average="macro"))
    said = source_probs >= torch.tensor(net.card.thresholds)
    assert got["micro_f1"] == pytest.approx(100 * metrics.f1_score(truth, said, average="micro"))
    assert got["exact_match"] == pytest.approx(100 * metrics.accuracy_score(truth, said))
    assert got["thresholds"] == pytest.approx(list(net.card.thresholds))
    assert got["map"] == pytest.approx(net.card.metrics["val_map"], abs=1e-4)  # what training validated
    assert main([*argv, "--report", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    assert f"mAP {got['map']:.2f}%" in printed and "exact match" in printed
    assert "mAP" in (tmp_path / "report" / "index.html").read_text()


def test_ten_crops_average_the_sigmoids_of_the_ten_views(multilabel_run, capsys) -> None:
    data, result = multilabel_run
    argv = ["eval", "--data", str(data / "val"), "--model", str(result.out_dir), "--workers", "0", "--json", "-"]
    assert main([*argv, "--crops", "10"]) == 0
    got = json.loads(capsys.readouterr().out)
    net = create_model(weights=str(result.out_dir)).eval()
    pre = net.preprocessing
    source = open_split(data, "val")
    probs, truth = [], torch.zeros(len(source), len(CLASSES))
    for i in range(len(source)):
        image, target = source[i]
        pixels = TF.pil_to_tensor(image)
        views = views_for(10, *pixels.shape[-2:], input_size=pre.input_size, crop_fraction=pre.crop_fraction)
        cut = render_views(pixels, views, input_size=pre.input_size, interpolation=pre.interpolation)
        x = TF.normalize(TF.to_dtype(cut, torch.float32, scale=True), mean=list(pre.mean), std=list(pre.std))
        with torch.no_grad():
            probs.append(torch.sigmoid(net(x)).mean(0))  # the sigmoids of the 10 views, averaged
        truth[i, list(target)] = 1
    expected = multilabel_scores(torch.stack(probs), truth, net.card.thresholds)
    assert got["crops"] == 10 and got["images"] == len(source)
    assert got["map"] == pytest.approx(expected.map, abs=1e-4)
    assert got["exact_match"] == pytest.approx(expected.exact_match, abs=1e-4)
    assert got["ap"] == pytest.approx(expected.ap, abs=1e-4)


def _val_predictions(net: torch.nn.Module, data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The sigmoid probabilities of `net` on data/val and its multi-hot labels, computed here independently."""
    source = open_split(data, "val", transform=eval_transform(net.preprocessing))
    images = torch.stack([source[i][0] for i in range(len(source))])
    truth = torch.zeros(len(source), len(CLASSES))
    for i, target in enumerate(source.targets):
        truth[i, list(target)] = 1
    with torch.no_grad():
        return torch.sigmoid(net(images)), truth


def test_predict_lists_the_labels_above_the_saved_thresholds(multilabel_run, capsys) -> None:
    data, result = multilabel_run
    assert main(["predict", str(data / "val"), "--model", str(result.out_dir), "--json", "-"]) == 0
    got = json.loads(capsys.readouterr().out)
    thresholds = create_model(weights=str(result.out_dir)).card.thresholds
    assert got["label_mode"] == "multi" and len(got["results"]) == 6
    for entry in got["results"]:
        every = entry["probabilities"]
        assert [c["label"] for c in every] == CLASSES
        above = {c["label"] for c in every if c["probability"] >= thresholds[c["index"]]}
        assert {c["label"] for c in entry["labels"]} == above
    assert main(["predict", str(data / "val"), "--model", str(result.out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "%" in printed or "(none above threshold)" in printed


def test_export_and_quantize_keep_the_label_mode_and_thresholds(multilabel_run, tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    data, result = multilabel_run
    card = create_model(weights=str(result.out_dir)).card
    path = tmp_path / "run.pt"
    assert main(["export", str(result.out_dir), "--format", "torchscript", "--output", str(path)]) == 0
    meta = read_export_metadata(path)
    assert meta["label_mode"] == "multi" and meta["thresholds"] == pytest.approx(list(card.thresholds))
    out = tmp_path / "int8"
    argv = ["quantize", str(result.out_dir), "--calibration", str(data / "val"), "--output", str(out), "--images", "4"]
    # a network trained a few steps on a few images: what is checked is the card, not its agreement with fp32
    assert main([*argv, "--min-agreement", "0"]) == 0
    printed = capsys.readouterr().out
    assert "label agreement with fp32" in printed and "exact match" in printed and "top-1" not in printed
    config = json.loads((out / "config.json").read_text())
    assert config["label_mode"] == "multi" and config["thresholds"] == pytest.approx(list(card.thresholds))
    assert main(["predict", str(data / "val"), "--model", str(out), "--json", "-"]) == 0
    assert all("labels" in entry for entry in json.loads(capsys.readouterr().out)["results"])


def test_an_engine_predicts_the_same_labels(multilabel_run, capsys) -> None:
    pytest.importorskip("onnxruntime")
    data, result = multilabel_run
    runs = []
    for engine in ("torch", "onnxruntime"):
        argv = ["predict", str(data / "val"), "--model", str(result.out_dir), "--engine", engine, "--json", "-"]
        assert main(argv) == 0
        runs.append(json.loads(capsys.readouterr().out)["results"])
    torch_run, onnx_run = runs
    for a, b in zip(torch_run, onnx_run, strict=True):
        assert [c["probability"] for c in a["probabilities"]] == pytest.approx(
            [c["probability"] for c in b["probabilities"]], abs=1e-4
        )


def _rank(rank: int, port: int, cfg: object) -> None:
    # What torchrun sets for each process it starts.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank))
    os.environ["WORLD_SIZE"] = "2"
    torch.set_num_threads(1)
    train(cfg)


@pytest.mark.slow
def test_two_ranks_validate_on_all_the_validation_images(multilabel_run, make_train_config, tmp_path) -> None:
    data, _ = multilabel_run
    cfg = make_train_config(data, tmp_path / "run", batch_size=2, device="cpu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_rank, args=(port, cfg), nprocs=2, start_method="spawn")
    net = create_model(weights=str(tmp_path / "run"))
    assert net.card.label_mode == "multi" and len(net.card.thresholds) == 3
    got = multilabel_scores(*_val_predictions(net.eval(), data), net.card.thresholds)
    assert got.map == pytest.approx(net.card.metrics["val_map"], abs=1e-4)  # all 6 images, not one rank's 3
    assert got.exact_match == pytest.approx(net.card.metrics["val_exact_match"], abs=1e-4)


@pytest.mark.slow  # a torchrun start and two evaluations: about 10 s
def test_torchrun_eval_of_a_multilabel_network_equals_one_process(multilabel_run, tmp_path) -> None:
    data, result = multilabel_run
    argv = ["eval", "--data", str(data / "val"), "--model", str(result.out_dir), "--workers", "0", "--batch-size", "2"]
    assert main([*argv, "--json", str(tmp_path / "one.json")]) == 0
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2", "-m"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*torchrun, "inceptionnet", *argv, "--json", str(tmp_path / "two.json")], env=env)
    assert done.returncode == 0
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert two["images"] == one["images"] == 6
    assert two == one
