"""`python -m tritoncheck.sample WEIGHTS IMAGES`: the check's network and images (with inceptionnet's venv).

WEIGHTS          an eighth-width Inception-v3 with random weights (BatchNorm statistics too), four
                 named classes, 75x75 input, crop fraction 1, as a weights file with its card
IMAGES/*.png     random RGB images of exactly 75x75

With crop fraction 1 and images at the input size, `inceptionnet predict`'s evaluation view leaves the
pixels as they are, so predict and the server see the same uint8 pixels, and their probabilities can be
compared to 1e-4.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from inceptionnet import create_model
from inceptionnet.card import Preprocessing
from inceptionnet.weights import save_weights

SIZE = 75
CLASSES = ("cat", "dog", "fox", "owl")
CLASSIFIER_SCALE = 30.0  # random weights give nearly equal probabilities; the top-k check needs distinct ones


def write_network(path: Path, *, seed: int = 0) -> Path:
    """The random network as a weights file with its card (classes, preprocessing)."""
    torch.manual_seed(seed)
    model = create_model("inception_v3", width=0.125, num_classes=len(CLASSES))
    model.preprocessing = Preprocessing(input_size=SIZE, crop_fraction=1.0)
    model.class_names = CLASSES
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # BatchNorm statistics away from (0, 1), and a larger classifier: spread outputs
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        model.head.fc.weight.mul_(CLASSIFIER_SCALE)
    return save_weights(model, path)


def write_images(folder: Path, count: int, *, seed: int = 0) -> list[Path]:
    """`count` PNG images of SIZE x SIZE: a colour gradient under noise, different per image."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, SIZE, dtype=np.float32)
    paths = []
    for i in range(count):
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
        base = ramp[:, None, None] * colour + ramp[None, :, None] * (255 - colour)
        noisy = base / 2 + rng.uniform(0, 127, size=(SIZE, SIZE, 3))
        paths.append(folder / f"image{i:02d}.png")
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "RGB").save(paths[-1])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritoncheck.sample", description=__doc__.split("\n")[0])
    parser.add_argument("weights", type=Path, help="the weights file to write (.safetensors)")
    parser.add_argument("images", type=Path, help="the folder of images to write")
    parser.add_argument("--count", type=int, default=12, help="how many images (default 12)")
    args = parser.parse_args(argv)
    weights = write_network(args.weights)
    images = write_images(args.images, args.count)
    print(f"tritoncheck: wrote {weights} ({len(CLASSES)} classes) and {len(images)} images in {args.images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
