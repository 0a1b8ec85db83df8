"""Search speed and recall: exact against the IVF index of `similar` at 10^4-10^6 vectors; FAISS against usearch.

The vectors are the gallery's (CIFAR-10's training split, embedded by the run), then synthetic ones made from them
up to the size: a real vector chosen at random plus Gaussian noise of half the gallery's per-dimension spread,
normalised, so that the collection keeps the real vectors' clusters and spread. The queries are the test split's
vectors. Recall@10: the share of the exact 10 nearest that a search returns.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inceptionnet.retrieval import read_table
from inceptionnet.retrieval.index import EXACT_MAX, build, normalized
from retrievalbench.__main__ import embedded

K = 10
QUERIES = 1_000
SINGLE = 50  # queries timed one at a time
NPROBES = (8, 16, 32, 64)
NOISE = 0.5
CHUNK = 100_000


def collection(gallery: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """`size` vectors: the gallery's first, then synthetic ones made from them (see the module's doc)."""
    if size <= len(gallery):
        return gallery[:size]
    rng = np.random.default_rng(seed)
    spread = gallery.std(axis=0) * NOISE
    parts = [gallery]
    for start in range(len(gallery), size, CHUNK):
        m = min(CHUNK, size - start)
        noise = rng.standard_normal((m, gallery.shape[1]), dtype=np.float32) * spread
        parts.append(normalized(gallery[rng.integers(0, len(gallery), m)] + noise))
    return np.concatenate(parts)


def rates(search: Callable[[np.ndarray], Any], queries: np.ndarray) -> tuple[float, float, Any]:
    """(queries/s of the whole batch, queries/s one at a time, the batch's answer)."""
    start = time.perf_counter()
    answer = search(queries)
    batch = len(queries) / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(SINGLE):
        search(queries[i : i + 1])
    return batch, SINGLE / (time.perf_counter() - start), answer


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def vectors(args: argparse.Namespace, work: Path) -> tuple[np.ndarray, np.ndarray]:
    g = read_table(embedded(args, Path(args.data), "train", work))
    q = read_table(embedded(args, Path(args.data), "val", work))
    return normalized(g.vectors), normalized(q.vectors[:QUERIES])


def one_size(base: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    import faiss

    ids = np.arange(len(base))
    start = time.perf_counter()
    exact, _ = build(base, ids, exact_max=len(base))
    exact_build = time.perf_counter() - start
    exact_batch, exact_single, (_, truth) = rates(lambda q: exact.search(q, K), queries)
    exact.reset()  # its memory back before the IVF index is built
    start = time.perf_counter()
    ivf, kind = build(base, ids, exact_max=0)
    ivf_build = time.perf_counter() - start
    sweep = []
    for probes in sorted({*NPROBES, kind["nprobe"]}):
        faiss.extract_index_ivf(ivf).nprobe = probes
        batch, single, (_, found) = rates(lambda q: ivf.search(q, K), queries)
        sweep.append({"nprobe": probes, "batch_qps": round(batch, 1), "single_qps": round(single, 1),
                      "recall_at_10": round(recall(found, truth), 4)})  # fmt: skip
    chosen = next(s for s in sweep if s["nprobe"] == kind["nprobe"])
    return {
        "vectors": len(base),
        "exact": {
            "build_s": round(exact_build, 2),
            "batch_qps": round(exact_batch, 1),
            "single_qps": round(exact_single, 1),
        },
        "ivf": {"lists": kind["lists"], "nprobe": kind["nprobe"], "build_s": round(ivf_build, 1), **chosen},
        "ivf_sweep": sweep,
    }


def step_search(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())
    gallery, queries = vectors(args, work)
    rows = [one_size(collection(gallery, size), queries) for size in args.sizes]
    return {"dim": gallery.shape[1], "real_vectors": len(gallery), "queries": len(queries), "noise": NOISE,
            "exact_max": EXACT_MAX, "sizes": rows}  # fmt: skip


def _faiss_hnsw(base: np.ndarray) -> tuple[Callable[[np.ndarray, int], np.ndarray], Callable[[int], None]]:
    import faiss

    index = faiss.IndexHNSWFlat(base.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.add(base)

    def setting(ef: int) -> None:
        index.hnsw.efSearch = ef

    return lambda q, k: index.search(q, k)[1], setting


def _usearch_hnsw(base: np.ndarray) -> tuple[Callable[[np.ndarray, int], np.ndarray], Callable[[int], None]]:
    from usearch.index import Index

    threads = torch.get_num_threads()
    index = Index(ndim=base.shape[1], metric="ip", dtype="f32", connectivity=32, expansion_add=64)
    index.add(np.arange(len(base)), base, threads=threads)

    def setting(ef: int) -> None:
        index.expansion_search = ef

    return lambda q, k: np.asarray(index.search(q, k, threads=threads).keys).reshape(len(q), k), setting


def _faiss_ivf(base: np.ndarray) -> tuple[Callable[[np.ndarray, int], np.ndarray], Callable[[int], None]]:
    import faiss

    index, _ = build(base, np.arange(len(base)), exact_max=0)

    def setting(probes: int) -> None:
        faiss.extract_index_ivf(index).nprobe = probes

    return lambda q, k: index.search(q, k)[1], setting


def step_libraries(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import faiss
    import usearch

    faiss.omp_set_num_threads(torch.get_num_threads())
    gallery, queries = vectors(args, work)
    base = collection(gallery, args.library_size)
    truth = build(base, np.arange(len(base)), exact_max=len(base))[0].search(queries, K)[1]
    rows = []
    contenders = {"FAISS HNSW (M 32)": (_faiss_hnsw, (16, 32, 64, 128)), "usearch HNSW (M 32)": (_usearch_hnsw,
                  (16, 32, 64, 128)), "FAISS IVF (4 sqrt N lists)": (_faiss_ivf, NPROBES)}  # fmt: skip
    for name, (make, settings) in contenders.items():
        start = time.perf_counter()
        search, setting = make(base)
        built = time.perf_counter() - start
        for value in settings:
            setting(value)
            batch, single, found = rates(lambda q, s=search: s(q, K), queries)
            rows.append({"index": name, "build_s": round(built, 1), "setting": value, "batch_qps": round(batch, 1),
                         "single_qps": round(single, 1), "recall_at_10": round(recall(found, truth), 4)})  # fmt: skip
    return {"vectors": len(base), "dim": base.shape[1], "usearch": usearch.__version__, "rows": rows}
