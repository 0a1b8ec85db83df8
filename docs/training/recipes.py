"""Which recipe wins on the demo data: the paper's (the `demo` preset) or the last years' (the `modern` preset)?

Both presets train the same network (Inception-ResNet-v1, 1/4 width, 75 px) on the built-in CIFAR-10
subset for the same number of epochs, batch size and peak learning rate; `modern` differs only in its
augmentation (TrivialAugment, random erasing 0.25, mixup 0.2 / cutmix 1.0) and its cosine schedule.
Each arm is trained with several seeds; the table gives the mean ± standard deviation over seeds of the
final validation top-1 accuracy and cross-entropy loss of the evaluated (averaged) weights.

    OMP_NUM_THREADS=1 python docs/training/recipes.py --out-dir runs/recipes

Every finished run appends a line to --out-dir/results.jsonl and is skipped when the command runs again,
so two commands with different --arms can share the cores and the file; each prints the table of all
the runs the file holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from inceptionnet.data import DEMO_DATA
from inceptionnet.evaluation.protocol import evaluate
from inceptionnet.training.loop import train
from inceptionnet.training.presets import preset

ARMS = ("demo", "modern")


def run_arm(name: str, *, seed: int, epochs: int, out: Path) -> dict[str, float | int | str]:
    """Train preset `name` with `seed`; its final validation accuracy and loss, and the wall time."""
    started = time.perf_counter()
    # One folder per length: in a shorter run's folder, training would continue that run (--epochs may change),
    # which with a cosine schedule is not the run a fresh command trains.
    folder = out / f"{name}-{epochs}epochs-seed{seed}"
    cfg = preset(name, seed=seed, epochs=epochs, out_dir=str(folder), progress=False)
    result = train(cfg)
    network = result.averaged.module if result.averaged is not None else result.model
    # at the run's input size: the network's own preprocessing is that of its full-size ImageNet version
    scored = evaluate(network, DEMO_DATA / "val", input_size=cfg.input_size, workers=1, keep_predictions=True)
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
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every arm (both presets: 10)")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = args.out_dir / "results.jsonl"
    torch.set_num_threads(1)
    for seed in args.seeds:
        for arm in args.arms:
            done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
            if any(r["arm"] == arm and r["seed"] == seed and r["epochs"] == args.epochs for r in done):
                continue
            record = run_arm(arm, seed=seed, epochs=args.epochs, out=args.out_dir)
            with results.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    print(table([r for r in records if r["epochs"] == args.epochs]))


if __name__ == "__main__":
    main()
