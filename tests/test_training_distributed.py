"""Two DDP processes on the CPU (gloo): both ranks end with the same weights; only rank 0 writes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from inceptionnet.training.config import TrainConfig
from inceptionnet.training.loop import train
from inceptionnet.weights.runfolder import read_checkpoint, read_metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, cfg: TrainConfig, tmp: str) -> None:
    # What torchrun sets for each process it starts.
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size)
    )
    torch.set_num_threads(1)
    result = train(cfg)
    torch.save(
        {"model": result.model.state_dict(), "ema": result.averaged.state_dict(), "step": result.step},
        Path(tmp) / f"rank{rank}.pt",
    )


@pytest.mark.parametrize(
    ("per_class", "batching"),
    [
        (4, {"batch_size": 2}),  # 8 images: 4 per rank, 2 steps of 2 per epoch
        # 16 images, 2 steps of 2 accumulated batches of 2 per rank and epoch: the gradients are synchronised
        # by each step's second backward pass only
        pytest.param(8, {"batch_size": 2, "accumulate": 2}, marks=pytest.mark.slow),
    ],
)
def test_two_ranks_end_with_identical_weights(
    tmp_path: Path, make_image_folder, make_train_config, per_class: int, batching: dict
) -> None:
    data = make_image_folder(tmp_path / "data", train=per_class, val=3)
    cfg = make_train_config(data, tmp_path / "run", epochs=2, device="cpu", **batching)
    # spawn, as torchrun does: a forked child of a process that has run backward passes cannot run its own.
    mp.start_processes(_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, start_method="spawn")

    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert states[0]["step"] == states[1]["step"] == 4
    for key in ("model", "ema"):
        a, b = states[0][key], states[1][key]
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), f"{key}.{name} differs between ranks"
    # The weights did change, so the equality says something about the gradient averaging.
    saved = read_checkpoint(tmp_path / "run")
    assert saved["position"]["step"] == 4
    for name, value in saved["model"].items():
        assert torch.equal(value, states[0]["model"][name])

    records = read_metrics(tmp_path / "run" / "metrics.jsonl")  # rank 0 alone writes
    assert [r["kind"] for r in records] == ["run", "epoch", "epoch"]
    assert records[0]["world_size"] == 2
    assert all(r["val_top1_error"] is not None for r in records[1:])
    assert {p.name for p in (tmp_path / "run").iterdir() if p.suffix == ".tmp"} == set()
