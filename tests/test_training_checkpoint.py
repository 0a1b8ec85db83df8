"""Checkpoints: atomic writes, safe loads, round trips of the training state, the trained network rebuilt exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from inceptionnet import create_model
from inceptionnet._version import __version__
from inceptionnet.training import checkpoint, writer
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.faults import CheckpointWriteError
from inceptionnet.training.loop import train
from inceptionnet.training.optim import RMSpropTF, WeightAverage
from inceptionnet.training.state import RunPosition
from inceptionnet.weights import WeightsError
from inceptionnet.weights.checkpoint import FORMAT
from inceptionnet.weights.runfolder import LAST, RunFolder, read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


class Custom:
    """An arbitrary object: loading it would run unpickling code, which weights_only refuses."""


def test_save_round_trip_and_no_leftovers(tmp_path: Path) -> None:
    payload = {"format": FORMAT, "w": torch.arange(5.0), "nested": {"a": [1, 2.5, None, "x"]}}
    writer.save(payload, tmp_path / "run" / "last.pt")
    loaded = read_checkpoint(tmp_path / "run")  # a folder means its last.pt
    assert torch.equal(loaded["w"], payload["w"]) and loaded["nested"] == payload["nested"]
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["last.pt"]


def test_failed_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    writer.save({"format": FORMAT, "step": 1}, path)
    before = path.read_bytes()
    with pytest.raises(Exception, match="pickle"):
        writer.save({"format": FORMAT, "bad": lambda: None}, path)  # fails mid-write
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the temporary file is gone


def test_a_write_that_fails_names_the_file_and_what_is_left(tmp_path: Path) -> None:
    (tmp_path / "last.pt").mkdir()  # the target cannot be replaced: the rename fails at the very end
    with pytest.raises(CheckpointWriteError, match=r"could not write .*last.pt: Is a directory"):
        writer.save({"format": FORMAT}, tmp_path / "last.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_keep_previous_copies_the_replaced_checkpoint(tmp_path: Path) -> None:
    writer.save({"format": FORMAT, "step": 3}, tmp_path / "last.pt")
    writer.keep_previous(tmp_path / "last.pt", RunFolder(tmp_path))
    writer.save({"format": FORMAT, "step": 5}, tmp_path / "last.pt")  # a new file, not the link
    assert read_checkpoint(tmp_path / "previous.pt")["step"] == 3
    assert read_checkpoint(tmp_path / "last.pt")["step"] == 5
    writer.keep_previous(tmp_path / "previous.pt", RunFolder(tmp_path))  # continuing from previous.pt: nothing to do
    assert read_checkpoint(tmp_path / "previous.pt")["step"] == 3
    other = tmp_path / "other"
    other.mkdir()
    writer.keep_previous(tmp_path / "last.pt", RunFolder(other))  # a run continued in another folder
    assert read_checkpoint(other / "previous.pt")["step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "other", "previous.pt"]


def test_load_refuses_foreign_or_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no checkpoint"):
        read_checkpoint(tmp_path)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an inceptionnet training checkpoint"):
        read_checkpoint(tmp_path / "other.pt")

    torch.save({"format": FORMAT, "x": Custom()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match=r"[Ww]eights only"):
        read_checkpoint(tmp_path / "evil.pt")


def _training_objects(seed: int):
    torch.manual_seed(seed)
    model = create_model("inception_v3", num_classes=3, width=0.125, aux_logits=True)
    ema = WeightAverage(model, decay=0.9)
    opt = RMSpropTF(model.parameters(), lr=0.01)
    return model, ema, opt


def test_training_state_restores_exactly(tmp_path: Path) -> None:
    model, ema, opt = _training_objects(0)
    logits, aux = model(torch.randn(2, 3, 75, 75), return_aux=True)
    (logits.sum() + aux.sum()).backward()
    opt.step()
    ema.update(model)
    cfg = TrainConfig(model="inception_v3", width=0.125, input_size=75)
    position = RunPosition(epoch=1, step=7, loss_sum=3.5, losses=2, skipped=1, best_top1_error=12.5)
    state = checkpoint.training_state(
        model=model,
        ema=ema,
        optimizer=opt,
        scaler=None,
        cfg=cfg,
        position=position,
        classes=["a", "b", "c"],
        preprocessing=model.preprocessing,
    )
    writer.save(state, tmp_path / "last.pt")
    payload = read_checkpoint(tmp_path / "last.pt")
    assert payload["version"] == __version__ and TrainConfig.from_dict(payload["config"]) == cfg
    assert payload["position"] == position.to_dict()  # a plain dict, as weights_only loading needs

    model2, ema2, opt2 = _training_objects(1)  # different initial weights
    assert checkpoint.restore(payload, model=model2, ema=ema2, optimizer=opt2, scaler=None) == position
    for a, b in ((model, model2), (ema, ema2)):
        for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert k == k2 and torch.equal(v, v2), k
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[i]["square_avg"], s2[i]["square_avg"]) for i in s1)

    # As weights: the evaluated network (the weight average, without the auxiliary head), its classes named.
    net = create_model(weights=tmp_path / "last.pt")
    assert net.aux is None and net.class_names == ("a", "b", "c")
    torch.testing.assert_close(net.head.fc.weight, ema.module.head.fc.weight)
    writer.save({**payload, "ema": None}, tmp_path / "raw.pt")  # a run without a weight average
    raw = create_model(weights=tmp_path / "raw.pt")
    torch.testing.assert_close(raw.head.fc.weight, model.head.fc.weight)


def test_position_of_older_checkpoints_loads() -> None:
    # A position without some keys (an older checkpoint) keeps their start values.
    assert RunPosition.from_dict({"epoch": 1, "step": 7}) == RunPosition(epoch=1, step=7)


@pytest.fixture(scope="module")
def scaled_run(tmp_path_factory, make_image_folder, make_train_config, one_thread):
    """One epoch of a tiny Inception-ResNet-v1 trained with residual scale 0.3 (not its default 0.17 / 0.1 / 0.2)."""
    tmp = tmp_path_factory.mktemp("scaled")
    data = make_image_folder(tmp / "data", train=4, val=2)
    cfg = make_train_config(data, tmp / "run", model="inception_resnet_v1", epochs=1, residual_scale=0.3)
    return train(cfg)


def _logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(torch.randn(2, 3, 75, 75, generator=torch.Generator().manual_seed(0)))


def test_create_model_rebuilds_the_trained_network_of_a_checkpoint_exactly(scaled_run, tmp_path) -> None:
    path = scaled_run.out_dir / LAST
    payload = read_checkpoint(path)
    assert payload["model_name"] == "inception_resnet_v1" and payload["model_options"]["scales"] == (0.3,) * 3
    assert torch.equal(_logits(create_model(weights=path)), _logits(scaled_run.averaged.module))
    writer.save({**payload, "ema": None}, tmp_path / "raw.pt")
    assert torch.equal(_logits(create_model(weights=tmp_path / "raw.pt")), _logits(scaled_run.model))


def test_a_checkpoint_without_its_network_is_refused_naming_the_fix(scaled_run, tmp_path) -> None:
    payload = read_checkpoint(scaled_run.out_dir / LAST)
    del payload["model_name"], payload["model_options"]
    writer.save(payload, tmp_path / "old.pt")
    with pytest.raises(
        WeightsError, match=r"old.pt is a training checkpoint without model_name, model_options: .* Retrain"
    ):
        create_model(weights=tmp_path / "old.pt")


def test_unknown_config_fields_are_named() -> None:
    with pytest.raises(ValueError, match=r"\['warp_factor'\]"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "warp_factor": 9})
