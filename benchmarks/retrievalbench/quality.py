"""Retrieval precision@10 beside the classifier's top-1."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from inceptionnet.cli import main as cli
from inceptionnet.data import DEMO_DATA
from inceptionnet.retrieval import read_table
from inceptionnet.retrieval.index import build
from retrievalbench.__main__ import embedded

K = 10


def precision_at_k(gallery: Path, queries: Path, k: int = K) -> float:
    """The share of each query's k nearest gallery images (exact search) that have its label, averaged."""
    g, q = read_table(gallery), read_table(queries)
    index, _ = build(g.vectors, g.rows, exact_max=len(g.rows))
    _, rows = index.search(np.ascontiguousarray(q.vectors), k)
    labels = np.asarray(g.labels, dtype=object)
    wanted = np.asarray([q.labels[r] for r in q.rows], dtype=object)
    return float(np.mean(labels[rows] == wanted[:, None]))


def top1(run: str, engine: str, folder: Path) -> float:
    """The classifier's top-1 accuracy (%) on `folder` (one split), as `inceptionnet eval` gives it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        status = cli(["eval", "--data", str(folder), "--model", run, "--engine", engine, "--json", str(out)])
        if status != 0:
            raise SystemExit(f"inceptionnet eval failed on {folder} (status {status})")
        return float(json.loads(out.read_text())["results"][0]["top1_accuracy"])


def step_precision(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rows = []
    for name, data in (("demo", DEMO_DATA), ("cifar10", Path(args.data))):
        if not (data / "train").is_dir():
            print(f"skipping {name}: no {data}/train")
            continue
        start = time.perf_counter()
        gallery, queries = embedded(args, data, "train", work), embedded(args, data, "val", work)
        seconds = time.perf_counter() - start
        g, q = read_table(gallery), read_table(queries)
        test = next(data / n for n in ("val", "test") if (data / n).is_dir())
        rows.append({
            "data": name,
            "gallery": len(g.rows),
            "queries": len(q.rows),
            "dim": g.dim,
            "precision_at_10": round(100 * precision_at_k(gallery, queries), 2),
            "top1": round(top1(args.run, args.engine, test), 2),
            "embed_seconds": round(seconds, 1),
        })  # fmt: skip
    return {"k": K, "rows": rows}
