"""`similar`: the indexed images nearest to query images, by cosine similarity of their embeddings.

A `Gallery` is an embeddings file opened for search: its index (index.py), its rows' paths and labels, and
what wrote its vectors. Queries are embedded by the same network (by default the one the file names; another
must be the same network, else the similarities would compare two different spaces) on the fastest engine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inceptionnet.data import eval_transform
from inceptionnet.export.runtimes import DescribedNetwork
from inceptionnet.inference.engines import Log
from inceptionnet.inference.features import feature_network
from inceptionnet.inference.loading import inference_device, open_for_inference
from inceptionnet.inference.predict import image_files
from inceptionnet.retrieval.embed import image_vectors, num_features
from inceptionnet.retrieval.index import faiss, open_index
from inceptionnet.retrieval.inputs import Images
from inceptionnet.retrieval.table import parquet, pyarrow, read_meta

DEFAULT_TOP_K = 10


def retrieval_installed() -> None:
    """MissingExtra naming the `retrieval` extra unless pyarrow and FAISS are installed."""
    pyarrow()
    faiss()


@dataclass(frozen=True)
class Neighbour:
    row: int  # the row of the embeddings file
    path: str
    label: Any  # str, list[str] (multi-label) or None
    similarity: float

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "path": self.path, "label": self.label, "similarity": self.similarity}


@dataclass
class Match:
    """One query image's nearest indexed images, or why it could not be read."""

    path: str
    neighbours: list[Neighbour] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.error, "neighbours": [n.to_json() for n in self.neighbours]}


class Gallery:
    """An embeddings file opened for search (its index built or read), with its rows' paths and labels."""

    def __init__(self, table: str | os.PathLike[str], *, log: Log | None = None) -> None:
        self.path = Path(table)
        self.index, data = open_index(self.path, log=log)
        self.meta = data.meta if data is not None else read_meta(self.path)
        if data is not None:
            self.paths, self.labels = data.paths, data.labels
        else:
            columns = parquet().read_table(os.fspath(self.path), columns=["path", self._label_column()])
            self.paths, self.labels = (columns.column(i).to_pylist() for i in range(2))

    def _label_column(self) -> str:
        return "labels" if "labels" in parquet().read_schema(os.fspath(self.path)).names else "label"

    def __len__(self) -> int:
        return len(self.paths)

    def check_network(self, features: DescribedNetwork) -> None:
        """Refuse (ValueError naming the fix) a network other than the one that wrote the vectors."""
        card, meta = features.card, self.meta
        given = {
            "model": card.model_name,
            "num_features": num_features(features),
            "preprocessing": card.preprocessing.to_dict(),
            "class_names": list(card.class_names) if card.class_names is not None else None,
        }
        changed = sorted(k for k, v in given.items() if meta.get(k) != v)
        if changed or not _same_weights(meta.get("weights"), card.weights_name):
            written = f"{meta.get('model')} ({meta.get('weights') or 'no weights'})"
            given_name = f"{card.model_name} ({card.weights_name or 'no weights'})"
            raise ValueError(
                f"{self.path} holds embeddings of {written}, not of {given_name}: their similarities would compare "
                f"two networks' features; search with the network that wrote it (--model {meta.get('model_spec')}), "
                "or embed the images again with this one"
            )

    def nearest(self, vectors: np.ndarray, k: int) -> list[list[Neighbour]]:
        """The `k` nearest rows of each vector (Q, D), most similar first."""
        scores, rows = self.index.search(vectors, k)
        return [
            [Neighbour(int(r), self.paths[r], self.labels[r], float(s)) for s, r in zip(ss, rr, strict=True) if r >= 0]
            for ss, rr in zip(scores, rows, strict=True)
        ]


def _same_weights(written: str | None, given: str | None) -> bool:
    """The same weights: the same name, or two paths of the same file or folder."""
    if written == given:
        return True
    if written is None or given is None:
        return False
    a, b = Path(written), Path(given)
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def open_query_network(
    gallery: Gallery,
    *,
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    engine: str = "auto",
    dtype: str | None = None,
    device: str | torch.device | None = None,
    images: int | None = None,
    log: Log | None = None,
) -> DescribedNetwork:
    """The feature network of `model` (default: the one that wrote the gallery), checked against the gallery."""
    spec = model if model is not None else gallery.meta.get("model_spec")
    if spec is None:
        raise ValueError(f"{gallery.path} does not say which network wrote it; name it with --model")
    if model is None:
        weights = gallery.meta.get("weights_spec")
    dev = inference_device([spec], weights=weights, engine=engine, dtype=dtype, device=device)
    net = open_for_inference(spec, weights=weights, engine=engine, dtype=dtype, device=dev, images=images, log=log)
    features = feature_network(net, log=log).to(dev).eval()
    gallery.check_network(features)
    return features


def similar(
    queries: Sequence[str | os.PathLike[str]],
    *,
    index: str | os.PathLike[str],
    top_k: int = DEFAULT_TOP_K,
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    engine: str = "auto",
    dtype: str | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 32,
    log: Log | None = None,
) -> list[Match]:
    """The `top_k` nearest images of the embeddings file `index` to each query image (files, or folders of
    images), in query order; an unreadable query gets its error. The index is built on first use and kept."""
    if top_k < 1:
        raise ValueError(f"--top-k must be 1 or more, got {top_k}")
    gallery = Gallery(index, log=log)
    files = image_files([os.fspath(q) for q in queries])
    options = dict(model=model, weights=weights, engine=engine, dtype=dtype, device=device, log=log)
    features = open_query_network(gallery, images=len(files), **options)  # type: ignore[arg-type]
    return search_files(gallery, features, files, top_k=top_k, batch_size=batch_size)


def search_files(
    gallery: Gallery, features: DescribedNetwork, files: list[str], *, top_k: int, batch_size: int = 32
) -> list[Match]:
    """The Matches of the image `files`, embedded by `features` (normalised, as the gallery's vectors)."""
    images = Images(files, [None] * len(files), transform=eval_transform(features.preprocessing))
    matches = []
    for batch in image_vectors(images, list(range(len(files))), features, normalize=True, batch_size=batch_size):
        found = [v for _, v, _ in batch if v is not None]
        neighbours = iter(gallery.nearest(np.stack(found), top_k) if found else [])
        matches += [Match(files[i], next(neighbours) if v is not None else [], e) for i, v, e in batch]
    return matches
