"""`embed`: the pooled feature vector of every image of a data source, into a parquet file (retrieval/table.py).

The network runs where `predict` runs it (`open_for_inference`: the fastest engine, an int8 folder too), cut
before its classifier (`feature_network`). Under torchrun each process embeds its share of the sorted keys
and rank 0 merges them; a rerun embeds only the images the file and the part files do not hold yet, and
refuses to add vectors of another network or options (the batch job of `predict --json`,
inference/batchjob.py, with the parquet file as its output).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from inceptionnet.data import eval_transform
from inceptionnet.export.runtimes import DescribedNetwork
from inceptionnet.inference.batchjob import OutputFormat, network_meta, run_job
from inceptionnet.inference.engines import Log, describe_engine
from inceptionnet.inference.features import feature_network
from inceptionnet.inference.loading import inference_device, open_for_inference
from inceptionnet.ranks import from_env, process_group
from inceptionnet.retrieval.inputs import Images, Selected, open_images
from inceptionnet.retrieval.table import merge_parts, pyarrow, record, written_paths

SUFFIX = ".parquet"


@dataclass(frozen=True)
class EmbedSummary:
    output: Path
    engine: str  # describe_engine's line
    done_before: int  # images of this process's share already in the file or a part file
    embedded: int  # images this process embedded now
    failed: int  # of those, images that could not be read
    rows: int | None  # rows of the merged file (None on ranks other than 0)


def embed(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    output: str | os.PathLike[str],
    model: str = "inception_v4",
    weights: str | os.PathLike[str] | None = None,
    split: str | None = None,
    normalize: bool = True,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    engine: str = "auto",
    dtype: str | None = None,
    workers: int = 0,
    image_column: str | None = None,
    label_column: str | None = None,
    log: Log | None = None,
) -> EmbedSummary:
    """Write the embeddings of the images `data` names into `output` (a .parquet file); see the module's doc.

    `data`: one data source (an image folder of class folders, a metadata folder, shards, hf:ORG/NAME, ...;
    `split` "train" or "val" of one with splits), or image files and folders (no labels). `model` and
    `weights`: any `predict --model` (an int8 folder too). `normalize`: L2-normalise each vector (cosine
    similarity is then a dot product). Call it in every process under torchrun.
    """
    out = _checked_output(output)
    pyarrow()  # the extra, before any network loads
    ranks = from_env()
    request = dict(weights=weights, engine=engine, dtype=dtype, device=device, ranks=ranks)
    dev = inference_device([model], **request)  # type: ignore[arg-type]
    sources = [os.fspath(d) for d in ([data] if isinstance(data, (str, os.PathLike)) else data)]
    images = open_images(sources, split=split, image_column=image_column, label_column=label_column)
    mine = len(ranks.share(images.keys))  # what --engine auto weighs, as predict does
    options = dict(engine=engine, dtype=dtype, device=dev, images=mine, log=log)
    net = open_for_inference(model, weights=weights, **options)  # type: ignore[arg-type]
    images.transform = eval_transform(net.preprocessing)
    features = feature_network(net, log=log).to(dev).eval()
    meta = table_meta(features, normalize=normalize)
    fmt = parquet_output({**meta, "model_spec": os.fspath(model), "weights_spec": _optional(weights)})

    def run(todo: list[str]) -> Iterator[list[dict[str, Any]]]:
        return embed_batches(images, todo, features, normalize=normalize, batch_size=batch_size, workers=workers)

    with process_group(ranks):
        summary, rows = run_job(images.keys, out, meta=meta, ranks=ranks, classify=run, fmt=fmt)
    return EmbedSummary(out, describe_engine(net), summary.done_before, summary.predicted, summary.failed, rows)


def _checked_output(output: str | os.PathLike[str]) -> Path:
    out = Path(output)
    if out.suffix != SUFFIX:
        raise ValueError(f"the embeddings are written as parquet: name the output {out.with_suffix(SUFFIX)}")
    return out


def _optional(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.fspath(path)


def table_meta(features: DescribedNetwork, *, normalize: bool) -> dict[str, Any]:
    """What the vectors depend on: a rerun must match it to add to a file, a search to compare with it."""
    return {**network_meta(features), "normalize": normalize, "num_features": num_features(features)}


def num_features(features: DescribedNetwork) -> int:
    """The width of the vectors `features` gives (one forward of a single image where the network does not say)."""
    known = getattr(features, "num_features", None)
    if known is not None:
        return int(known)
    size = features.preprocessing.input_size
    probe = torch.zeros(1, features.in_chans, size, size, device=_device(features))
    with torch.inference_mode():
        return int(features(probe).shape[1])


def _device(net: DescribedNetwork) -> torch.device:
    return next((p.device for p in net.parameters()), torch.device("cpu"))


def parquet_output(meta: dict[str, Any]) -> OutputFormat:
    """The batch job's output as an embeddings file whose schema records `meta`."""
    return OutputFormat(
        done=written_paths,
        merge=lambda out, parts: merge_parts(out, parts, meta),
        job="embed",
        holds="embeddings",
        option="--output",
        same="--model, --weights, --dtype and --no-normalize",
    )


def embed_batches(
    images: Images,
    keys: list[str],
    features: DescribedNetwork,
    *,
    normalize: bool,
    batch_size: int,
    workers: int = 0,
) -> Iterator[list[dict[str, Any]]]:
    """The part-file records of the images `keys`, one list per batch, read as their turn comes."""
    index = {k: i for i, k in enumerate(images.keys)}
    batches = image_vectors(images, [index[k] for k in keys], features, normalize=normalize, batch_size=batch_size,
                            workers=workers)  # fmt: skip
    for batch in batches:
        yield [record(images.keys[i], images.labels[i], vector, error) for i, vector, error in batch]


def image_vectors(
    images: Images,
    indices: list[int],
    features: DescribedNetwork,
    *,
    normalize: bool,
    batch_size: int,
    workers: int = 0,
) -> Iterator[list[tuple[int, np.ndarray | None, str | None]]]:
    """(index, vector or None, error or None) of the images at `indices`, one list per batch of `batch_size`."""
    loader = DataLoader(Selected(images, indices), batch_size=batch_size, num_workers=workers, collate_fn=list)
    device = _device(features)
    for start, batch in zip(range(0, len(indices), batch_size), loader, strict=True):
        ready = [x for x, _ in batch if x is not None]
        vectors = iter(vectors_of(features, torch.stack(ready).to(device), normalize=normalize) if ready else [])
        rows = indices[start : start + batch_size]
        yield [(i, next(vectors) if x is not None else None, error) for i, (x, error) in zip(rows, batch, strict=True)]


def vectors_of(features: DescribedNetwork, batch: torch.Tensor, *, normalize: bool) -> np.ndarray:
    """The feature vectors (N, D) float32 of a prepared batch, L2-normalised with `normalize`."""
    with torch.inference_mode():
        v = features(batch).float()
    if normalize:
        v = torch.nn.functional.normalize(v, dim=1)
    return v.cpu().numpy()
