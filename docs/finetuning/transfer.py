"""The transfer experiment of docs/finetuning.md: does starting from weights learned on other images help?

Train the demo network (Inception-ResNet-v1, 1/4 width, 75 px) on five CIFAR-10 classes (airplane,
automobile, bird, cat, deer; --source-per-class images each), then train it on a few hundred
images of each of the other five (dog, frog, horse, ship, truck) four ways, on the same images, for
the same epochs, with the same seed:

- scratch: random initial weights, the demo recipe;
- fine-tuned, demo recipe: the first network's weights and a new classifier, the same recipe;
- fine-tuned, finetune recipe: the same start, with the `finetune` preset's optimisation settings
  (momentum SGD, lr 0.01 with a 1-epoch warm-up and a cosine decay, batch 32, weight average 0.999);
- the same with --pretrained-lr-scale 0.1 (or 1.0, if the preset's multiplier is not 1.0).

    OMP_NUM_THREADS=1 python docs/finetuning/transfer.py --cifar10 ../shared/data/cifar10 --out-dir runs/transfer

writes the runs, the two 5-class folders (links into --cifar10), transfer.png and transfer.csv
(the per-epoch numbers) into --out-dir. --cifar10 is CIFAR-10 as image folders: train/<class>/*
and test/<class>/*.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt

from inceptionnet.training.config import TrainConfig
from inceptionnet.training.loop import train
from inceptionnet.training.presets import PRESETS, preset
from inceptionnet.weights import save_weights
from inceptionnet.weights.runfolder import read_metrics

SOURCE = ("airplane", "automobile", "bird", "cat", "deer")
TARGET = ("dog", "frog", "horse", "ship", "truck")
FINETUNE_RECIPE = ("optimizer", "lr", "lr_schedule", "warmup_epochs", "pretrained_lr_scale", "batch_size", "ema_decay")


def five_classes(cifar10: Path, out: Path, classes: tuple[str, ...]) -> Path:
    """out/train/<class> and out/test/<class> as links to CIFAR-10's folders of `classes`."""
    for split in ("train", "test"):
        (out / split).mkdir(parents=True, exist_ok=True)
        for name in classes:
            link = out / split / name
            if not link.exists():
                link.symlink_to((cifar10 / split / name).resolve(), target_is_directory=True)
    return out


def run_arms(recipe: TrainConfig, *, cifar10: Path, out: Path, source_per_class: int) -> dict[str, Path]:
    """Train the source network, then the arms on the target classes; their run folders."""
    source_data = five_classes(cifar10, out / "data-source", SOURCE)
    target_data = five_classes(cifar10, out / "data-target", TARGET)
    source_cfg = dataclasses.replace(recipe, data=str(source_data), train_per_class=source_per_class)
    source = train(dataclasses.replace(source_cfg, out_dir=str(out / "source")))
    weights = save_weights(source.averaged.module, out / "source.safetensors")  # the evaluated weights
    target = dataclasses.replace(recipe, data=str(target_data))
    finetune = {name: getattr(PRESETS["finetune"], name) for name in FINETUNE_RECIPE}
    other_scale = 1.0 if finetune["pretrained_lr_scale"] != 1.0 else 0.1
    arms = {
        "scratch": target,
        "fine-tuned, demo recipe": dataclasses.replace(target, weights=str(weights)),
        "fine-tuned, finetune recipe": dataclasses.replace(target, weights=str(weights), **finetune),
        f"fine-tuned, finetune recipe, pretrained lr x{other_scale:g}": dataclasses.replace(
            target, weights=str(weights), **{**finetune, "pretrained_lr_scale": other_scale}
        ),
    }
    runs = {"source network, on its own 5 classes": out / "source"}
    for name, cfg in arms.items():
        folder = out / "".join(c if c.isalnum() or c == "." else "-" for c in name)
        train(dataclasses.replace(cfg, out_dir=str(folder)))
        runs[name] = folder
    return runs


def epochs_of(run: Path) -> list[dict]:
    return [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "epoch"]


def write_results(runs: dict[str, Path], out: Path) -> None:
    """transfer.csv (one row per arm and epoch) and transfer.png (validation error and training loss)."""
    with open(out / "transfer.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arm", "epoch", "train_loss", "val_top1_error"])
        for name, run in runs.items():
            for r in epochs_of(run):
                writer.writerow([name, r["epoch"], f"{r['train_loss']:.4f}", f"{r['val_top1_error']:.2f}"])
    fig, (err, loss) = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in runs.items():
        records = epochs_of(run)
        style = {"linestyle": ":", "color": "grey"} if name.startswith("source") else {"marker": "o"}
        err.plot([r["epoch"] for r in records], [r["val_top1_error"] for r in records], label=name, **style)
        loss.plot([r["epoch"] for r in records], [r["train_loss"] for r in records], label=name, **style)
    err.set(xlabel="epoch", ylabel="validation top-1 error (%)", title="validation error, 5 classes (chance: 80%)")
    loss.set(xlabel="epoch", ylabel="training loss", title="training loss (label-smoothed cross-entropy)")
    for ax in (err, loss):
        ax.grid(alpha=0.3)
    err.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "transfer.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar10", type=Path, required=True, help="CIFAR-10 as train/<class>/*, test/<class>/*")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/transfer"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--source-per-class", type=int, default=2000)
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--val-per-class", type=int, default=100)
    args = parser.parse_args()
    recipe = preset(
        "demo",
        epochs=args.epochs,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        progress=False,
    )
    runs = run_arms(recipe, cifar10=args.cifar10, out=args.out_dir, source_per_class=args.source_per_class)
    write_results(runs, args.out_dir)


if __name__ == "__main__":
    main()
