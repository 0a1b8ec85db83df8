"""`inceptionnet bench`: images/s and peak memory, side by side with a reference."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inceptionnet.models import list_models
from inceptionnet.perf.bench import BenchConfig, format_result, run_benchmark


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="images/s and peak memory, optionally side by side with timm",
        description="Time inference or training steps of a network; with --reference timm, time timm's "
        "equivalent in the same process, alternating step by step, and report the speed-up's spread.",
    )
    p.add_argument("--model", required=True, choices=list_models())
    p.add_argument("--batch-size", type=int, default=16, help="images per step (default 16)")
    p.add_argument("--input-size", type=int, default=299, help="square input size in pixels (default 299)")
    p.add_argument("--mode", choices=["infer", "train"], default="infer", help="forward only, or a training step")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="compute precision")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True, help="NHWC (default on)")
    p.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="BN-folded, merged 1x1 inference network (default: on for infer, off for train)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile our network (slow first step)")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing per block (train)")
    p.add_argument("--reference", choices=["timm"], default=None, help="also time timm's equivalent network")
    p.add_argument("--reference-channels-last", action="store_true", help="run the reference in channels_last")
    p.add_argument("--reference-dtype", choices=["fp32", "bf16", "fp16"], default=None, help="default: --dtype")
    p.add_argument("--iters", type=int, default=10, help="timed rounds (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model first (default 2)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier (no reference unless 1.0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = BenchConfig(
        model=args.model,
        batch_size=args.batch_size,
        input_size=args.input_size,
        mode=args.mode,
        dtype=args.dtype,
        channels_last=args.channels_last,
        fused=args.fused,
        compile=args.compile,
        checkpointing=args.checkpointing,
        reference=args.reference,
        reference_channels_last=args.reference_channels_last,
        reference_dtype=args.reference_dtype,
        iters=args.iters,
        warmup=args.warmup,
        device=args.device,
        width=args.width,
    )
    result = run_benchmark(cfg, log=lambda msg: print(msg, file=sys.stderr))
    print(format_result(result))
    if args.json is not None:
        args.json.write_text(result.to_json() + "\n")
        print(f"wrote {args.json}")
    return 0
