"""The embeddings file: one parquet row per image, written through pyarrow and read as it is by pandas, polars
and DuckDB.

Columns, in order:

- `path` (string): the image's file, or where a sample of a shard or a Hugging Face dataset comes from;
- `label` (string, null where the data has no labels) or, for multi-label data, `labels` (list of strings);
- `error` (string): why the image could not be embedded, null for every image that was;
- `embedding` (fixed-size list of float32, null where `error` is set): the pooled feature vector after the
  network's last block, L2-normalised unless written with `normalize=False`. A fixed-size list is Arrow's
  type for a vector: pandas reads it as a NumPy array per row, polars as an Array column; parquet stores it as
  a list, which DuckDB reads as FLOAT[].

Rows are sorted by `path`, each path once. The schema's metadata `inceptionnet` holds, as JSON, what wrote
the vectors (`table_meta`: the network's card, its weights, the engine's precision, `normalize`), so that a
search embeds its queries with the same network and a job's rerun adds to the file only with it.

While a job runs, each process appends JSON lines (`record`: the vector as base64 float32) to its part
file; `merge_parts` writes them and the existing rows into the parquet file, atomically.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inceptionnet.atomic import atomic_write
from inceptionnet.extras import require
from inceptionnet.inference.batchjob import read_records

META_KEY = b"inceptionnet"
INSTALL_PURPOSE = "the embeddings file (parquet)"


def pyarrow() -> Any:
    """pyarrow, or MissingExtra naming the `retrieval` extra."""
    return require("pyarrow", extra="retrieval", purpose=INSTALL_PURPOSE)


def parquet() -> Any:
    """pyarrow.parquet, or MissingExtra naming the `retrieval` extra."""
    return require("pyarrow.parquet", extra="retrieval", purpose=INSTALL_PURPOSE)


def record(path: str, label: str | list[str] | None, vector: np.ndarray | None, error: str | None) -> dict[str, Any]:
    """One image's JSON line in a part file: a multi-label sample's `labels` is a list."""
    key = "labels" if isinstance(label, list) else "label"
    data = None if vector is None else base64.b64encode(np.ascontiguousarray(vector, np.float32).tobytes()).decode()
    return {"path": path, key: label, "error": error, "embedding": data}


@dataclass(frozen=True)
class EmbeddingTable:
    """An embeddings file read whole: its rows' paths, labels and errors, the vectors of the embedded rows."""

    paths: list[str]
    labels: list[Any]  # str, list[str] (multi-label) or None per row
    errors: list[str | None]
    vectors: np.ndarray  # (embedded rows, dim) float32
    rows: np.ndarray  # (embedded rows,) the row number of each vector
    meta: dict[str, Any]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What wrote the embeddings file at `path` (its schema's metadata), read without its rows."""
    schema = parquet().read_schema(os.fspath(path))
    return _meta_of(schema, path)


def read_table(path: str | os.PathLike[str]) -> EmbeddingTable:
    """The embeddings file at `path`; a ValueError naming the fix when it is not one."""
    pq = parquet()
    table = pq.read_table(os.fspath(path))
    meta = _meta_of(table.schema, path)
    column = table.column("embedding").combine_chunks()
    valid = np.asarray(column.is_valid())
    width = column.type.list_size
    flat = column.flatten().to_numpy(zero_copy_only=False) if len(column) else np.zeros(0, np.float32)
    vectors = np.asarray(flat, dtype=np.float32).reshape(-1, width)
    label_column = "labels" if "labels" in table.column_names else "label"
    return EmbeddingTable(
        paths=table.column("path").to_pylist(),
        labels=table.column(label_column).to_pylist(),
        errors=table.column("error").to_pylist(),
        vectors=vectors,
        rows=np.flatnonzero(valid),
        meta=meta,
    )


def _meta_of(schema: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None or "embedding" not in schema.names:
        raise ValueError(
            f"{path} is not an embeddings file of inceptionnet (no 'embedding' column or no '{META_KEY.decode()}' "
            "metadata); write one with `inceptionnet embed DATA --output FILE.parquet`"
        )
    return json.loads(raw)


def written_paths(path: Path) -> set[str]:
    """The paths an embeddings file holds (none when it does not exist yet): what a rerun skips."""
    if not path.exists():
        return set()
    pq = parquet()
    return set(pq.read_table(os.fspath(path), columns=["path"]).column("path").to_pylist())


def merge_parts(output: Path, parts: list[Path], meta: dict[str, Any]) -> int:
    """Rank 0, once every process is done: the rows of `output` (if any) and the records of `parts` into `output`
    sorted by path, each path once (the output's row, else the first part's), written atomically; the parts
    removed. Returns the number of rows."""
    pa = pyarrow()
    pq = parquet()
    records = [r for part in parts for r in read_records(part)]
    tables = [pq.read_table(os.fspath(output))] if output.exists() else []
    if records:
        tables.append(_from_records(records, meta, tables[0].schema if tables else None))
    if not tables:
        tables.append(_from_records([], meta, None))
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    paths = np.asarray(table.column("path").to_pylist(), dtype=object)
    _, first = np.unique(paths, return_index=True)  # sorted by path, each one's first row
    table = table.take(pa.array(first, type=pa.int64())).replace_schema_metadata({META_KEY: json.dumps(meta)})
    atomic_write(output, lambda f: pq.write_table(table, f))
    for part in parts:
        part.unlink()
    return table.num_rows


def _from_records(records: list[dict[str, Any]], meta: dict[str, Any], schema: Any) -> Any:
    """The part files' records as an Arrow table of the file's schema."""
    pa = pyarrow()
    dim = int(meta["num_features"])
    multi = (schema is not None and "labels" in schema.names) or any("labels" in r for r in records)
    label = ("labels", pa.list_(pa.string())) if multi else ("label", pa.string())
    vector = pa.list_(pa.float32(), dim)
    fields = [("path", pa.string()), label, ("error", pa.string()), ("embedding", vector)]
    flat = np.zeros((len(records), dim), np.float32)
    for i, r in enumerate(records):
        if r["embedding"] is not None:
            flat[i] = np.frombuffer(base64.b64decode(r["embedding"]), dtype=np.float32)
    valid = np.array([r["embedding"] is not None for r in records], dtype=bool)
    values = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim, mask=pa.array(~valid))
    columns = [
        pa.array([r["path"] for r in records], pa.string()),
        pa.array([r.get(label[0]) for r in records], label[1]),
        pa.array([r["error"] for r in records], pa.string()),
        values,
    ]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
