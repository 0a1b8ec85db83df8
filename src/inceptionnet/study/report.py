"""What a study's runs measured, over seeds: tables, summary, verdicts and the plot.

Spread over seeds is shown as the standard deviation (sample, n-1) in the tables and as the band
between the lowest and the highest seed in the plots. Written into the study folder:

- `epochs.csv`: one row per run and epoch (cumulative training seconds, loss, top-1/top-5 error);
- `steps.csv`: one row per logged step (loss, lr, gradient norm, zero activations before pooling);
- `runs.csv`: one row per run (finished / diverged / unfinished);
- `summary.csv`: per arm and epoch, mean, std, min and max over seeds;
- `summary.json`: the numbers the verdicts rest on; `<kind>.png`: the curves.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets.folder import find_classes

from inceptionnet.data import DEMO_DATA
from inceptionnet.study.design import Study, describe
from inceptionnet.study.plot import plot_study
from inceptionnet.study.tables import collect, write_csv

DEAD_ZERO_FRACTION = 0.99  # the last feature map is (nearly) all zeros: the paper's "died"
STALLED_LOSS_RATIO = 0.95  # the loss of the last tenth of the steps is at or above 95% of chance level, ln(classes)


def write_results(study: Study, out_dir: Path) -> dict[str, Any]:
    """Write every table, the plot and summary.json of the study in `out_dir`; return the summary."""
    epoch_rows, step_rows, run_rows = collect(study, out_dir)
    write_csv(epoch_rows, out_dir / "epochs.csv")
    write_csv(step_rows, out_dir / "steps.csv")
    write_csv(run_rows, out_dir / "runs.csv")
    # The summary, the per-epoch table and the plot cover the runs that have ended (finished or diverged).
    ended = {(r["arm"], r["seed"]) for r in run_rows if r["status"] != "unfinished"}
    epoch_rows = [r for r in epoch_rows if (r["arm"], r["seed"]) in ended]
    step_rows = [r for r in step_rows if (r["arm"], r["seed"]) in ended]
    write_csv(per_epoch_summary(epoch_rows), out_dir / "summary.csv")
    if study.kind == "residual":
        summary = residual_summary(study, epoch_rows)
    else:
        summary = scaling_summary(study, epoch_rows, step_rows, run_rows)
    summary["complete"] = len(ended) == len(study.arms) * len(study.seeds)
    summary["runs"] = run_rows
    summary["study"] = describe(study)  # the resolved recipe, the arms and the code version
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if epoch_rows or step_rows:
        plot_study(study, epoch_rows, step_rows, out_dir / f"{study.kind}.png")
    return summary


def stats(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max; NaN everywhere when empty."""
    a = np.asarray([v for v in values if v is not None], dtype=float)
    if a.size == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {"mean": float(a.mean()), "std": std, "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def per_epoch_summary(epoch_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per arm and epoch: mean, std, min and max over seeds of the errors, loss and training time."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in epoch_rows:
        groups[(row["arm"], row["epoch"])].append(row)
    out = []
    for (arm, epoch), rows in groups.items():
        line: dict[str, Any] = {"arm": arm, "epoch": epoch, "seeds": len(rows)}
        for key in ("val_top1_error", "val_top5_error", "train_loss", "train_time_s"):
            s = stats([r[key] for r in rows])
            line |= {f"{key}_{k}": round(s[k], 4) for k in ("mean", "std", "min", "max")}
        out.append(line)
    return out


def _by_run(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    runs: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        runs[(row["arm"], row["seed"])].append(row)
    return runs


# -- residual: how fast the error falls ------------------------------------------------------------------------


def residual_summary(study: Study, epoch_rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per arm: final and epoch-averaged errors over seeds. Per residual arm: its gaps to the plain network.

    The epoch-averaged top-1 error (the area under the error curve) measures training speed: a
    network whose error falls sooner has a lower average even when the final errors agree.
    `epochs_to_plain_final`: the first epoch at which the residual arm's mean top-1 error is at or
    below the plain network's final mean top-1 error.
    """
    per_run: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    for (arm, seed), rows in _by_run(epoch_rows).items():
        top1 = [r["val_top1_error"] for r in rows]
        per_run[arm][seed] = {
            "final_top1": top1[-1],
            "final_top5": rows[-1]["val_top5_error"],
            "mean_top1": float(np.mean(top1)),
            "train_time_s": rows[-1]["train_time_s"],
        }
    curves = _mean_curves(epoch_rows, "val_top1_error")
    arms: dict[str, Any] = {}
    for arm in study.arms:
        seeds = per_run.get(arm.label, {})
        arms[arm.label] = {
            "model": arm.model,
            "group": arm.group,
            "residual": arm.residual,
            **{key: stats([v[key] for v in seeds.values()]) for key in ("final_top1", "final_top5", "mean_top1")},
            "train_time_s": stats([v["train_time_s"] for v in seeds.values()]),
            "mean_top1_curve": curves.get(arm.label, []),
        }
    comparisons = [
        _comparison(plain.label, res.label, per_run, arms)
        for plain in (a for a in study.arms if not a.residual)
        for res in (a for a in study.arms if a.residual and a.group == plain.group)
    ]
    return {"kind": "residual", "arms": arms, "comparisons": comparisons}


def _comparison(
    plain: str, res: str, per_run: dict[str, dict[int, dict[str, float]]], arms: dict[str, Any]
) -> dict[str, Any]:
    """A residual arm against the plain network of its group, paired by seed."""
    p, r = per_run.get(plain, {}), per_run.get(res, {})
    common = sorted(set(p) & set(r))
    plain_final = arms[plain]["final_top1"]["mean"]
    res_curve = arms[res]["mean_top1_curve"]
    reach = next((i + 1 for i, v in enumerate(res_curve) if v <= plain_final), None)
    return {
        "plain": plain,
        "residual": res,
        "seeds": common,
        # positive: the residual network has the lower error (paired by seed)
        "mean_top1_gap": stats([p[s]["mean_top1"] - r[s]["mean_top1"] for s in common]),
        "final_top1_gap": stats([p[s]["final_top1"] - r[s]["final_top1"] for s in common]),
        "seeds_residual_ahead": sum(p[s]["mean_top1"] > r[s]["mean_top1"] for s in common),
        "epochs_to_plain_final": reach,
        "epochs": len(res_curve),
        "time_ratio": _ratio(arms[res]["train_time_s"]["mean"], arms[plain]["train_time_s"]),
    }


def _ratio(value: float, base: dict[str, float]) -> float:
    return value / base["mean"] if base["mean"] else math.nan


def _mean_curves(rows: Sequence[dict[str, Any]], key: str) -> dict[str, list[float]]:
    """Per arm, the mean of `key` over seeds at each epoch (only epochs that every seed reached)."""
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    seeds: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        values[row["arm"]][row["epoch"]].append(row[key])
        seeds[row["arm"]].add(row["seed"])
    return {arm: [float(np.mean(v[e])) for e in sorted(v) if len(v[e]) == len(seeds[arm])] for arm, v in values.items()}


# -- scaling: does the network die? -----------------------------------------------------------------------------


def run_fate(steps: Sequence[dict[str, Any]], status: str, *, num_classes: int) -> dict[str, Any]:
    """One run's outcome from its logged steps.

    died: the zero fraction before pooling, averaged over the last tenth of the logged steps, is
    at least 0.99; stalled: the loss of the last tenth is still at or above 95% of ln(num_classes),
    the loss of a network that predicts every class alike (with or without label smoothing), i.e.
    it has learnt next to nothing; diverged: a NaN/Inf loss stopped the run. The first tenth of a
    high-learning-rate run often holds a loss far above chance, so a fall from there proves little.
    """
    zeros = [s["zero_fraction"] for s in steps if s.get("zero_fraction") is not None]
    dead_channels = [s["dead_channels"] for s in steps if s.get("dead_channels") is not None]
    losses = [s["loss"] for s in steps]
    tenth = max(1, len(steps) // 10)
    final_zero = float(np.mean(zeros[-tenth:])) if zeros else math.nan
    first_dead = next((s["step"] for s in steps if (s.get("zero_fraction") or 0) >= DEAD_ZERO_FRACTION), None)
    first_loss, last_loss = (float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:]))) if losses else (0, 0)
    return {
        "diverged": status == "diverged",
        "died": final_zero >= DEAD_ZERO_FRACTION,
        "stalled": bool(losses) and last_loss >= STALLED_LOSS_RATIO * math.log(num_classes),
        "final_zero_fraction": final_zero,
        "final_dead_channels": float(np.mean(dead_channels[-tenth:])) if dead_channels else math.nan,
        "max_zero_fraction": max(zeros) if zeros else math.nan,
        "first_dead_step": first_dead,
        "first_loss": first_loss,
        "last_loss": last_loss,
    }


def scaling_summary(
    study: Study,
    epoch_rows: Sequence[dict[str, Any]],
    step_rows: Sequence[dict[str, Any]],
    run_rows: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """Per arm: how many of its ended runs died, stalled or diverged (`run_fate`), and their final numbers."""
    steps, epochs = _by_run(step_rows), _by_run(epoch_rows)
    status = {(r["arm"], r["seed"]): r["status"] for r in run_rows}
    num_classes = len(find_classes(str(Path(study.recipe.data or DEMO_DATA) / "train"))[0])
    arms: dict[str, Any] = {}
    for arm in study.arms:
        fates = {}
        for seed in study.seeds:
            if status.get((arm.label, seed), "unfinished") == "unfinished":
                continue
            fate = run_fate(steps.get((arm.label, seed), []), status[(arm.label, seed)], num_classes=num_classes)
            rows = epochs.get((arm.label, seed), [])
            fate["final_top1"] = rows[-1]["val_top1_error"] if rows else None
            fates[seed] = fate
        arms[arm.label] = {
            "overrides": arm.overrides,
            "runs": len(fates),
            "died": sum(f["died"] for f in fates.values()),
            "stalled": sum(f["stalled"] for f in fates.values()),
            "diverged": sum(f["diverged"] for f in fates.values()),
            "final_top1": stats([f["final_top1"] for f in fates.values()]),
            "final_zero_fraction": stats([f["final_zero_fraction"] for f in fates.values()]),
            "final_dead_channels": stats([f["final_dead_channels"] for f in fates.values()]),
            "per_seed": fates,
        }
    return {"kind": "scaling", "num_classes": num_classes, "arms": arms}


def format_report(summary: dict[str, Any]) -> str:
    """A short plain-text table of the summary, printed at the end of a study."""
    lines = []
    if summary["kind"] == "residual":
        lines.append(f"{'arm':30s} {'final top-1 err':>18s} {'final top-5 err':>18s} {'mean top-1 err':>18s}")
        for label, a in summary["arms"].items():
            cells = [_pm(a[k]) for k in ("final_top1", "final_top5", "mean_top1")]
            lines.append(f"{label:30s} " + " ".join(f"{c:>18s}" for c in cells))
        for c in summary["comparisons"]:
            reach = c["epochs_to_plain_final"]
            lines.append(
                f"{c['residual']} vs {c['plain']}: mean top-1 gap {_pm(c['mean_top1_gap'])} pp "
                f"(residual ahead in {c['seeds_residual_ahead']}/{len(c['seeds'])} seeds), final gap "
                f"{_pm(c['final_top1_gap'])} pp, reaches the plain network's final error at epoch "
                f"{reach if reach else 'never'} of {c['epochs']}, time per run x{c['time_ratio']:.2f}"
            )
    else:
        lines.append(f"{'arm':26s} {'runs':>4s} {'died':>4s} {'stalled':>7s} {'diverged':>8s} {'final top-1 err':>18s}")
        for label, a in summary["arms"].items():
            lines.append(
                f"{label:26s} {a['runs']:4d} {a['died']:4d} {a['stalled']:7d} {a['diverged']:8d} "
                f"{_pm(a['final_top1']):>18s}  at the end: zeros before pooling {_pm(a['final_zero_fraction'], 3)}, "
                f"all-zero channels {_pm(a['final_dead_channels'], 3)}"
            )
    return "\n".join(lines)


def _pm(s: dict[str, float], digits: int = 2) -> str:
    return "n/a" if s["n"] == 0 else f"{s['mean']:.{digits}f} +- {s['std']:.{digits}f}"
