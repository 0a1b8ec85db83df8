"""The study's figure: error and loss curves (residual) or zero activations and loss (scaling), over seeds."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inceptionnet.study.design import Study

Panel = tuple[str, str, str, str, Sequence[dict[str, Any]]]  # x key, y key, x label, y label, rows


def plot_study(
    study: Study, epoch_rows: Sequence[dict[str, Any]], step_rows: Sequence[dict[str, Any]], path: Path
) -> None:
    """The study's curves: mean over seeds as a line, lowest-to-highest seed as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups, panels = _layout(study, epoch_rows, step_rows)
    fig, axes = plt.subplots(len(groups), len(panels), figsize=(4.2 * len(panels), 3.6 * len(groups)), squeeze=False)
    for row, group in enumerate(groups):
        for col, (x_key, y_key, x_label, y_label, rows) in enumerate(panels):
            ax = axes[row][col]
            for arm in (a for a in study.arms if a.group == group):
                xs, mean, low, high = _band([r for r in rows if r["arm"] == arm.label], x_key, y_key)
                if x_key == "train_time_s":
                    xs = xs / 60
                if len(xs):
                    (line,) = ax.plot(xs, mean, label=arm.label, linestyle="-" if arm.residual else "--")
                    ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
            ax.set(xlabel=x_label, ylabel=y_label)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_title(group, loc="left", fontsize=10)
        axes[row][0].legend(fontsize=8)
    fig.suptitle(_title(study, epoch_rows, step_rows), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _layout(
    study: Study, epoch_rows: Sequence[dict[str, Any]], step_rows: Sequence[dict[str, Any]]
) -> tuple[list[str], list[Panel]]:
    """One row of panels per comparison group; the residual study plots errors, the scaling study "death"."""
    if study.kind == "residual":
        groups = list(dict.fromkeys(a.group for a in study.arms))
        return groups, [
            ("epoch", "val_top1_error", "epoch", "top-1 error (%)", epoch_rows),
            ("epoch", "val_top5_error", "epoch", "top-5 error (%)", epoch_rows),
            ("train_time_s", "val_top1_error", "training time (min)", "top-1 error (%)", epoch_rows),
            ("step", "loss", "step", "training loss", step_rows),
        ]
    return [study.arms[0].group], [
        ("step", "zero_fraction", "step", "zeros in the last feature map", step_rows),
        ("step", "dead_channels", "step", "all-zero channels", step_rows),
        ("step", "loss", "step", "training loss", step_rows),
        ("epoch", "val_top1_error", "epoch", "top-1 error (%)", epoch_rows),
    ]


def _title(study: Study, epoch_rows: Sequence[dict[str, Any]], step_rows: Sequence[dict[str, Any]]) -> str:
    """The recipe and how many seeds per arm the curves hold (a range while some runs are missing)."""
    ended: dict[str, set[int]] = defaultdict(set)
    for r in (*epoch_rows, *step_rows):
        ended[r["arm"]].add(r["seed"])
    counts = sorted({len(v) for v in ended.values()})
    seeds = str(counts[-1]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    asked = "" if counts == [len(study.seeds)] else f" of {len(study.seeds)} asked"
    return (
        f"{study.kind} study: {study.recipe.width}x width, {study.recipe.input_size}px, {seeds} seed(s) per arm"
        f"{asked}; line = mean, band = min to max over seeds"
    )


def _band(rows: Sequence[dict[str, Any]], x_key: str, y_key: str) -> tuple[np.ndarray, ...]:
    """x, mean, min and max of y over seeds, at the x positions every seed reached (steps: smoothed)."""
    by_seed: dict[int, dict[float, float]] = defaultdict(dict)
    for r in rows:
        if r.get(y_key) is not None and math.isfinite(r[y_key]):
            by_seed[r["seed"]][r[x_key]] = r[y_key]
    if not by_seed:
        return (np.array([]),) * 4
    if x_key == "train_time_s":  # each seed has its own times: average them per epoch instead
        count = min(len(v) for v in by_seed.values())
        xs = np.mean([sorted(v)[:count] for v in by_seed.values()], axis=0)
        ys = np.array([[v[t] for t in sorted(v)[:count]] for v in by_seed.values()])
    else:
        common = sorted(set.intersection(*(set(v) for v in by_seed.values())))
        xs = np.array(common, dtype=float)
        ys = np.array([[v[x] for x in common] for v in by_seed.values()])
        if x_key == "step" and ys.shape[1] > 20:  # a moving average over about 5% of the run
            k = max(1, ys.shape[1] // 20)
            kernel = np.ones(k) / k
            ys = np.array([np.convolve(y, kernel, mode="valid") for y in ys])
            xs = xs[k - 1 :]
    return xs, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)
