"""`inceptionnet study`: the paper's residual-connection claims at small scale."""

from __future__ import annotations

import argparse
import sys

import torch

from inceptionnet.cli.options import add_config_option
from inceptionnet.study import build_study, format_report, run_study
from inceptionnet.training.faults import CheckpointWriteError

STUDY_OPTIONS = (
    *("model", "width", "input_size", "epochs", "batch_size", "lr", "lr_decay_rate", "lr_decay_epochs"),
    *("train_per_class", "val_per_class", "log_every", "num_workers", "device", "precision", "channels_last"),
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="reproduce the paper's residual-connection claims at small scale (curves, tables, plots)",
        description="residual: train Inception-v3 and Inception-ResNet-v1, Inception-v4 and Inception-ResNet-v2 "
        "(released and paper variants) with one recipe and several seeds, and compare their error curves (Figs. "
        "21-26). scaling: train a residual network with more than 1000 filters in its last stage at a high learning "
        "rate with residual scales 1.0, 0.3 and 0.1 and with 1.0 after a warm-up, and watch for 'death' (section "
        "3.3). Writes CSV tables, summary.json and a PNG into --out-dir; running the same command again skips the "
        "finished runs and resumes an interrupted one (docs/reproduction.md).",
    )
    p.add_argument("kind", choices=["residual", "scaling"])
    p.add_argument(
        "--data",
        help="data root with train/ and val/ (or test/), image folders or metadata folders (as train --data); "
        "default: ../shared/data/cifar10 when present, "
        "else the built-in demo data",
    )
    p.add_argument("--out-dir", help="study folder (default: runs/study-KIND, or runs/study-KIND-quick)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3; --quick uses at most 2)")
    p.add_argument("--quick", action="store_true", help="a tiny version of the study, about a minute on a CPU")
    p.add_argument("--threads", type=int, help="CPU threads of this process (torch.set_num_threads)")
    recipe = p.add_argument_group("recipe: each option replaces the study's value (docs/reproduction.md)")
    for name in STUDY_OPTIONS:
        add_config_option(recipe, name, default=None, suffix=" (scaling study only)" if name == "model" else "")
    recipe.add_argument(
        "--warmup-epochs", type=float, default=2.0, help="scaling only: the warm-up arm's linear warm-up (default 2)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    overrides = {name: getattr(args, name) for name in STUDY_OPTIONS}
    study = build_study(
        args.kind, seeds=args.seeds, quick=args.quick, data=args.data, warmup_epochs=args.warmup_epochs, **overrides
    )
    out_dir = args.out_dir or f"runs/study-{args.kind}{'-quick' if args.quick else ''}"
    try:
        summary = run_study(study, out_dir)
    except CheckpointWriteError as err:  # disk full, permission denied: the run's last checkpoint is intact
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_report(summary))
    print(f"tables, summary.json and {args.kind}.png in {out_dir}")
    if not summary["complete"]:
        print(f"the study is incomplete; continue with the same command (--out-dir {out_dir})", file=sys.stderr)
        return 130
    return 0
