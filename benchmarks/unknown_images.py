"""Unknown images and calibrated probabilities, measured: five CIFAR-10 classes trained, the other five unknown.

    PYTHONPATH=src python benchmarks/unknown_images.py --work runs/unknown --out benchmarks/results/unknown-images.json

Trains the demo preset's network (Inception-ResNet-v1 at 1/4 width, 75 px) on five classes (airplane,
automobile, bird, cat, deer), then, with the trained network in PyTorch, one central view per image:

- validation: the first half of CIFAR-10's test images of the five classes; training validates on them,
  and the temperature and each score's threshold (95% of them kept) are fitted on them;
- held-out: the second half of those test images, the known images every figure is measured on;
- unknown: the second half of the test images of the other five classes (dog, frog, horse, ship, truck).

Each unknown-image score (the top softmax probability, the energy, the cosine distance to the k-th
nearest training image's pooled features, k = 1, 10, 50) gets its AUROC, its false-positive rate at
95% true positives, and the share of held-out and unknown images its validation threshold rejects;
the calibration error (ECE, 15 bins) and log-likelihood of the held-out images before and after
temperature scaling. Without ../shared/data/cifar10 (or --cifar10) the built-in demo subset stands in
(300 training images per class, the validation images split in halves), and the result says so.
A finished run in --work is reused (train() continues or leaves it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from inceptionnet import __version__, create_model
from inceptionnet.data import DEMO_DATA, eval_transform, open_split
from inceptionnet.evaluation.calibration import check_calibration, fit_temperature
from inceptionnet.evaluation.unknown import detection, fit_unknown_rule, knn_scores
from inceptionnet.models import InceptionNetwork
from inceptionnet.models.outputs import unknown_scores
from inceptionnet.perf.measure import machine
from inceptionnet.training.loop import train
from inceptionnet.training.presets import preset

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"
KNOWN = ("airplane", "automobile", "bird", "cat", "deer")
UNKNOWN = ("dog", "frog", "horse", "ship", "truck")
KNN_K = (1, 10, 50)
LOGIT_SCORES = ("msp", "energy")  # the scores a card can name: from the logits alone, on every engine
BOOTSTRAP = 1000
SPLITS = ("train", "val", "heldout", "unknown")
MEASURED = SPLITS[1:]  # the threshold's images, then the known and unknown ones it is measured on


def link_splits(source: Path, out: Path, *, demo: bool, train_per_class: int) -> dict[str, Path]:
    """out/data/{train,val}/<known class>, out/heldout/<known class>, out/unknown/<unknown class>: links to files."""
    test = "val" if demo else "test"
    half = 50 if demo else 500
    parts = {
        ("data/train", KNOWN): ("train", slice(0, train_per_class)),
        ("data/val", KNOWN): (test, slice(0, half)),
        ("heldout", KNOWN): (test, slice(half, 2 * half)),
        ("unknown", UNKNOWN): (test, slice(half, 2 * half)),
    }
    for (where, classes), (split, part) in parts.items():
        for name in classes:
            folder = out / where / name
            folder.mkdir(parents=True, exist_ok=True)
            for f in sorted((source / split / name).iterdir())[part]:
                if not (folder / f.name).exists():
                    (folder / f.name).symlink_to(f.resolve())
    return {"train": out / "data/train", "val": out / "data/val"} | {s: out / s for s in ("heldout", "unknown")}


def features_and_logits(net: InceptionNetwork, folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pooled features (forward_features, then the network's pooling), logits and labels of a folder's images."""
    images = open_split(folder, transform=eval_transform(net.preprocessing))
    feats, logits, labels = [], [], []
    with torch.inference_mode():
        for x, y in DataLoader(images, batch_size=100, num_workers=1):
            pooled = net.forward_head(net.forward_features(x), pre_logits=True)
            feats.append(pooled)
            logits.append(net.head.fc(pooled))
            labels.append(y)
    return torch.cat(feats), torch.cat(logits), torch.cat(labels)


def score_row(name: str, val: torch.Tensor, known: torch.Tensor, unknown: torch.Tensor) -> dict:
    """One score's detection of the unknown images, and what its validation threshold rejects."""
    rule = fit_unknown_rule(val, score="energy", known_kept=0.95)  # the rule's score name is not used here
    rejected = {k: float((s < rule.threshold).double().mean()) for k, s in (("known", known), ("unknown", unknown))}
    return {
        **detection(name, known, unknown).to_dict(),
        "threshold": round(rule.threshold, 6),
        "known_rejected": round(rejected["known"], 6),
        "unknown_rejected": round(rejected["unknown"], 6),
    }


def all_scores(outs: dict, temperature: float) -> dict[str, tuple[torch.Tensor, ...]]:
    """Every score's values on the validation, held-out and unknown images (outs: split -> features, logits, labels)."""
    scored = {}
    for score in ("msp", "energy"):
        for t, label in ((None, score), (temperature, f"{score}, temperature-scaled")):
            scored[label] = tuple(unknown_scores(outs[s][1], score, temperature=t) for s in MEASURED)
    for k in KNN_K:
        scored[f"knn, k={k}"] = tuple(knn_scores(outs[s][0], outs["train"][0], k=k) for s in MEASURED)
    return scored


def auroc_difference(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...], *, rounds: int = BOOTSTRAP) -> dict:
    """The AUROC of score `a` minus that of `b` on the same held-out and unknown images, with its 95% interval over
    bootstrap resamples of those images (the same resample for both scores)."""
    g = torch.Generator().manual_seed(0)
    diffs = []
    for _ in range(rounds):
        known = torch.randint(0, len(a[1]), (len(a[1]),), generator=g)
        unknown = torch.randint(0, len(a[2]), (len(a[2]),), generator=g)
        aurocs = [detection("", s[1][known], s[2][unknown]).auroc for s in (a, b)]
        diffs.append(aurocs[0] - aurocs[1])
    low, high = (
        torch.tensor(diffs, dtype=torch.float64).quantile(torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    )
    point = detection("", a[1], a[2]).auroc - detection("", b[1], b[2]).auroc
    return {"difference": round(point, 6), "interval_95": [round(low, 6), round(high, 6)], "rounds": rounds}


def measure(run: Path, splits: dict[str, Path]) -> dict:
    """The scores and the calibration of the run's network on the splits."""
    net = create_model(weights=run).eval()
    outs = {s: features_and_logits(net, splits[s]) for s in SPLITS}
    _, val_logits, val_labels = outs["val"]
    temperature = fit_temperature(val_logits, val_labels)
    _, held_logits, held_labels = outs["heldout"]
    check = check_calibration(held_logits, held_labels, temperature)
    scored = all_scores(outs, temperature)
    rows = [score_row(name, *values) for name, values in scored.items()]
    best = max(rows, key=lambda r: r["auroc"])["score"]
    logit_best = max((r for r in rows if r["score"].split(",")[0] in LOGIT_SCORES), key=lambda r: r["auroc"])["score"]
    card = net.card
    return {
        "images": {s: len(outs[s][2]) for s in SPLITS},
        "heldout_top1": round(float((held_logits.argmax(1) == held_labels).double().mean()), 6),
        "calibration_heldout": check.to_dict(),
        "nll_val_before": round(float(F.cross_entropy(val_logits.double(), val_labels)), 6),
        "card": {"temperature": card.temperature, "unknown": card.unknown.to_dict() if card.unknown else None},
        "scores": rows,
        "best": best,
        "best_of_the_logits": logit_best,
        "best_minus_best_of_the_logits": auroc_difference(scored[best], scored[logit_best]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="folder of the links, the run and nothing else")
    p.add_argument("--out", type=Path, required=True, help="the result's JSON file")
    p.add_argument("--cifar10", type=Path, default=SHARED_CIFAR10, help="CIFAR-10 as image folders train/ test/")
    p.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    p.add_argument("--train-per-class", type=int, default=2000, help="training images per class (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    demo = not (args.cifar10 / "train").is_dir()
    source = DEMO_DATA if demo else args.cifar10
    per_class = 300 if demo else args.train_per_class
    splits = link_splits(source, args.work, demo=demo, train_per_class=per_class)
    run = args.work / "run"
    cfg = preset("demo", data=str(args.work / "data"), epochs=args.epochs, seed=args.seed, out_dir=str(run))
    started = datetime.now(UTC)
    train(dataclasses.replace(cfg, progress=False))
    result = {
        "command": "PYTHONPATH=src python benchmarks/unknown_images.py " + shlex.join(sys.argv[1:]),
        "machine": machine(torch.device("cpu")),
        "date": started.strftime("%Y-%m-%d %H:%M"),
        "versions": {"inceptionnet": __version__, "torch": torch.__version__},
        "config": {"data": "built-in demo subset" if demo else "CIFAR-10", "known": KNOWN, "unknown": UNKNOWN}
        | {"epochs": args.epochs, "train_per_class": per_class, "seed": args.seed, "model": cfg.model}
        | {"width": cfg.width, "input_size": cfg.input_size, "knn_k": KNN_K, "known_kept": 0.95},
        **measure(run, splits),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    shown = ("heldout_top1", "calibration_heldout", "best", "best_of_the_logits", "best_minus_best_of_the_logits")
    print(json.dumps({k: result[k] for k in shown}, indent=1))
    for row in result["scores"]:
        print(row)


if __name__ == "__main__":
    main()
