"""Classify images: the top-k classes of each image file (or of every image in a folder), with probabilities;
for a multi-label network (`card.label_mode` "multi"), every class whose sigmoid reaches its threshold.

The classes are the network's own (`model.card.class_names`): a run's class folders, or the ImageNet
synsets of published weights, which are shown with their readable names from the class table
that ships with the package (assets/imagenet_classes.txt). Images are prepared with the
network's preprocessing, the one its weights were evaluated with. A file that cannot be read as
an image gets an error of its own; the others are still classified. The network runs on the
engine `inceptionnet.inference.engines.inference_network` picks (or the one asked for).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from inceptionnet._version import __version__
from inceptionnet.card import ModelCard
from inceptionnet.data import UNREADABLE, eval_transform, imagenet_classes, read_image
from inceptionnet.data.images import files_under
from inceptionnet.export.runtimes import DescribedNetwork
from inceptionnet.factory import load_model
from inceptionnet.inference.engines import engine_device, inference_network
from inceptionnet.models import InceptionNetwork
from inceptionnet.models.outputs import card_unknown_scores, probabilities

DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class TopClass:
    index: int  # the network's output
    label: str | None  # the network's name for it (a class folder, an ImageNet synset); None when it names none
    name: str  # readable: the ImageNet name of a synset, else the label, else "class <index>"
    probability: float


@dataclass
class Prediction:
    """The result for one file: its top classes (multi-label: the classes above their thresholds, and every
    class's probability), or why it could not be classified."""

    path: str
    top: list[TopClass] = field(default_factory=list)
    error: str | None = None
    probabilities: list[TopClass] | None = None  # multi-label: every class, in output order
    unknown: bool | None = None  # with reject_unknown: whether its unknown-image score is below the card's threshold
    unknown_score: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def image_files(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The files to classify: each path as given, and a folder's images (recursively, by extension, sorted).

    A folder without images is an error; a path that does not exist is kept, to be reported with the results.
    """
    files = []
    for p in paths:
        path = Path(p)
        if not path.is_dir():
            files.append(os.fspath(p))
            continue
        found = files_under(path, IMG_EXTENSIONS)
        if not found:
            raise ValueError(
                f"folder {path} holds no images ({', '.join(IMG_EXTENSIONS)}); pass image files or folders"
            )
        files.extend(os.fspath(f) for f in found)
    return files


def predict(
    paths: Sequence[str | os.PathLike[str]],
    *,
    model: str | InceptionNetwork | DescribedNetwork = "inception_v4",
    weights: str | os.PathLike[str] | None = None,
    top_k: int | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    engine: str = "auto",
    dtype: str | None = None,
    workers: int = 0,
    reject_unknown: bool = False,
) -> list[Prediction]:
    """Top-k classes of each image, in the order of `paths` (a folder: its images, sorted).

    `model` is a model specification (`inceptionnet.factory.parse_model_spec`: a network name, NAME:WEIGHTS,
    a run folder, a model folder, a weights file, hf-hub:ORG/NAME; a bare name gets its default
    published weights) or a built network. `top_k`: default 5, at most the number of classes.
    `device`: default CUDA when available (the CPU for a CPU engine). `engine` and `dtype`: what
    runs the network (`inference_network`: "auto", "torch", "onnxruntime", "openvino"; "fp32" by default,
    "bf16"); a network already made for inference runs as it is. Unreadable files and non-images get a Prediction
    with `error` set; they do not stop the others. `workers`: processes decoding the images ahead of the network.
    `reject_unknown`: also score each image against the card's unknown-image threshold (`card.unknown`, fitted by
    `inceptionnet calibrate`): `Prediction.unknown` is True below it.
    """
    net = load_model(model, weights=weights, pretrained=True) if isinstance(model, str) else model
    files = image_files(paths)
    dev = engine_device(engine, device)
    net = inference_network(net, engine, dtype=dtype, device=dev, images=len(files)).to(dev).eval()
    run = dict(top_k=top_k, batch_size=batch_size, device=dev, workers=workers, reject_unknown=reject_unknown)
    return [r for batch in classify(files, net, **run) for r in batch]


def classify(
    files: Sequence[str],
    net: DescribedNetwork,
    *,
    top_k: int | None,
    batch_size: int,
    device: torch.device,
    workers: int = 0,
    reject_unknown: bool = False,
) -> Iterator[list[Prediction]]:
    """The Predictions of `files`, in order, one list per `batch_size` files: a batch's images are read only when
    its turn comes, so a job over millions of files holds a few batches in memory and can save each as it comes.

    `net`: made for inference (`inference_network`, `open_for_inference`) and on `device`. `workers`: processes
    that decode the images ahead of the network (0: decoded here, between forward passes). `reject_unknown`: as
    `predict`'s.
    """
    if reject_unknown:
        checked_unknown_rule(net.card)
    k = checked_top_k(net.card, top_k)
    labels = class_labels(net.card)
    images = _ImageFiles(list(files), eval_transform(net.preprocessing))
    loader = DataLoader(images, batch_size=batch_size, num_workers=workers, collate_fn=list)
    for start, batch in zip(range(0, len(images), batch_size), loader, strict=True):
        results = [Prediction(p, error=e) for p, (_, e) in zip(files[start : start + batch_size], batch, strict=True)]
        ready = [(r, x) for r, (x, _) in zip(results, batch, strict=True) if x is not None]
        if ready:
            with torch.inference_mode():
                logits = net(torch.stack([x for _, x in ready]).to(device)).float().cpu()
            probs = output_probabilities(logits, net.card)
            for (result, _), row in zip(ready, probs, strict=True):
                result.top, result.probabilities = classes_of(row, net.card, labels, k=k)
            if reject_unknown:
                mark_unknown([r for r, _ in ready], logits, net.card)
        yield results


def output_probabilities(logits: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """The probabilities of logits (N, C): a softmax (of the logits divided by the card's temperature, where it has
    one), or for a multi-label `card` a sigmoid per class (models/outputs.py)."""
    return probabilities(logits, card)


def checked_unknown_rule(card: ModelCard) -> None:
    """A ValueError naming the fix unless `card` says when an image is unknown."""
    if card.label_mode == "multi":
        raise ValueError(
            "a multi-label network answers an image of none of its classes with no label above the thresholds; "
            "drop --reject-unknown (reject_unknown)"
        )
    card_unknown_scores(torch.zeros(0, card.num_classes), card)  # the error that names `inceptionnet calibrate`


def mark_unknown(results: Sequence[Prediction], logits: torch.Tensor, card: ModelCard) -> None:
    """Set each result's unknown-image score (from its row of `logits`) and whether it is below the threshold."""
    assert card.unknown is not None
    for result, score in zip(results, card_unknown_scores(logits, card).tolist(), strict=True):
        result.unknown_score, result.unknown = score, score < card.unknown.threshold


def classes_of(
    probs: torch.Tensor, card: ModelCard, labels: list[tuple[str | None, str]], *, k: int
) -> tuple[list[TopClass], list[TopClass] | None]:
    """One image's classes from its probabilities (C,): the top `k`; or for a multi-label `card` the classes at
    or above the card's thresholds, most probable first, and every class (in output order)."""
    if card.label_mode != "multi":
        values, indices = probs.topk(k)
        return [TopClass(c, *labels[c], p) for p, c in zip(values.tolist(), indices.tolist(), strict=True)], None
    thresholds = card.decision_thresholds()
    every = [TopClass(c, *labels[c], p) for c, p in enumerate(probs.tolist())]
    return sorted((t for t in every if t.probability >= thresholds[t.index]), key=lambda t: -t.probability), every


class _ImageFiles(Dataset):
    """Each file read and prepared for the network, or why it could not be (an error, not an exception, so that
    the other files of its batch are still classified)."""

    def __init__(self, files: list[str], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.files = files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, str | None]:
        path = Path(self.files[i])
        if not path.is_file():
            return None, "no such file" if not path.exists() else "not a file"
        try:
            return self.transform(read_image(path)), None
        except UNREADABLE as err:
            return None, f"not a readable image ({type(err).__name__}: {err})"


def checked_top_k(card: ModelCard, top_k: int | None, *, default: int = DEFAULT_TOP_K) -> int:
    """`top_k` checked against the classes of the network `card` describes (None: `default`, at most all)."""
    n, name = card.num_classes, card.model_name
    if not n:
        raise ValueError(f"{name} has no classifier (num_classes=0 or a feature extractor); classes need one")
    if top_k is None:
        return min(default, n)
    if not 1 <= top_k <= n:
        raise ValueError(f"top-k must be between 1 and the {n} classes of {name}, got {top_k}")
    return top_k


def class_labels(card: ModelCard) -> list[tuple[str | None, str]]:
    """(label, readable name) of each output of the network `card` describes: its class names, ImageNet
    synsets with their names."""
    names = card.class_names
    if names is None:
        return [(None, f"class {i}") for i in range(card.num_classes)]
    readable = {c.synset: c.name for c in imagenet_classes()}
    return [(label, readable.get(label, label)) for label in names]


def format_predictions(results: Sequence[Prediction]) -> str:
    """Human-readable listing: per file, its classes with probabilities, or its error."""
    lines = []
    for r in results:
        lines.append(f"{r.path}:" if r.ok else f"{r.path}: error: {r.error}")
        if r.unknown:
            lines.append(f"  unknown: none of the classes (unknown-image score {r.unknown_score:.4g}, below threshold)")
        for t in r.top:
            label = f"{t.label}, " if t.label not in (None, t.name) else ""
            lines.append(f"  {t.probability:7.2%}  {t.name} ({label}class {t.index})")
    return "\n".join(lines)


def predictions_to_json(results: Sequence[Prediction], *, model: DescribedNetwork, device: str) -> dict[str, Any]:
    """Machine-readable results: the network (name, weights, preprocessing, engine), then each file's classes.

    `model`: the network that ran (`inference_network`, `open_for_inference`), as its card and engine say.
    """
    card = model.card
    return {
        "version": __version__,
        "model": card.model_name,
        "weights": card.weights_name,
        "num_classes": card.num_classes,
        "preprocessing": card.preprocessing.to_dict(),
        "device": device,
        "engine": model.engine,
        "precision": model.precision,
        **({"label_mode": "multi"} if card.label_mode == "multi" else {}),
        "results": [prediction_record(r, multi_label=card.label_mode == "multi") for r in results],
    }


def prediction_record(result: Prediction, *, multi_label: bool = False) -> dict[str, Any]:
    """One file's result as JSON: its path, its error (None when classified) and its top classes; for a
    `multi_label` network its `labels` above threshold and every class's `probabilities` instead."""
    classes = [class_json(t) for t in result.top]
    if not multi_label:
        record = {"path": result.path, "error": result.error, "top": classes}
        if result.unknown is not None:  # asked for (reject_unknown): "unknown" true below the card's threshold
            record.update(unknown=result.unknown, unknown_score=result.unknown_score)
        return record
    every = [class_json(t) for t in result.probabilities or []]
    return {"path": result.path, "error": result.error, "labels": classes, "probabilities": every}


def class_json(t: TopClass) -> dict[str, Any]:
    return {"index": t.index, "label": t.label, "name": t.name, "probability": t.probability}
