"""`inceptionnet bench`: images/s and peak memory of ours on its engine, side by side with references."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import sys
from pathlib import Path

import torch

from inceptionnet.inference.engines import ENGINES
from inceptionnet.models import list_models
from inceptionnet.perf.bench import BenchConfig, format_result, run_benchmark
from inceptionnet.perf.loaderbench import LoaderBenchConfig, format_loader_result, run_loader_benchmark
from inceptionnet.perf.measure import machine
from inceptionnet.perf.references import REFERENCES
from inceptionnet.perf.servebench import ServeBenchConfig, format_serve_result, run_serve_benchmark
from inceptionnet.quantization.int8folder import describe_quantized


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="images/s and peak memory, optionally side by side with timm and the inference engines",
        description="Time inference or training steps of a network on the engine predict and eval run; with "
        "--reference, time timm's equivalent network (on PyTorch in NCHW or channels_last, or exported to ONNX and "
        "run on ONNX Runtime or OpenVINO) in the same process, in turn step by step, and report each speed-up's "
        "spread over the rounds. --mode loader times the training input pipeline instead: ours from a folder and "
        "from shards, timm's and torchvision's loaders, images/s per core.",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", choices=list_models(), help="the network")
    which.add_argument(
        "--int8",
        metavar="FOLDER",
        help="time the int8 network of an `inceptionnet quantize` folder as ours (its network, input size and "
        "classes; ONNX Runtime or OpenVINO as --engine picks)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default 16; loader: 32)")
    p.add_argument("--input-size", type=int, default=299, help="square input size in pixels (default 299)")
    p.add_argument(
        "--mode",
        choices=["infer", "train", "loader", "serve"],
        default="infer",
        help="forward, training step, input pipeline, or the HTTP server under load (`inceptionnet serve`)",
    )
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="compute precision")
    p.add_argument(
        "--allow-emulated-bf16",
        action="store_true",
        help="time bf16 on a CPU without AVX512-BF16 or AMX, which emulates it many times slower than fp32 "
        "(refused without this option)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="what runs ours (default auto: the engine predict and eval pick; torch for the torch-only options "
        "--compile, --no-fused, --no-channels-last and --mode train)",
    )
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True, help="NHWC (default on)")
    p.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="BN-folded, merged 1x1 inference network on torch (default: on for infer, off for train)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile our network (slow first step)")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing per block (train)")
    merged = "train: each block's sibling 1x1 heads as one conv, as train runs them (default on; off: as written)"
    p.add_argument("--merged-heads", action=argparse.BooleanOptionalAction, default=True, help=merged)
    _add_reference_options(p)
    p.add_argument("--iters", type=int, default=None, help="timed rounds (default 10; loader: 3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model first (default 2)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier (no reference unless 1.0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    _add_loader_options(p.add_argument_group("--mode loader"))
    _add_serve_options(p.add_argument_group("--mode serve"))
    p.set_defaults(func=run)


def _add_reference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reference",
        nargs="+",
        action="extend",
        choices=[*REFERENCES, "none"],
        default=[],
        metavar="REF",
        help="also time timm's equivalent network, one or more of: timm (PyTorch, NCHW, timm's default), "
        "timm-channels-last, onnxruntime, openvino (timm's network exported to ONNX; CPU, inference), "
        "or none (the default)",
    )
    p.add_argument("--reference-dtype", choices=["fp32", "bf16", "fp16"], default=None, help="default: --dtype")


def _add_loader_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--data", default=None, help="JPEGs (a folder, any depth) for the loaders; default: ../shared's ImageNet sample"
    )
    g.add_argument("--images", type=int, default=1000, help="how many of them (default 1000)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader workers (default: one per core)")
    g.add_argument("--seconds", type=float, default=10.0, help="counted seconds per loader per round (default 10)")


def _add_serve_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--clients",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=(1, 4, 16, 64),
        help="concurrent clients, one row each (default 1,4,16,64)",
    )
    g.add_argument("--requests", type=int, default=200, help="requests per client count (default 200)")
    g.add_argument("--max-batch", type=int, default=16, help="the server's --max-batch and the offline batch (16)")
    g.add_argument("--max-wait-ms", type=float, default=5.0, help="the server's --max-wait-ms (default 5)")
    g.add_argument("--bad-fraction", type=float, default=0.1, help="bad requests in the 2,000 of the mix (0.1)")


def run(args: argparse.Namespace) -> int:
    if args.mode == "loader":
        return run_loader(args)
    if args.mode == "serve":
        return run_serve(args)
    if args.model is None and args.int8 is None:
        raise ValueError("name the network: --model NAME or --int8 FOLDER (or --mode loader)")
    args.iters = 10 if args.iters is None else args.iters
    args.batch_size = 16 if args.batch_size is None else args.batch_size
    model, input_size, num_classes = args.model, args.input_size, 1000
    if args.int8 is not None:
        _, card = describe_quantized(args.int8)  # the engine opens it once, in the benchmark
        model, input_size, num_classes = card.model_name, card.preprocessing.input_size, card.num_classes
    chosen = {f.name: vars(args)[f.name] for f in dataclasses.fields(BenchConfig) if f.name in vars(args)}
    cfg = BenchConfig(
        **{**chosen, "model": model, "input_size": input_size, "num_classes": num_classes},
        references=tuple(args.reference),
    )
    result = run_benchmark(cfg, log=lambda msg: print(msg, file=sys.stderr))
    return _report(format_result(result), result.to_json(), args.json, args)


def run_loader(args: argparse.Namespace) -> int:
    """`bench --mode loader`: the training input pipelines side by side (perf/loaderbench.py)."""
    cfg = LoaderBenchConfig(
        data=args.data,
        images=args.images,
        input_size=args.input_size,
        batch_size=32 if args.batch_size is None else args.batch_size,
        workers=args.workers,
        seconds=args.seconds,
        rounds=3 if args.iters is None else args.iters,
    )
    result = run_loader_benchmark(cfg, log=lambda msg: print(msg, file=sys.stderr))
    return _report(format_loader_result(result), result.to_json(), args.json, args)


def run_serve(args: argparse.Namespace) -> int:
    """`bench --mode serve`: the HTTP server under load from concurrent clients (perf/servebench.py)."""
    if args.model is None:
        raise ValueError("--mode serve times a network of this name, width and input size: name it with --model")
    cfg = ServeBenchConfig(
        model=args.model,
        width=args.width,
        input_size=args.input_size,
        engine=args.engine,
        clients=args.clients,
        requests=args.requests,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        bad_fraction=args.bad_fraction,
    )
    result = run_serve_benchmark(cfg, log=lambda msg: print(msg, file=sys.stderr))
    return _report(format_serve_result(result), result.to_json(), args.json, args)


def _report(table: str, as_json: str, path: Path | None, args: argparse.Namespace) -> int:
    """Print the table; with --json, write the result there too, with what produced it: the command line, the
    date, the machine and torch's version (the docs' tables are written from such files)."""
    print(table)
    if path is not None:
        result = json.loads(as_json)
        result["command"] = shlex.join(["inceptionnet", *args.argv])
        result.setdefault("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        result.setdefault("machine", machine(torch.device(args.device)))  # serve's result has none of its own
        result.setdefault("torch_version", torch.__version__)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return 0
