"""The pictures of the evaluation report (`evaluation.report`), drawn with matplotlib off screen as PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inceptionnet.names import plot_text

Tile = tuple[Image.Image | None, str, str, float]  # thumbnail (None: not available), true, predicted, probability


def _pyplot() -> Any:
    """matplotlib's pyplot drawing off screen; imported when a picture is drawn, not when a command starts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: Path) -> None:
    """Each row (true class) divided by its images, so classes of any size read alike; empty rows stay 0."""
    support = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, support, out=np.zeros(matrix.shape), where=support > 0)
    size = 2.5 + 0.35 * len(names)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(size + 1, size))
    shown = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ticks, shown_names = range(len(names)), [plot_text(n) for n in names]
    ax.set_xticks(ticks, shown_names, rotation=60, ha="right")
    ax.set_yticks(ticks, shown_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if len(names) <= 15:
        for (t, p), v in np.ndenumerate(normalised):
            ax.text(p, t, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.5 else "black")
    fig.colorbar(shown, ax=ax, fraction=0.046, label="share of the true class")
    _save(fig, path)


def confused_pairs(pairs: Sequence[dict[str, Any]], path: Path) -> None:
    """The most confused pairs as horizontal bars, the largest on top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 1 + 0.3 * max(len(pairs), 1)))
    labels = [plot_text(f"{p['true']} -> {p['predicted']}") for p in pairs]
    ax.barh(range(len(pairs)), [p["images"] for p in pairs], color="tab:blue")
    ax.set_yticks(range(len(pairs)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("images (true -> predicted)")
    _save(fig, path)


def reliability(
    edges: Sequence[float], accuracy: Sequence[float], counts: Sequence[int], ece: float, path: Path, *, label: str = ""
) -> None:
    """Accuracy per confidence bin (NaN: empty) against the diagonal of a calibrated network, bin sizes below;
    `label` opens the title."""
    edges = np.array(edges)
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=(3, 1), sharex=True)
    acc = np.nan_to_num(np.array(accuracy))
    top.bar(centres, acc, width=width, edgecolor="black", color="tab:blue", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"{label}ECE = {ece:.4f}")
    top.legend(loc="upper left")
    bottom.bar(centres, counts, width=width, edgecolor="black", color="tab:gray")
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    _save(fig, path)


def contact_sheet(tiles: Sequence[Tile], path: Path, *, columns: int = 4) -> None:
    """One tile per mistake: its thumbnail, its true class, the predicted class and that class's probability."""
    rows = max(1, -(-len(tiles) // columns))
    plt = _pyplot()
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, true, predicted, prob) in zip(axes.flat, tiles, strict=False):
        if image is not None:
            image = image.copy()
            image.thumbnail((160, 160))
            ax.imshow(image)
        ax.set_title(plot_text(f"true: {true}\npred: {predicted} ({prob:.2f})"), fontsize=8)
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
