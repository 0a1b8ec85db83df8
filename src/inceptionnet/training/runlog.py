"""What a training run leaves behind besides checkpoints: metrics.jsonl, curves.png and TensorBoard events.

Only rank 0 creates a `RunLog` that writes; the other ranks get one with `enabled=False`.
metrics.jsonl holds one JSON object per line: a "run" record at every start or continuation
(resolved configuration, package version, world size, the checkpoint continued from), a "step"
record every `log_every` steps when asked for (loss, learning rate, gradient norm, zero activations
before pooling) and an "epoch" record per finished epoch. A run that continues from a checkpoint
first removes the records an interrupted attempt wrote after that checkpoint's position, so the
file holds each epoch and each step once, in order.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from inceptionnet.atomic import atomic_write
from inceptionnet.weights.runfolder import RunFolder


def format_epoch(rec: dict[str, Any]) -> str:
    """The one line printed per epoch."""
    parts = [f"epoch {rec['epoch']:>3d}/{rec['epochs']}", f"train loss {rec['train_loss']:.4f}"]
    if rec.get("val_map") is not None:  # multi-label
        parts.append(f"val mAP {rec['val_map']:6.2f}%  exact match {rec['val_exact_match']:6.2f}%")
    elif rec.get("val_top1_error") is not None:
        parts.append(f"val top-1 err {rec['val_top1_error']:6.2f}%  top-5 err {rec['val_top5_error']:6.2f}%")
    parts += [f"lr {rec['lr']:.4g}", f"{rec['images_per_s']:.0f} img/s", f"{rec['epoch_time_s']:.1f}s"]
    if rec.get("skipped_images"):
        parts.append(f"skipped {rec['skipped_images']} unreadable images")
    return "  ".join(parts)


def records_until(lines: list[str], *, epoch: int, step: int) -> list[str]:
    """The metrics lines a run continued at (`epoch` epochs finished, `step` steps taken) keeps.

    Every "run" record stays; "epoch" records after `epoch` and "step" records after `step` go, and
    so does a line that is not JSON (the torn end of a write that a crash interrupted).
    """
    kept = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = rec.get("kind")
        if (kind == "epoch" and rec["epoch"] > epoch) or (kind == "step" and rec["step"] > step):
            continue
        kept.append(line)
    return kept


def latest_records(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The "epoch" or "step" records, the last one per epoch or step (where a file repeats some), in order."""
    latest = {rec[kind]: rec for rec in records if rec.get("kind") == kind}
    return [latest[k] for k in sorted(latest)]


def plot_curves(records: list[dict[str, Any]], path: str | Path) -> None:
    """Training loss and validation top-1/top-5 error against epochs, as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = {rec["epoch"]: rec for rec in latest_records(records, "epoch")}
    xs = sorted(epochs)
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(xs, [epochs[e]["train_loss"] for e in xs], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    evaluated = [e for e in xs if epochs[e].get("val_top1_error") is not None]
    for key, label in (("val_top1_error", "top-1"), ("val_top5_error", "top-5")):
        ax_err.plot(evaluated, [epochs[e][key] for e in evaluated], marker="o", label=label)
    ax_err.set(xlabel="epoch", ylabel="error (%)", title="validation error")
    ax_err.legend()
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class RunLog:
    """Appends metrics records, redraws the curves after each epoch, mirrors scalars to TensorBoard.

    It touches no file until `start`: a command that finds nothing to train leaves the folder as it was.
    """

    def __init__(self, folder: RunFolder, *, enabled: bool) -> None:
        self.folder = folder
        self.enabled = enabled
        self.tensorboard = None

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.folder.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def start(self, *, epoch: int = 0, step: int = 0, **fields: Any) -> None:
        """Open the log of a run at its position (`epoch` epochs finished, `step` steps taken) and
        append a "run" record of `fields`; records of an earlier attempt after that position are removed."""
        if not self.enabled:
            return
        self.folder.path.mkdir(parents=True, exist_ok=True)
        path = self.folder.metrics
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = records_until(lines, epoch=epoch, step=step)
            if kept != lines:
                atomic_write(path, "".join(line + "\n" for line in kept).encode("utf-8"))
        if importlib.util.find_spec("tensorboard") is not None:  # optional dependency
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: TensorBoard drops the events a stopped attempt logged after this position
            self.tensorboard = SummaryWriter(str(self.folder.tensorboard), purge_step=step + 1 if step else None)
        self._append({"kind": "run", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields})

    def step(self, step: int, *, epoch: int, record: bool, **scalars: float) -> None:
        """Mirror a step's scalars to TensorBoard; with `record`, also append them to metrics.jsonl."""
        if record and self.enabled:
            self._append({"kind": "step", "step": step, "epoch": epoch, **scalars})
        if self.tensorboard is not None:
            for name, value in scalars.items():
                self.tensorboard.add_scalar(f"train/{name}", value, step)

    def epoch(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._append({"kind": "epoch", **record})
        plot_curves(self.folder.read_metrics(), self.folder.curves)
        if self.tensorboard is not None:
            for key in ("train_loss", "val_top1_error", "val_top5_error", "lr", "images_per_s"):
                if record.get(key) is not None:
                    self.tensorboard.add_scalar(f"epoch/{key}", record[key], record["step"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
