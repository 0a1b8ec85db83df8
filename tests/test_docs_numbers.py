"""The figures of docs/performance.md's generated tables are what their committed results give, and no
result is above the matrix-multiply ceiling its own run measured (benchmarks/docs_tables.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import docs_tables  # benchmarks/, on pytest's pythonpath
import pytest


def test_every_table_is_placed_and_matches_its_results() -> None:
    doc = docs_tables.DOC.read_text(encoding="utf-8")
    placed = {m["name"] for m in docs_tables.BLOCK.finditer(doc)}
    assert placed == set(docs_tables.TABLES), "each generated table appears once in docs/performance.md"
    differing = docs_tables.differing(doc)
    assert not differing, f"{differing} differ from their results: run python benchmarks/docs_tables.py"


def test_every_other_table_says_it_was_written_by_hand() -> None:
    """A table of docs/performance.md that no result writes says so, and why (no measured figures, or a run
    whose result was not kept), on a `<!-- by hand: ... -->` line right above it."""
    doc = docs_tables.DOC.read_text(encoding="utf-8")
    assert docs_tables.unaccounted_tables(doc) == []
    assert docs_tables.unaccounted_tables(doc + "\n\n| a | b |\n|---|---|\n| 1 | 2 |\n") == [
        f"line {doc.count(chr(10)) + 3}: | a | b |"
    ]


def test_no_result_is_above_its_runs_ceiling() -> None:
    assert docs_tables.ceiling_errors() == []


def test_a_figure_typed_by_hand_is_caught() -> None:
    doc = docs_tables.DOC.read_text(encoding="utf-8")
    ours = docs_tables.engine_results()[0]["ours"]["images_per_s"]
    cell = f"| {ours:.2f} (OpenVINO) |"
    assert cell in doc
    assert docs_tables.differing(doc.replace(cell, "| 18.93 (OpenVINO) |", 1)) == ["engines-cpu"]


def test_a_throughput_above_the_ceiling_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    shutil.copytree(docs_tables.RESULTS, results)
    path = results / "engines-cpu" / "inception_v4_fp32.json"
    run = json.loads(path.read_text())
    run["ours"]["achieved_tflops"] = 2.5 * run["ours"]["ceiling_tflops"]  # what 18.93 img/s was on 2 cores
    path.write_text(json.dumps(run))
    monkeypatch.setattr(docs_tables, "RESULTS", results)
    (error,) = docs_tables.ceiling_errors()
    assert error.startswith("inception_v4 fp32 inceptionnet inception_v4 (openvino)") and "above 1.25 x" in error
