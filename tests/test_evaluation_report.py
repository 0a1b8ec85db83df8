"""`eval --report`: the report's numbers on a case worked out by hand, and the command end to end."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from inceptionnet.cli import main
from inceptionnet.data import open_split
from inceptionnet.evaluation import evaluate
from inceptionnet.evaluation import report as rp
from inceptionnet.evaluation.scores import Predictions
from inceptionnet.extras import MissingExtra

pytest.importorskip("sklearn")


def known_predictions() -> Predictions:
    """Six images of classes a, b, c; the top probabilities are 0.9, 0.8, 0.6, 0.7, 0.55, 0.95."""
    rows = [
        ([0.9, 0.05, 0.05], 0),  # a -> a
        ([0.1, 0.8, 0.1], 0),  # a -> b
        ([0.2, 0.6, 0.2], 1),  # b -> b
        ([0.1, 0.2, 0.7], 1),  # b -> c
        ([0.3, 0.15, 0.55], 2),  # c -> c
        ([0.95, 0.03, 0.02], 2),  # c -> a
    ]
    probs = torch.tensor([r[0] for r in rows])
    targets = torch.tensor([r[1] for r in rows])
    return Predictions(probs, targets, torch.arange(6), ("a", "b", "c"))


def test_report_numbers_match_a_case_worked_by_hand(tmp_path: Path) -> None:
    page = rp.build_report(known_predictions(), tmp_path / "rep", title="known")
    out = page.parent
    with (out / "confusion_matrix.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true \\ predicted", "a", "b", "c"]
    assert [[int(x) for x in r[1:]] for r in rows[1:]] == [[1, 1, 0], [0, 1, 1], [1, 0, 1]]
    # every class: one of its 2 images right, and 1 of the 2 images predicted as it right
    per_class = json.loads((out / "per_class.json").read_text())
    assert [(c["class"], c["precision"], c["recall"], c["f1"], c["support"]) for c in per_class] == [
        (name, 0.5, 0.5, 0.5, 2) for name in "abc"
    ]
    with (out / "per_class.csv").open() as f:
        assert next(csv.DictReader(f)) == {
            "class": "a",
            "precision": "0.5",
            "recall": "0.5",
            "f1": "0.5",
            "support": "2",
        }
    # 10 bins by hand: [0.5, 0.6) 0.55 right; [0.6, 0.7) 0.6 right; [0.7, 0.8) 0.7 wrong; [0.8, 0.9) 0.8 wrong;
    # [0.9, 1] 0.9 right and 0.95 wrong (accuracy 0.5, confidence 0.925)
    cal = rp.calibration(np.array([0.9, 0.8, 0.6, 0.7, 0.55, 0.95]), np.array([1, 0, 1, 0, 1, 0]), bins=10)
    expected = (0.45 + 0.4 + 0.7 + 0.8 + 2 * abs(0.5 - 0.925)) / 6
    assert cal.ece == pytest.approx(expected)
    assert cal.counts == (0, 0, 0, 0, 0, 1, 1, 1, 1, 2)
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["images"] == 6 and saved["top1_accuracy"] == 0.5
    assert len(saved["calibration"]["bins"]) == rp.CALIBRATION_BINS
    assert saved["calibration"]["ece"] == pytest.approx(
        rp.calibration(np.array([0.9, 0.8, 0.6, 0.7, 0.55, 0.95]), np.array([1, 0, 1, 0, 1, 0])).ece, abs=1e-6
    )
    for name in ("confusion_matrix.png", "reliability.png", "mistakes.png"):
        assert (out / name).stat().st_size > 0 and f'src="{name}"' in page.read_text()
    assert "http" not in page.read_text()  # nothing to fetch: the page stands alone


def test_many_classes_show_the_most_confused_pairs() -> None:
    matrix = np.diag(np.full(40, 5))
    matrix[3, 7], matrix[9, 1] = 4, 2
    names = [f"k{i}" for i in range(40)]
    assert rp.confused_pairs(matrix, names) == [
        {"true": "k3", "predicted": "k7", "images": 4, "share": pytest.approx(4 / 9)},
        {"true": "k9", "predicted": "k1", "images": 2, "share": pytest.approx(2 / 7)},
    ]


def test_many_classes_report_pairs_instead_of_a_matrix(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    probs = torch.from_numpy(rng.dirichlet(np.ones(40), size=200)).float()
    targets = torch.from_numpy(rng.integers(0, 40, 200))
    names = tuple(f"k{i}" for i in range(40))
    page = rp.build_report(Predictions(probs, targets, torch.arange(200), names), tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"confused_pairs.png", "confused_pairs.csv"} <= files and "confusion_matrix.png" not in files
    assert 'src="confused_pairs.png"' in page.read_text()


def test_predictions_find_their_images_past_unreadable_ones(make_image_folder, tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", classes=2, train=3, val=1, corrupt=1)
    split = root / "train"
    torch.manual_seed(0)
    pair = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2)) for _ in range(2)]
    result = evaluate(pair, split, crops=10, workers=0, batch_size=10, input_size=32, keep_predictions=True)
    source = open_split(split)
    kept = result.predictions
    assert result.skipped == 1 and len(kept.indices) == result.images == 6
    assert all("corrupt" not in str(source.where(int(i))) for i in kept.indices)
    assert [source.targets[int(i)] for i in kept.indices] == kept.targets.tolist()
    assert int((kept.probabilities.argmax(1) == kept.targets).sum()) == result.ensemble.top1_correct  # the ensemble's


def test_cli_eval_report(make_image_folder, tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", classes=3, train=0, val=3)
    out = tmp_path / "report"
    args = ["eval", "--data", str(root / "val"), "--model", "inception_v3", "--width", "0.125", "--num-classes", "3"]
    args += ["--input-size", "75", "--workers", "0", "--engine", "torch", "--crops", "10", "--report", str(out)]
    assert main(args) == 0
    expected = {"index.html", "confusion_matrix.png", "confusion_matrix.csv", "per_class.csv", "per_class.json"}
    expected |= {"reliability.png", "calibration.json"}
    assert expected <= {p.name for p in out.iterdir()}
    assert sum(c["support"] for c in json.loads((out / "per_class.json").read_text())) == 9


def test_missing_scikit_learn_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if not installed
    with pytest.raises(
        MissingExtra, match=r"the evaluation report needs scikit-learn: pip install 'inceptionnet\[report\]'"
    ):
        rp.build_report(known_predictions(), tmp_path)
