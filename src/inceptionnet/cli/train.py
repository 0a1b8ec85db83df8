"""`inceptionnet train`: the paper's recipe on an image folder (with no arguments: the built-in demo)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from inceptionnet.cli.options import add_config_option
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.faults import CheckpointWriteError, TrainingDiverged
from inceptionnet.training.loop import train
from inceptionnet.training.presets import PRESETS, resolve_config
from inceptionnet.training.rundir import Resume
from inceptionnet.weights.runfolder import LAST, PREVIOUS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network with the paper's recipe (with no arguments: the built-in demo)",
        description="Train on an ImageFolder (DATA/train/<class>/*, DATA/val/<class>/*) with the paper's recipe "
        "(docs/training.md). With no arguments: the demo preset on the built-in CIFAR-10 subset (minutes on a CPU). "
        "Multi-GPU and multi-node: torchrun --nproc_per_node=N -m inceptionnet train .... Each option overrides "
        "the preset (or, with --resume, the checkpoint's configuration). The same command again continues the run "
        "whose checkpoint --out-dir holds (after a crash, a SIGTERM or a scheduler's requeue), or reports that it "
        "has finished; a folder holding a run of another configuration is refused (exit status 2). Under torchrun "
        "--max-restarts a fixed --out-dir is required: the restarted workers continue from its checkpoint. SIGTERM or "
        "Ctrl-C saves a checkpoint and exits with 128 + the signal number; a NaN or infinite loss, or a checkpoint "
        "that cannot be written, stops with exit status 1.",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="named configuration (default: finetune with --weights, else paper with --data, else demo)",
    )
    p.add_argument(
        "--resume",
        metavar="PATH",
        help=f"continue the run of a checkpoint file or run folder (its {LAST}; RUN/{PREVIOUS} is the recovery "
        "copy of the epoch end before it), with the options given here changed; output in the checkpoint's folder",
    )
    demo, paper = PRESETS["demo"], PRESETS["paper"]
    for f in dataclasses.fields(TrainConfig):
        d, q = getattr(demo, f.name), getattr(paper, f.name)
        shown = "" if d == q is None else f" [default: {q}]" if d == q else f" [paper preset: {q}, demo preset: {d}]"
        add_config_option(p, f.name, default=argparse.SUPPRESS, suffix=shown)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    resume = Resume.read(args.resume) if args.resume else None
    if resume is not None:
        # The run goes on in the checkpoint's folder, not in the out_dir stored in it (a relative path
        # then named a folder relative to where that command ran).
        overrides.setdefault("out_dir", str(resume.source.parent))
    cfg = resolve_config(preset_name=args.preset, overrides=overrides, stored=resume and resume.payload["config"])
    try:
        result = train(cfg, resume=resume)
    except (TrainingDiverged, CheckpointWriteError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if result.stopped_by is not None and result.stopped_by.by_signal:
        again = "the same command, or " if "out_dir" in overrides else ""  # a default folder is new each time
        print(f"continue with {again}inceptionnet train --resume {result.out_dir}", file=sys.stderr)
    return result.exit_status
