"""Reading a study's runs back into rows (from each run's metrics.jsonl) and writing them as CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inceptionnet.study.design import STATUS, Study, run_dir
from inceptionnet.training.runlog import latest_records
from inceptionnet.weights.runfolder import RunFolder


def collect(study: Study, out_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(epoch rows, step rows, run rows) of every run of the study, read from the runs' metrics.jsonl."""
    epoch_rows: list[dict[str, Any]] = []
    step_rows: list[dict[str, Any]] = []
    run_rows: list[dict[str, Any]] = []
    for arm in study.arms:
        for seed in study.seeds:
            folder = run_dir(out_dir, arm, seed)
            if not RunFolder(folder).metrics.exists() and not (folder / STATUS).exists():
                continue  # not started
            records = RunFolder(folder).read_metrics()
            epochs = latest_records(records, "epoch")
            steps = latest_records(records, "step")
            status_file = folder / STATUS
            status = json.loads(status_file.read_text())["status"] if status_file.exists() else "unfinished"
            ident = {"arm": arm.label, "group": arm.group, "model": arm.model, "seed": seed}
            elapsed = 0.0
            for rec in epochs:
                elapsed += rec.get("train_time_s", rec["epoch_time_s"])
                epoch_rows.append(
                    ident
                    | {
                        "epoch": rec["epoch"],
                        "step": rec["step"],
                        "train_time_s": round(elapsed, 3),
                        "train_loss": rec["train_loss"],
                        "val_top1_error": rec["val_top1_error"],
                        "val_top5_error": rec["val_top5_error"],
                    }
                )
            for rec in steps:
                keys = ("epoch", "loss", "lr", "grad_norm", "zero_fraction", "dead_channels")
                step_rows.append(ident | {"step": rec["step"], **{k: rec.get(k) for k in keys}})
            run_rows.append(
                ident | {"status": status, "epochs": len(epochs), "steps": steps[-1]["step"] if steps else 0}
            )
    return epoch_rows, step_rows, run_rows


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """`rows` as CSV; the columns are every key in the order first seen (a missing value is left empty)."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
