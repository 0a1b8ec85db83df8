"""Where the network looks: Grad-CAM heat maps of its top classes (or of a class asked for), and overlays.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of a feature map by the mean gradient of a class's
logit with respect to it, sums the weighted channels and keeps the positive part: the regions whose
features raise that class. The map used is the last one before the classifier's global pooling
(`target_layer`): the coarsest (8x8 at 299) but the one the classifier reads, so the heat is about the
class and not about edges. It is upsampled to the input size by pytorch-grad-cam (the optional extra
`inceptionnet[explain]`).

It runs on the PyTorch network (gradients are needed; the inference engines have none), on the view of
each image the network sees: read upright (`read_image`), resized and centrally cropped by the network's
own preprocessing (`eval_transform`). Heat maps and overlays have that view's size.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from inceptionnet.data import UNREADABLE, eval_transform, read_image
from inceptionnet.extras import require
from inceptionnet.factory import load_model
from inceptionnet.inference.predict import checked_top_k, class_labels
from inceptionnet.models import InceptionNetwork
from inceptionnet.models.outputs import scaled_logits

OVERLAY_ALPHA = 0.5  # weight of the heat map's colours in an overlay; the image keeps the rest


@dataclass(frozen=True)
class Explanation:
    """One image's heat map for one class: where the features that raise that class's logit are."""

    source: str  # the image's path, or "image N" for an image given in memory
    rank: int  # 1 for the network's top class (or for the class asked for), 2 for the next, ...
    index: int  # the class's output of the network
    name: str  # readable: an ImageNet name, a class folder, or "class <index>"
    probability: float
    heatmap: np.ndarray  # (H, W) float32 in [0, 1], the view's size
    image: np.ndarray  # (H, W, 3) uint8: the view the network saw (resized, centrally cropped)

    def overlay(self, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
        """The view with the heat map blended in ("jet" colours: red where the class's evidence is), uint8."""
        colours = _colormap()(self.heatmap)[..., :3]
        blended = (1 - alpha) * self.image / 255.0 + alpha * colours
        return np.clip(blended * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def file_name(self) -> str:
        """`<image stem>_<rank>_<class name>_<percent>.png`, reduced to file-name characters."""
        stem = _file_safe(Path(self.source).stem) or "image"
        name = _file_safe(self.name) or f"class{self.index}"
        return f"{stem}_{self.rank}_{name}_{100 * self.probability:.0f}pct.png"


def target_layer(model: InceptionNetwork) -> nn.Module:
    """The module whose output is the last feature map before pooling: `blocks_c` of inception_v4,
    inception_v3, inception_resnet_v1 and inception_resnet_v2_paper, `conv_7b` of the released
    inception_resnet_v2 (its 1x1 convolution to 1536 channels after the last block): the stride-32
    entry of `feature_info`, the map `forward_features` returns."""
    return model.get_submodule(model.feature_info[-1].node)


def class_index(card_labels: Sequence[tuple[str | None, str]], target: int | str, *, model_name: str) -> int:
    """The output that `target` names: an index (an int or its digits), a class label or a readable name."""
    n = len(card_labels)
    if isinstance(target, int) or target.isdigit():
        index = int(target)
        if not 0 <= index < n:
            raise ValueError(f"class {index} is not one of the {n} classes of {model_name} (0 to {n - 1})")
        return index
    for i, (label, name) in enumerate(card_labels):
        if target in (label, name):
            return i
    shown = ", ".join(name for _, name in card_labels[:10]) + (", ..." if n > 10 else "")
    raise ValueError(f"{model_name} has no class named {target!r}; name one of its classes ({shown}) or an index")


def explain(
    model: str | InceptionNetwork,
    images: Sequence[str | os.PathLike[str] | Image.Image],
    *,
    target: int | str | None = None,
    top_k: int = 1,
    input_size: int | None = None,
    device: str | torch.device | None = None,
) -> list[Explanation]:
    """Grad-CAM heat maps of each image, for its `top_k` most probable classes, or for the class `target`.

    `model`: a model specification (`inceptionnet.factory.load_model`: a name with its default published
    weights, NAME:WEIGHTS, a run folder, ...) or a built network. `images`: files (read upright) or RGB
    PIL images. `target`: a class index, label or readable name; with it, `top_k` is ignored.
    `input_size`: the view's size instead of the network's own (the networks pool globally, so any size
    from 75 works): the heat map has one cell per 32 pixels, so a network trained at 75 px (one cell)
    needs a larger view to show where. `device`: default the CPU. Returns the explanations image by
    image, each image's in rank order.
    """
    net = load_model(model, pretrained=True) if isinstance(model, str) else model
    labels = class_labels(net.card)
    k = checked_top_k(net.card, top_k)
    wanted = None if target is None else class_index(labels, target, model_name=net.card.model_name)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    net = net.to(dev).eval()
    transform = eval_transform(net.preprocessing, input_size=input_size)
    results = []
    with _grad_cam(net) as cam:
        for i, image in enumerate(images):
            source = f"image {i}" if isinstance(image, Image.Image) else os.fspath(image)
            x = transform(_picture(image, source)).unsqueeze(0).to(dev)
            with torch.no_grad():
                probs = scaled_logits(net(x).float(), net.card.temperature).softmax(dim=1)[0].cpu()
            classes = [wanted] if wanted is not None else probs.topk(k).indices.tolist()
            view = _view(x[0].cpu(), net)
            for rank, (c, heat) in enumerate(zip(classes, _heatmaps(cam, x, classes), strict=True), start=1):
                results.append(Explanation(source, rank, c, labels[c][1], float(probs[c]), heat, view))
    return results


def write_overlays(explanations: Sequence[Explanation], output: str | os.PathLike[str]) -> list[Path]:
    """Each explanation's overlay as a PNG in `output` (created), named by `Explanation.file_name`."""
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for e in explanations:
        path = folder / e.file_name()
        n = 1
        while path in written:  # two images of the same file name (from two folders): one overlay each
            n += 1
            path = folder / f"{Path(e.file_name()).stem}-{n}.png"
        Image.fromarray(e.overlay()).save(path)
        written.append(path)
    return written


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _picture(image: str | os.PathLike[str] | Image.Image, source: str) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        return read_image(image)
    except UNREADABLE as err:  # a missing file is an OSError too
        raise ValueError(f"{source} is not a readable image ({type(err).__name__}: {err}); pass image files") from err


def _grad_cam(net: InceptionNetwork) -> Any:
    """pytorch-grad-cam's GradCAM on the network's last feature map; an error naming the extra without it."""
    grad_cam = require("pytorch_grad_cam", extra="explain", purpose="explain (Grad-CAM)")
    return grad_cam.GradCAM(model=net, target_layers=[target_layer(net)])


def _heatmaps(cam: Any, x: torch.Tensor, classes: list[int]) -> list[np.ndarray]:
    """One heat map per class, from one forward and backward pass over `x` repeated once per class."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    batch = x.expand(len(classes), *x.shape[1:]).contiguous()
    maps = cam(input_tensor=batch, targets=[ClassifierOutputTarget(c) for c in classes])
    return [m.astype(np.float32) for m in maps]


def _view(x: torch.Tensor, net: InceptionNetwork) -> np.ndarray:
    """The normalised input tensor (3, H, W) back to the uint8 picture the network saw."""
    pre = net.preprocessing
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    pixels = (x.float() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
    return (pixels * 255.0 + 0.5).astype(np.uint8)


def _colormap() -> Any:
    from matplotlib import colormaps  # loaded when an overlay is drawn, not by every command

    return colormaps["jet"]
