"""A run is a model: a training run's folder, its model folder and its checkpoints rebuild the evaluated
network exactly, with its classes and preprocessing, for `create_model`, `eval`, `predict` and `export`;
and every way of getting the network or the classes wrong is an error, not a silent result."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from inceptionnet import Preprocessing, create_model
from inceptionnet.cli import main
from inceptionnet.export.formats import read_export_metadata
from inceptionnet.factory import load_model
from inceptionnet.training.loop import train
from inceptionnet.training.writer import save_run_model
from inceptionnet.weights import CONFIG_FILE, IMAGENET_MEAN, IMAGENET_STD, WEIGHTS_FILE, WeightsError, run_weights
from inceptionnet.weights.runfolder import RunFolder, read_checkpoint, read_metrics

# What a run from scratch validates with: the network's default transform at the run's input size.
RUN_PRE = Preprocessing(input_size=75)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_image_folder, make_train_config, one_thread):
    """One epoch of a 3-class Inception-v3 (1/8 width, 75 px), with its model folder; (data, run folder, result)."""
    tmp = tmp_path_factory.mktemp("run")
    data = make_image_folder(tmp / "data", classes=3, train=4, val=3)
    result = train(make_train_config(data, tmp / "run", epochs=1))
    out = result.out_dir
    if not (out / "model" / CONFIG_FILE).is_file():  # the loop writes it after each evaluation
        save_run_model(
            RunFolder(out),
            result.averaged.module,
            class_names=read_checkpoint(out)["classes"],
            preprocessing=RUN_PRE,
            record=last_epoch(out),
            averaged=True,
        )
    return data, out, result


def last_epoch(run_dir: Path) -> dict:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "epoch"][-1]


def logits(model: torch.nn.Module) -> torch.Tensor:
    x = torch.randn(2, 3, 75, 75, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.eval()(x)


# -- the model folder ------------------------------------------------------------------------------------------


def test_model_folder_records_everything_needed(run) -> None:
    _, out, result = run
    config = json.loads((out / "model" / CONFIG_FILE).read_text())
    assert config["format"] == "inceptionnet" and config["version"]
    assert config["model_name"] == "inception_v3" and config["weights"] == "average"
    assert config["model_options"] == {**result.model.build_options, "aux_logits": False}
    assert config["class_names"] == ["airplane", "automobile", "bird"] == config["label_names"]
    assert config["preprocessing"]["input_size"] == 75 and config["input_size"] == [3, 75, 75]
    assert (config["num_classes"], config["crop_pct"], config["interpolation"]) == (3, 0.875, "bicubic")
    record = last_epoch(out)
    kept = ("epoch", "step", "val_top1_error", "val_top5_error", "val_balanced_accuracy")
    assert config["metrics"] == {k: record[k] for k in kept}


@pytest.mark.parametrize("where", ["run", "model", "best.pt", "last.pt", "model.safetensors"])
def test_create_model_rebuilds_the_evaluated_network(run, where: str) -> None:
    _, out, result = run
    weights = {"run": out, "model": out / "model", "model.safetensors": out / "model" / WEIGHTS_FILE}.get(where)
    model = create_model(weights=weights or out / where)
    assert model.model_name == "inception_v3" and model.num_classes == 3 and model.aux is None
    assert model.class_names == ("airplane", "automobile", "bird")
    assert model.preprocessing == RUN_PRE
    assert model.build_options["width"] == 0.125
    assert torch.equal(logits(model), logits(result.averaged.module))  # the weight average, not the raw weights


def test_a_run_folder_stands_for_its_model_then_best_then_last(run, tmp_path: Path) -> None:
    _, out, _ = run
    copy = shutil.copytree(out, tmp_path / "run")
    assert run_weights(copy) == copy / "model"
    shutil.rmtree(copy / "model")
    assert run_weights(copy) == copy / "best.pt"
    (copy / "best.pt").unlink()
    assert run_weights(copy) == copy / "last.pt"
    (copy / "last.pt").unlink()
    with pytest.raises(WeightsError, match=r"holds no trained network: no model/ model folder, no best.pt and no last"):
        create_model(weights=copy)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / CONFIG_FILE).write_text((out / "model" / CONFIG_FILE).read_text())
    with pytest.raises(WeightsError, match=r"has config.json but no model.safetensors"):
        create_model(weights=tmp_path / "half")


def test_checkpoints_give_their_recorded_transform_and_their_raw_weights_without_an_average(
    run, tmp_path: Path
) -> None:
    _, out, _ = run
    payload = torch.load(out / "best.pt", weights_only=True)
    recorded = Preprocessing(input_size=80, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_fraction=0.9)
    torch.save({**payload, "preprocessing": dataclasses.asdict(recorded)}, tmp_path / "recorded.pt")
    assert create_model(weights=tmp_path / "recorded.pt").preprocessing == recorded  # the transform it validated with
    torch.save({**payload, "ema": None}, tmp_path / "raw.pt")
    raw = create_model(weights=tmp_path / "raw.pt")
    trained = {k: v for k, v in payload["model"].items() if not k.startswith("aux.")}
    assert raw.state_dict().keys() == trained.keys()
    assert all(torch.equal(v, trained[k]) for k, v in raw.state_dict().items())


# -- eval, predict and export take the run as it is ---------------------------------------------------------


@pytest.mark.parametrize("where", ["run", "best.pt", "model"])
def test_eval_of_a_run_gives_the_logged_top1_to_the_last_digit(run, tmp_path: Path, where: str) -> None:
    data, out, _ = run
    spec = out if where == "run" else out / where
    report = tmp_path / "r.json"
    assert (
        main(["eval", "--data", str(data / "val"), "--model", str(spec), "--workers", "0", "--json", str(report)]) == 0
    )
    (row,) = json.loads(report.read_text())["results"]
    logged = last_epoch(out)
    # training's own arithmetic on eval's counts gives the logged numbers exactly
    assert 100 * (1 - row["top1_correct"] / row["images"]) == logged["val_top1_error"]
    assert 100 * (1 - row["top5_correct"] / row["images"]) == logged["val_top5_error"]
    assert row["balanced_accuracy"] == pytest.approx(logged["val_balanced_accuracy"], abs=1e-4)  # JSON: 4 decimals
    assert row["images"] == 9


def test_eval_refuses_a_folder_with_other_classes(run, tmp_path: Path, capsys) -> None:
    data, out, _ = run
    folder = shutil.copytree(data / "val", tmp_path / "val")
    shutil.copytree(folder / "bird", folder / "zebra")
    shutil.rmtree(folder / "airplane")
    assert main(["eval", "--data", str(folder), "--model", str(out), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "classes differ from those of" in err and "zebra are not among its 3 classes" in err
    assert "its classes without a folder: airplane" in err
    shutil.rmtree(folder / "zebra")  # a subset of the run's classes is a valid evaluation
    assert main(["eval", "--data", str(folder), "--model", str(out), "--workers", "0"]) == 0


def test_predict_names_the_runs_classes(run, tmp_path: Path, capsys) -> None:
    data, out, _ = run
    report = tmp_path / "p.json"
    assert main(["predict", str(data / "val"), "--model", str(out), "--device", "cpu", "--json", str(report)]) == 0
    text = capsys.readouterr().out
    d = json.loads(report.read_text())
    assert d["model"] == "inception_v3" and d["num_classes"] == 3 and d["device"] == "cpu"
    assert len(d["results"]) == 9  # the folder's images, recursively
    assert [r["path"] for r in d["results"]] == sorted(str(p) for p in (data / "val").rglob("*.jpg"))
    top = d["results"][0]["top"]
    assert len(top) == 3  # the default top-5, capped at the run's 3 classes
    assert {t["label"] for t in top} == {"airplane", "automobile", "bird"}
    assert f"{top[0]['name']} (class {top[0]['index']})" in text
    assert main(["predict", str(data / "val"), "--model", str(out), "--top-k", "4"]) == 2
    assert "top-k must be between 1 and the 3 classes" in capsys.readouterr().err


def test_export_of_a_run_carries_its_classes(run, tmp_path: Path, capsys) -> None:
    _, out, _ = run
    path = tmp_path / "run.pt"
    assert main(["export", str(out), "--format", "torchscript", "--output", str(path)]) == 0
    assert "3 named classes" in capsys.readouterr().out
    meta = read_export_metadata(path)
    assert meta["class_names"] == ["airplane", "automobile", "bird"] and meta["model_name"] == "inception_v3"
    assert meta["preprocessing"]["input_size"] == 75 and meta["model_options"]["width"] == 0.125


# -- no silent wrong results --------------------------------------------------------------------------------


def test_weights_of_another_network_or_class_count_are_errors(run, capsys) -> None:
    data, out, _ = run
    with pytest.raises(WeightsError, match=r"holds inception_v3 weights, not inception_resnet_v2 weights"):
        create_model("inception_resnet_v2", weights=out)
    argv = ["predict", str(data / "val"), "--model", "inception_resnet_v2", "--weights", str(out / "best.pt")]
    assert main(argv) == 2
    assert "best.pt holds inception_v3 weights, not inception_resnet_v2" in capsys.readouterr().err
    # a command never runs a classifier that was not loaded: 1000 classes asked of a 3-class run
    with pytest.raises(
        WeightsError, match=r"holds a 3-class inception_v3 classifier, but the network asked for has 1000"
    ):
        load_model(f"inception_v3:{out}", num_classes=1000)
    assert main(["eval", "--data", str(data / "val"), "--model", str(out), "--num-classes", "1000"]) == 2
    assert "its classifier would be random, not loaded" in capsys.readouterr().err
    # only create_model's explicit class count (fine-tuning) starts a fresh, unnamed head
    fresh = create_model(weights=out, num_classes=5)
    assert fresh.num_classes == 5 and fresh.class_names is None


def test_save_run_model_checks_its_inputs(run, tmp_path: Path) -> None:
    _, out, result = run
    pre = RUN_PRE
    with pytest.raises(ValueError, match="lacks"):
        save_run_model(
            RunFolder(tmp_path), result.model, class_names=["a", "b", "c"], preprocessing=pre, record={}, averaged=False
        )
    record = last_epoch(out)
    with pytest.raises(ValueError, match="2 class names for a network with 3 outputs"):
        save_run_model(
            RunFolder(tmp_path), result.model, class_names=["a", "b"], preprocessing=pre, record=record, averaged=False
        )
    folder = save_run_model(
        RunFolder(tmp_path), result.model, class_names=["x", "y", "z"], preprocessing=pre, record=record, averaged=False
    )
    assert not any(k.startswith("aux.") for k in create_model(weights=tmp_path).state_dict())
    assert json.loads((folder / CONFIG_FILE).read_text())["weights"] == "raw"
