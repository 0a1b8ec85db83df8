"""Multi-label head (a sigmoid per class, binary cross-entropy) against a softmax baseline on two-object canvases.

Each canvas (64x64, grey) holds two CIFAR-10 images of different classes side by side, taken from the built-in
demo data (src/inceptionnet/assets/demo); it is labelled with both classes. Both networks are the same small
Inception-ResNet-v1 (width 1/4, 75 px), trained with the same recipe for the same epochs on the same canvases:

- multi-label: `labels` = both classes, binary cross-entropy (--label-mode auto picks it);
- softmax baseline: `label` = one of the two classes, drawn at random per canvas (seeded), cross-entropy.

Both are scored by mAP on the same validation canvases with both labels (the baseline's softmax probabilities
as its per-class scores; AP only ranks the scores, so a softmax is a fair input to it).

    OMP_NUM_THREADS=1 python docs/multilabel/experiment.py [--out DIR] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from PIL import Image

from inceptionnet import create_model
from inceptionnet.data import DEMO_DATA, eval_transform, open_split
from inceptionnet.evaluation.multilabel import multilabel_scores
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.loop import train
from inceptionnet.training.presets import preset

CANVAS = 64
TRAIN_CANVASES, VAL_CANVASES = 1500, 500


def build_canvases(out: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Two datasets over the same canvas images: multi/ (`labels`: both classes) and single/ (`label`: one)."""
    rng = random.Random(seed)
    classes = sorted(p.name for p in (DEMO_DATA / "train").iterdir())
    for split, count in (("train", TRAIN_CANVASES), ("val", VAL_CANVASES)):
        files = {c: sorted((DEMO_DATA / split / c).iterdir()) for c in classes}
        (out / "multi" / split).mkdir(parents=True, exist_ok=True)
        (out / "single" / split).mkdir(parents=True, exist_ok=True)
        multi, single = ["file_name,labels"], ["file_name,label"]
        for i in range(count):
            pair = rng.sample(classes, 2)
            canvas = Image.new("RGB", (CANVAS, CANVAS), (128, 128, 128))
            for slot, name in enumerate(pair):
                image = Image.open(rng.choice(files[name])).convert("RGB").resize((CANVAS // 2, CANVAS // 2))
                canvas.paste(image, (slot * CANVAS // 2, CANVAS // 4))
            name = f"c{i:05d}.png"
            canvas.save(out / "multi" / split / name)
            (out / "single" / split / name).write_bytes((out / "multi" / split / name).read_bytes())
            multi.append(f"{name},{';'.join(pair)}")
            single.append(f"{name},{rng.choice(pair)}")
        (out / "multi" / split / "metadata.csv").write_text("\n".join(multi) + "\n")
        (out / "single" / split / "metadata.csv").write_text("\n".join(single) + "\n")
    return out / "multi", out / "single"


def val_map(run: Path, multi_data: Path) -> dict[str, float]:
    """mAP (and exact match at the card's thresholds, for the multi-label network) on the two-label val canvases."""
    net = create_model(weights=str(run)).eval()
    source = open_split(multi_data, "val", transform=eval_transform(net.preprocessing))
    source.give_multi_hot()
    images = torch.stack([source[i][0] for i in range(len(source))])
    targets = torch.stack([source[i][1] for i in range(len(source))])
    with torch.no_grad():
        logits = torch.cat([net(chunk) for chunk in images.split(100)])
    # Classes are named alike in both datasets (the sorted CIFAR-10 names), so output c is class c in both.
    multi_label = net.card.label_mode == "multi"
    probs = torch.sigmoid(logits) if multi_label else logits.softmax(dim=1)
    scores = multilabel_scores(probs, targets, net.card.thresholds if multi_label else None)
    top2 = probs.topk(2, dim=1).indices  # both objects named by the two highest scores
    both = targets.gather(1, top2).sum(1).eq(2).float().mean().item()
    return {"map": scores.map, "top2_both_right": 100 * both, "exact_match": scores.exact_match}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/multilabel-experiment")
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    out = Path(args.out)
    multi_data, single_data = build_canvases(out / "data")
    # the demo preset, with whole canvases (min_area 1: a crop could cut one object out)
    recipe = preset("demo", min_area=1.0, epochs=args.epochs, progress=False)
    results = {}
    for name, data in (("multi-label (BCE)", multi_data), ("softmax baseline", single_data)):
        start = time.perf_counter()
        cfg = TrainConfig(**{**recipe.to_dict(), "data": str(data), "out_dir": str(out / name.split()[0])})
        run = train(cfg).out_dir
        results[name] = {**val_map(run, multi_data), "train_s": time.perf_counter() - start}
    print(json.dumps(results, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
