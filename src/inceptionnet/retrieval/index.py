"""The search index of an embeddings file: built from the file once, kept beside it, rebuilt when it changes.

Cosine similarity is the dot product of L2-normalised vectors, so the index holds the file's vectors
normalised (a file written with `--no-normalize` is normalised here) and answers inner products. Up to
EXACT_MAX vectors the search is exact (FAISS's IndexFlatIP: every vector compared, no build time); beyond,
it is approximate: an inverted file (FAISS's IndexIVFFlat) of about 4 sqrt(N) lists trained by k-means on
the vectors, of which a query searches NPROBE_FRACTION, at least MIN_NPROBE (docs/embeddings.md measures
both, and why FAISS and why IVF rather than HNSW). Each vector's id is its row in the file.

Kept beside FILE.parquet: FILE.parquet.faiss (the index) and FILE.parquet.index.json (what it was built
from: the file's size, modification time and SHA-256, the kind, the FAISS version). A changed size or time
makes the file's hash checked; a changed hash rebuilds the index.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inceptionnet.atomic import atomic_write
from inceptionnet.extras import require
from inceptionnet.inference.engines import Log
from inceptionnet.retrieval.table import EmbeddingTable, read_table

EXACT_MAX = 50_000  # vectors searched exactly; beyond, an IVF index (docs/embeddings.md, "Search")
LISTS_PER_SQRT = 4  # IVF lists: about 4 sqrt(N)
TRAIN_PER_LIST = 40  # k-means training vectors per list (FAISS warns below 39)
NPROBE_FRACTION = 1 / 32  # lists searched per query: recall@10 >= 0.95 measured (docs/embeddings.md)
MIN_NPROBE = 16
INDEX_VERSION = 1


@dataclass(frozen=True)
class Fingerprint:
    """What an embeddings file was when its index was built."""

    size: int
    mtime_ns: int
    sha256: str

    @staticmethod
    def of(path: Path, *, sha256: str | None = None) -> Fingerprint:
        st = path.stat()
        return Fingerprint(st.st_size, st.st_mtime_ns, sha256 or file_sha256(path))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def index_files(table: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The index file and its record beside the embeddings file `table`."""
    path = Path(table)
    return path.with_name(path.name + ".faiss"), path.with_name(path.name + ".index.json")


def faiss() -> Any:
    return require("faiss", extra="retrieval", purpose="similar-image search")


class SearchIndex:
    """The nearest rows of an embeddings file to query vectors, by cosine similarity."""

    def __init__(self, index: Any, record: dict[str, Any]) -> None:
        self.index, self.record = index, record

    @property
    def kind(self) -> str:
        return str(self.record["kind"])

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, rows), each (Q, min(k, size)), best first; `queries` (Q, D) are normalised here."""
        q = normalized(np.asarray(queries, dtype=np.float32))
        k = min(k, self.size)
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        scores, rows = self.index.search(q, k)
        return scores, rows


def normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def build(vectors: np.ndarray, ids: np.ndarray, *, exact_max: int = EXACT_MAX) -> tuple[Any, dict[str, Any]]:
    """A FAISS index of `vectors` (normalised here) with `ids`: flat up to `exact_max`, else IVF."""
    f = faiss()
    x = normalized(vectors)
    n, dim = x.shape
    if n <= exact_max:
        index = f.IndexIDMap2(f.IndexFlatIP(dim))
        index.add_with_ids(x, ids.astype(np.int64))
        return index, {"kind": "exact"}
    lists = max(1, round(LISTS_PER_SQRT * math.sqrt(n)))
    quantizer = f.IndexFlatIP(dim)
    ivf = f.IndexIVFFlat(quantizer, dim, lists, f.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(n, min(n, TRAIN_PER_LIST * lists), replace=False)
    ivf.train(x[np.sort(sample)])
    ivf.add_with_ids(x, ids.astype(np.int64))
    ivf.nprobe = nprobe(lists)
    return ivf, {"kind": "ivf", "lists": lists, "nprobe": ivf.nprobe}


def nprobe(lists: int) -> int:
    """Lists a query searches: NPROBE_FRACTION of them, at least MIN_NPROBE (and at most all)."""
    return min(lists, max(MIN_NPROBE, round(lists * NPROBE_FRACTION)))


def open_index(table: str | os.PathLike[str], *, log: Log | None = None) -> tuple[SearchIndex, EmbeddingTable | None]:
    """The index of the embeddings file `table`: the one kept beside it while the file is unchanged, else built
    (and kept) anew. Also the file read whole when it was read to build the index (else None)."""
    path = Path(table)
    if not path.is_file():
        raise ValueError(f"no embeddings file {path}; write it with `inceptionnet embed DATA --output {path}`")
    index_file, record_file = index_files(path)
    record = _current_record(path, index_file, record_file)
    if record is not None:
        return SearchIndex(faiss().read_index(os.fspath(index_file)), record), None
    say = log or (lambda _m: None)
    data = read_table(path)
    say(f"indexing the {len(data.rows)} vectors of {path} ...")
    index, kind = build(data.vectors, data.rows)
    stamp = Fingerprint.of(path)
    record = {"version": INDEX_VERSION, **kind, "vectors": int(index.ntotal), "faiss": faiss().__version__,
              "table": vars(stamp)}  # fmt: skip
    _write_index(index, index_file)
    atomic_write(record_file, (json.dumps(record, indent=2) + "\n").encode())
    say(f"kept the {kind['kind']} index as {index_file}")
    return SearchIndex(index, record), data


def _current_record(path: Path, index_file: Path, record_file: Path) -> dict[str, Any] | None:
    """The record of the kept index when it still describes the file at `path`, else None."""
    if not (index_file.is_file() and record_file.is_file()):
        return None
    try:
        record = json.loads(record_file.read_text())
        kept = Fingerprint(**record["table"])
    except (ValueError, KeyError, TypeError):
        return None
    if record.get("version") != INDEX_VERSION:
        return None
    st = path.stat()
    if (st.st_size, st.st_mtime_ns) == (kept.size, kept.mtime_ns):
        return record
    if st.st_size != kept.size or file_sha256(path) != kept.sha256:
        return None
    record["table"] = vars(Fingerprint.of(path, sha256=kept.sha256))  # the same bytes, touched: keep the index
    atomic_write(record_file, (json.dumps(record, indent=2) + "\n").encode())
    return record


def _write_index(index: Any, path: Path) -> None:
    """The FAISS index into `path` atomically (its own writer, into a temporary file of the same folder)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # readable as the embeddings file beside it (mkstemp makes it private)
        faiss().write_index(index, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
