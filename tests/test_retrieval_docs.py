"""docs/embeddings.md's measured tables are what benchmarks/results/retrieval/ gives (retrievalbench.tables), every
other table says it was written by hand, and the measured claims the page makes hold in the results."""

from __future__ import annotations

import json

import pytest
from retrievalbench import tables  # benchmarks/, on pytest's pythonpath


def test_every_table_is_placed_and_matches_its_results() -> None:
    doc = tables.DOC.read_text(encoding="utf-8")
    assert {m["name"] for m in tables.BLOCK.finditer(doc)} == set(tables.TABLES)
    assert tables.differing(doc) == [], "run: PYTHONPATH=src:benchmarks python -m retrievalbench.tables"
    assert tables.unaccounted_tables(doc) == []


def test_a_figure_typed_by_hand_is_caught() -> None:
    doc = tables.DOC.read_text(encoding="utf-8")
    row = tables.load("precision")["rows"][0]
    cell = f"| {row['precision_at_10']:.2f}% |"
    assert cell in doc
    assert tables.differing(doc.replace(cell, "| 99.99% |", 1)) == ["retrieval-precision"]


def test_the_measured_claims_hold() -> None:
    speed = tables.load("speed")
    assert speed["ratio_median"] >= 0.95, "embed runs at 0.95x predict's images/s or better"
    search = tables.load("search")
    sizes = {s["vectors"]: s for s in search["sizes"]}
    assert {10_000, 100_000, 1_000_000} <= set(sizes)
    beyond = [s for n, s in sizes.items() if n > search["exact_max"]]
    assert beyond and all(s["ivf"]["recall_at_10"] >= 0.95 for s in beyond)


@pytest.mark.parametrize("name", ["precision", "speed", "search", "libraries"])
def test_every_result_records_its_command_and_machine(name: str) -> None:
    result = json.loads((tables.RESULTS / f"{name}.json").read_text())
    assert result["command"].startswith("PYTHONPATH=src:benchmarks python -m retrievalbench")
    assert result["machine"] and result["date"] and result["versions"]["faiss"]
