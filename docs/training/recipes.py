"""Which recipe wins on the demo data: the paper's (the `demo` preset) or the last years' (the `modern` preset)?

Both presets train the same network (Inception-ResNet-v1, 1/4 width, 75 px) on the built-in CIFAR-10
subset for the same number of epochs, batch size and peak learning rate; `modern` differs only in its
augmentation (TrivialAugment, random erasing 0.25, mixup 0.2 / cutmix 1.0) and its cosine schedule.
Each arm is trained with several seeds; the table gives the mean ± standard deviation over seeds of the
final validation top-1 accuracy and cross-entropy loss of the evaluated (averaged) weights.

    OMP_NUM_THREADS=1 python docs/training/recipes.py --out-dir runs/recipes

With --transfer CIFAR10 the comparison is made on the transfer experiment of docs/finetuning.md instead:
the demo network is trained once on five CIFAR-10 classes (airplane, automobile, bird, cat, deer; 2,000
images each, the demo preset, seed 0), and each arm fine-tunes it with a new classifier on 300 images of
each of the other five (dog, frog, horse, ship, truck) for 8 epochs, validated during the run on 100
images each; the table scores the final weights on all 5,000 test images of those five classes.

    OMP_NUM_THREADS=1 python docs/training/recipes.py --transfer ../shared/data/cifar10 --out-dir runs/recipes-transfer

Every finished run appends a line to --out-dir/results.jsonl and is skipped when the command runs again,
so two commands with different --arms can share the cores and the file; each prints the table of all
the runs the file holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from inceptionnet.data import DEMO_DATA
from inceptionnet.evaluation.protocol import evaluate
from inceptionnet.training.loop import train
from inceptionnet.training.presets import preset
from inceptionnet.weights import save_weights

sys.path.insert(0, str(Path(__file__).parents[1] / "finetuning"))
from transfer import SOURCE, TARGET, five_classes  # the transfer experiment's classes and folders

ARMS = ("demo", "modern")


def transfer_setting(cifar10: Path, out: Path) -> dict[str, Any]:
    """The options of a transfer arm: the target data, the source network's weights (trained here once)."""
    weights = out / "source.safetensors"
    if not weights.exists():
        source_data = five_classes(cifar10, out / "data-source", SOURCE)
        cfg = preset("demo", data=str(source_data), epochs=8, train_per_class=2000, val_per_class=100)
        source = train(dataclasses.replace(cfg, out_dir=str(out / "source"), progress=False))
        save_weights(source.averaged.module, weights)  # the evaluated weights
    target = five_classes(cifar10, out / "data-target", TARGET)
    return {"data": str(target), "weights": str(weights), "train_per_class": 300, "val_per_class": 100}


def run_arm(
    name: str, *, seed: int, epochs: int, out: Path, transfer: dict[str, Any] | None = None
) -> dict[str, float | int | str]:
    """Train preset `name` with `seed` (on the demo data, or fine-tuned on `transfer`'s); its final accuracy and
    loss on the validation images (transfer: all the target classes' test images), and the wall time."""
    started = time.perf_counter()
    # One folder per length: in a shorter run's folder, training would continue that run (--epochs may change),
    # which with a cosine schedule is not the run a fresh command trains.
    folder = out / f"{name}-{epochs}epochs-seed{seed}"
    cfg = preset(name, seed=seed, epochs=epochs, out_dir=str(folder), progress=False, **(transfer or {}))
    result = train(cfg)
    network = result.averaged.module if result.averaged is not None else result.model
    scored_on = Path(transfer["data"]) / "test" if transfer else DEMO_DATA / "val"
    # at the run's input size: the network's own preprocessing is that of its full-size ImageNet version
    scored = evaluate(network, scored_on, input_size=cfg.input_size, workers=1, keep_predictions=True)
    kept = scored.predictions
    assert kept is not None
    picked = kept.probabilities.gather(1, kept.targets[:, None]).clamp_min(1e-12)
    return {
        "arm": name,
        "seed": seed,
        "epochs": epochs,
        "val_top1": 100 * scored.scores[0].top1_correct / scored.images,
        "run_val_top1": 100 - (result.val_top1_error or 100.0),  # the run's own last validation: the same
        "val_loss": float(-picked.log().mean()),
        "wall_s": time.perf_counter() - started,
    }


def table(records: list[dict]) -> str:
    """Markdown rows: per arm, mean ± std over seeds of the final validation top-1 and loss."""
    lines = ["| recipe | runs | val top-1 (%) | val loss | wall time per run |", "|---|---|---|---|---|"]
    for arm in ARMS:
        rows = [r for r in records if r["arm"] == arm]
        if not rows:
            continue

        def stat(key: str, rows: list[dict] = rows) -> str:
            values = [float(r[key]) for r in rows]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.2f} ± {spread:.2f}"

        minutes = statistics.mean(float(r["wall_s"]) for r in rows) / 60
        lines.append(f"| `{arm}` | {len(rows)} | {stat('val_top1')} | {stat('val_loss')} | {minutes:.1f} min |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="epochs of every arm (default 10; with --transfer 8)")
    parser.add_argument("--transfer", type=Path, metavar="CIFAR10", help="CIFAR-10 as train/<class>/*, test/<class>/*")
    args = parser.parse_args()
    args.epochs = args.epochs or (8 if args.transfer else 10)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = args.out_dir / "results.jsonl"
    torch.set_num_threads(1)
    transfer = transfer_setting(args.transfer, args.out_dir) if args.transfer else None
    for seed in args.seeds:
        for arm in args.arms:
            done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
            if any(r["arm"] == arm and r["seed"] == seed and r["epochs"] == args.epochs for r in done):
                continue
            record = run_arm(arm, seed=seed, epochs=args.epochs, out=args.out_dir, transfer=transfer)
            with results.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    print(table([r for r in records if r["epochs"] == args.epochs]))


if __name__ == "__main__":
    main()
