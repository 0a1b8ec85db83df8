"""The unknown-image and calibration tables of docs/calibration.md and docs/evaluation.md are what
benchmarks/results/unknown-images.json gives (benchmarks/unknown_tables.py), and the claims the pages make of
that result hold in it."""

from __future__ import annotations

import unknown_tables  # benchmarks/, on pytest's pythonpath

from inceptionnet.evaluation.unknown import DEFAULT_SCORE


def test_every_table_is_placed_and_matches_its_result() -> None:
    assert unknown_tables.problems() == [], "run: python benchmarks/unknown_tables.py"


def test_a_figure_typed_by_hand_is_caught() -> None:
    page = next(iter(unknown_tables.PAGES))
    doc = page.read_text(encoding="utf-8")
    ece = unknown_tables.load()["calibration_heldout"]["ece_after"]
    cell = f"| {ece:.4f} |"
    assert cell in doc
    changed = unknown_tables.render(doc.replace(cell, "| 0.0001 |", 1), ())
    assert changed != doc and unknown_tables.render(changed, ("calibration-error",)) == doc


def test_the_result_records_its_command_and_the_claims_hold() -> None:
    r = unknown_tables.load()
    assert r["command"].startswith("PYTHONPATH=src python benchmarks/unknown_images.py")
    assert r["machine"] and r["date"] and r["config"]["known_kept"] == 0.95
    calibration = r["calibration_heldout"]
    assert calibration["ece_after"] < calibration["ece_before"], "temperature scaling lowers the held-out ECE"
    assert r["best_of_the_logits"].split(",")[0] == DEFAULT_SCORE, "the card's score is the best logit score"
    low, high = r["best_minus_best_of_the_logits"]["interval_95"]
    assert r["best"].startswith(DEFAULT_SCORE) or low <= 0 <= high, "the deployed score is not measurably worse"
    card = r["card"]
    assert card["temperature"] is not None and card["unknown"]["score"] == DEFAULT_SCORE
