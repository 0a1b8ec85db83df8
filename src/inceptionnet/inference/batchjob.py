"""`predict --json OUT.jsonl`: predictions of many images, one JSON line per image, split over torchrun's
processes and resumable.

Each rank takes its share of the sorted image list (`Ranks.share`: i % world_size == rank) and appends
one line per image to its own part file next to the output (`OUT.jsonl.rank0`, ...), flushed after every
batch. When every rank is done (a barrier of the gloo group: exact, where end markers in the part files
could be stale ones left by an earlier run of a requeued job, and torchrun ends the group when a rank
fails, so no rank waits for a dead one), rank 0 merges the output and every part file into OUT.jsonl
(atomically: every image once, sorted by path) and removes the parts. Rank 0 holds OUT.jsonl.lock
(flock) for the whole job, so a second job into the same output at the same time is refused before
any of its processes writes.

A rerun of the same command reads the output and all part files (of any world size) and predicts only the
images none of them holds, so a killed or requeued job finishes the rest. A line without its newline
(a process killed mid-write) or that is not JSON is dropped, and its image predicted again.

The sidecar OUT.jsonl.meta.json (`job_meta`: network, weights, classes, preprocessing, top-k, precision)
says what wrote the lines; a sidecar rather than a header line keeps every line of OUT.jsonl one
image's record. A rerun with another network, weights or options is refused instead of mixing results.

`embed --output OUT.parquet` runs the same job with another `OutputFormat`: JSON-line part files, merged by
rank 0 into a parquet file (retrieval/table.py).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inceptionnet.atomic import atomic_write
from inceptionnet.export.runtimes import DescribedNetwork
from inceptionnet.inference.predict import checked_top_k
from inceptionnet.ranks import Ranks, barrier

JSONL_SUFFIX = ".jsonl"
META_SUFFIX = ".meta.json"

Classify = Callable[[list[str]], Iterator[list[dict[str, Any]]]]  # one JSON record per file (prediction_record)


@dataclass(frozen=True)
class OutputFormat:
    """What a job's merged output is: how the keys it holds are read (what a rerun skips), how rank 0 merges it
    with the part files (each key once) and removes them, and the words its messages use. The part files are
    always JSON lines; the output is JSON lines for `predict --json` (JSONL), a parquet file for `embed`."""

    done: Callable[[Path], set[str]]
    merge: Callable[[Path, list[Path]], Any]
    job: str = "predict"  # the command, in messages
    holds: str = "predictions"
    option: str = "--json"  # the option naming the output
    same: str = "--model, --weights, --top-k and --dtype"  # what a rerun must repeat to finish an output


@dataclass(frozen=True)
class JobSummary:
    done_before: int  # images of this rank's share already in the output or a part file
    predicted: int  # images this rank predicted now
    failed: int  # of those, files that could not be classified


def is_jsonl(path: str | None) -> bool:
    return path is not None and path.endswith(JSONL_SUFFIX)


def part_file(output: Path, rank: int) -> Path:
    return output.with_name(f"{output.name}.rank{rank}")


def meta_file(output: Path) -> Path:
    return output.with_name(output.name + META_SUFFIX)


def network_meta(model: DescribedNetwork) -> dict[str, Any]:
    """The network an output's records depend on: its card's name, weights, classes and preprocessing, and the
    engine's precision."""
    card = model.card
    return {
        "model": card.model_name,
        "weights": card.weights_name,
        "num_classes": card.num_classes,
        "class_names": list(card.class_names) if card.class_names is not None else None,
        "preprocessing": card.preprocessing.to_dict(),
        "precision": model.precision,
    }


def job_meta(model: DescribedNetwork, top_k: int | None) -> dict[str, Any]:
    """What the lines of an output depend on: a rerun must match it to append to them."""
    return {**network_meta(model), "top_k": checked_top_k(model.card, top_k)}


def check_meta(output: Path, meta: dict[str, Any], fmt: OutputFormat | None = None) -> None:
    """Refuse to add to an output written with another network, weights or options (ValueError naming the fix)."""
    fmt = fmt or JSONL
    sidecar = meta_file(output)
    if not sidecar.exists():
        if output.exists() or _parts(output):
            raise ValueError(
                f"{output} (or its part files) exists without {sidecar.name}, so what wrote it is unknown; "
                f"remove it or choose another {fmt.option} path"
            )
        return
    written = json.loads(sidecar.read_text())
    changed = sorted(k for k in meta if written.get(k) != meta[k])
    if changed:
        shown = ", ".join(f"{k} {written.get(k)!r} -> {meta[k]!r}" for k in changed if k != "class_names")
        raise ValueError(
            f"{output} holds {fmt.holds} of another network or options ({shown or 'other class names'}); "
            f"rerun with the same {fmt.same} to finish it, or choose another {fmt.option} path"
        )


def read_records(path: Path) -> list[dict[str, Any]]:
    """The complete records of a JSONL file: a last line without its newline, or a line that is not a JSON
    object with a path, is dropped (its image is predicted again)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().split(b"\n")[:-1]:  # the piece after the last newline is incomplete
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("path"), str):
            records.append(record)
    return records


def _parts(output: Path) -> list[Path]:
    """The part files of `output` present, of any rank (an earlier run may have had more processes)."""
    prefix = f"{output.name}.rank"
    found = output.parent.iterdir() if output.parent.is_dir() else ()
    return sorted(p for p in found if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit())


def done_paths(output: Path, fmt: OutputFormat | None = None) -> set[str]:
    """The images the output and every part file (of any earlier world size) already hold."""
    parts = {r["path"] for f in _parts(output) for r in read_records(f)}
    return (fmt or JSONL).done(output) | parts


def _cut_incomplete(path: Path) -> None:
    """Truncate `path` after its last newline, so that appended lines do not join a half-written one."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as f:
            f.truncate(end)


def run_share(
    files: list[str], output: Path, ranks: Ranks, classify: Classify, fmt: OutputFormat | None = None
) -> JobSummary:
    """Predict this rank's share of the sorted `files` not yet in the output, appending to its part file."""
    done = done_paths(output, fmt)
    share = ranks.share(files)
    todo = [f for f in share if f not in done]
    part = part_file(output, ranks.rank)
    _cut_incomplete(part)
    predicted = failed = 0
    with part.open("a", encoding="utf-8") as f:
        for batch in classify(todo):
            f.write("".join(json.dumps(r) + "\n" for r in batch))
            f.flush()
            predicted += len(batch)
            failed += sum(r["error"] is not None for r in batch)
    return JobSummary(len(share) - len(todo), predicted, failed)


def merge(output: Path, parts: list[Path] | None = None) -> list[dict[str, Any]]:
    """Rank 0, once every rank is done: the output and the part files into one output sorted by path (each
    image once: the output's record, else the first part's), written atomically, then the parts removed."""
    parts = _parts(output) if parts is None else parts
    merged: dict[str, dict[str, Any]] = {}
    for f in (output, *parts):
        for record in read_records(f):
            merged.setdefault(record["path"], record)
    records = [merged[p] for p in sorted(merged)]
    atomic_write(output, "".join(json.dumps(r) + "\n" for r in records).encode())
    for part in parts:
        part.unlink()
    return records


def run_job(
    files: Iterable[str],
    output: str | os.PathLike[str],
    *,
    meta: dict[str, Any],
    ranks: Ranks,
    classify: Classify,
    fmt: OutputFormat | None = None,
) -> tuple[JobSummary, Any]:
    """The whole job on this rank: check the sidecar, predict the share, wait for all ranks, merge on rank 0.

    Returns this rank's summary, and on rank 0 what the format's merge returns (JSONL: the merged records; None
    on the other ranks). Every rank must call it inside `ranks.process_group`.
    """
    fmt = fmt or JSONL
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _holding(lock_file(out), out, held=ranks.is_main, fmt=fmt):
        check_meta(out, meta, fmt)
        barrier(ranks)  # every rank has read the sidecar before rank 0 writes it
        if ranks.is_main and not meta_file(out).exists():
            atomic_write(meta_file(out), (json.dumps(meta, indent=2) + "\n").encode())
        summary = run_share(sorted(set(files)), out, ranks, classify, fmt)
        barrier(ranks)
        return summary, fmt.merge(out, _parts(out)) if ranks.is_main else None


def lock_file(output: Path) -> Path:
    return output.with_name(f"{output.name}.lock")


@contextmanager
def _holding(lock: Path, output: Path, *, held: bool, fmt: OutputFormat) -> Iterator[None]:
    """`lock` held (flock) by rank 0 for the whole job, so that a second job writing the same output at the same
    time is refused (its rank 0 before any of its ranks writes) instead of both losing records; never opened
    through a symbolic link; removed at the end while still held."""
    if not held:
        yield
        return
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        raise ValueError(
            f"cannot open {lock} ({err.strerror}), the lock of {output}; choose another {fmt.option}"
        ) from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"{output} is being written by another {fmt.job} job right now (it holds {lock.name}); wait for it "
                f"to end (the same command then finishes what is missing), or write to another {fmt.option} file"
            ) from None
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # no locks here: go on without
                raise
        yield
        lock.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _jsonl_done(output: Path) -> set[str]:
    return {r["path"] for r in read_records(output)}


JSONL = OutputFormat(done=_jsonl_done, merge=merge)
