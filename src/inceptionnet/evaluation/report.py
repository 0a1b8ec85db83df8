"""`eval --report DIR`: the numbers behind one evaluation's predictions, as files and one HTML page to look at.

Everything is drawn from `Predictions` (the averaged probabilities the scores were counted from), so
the report agrees with the top-1 the command prints. The page (`DIR/index.html`) references its
pictures relatively and loads nothing else, so the folder can be copied or attached as it is.
scikit-learn (the `report` extra) computes the confusion matrix and the per-class metrics. A network whose
card has a temperature gets its reliability diagram twice, before and after temperature scaling; `eval --ood`
adds the unknown-image scores (unknown.py).
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inceptionnet.data import ImageSource
from inceptionnet.evaluation import figures
from inceptionnet.evaluation.scores import Predictions, balanced_accuracy
from inceptionnet.evaluation.unknown import UnknownResult
from inceptionnet.extras import require
from inceptionnet.names import csv_cell

MATRIX_MAX_CLASSES = 30  # above this, the most confused pairs replace the matrix picture
CALIBRATION_BINS = 15
CONFUSED_PAIRS = 20
MISTAKES_SHOWN = 16


class ReportError(ValueError):
    """The report cannot be built: no predictions. (scikit-learn missing is MissingExtra.)"""


@dataclass(frozen=True)
class Calibration:
    """Confidence (top probability) against accuracy in equal-width bins, and the expected calibration error."""

    ece: float  # sum over bins of (images in bin / images) * |accuracy - mean confidence|
    edges: tuple[float, ...]  # bins + 1 edges over [0, 1]
    counts: tuple[int, ...]
    accuracy: tuple[float, ...]  # NaN for an empty bin
    confidence: tuple[float, ...]  # NaN for an empty bin

    def to_dict(self) -> dict[str, Any]:
        rows = zip(self.edges, self.edges[1:], self.counts, self.accuracy, self.confidence, strict=False)
        bins = [
            {"low": lo, "high": hi, "images": n, "accuracy": _number(a), "confidence": _number(c)}
            for lo, hi, n, a, c in rows
        ]
        return {"ece": round(self.ece, 6), "bins": bins}


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> Calibration:
    """Bin each image by its top probability (bin b holds [b/B, (b+1)/B), the last one includes 1.0)."""
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(which, weights=correct.astype(float), minlength=bins) / counts
        conf = np.bincount(which, weights=confidence, minlength=bins) / counts
    total = max(int(counts.sum()), 1)
    ece = float(sum(n / total * abs(a - c) for n, a, c in zip(counts, acc, conf, strict=True) if n))
    edges = tuple(round(b / bins, 6) for b in range(bins + 1))
    return Calibration(ece, edges, tuple(int(n) for n in counts), tuple(acc.tolist()), tuple(conf.tolist()))


def build_report(
    predictions: Predictions,
    out_dir: str | Path,
    *,
    source: ImageSource | None = None,
    title: str = "evaluation",
    unknown: UnknownResult | None = None,
) -> Path:
    """Write the report of `predictions` into `out_dir` and return its page, `out_dir/index.html`.

    `source`: the data source the predictions' indices point into, for the thumbnails of the most
    confident mistakes (None: the sheet shows the class names and probabilities alone). `unknown`: the
    unknown-image scores of `eval --ood`, a section of their own (and unknown.json).
    """
    metrics = sklearn_metrics()
    if len(predictions.targets) == 0:
        raise ReportError("no image was scored, so there is nothing to report; check the --data split")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    probs = predictions.probabilities.numpy()
    targets, names = predictions.targets.numpy(), list(predictions.class_names)
    predicted, confidence = probs.argmax(1), probs.max(1)
    labels = list(range(len(names)))
    matrix = metrics.confusion_matrix(targets, predicted, labels=labels)
    _write_matrix_csv(out / "confusion_matrix.csv", matrix, names)
    rows = _per_class(metrics, targets, predicted, labels, names)
    _write_rows(out / "per_class.csv", rows)
    (out / "per_class.json").write_text(json.dumps(rows, indent=2) + "\n")
    cal = calibration(confidence, predicted == targets)
    before = _uncalibrated(predictions, targets)
    accuracy = float((predicted == targets).mean())
    balanced = matrix_balanced_accuracy(matrix)
    summary = {
        "images": len(targets),
        "top1_accuracy": round(accuracy, 6),
        "balanced_accuracy": round(balanced, 6),
        "calibration": cal.to_dict(),
        **({"calibration_before_temperature": before.to_dict()} if before is not None else {}),
    }
    (out / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n")
    parts = [_confusion_part(out, matrix, names), _calibration_part(out, cal, before), _per_class_part(rows)]
    parts.insert(2, _mistakes_part(out, predictions, predicted, source))
    if unknown is not None:
        (out / "unknown.json").write_text(json.dumps(unknown.to_dict(), indent=2) + "\n")
        parts.insert(2, _section("Unknown images", unknown.table(), ""))
    page = out / "index.html"
    page.write_text(_page(title, len(targets), accuracy, balanced, cal.ece, parts))
    return page


def sklearn_metrics() -> Any:
    """scikit-learn's metrics module, or MissingExtra naming the extra that installs it."""
    return require("sklearn.metrics", extra="report", purpose="the evaluation report")


def _per_class(metrics: Any, targets: np.ndarray, predicted: np.ndarray, labels: list[int], names: list[str]) -> list:
    """Precision, recall, F1 and support of every class (0 where a class is never predicted or never present)."""
    p, r, f, s = metrics.precision_recall_fscore_support(targets, predicted, labels=labels, zero_division=0)
    return [
        {
            "class": n,
            "precision": round(float(a), 6),
            "recall": round(float(b), 6),
            "f1": round(float(c), 6),
            "support": int(d),
        }
        for n, a, b, c, d in zip(names, p, r, f, s, strict=True)
    ]


def matrix_balanced_accuracy(matrix: np.ndarray) -> float:
    """The balanced accuracy (scores.balanced_accuracy) of a confusion matrix (true classes in rows), a fraction."""
    return balanced_accuracy(np.diag(matrix).tolist(), matrix.sum(1).tolist())


def confused_pairs(matrix: np.ndarray, names: Sequence[str], top: int = CONFUSED_PAIRS) -> list[dict[str, Any]]:
    """The `top` off-diagonal cells of a confusion matrix, largest count first (ties: class order)."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    support = matrix.sum(1)
    pairs = []
    for t, p in zip(*np.unravel_index(order, off.shape), strict=True):
        if off[t, p] == 0:
            break
        share = off[t, p] / support[t]
        pairs.append({"true": names[t], "predicted": names[p], "images": int(off[t, p]), "share": round(share, 6)})
    return pairs


def _confusion_part(out: Path, matrix: np.ndarray, names: list[str]) -> str:
    if len(names) <= MATRIX_MAX_CLASSES:
        figures.confusion_matrix(matrix, names, out / "confusion_matrix.png")
        picture = _img("confusion_matrix.png", "confusion matrix")
        return _section("Confusion matrix", "Rows: true class, normalised to 1 per row.", picture)
    pairs = confused_pairs(matrix, names)
    _write_rows(out / "confused_pairs.csv", pairs)
    figures.confused_pairs(pairs, out / "confused_pairs.png")
    table = _table(["true", "predicted", "images", "share"], [list(p.values()) for p in pairs])
    text = f"{len(names)} classes: the most confused pairs (share: of the true class's images)."
    return _section("Most confused pairs", text, _img("confused_pairs.png", "confused pairs") + table)


def _uncalibrated(predictions: Predictions, targets: np.ndarray) -> Calibration | None:
    """The calibration of the probabilities without the card's temperature (None: the card has none)."""
    if predictions.uncalibrated is None:
        return None
    probs = predictions.uncalibrated.numpy()
    return calibration(probs.max(1), probs.argmax(1) == targets)


def _calibration_part(out: Path, cal: Calibration, before: Calibration | None) -> str:
    text = f"Expected calibration error over {len(cal.counts)} equal-width bins: {cal.ece:.4f}."
    if before is None:
        figures.reliability(cal.edges, cal.accuracy, cal.counts, cal.ece, out / "reliability.png")
        return _section("Reliability", text, _img("reliability.png", "reliability diagram"))
    label = "before temperature scaling: "
    figures.reliability(*_bars(before), out / "reliability_before.png", label=label)
    figures.reliability(*_bars(cal), out / "reliability.png", label=label.replace("before", "after"))
    text = (
        f"{text[:-1]} with the card's temperature, {before.ece:.4f} without it (the first diagram before temperature "
        "scaling, the second after)."
    )
    pictures = _img("reliability_before.png", "reliability before temperature scaling")
    pictures += _img("reliability.png", "reliability after temperature scaling")
    return _section("Reliability", text, pictures)


def _bars(cal: Calibration) -> tuple[tuple[float, ...], tuple[float, ...], tuple[int, ...], float]:
    return cal.edges, cal.accuracy, cal.counts, cal.ece


def _mistakes_part(out: Path, predictions: Predictions, predicted: np.ndarray, source: ImageSource | None) -> str:
    targets, probs = predictions.targets.numpy(), predictions.probabilities.numpy()
    wrong = np.flatnonzero(predicted != targets)
    if len(wrong) == 0:
        return _section("Most confident mistakes", "No mistake.", "")
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:MISTAKES_SHOWN]
    names = predictions.class_names
    tiles = [
        (
            None if source is None else source.load(int(predictions.indices[i])),
            names[targets[i]],
            names[predicted[i]],
            float(probs[i, predicted[i]]),
        )
        for i in wrong
    ]
    figures.contact_sheet(tiles, out / "mistakes.png")
    return _section(
        "Most confident mistakes",
        "True class, predicted class and its probability.",
        _img("mistakes.png", "most confident mistakes"),
    )


def _per_class_part(rows: list[dict[str, Any]]) -> str:
    keys = ["class", "precision", "recall", "f1", "support"]
    return _section(
        "Per class", "Also in per_class.csv and per_class.json.", _table(keys, [list(r.values()) for r in rows])
    )


def _write_matrix_csv(path: Path, matrix: np.ndarray, names: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *map(csv_cell, names)])
        w.writerows([csv_cell(name), *(int(x) for x in row)] for name, row in zip(names, matrix, strict=True))


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["class"])
        w.writeheader()
        w.writerows({key: csv_cell(value) for key, value in row.items()} for row in rows)


def _number(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 6)


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{alt}">'


def _section(heading: str, text: str, body: str) -> str:
    return f"<h2>{heading}</h2>\n<p>{html.escape(text)}</p>\n{body}\n"


def _table(keys: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>\n" for r in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}</table>"


def _page(title: str, images: int, accuracy: float, balanced: float, ece: float, parts: list[str]) -> str:
    style = "body{font-family:sans-serif;max-width:60em;margin:auto}img{max-width:100%}td,th{padding:0 .6em}"
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
        f"<p>{images} images, top-1 accuracy {100 * accuracy:.2f}%, balanced accuracy (mean per-class recall) "
        f"{100 * balanced:.2f}%, ECE {ece:.4f}.</p>\n" + "".join(parts) + "</body></html>\n"
    )
