"""The `inceptionnet` command: thin subcommands that parse, call the library and print."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from inceptionnet import __version__
from inceptionnet.models import create_model, list_models


def _add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="stage table, parameters and multiply-adds of a network",
        description="Print the stage table (output shape and parameters per stage), the total "
        "parameters, the multiply-adds per image counted at the given input size, and the minimum input size.",
    )
    p.add_argument("model", choices=list_models())
    p.add_argument("--input-size", type=int, default=299, help="square input size in pixels (default 299)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.add_argument("--aux-logits", action="store_true", help="include the auxiliary head (v3, v4, released IR-v2)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier; 1.0 is the paper's network")
    p.set_defaults(func=_run_summary)


def _run_summary(args: argparse.Namespace) -> int:
    from inceptionnet.summary import format_summary, summarize

    model = create_model(args.model, num_classes=args.num_classes, aux_logits=args.aux_logits, width=args.width)
    print(format_summary(summarize(model, input_size=args.input_size)))
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="top-1 / top-5 error over 1, 10, 12 or 144 crops, of one network or an ensemble",
        description="Evaluate networks on an ImageFolder (DIR/<class>/<image>) with the paper's protocol: softmax "
        "averaged over the views of each image and over the ensemble's members (docs/evaluation.md).",
    )
    p.add_argument("--data", help="image folder, DIR/<class>/<image>; ImageNet synset folders map to 1000 classes")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="M[:W]",
        help="network name, optionally with weights (tag or file); repeat for an ensemble",
    )
    p.add_argument("--crops", type=int, default=1, choices=(1, 10, 12, 144), help="views per image (default 1)")
    p.add_argument("--batch-size", type=int, default=32, help="views per forward pass (default 32)")
    p.add_argument("--workers", type=int, default=None, help="data-loading processes (default: CPU count, at most 8)")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of this process (torch.set_num_threads)")
    p.add_argument("--input-size", type=int, default=None, help="override every network's input size")
    p.add_argument("--max-images", type=int, default=None, help="evaluate an evenly spaced subset of N images")
    p.add_argument("--num-classes", type=int, default=None, help="outputs of networks built without weights")
    p.add_argument("--width", type=float, default=None, help="width multiplier of networks built without weights")
    p.add_argument("--json", metavar="PATH", help="write every number (and the configuration) to a JSON file")
    p.add_argument("--per-class", action="store_true", help="also report the accuracy of each class")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--data-only", action="store_true", help="measure decoding + view cutting alone, no network")
    mode.add_argument("--model-only", action="store_true", help="measure plain inference alone, on random input")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    import json

    import torch

    from inceptionnet import evaluate as ev

    workers = ev.DEFAULT_WORKERS if args.workers is None else args.workers
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.model and not args.data_only:
        raise ValueError("name at least one network with --model NAME[:WEIGHTS]")
    if args.data is None and not args.model_only:
        raise ValueError("name the image folder with --data DIR")
    if not args.model_only and not Path(args.data).is_dir():  # before building networks, which takes seconds
        raise ValueError(f"dataset folder {args.data} does not exist; expected {args.data}/<class name>/<image files>")
    models = {}
    for spec in args.model:
        name, weights = ev.parse_member(spec)
        if weights is None and not args.data_only:
            print(f"note: {name} has no weights: randomly initialised", file=sys.stderr)
        models[spec] = ev.build_model(name, weights=weights, num_classes=args.num_classes, width=args.width)
    common = dict(crops=args.crops, batch_size=args.batch_size, input_size=args.input_size)
    if args.data_only or args.model_only:
        if args.data_only:
            pres = [m.preprocessing for m in models.values()] or None
            load = dict(workers=workers, max_images=args.max_images)
            runs = [ev.measure_loading(args.data, preprocessing=pres, **common, **load)]
        else:
            images = args.max_images or 8
            runs = [ev.measure_inference(m, images=images, device=args.device, **common) for m in models.values()]
        for r in runs:
            print(r.describe())
        if args.json:
            Path(args.json).write_text(json.dumps([r.to_dict() for r in runs], indent=2) + "\n")
        return 0
    options = dict(workers=workers, device=args.device, max_images=args.max_images, progress=sys.stderr.isatty())
    result = ev.evaluate(models, args.data, **common, **options)
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(per_class=args.per_class), indent=2) + "\n")
    print(result.table())
    print(result.describe())
    if args.per_class:
        print(f"\nper class ({result.scores[-1].model}):\n{result.scores[-1].per_class_table()}")
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from inceptionnet.bench import BenchConfig, format_result, run_benchmark

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


def _add_train(sub: argparse._SubParsersAction) -> None:
    import dataclasses

    from inceptionnet.config import PRESETS, TrainConfig

    p = sub.add_parser(
        "train",
        help="train a network with the paper's recipe (with no arguments: the built-in demo)",
        description="Train on an ImageFolder (DATA/train/<class>/*, DATA/val/<class>/*) with the paper's recipe "
        "(docs/training.md). With no arguments: the demo preset on the built-in CIFAR-10 subset (minutes on a CPU). "
        "Multi-GPU and multi-node: torchrun --nproc_per_node=N -m inceptionnet train .... Each option overrides "
        "the preset (or, with --resume, the checkpoint's configuration). SIGTERM or Ctrl-C saves a checkpoint and "
        "exits with 128 + the signal number; a NaN or infinite loss stops with exit status 1.",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="named configuration (default: demo without --data, paper with it)",
    )
    p.add_argument("--resume", metavar="PATH", help="continue the run of a checkpoint file or run folder (its last.pt)")
    demo, paper = PRESETS["demo"], PRESETS["paper"]
    for f in dataclasses.fields(TrainConfig):
        d, q = getattr(demo, f.name), getattr(paper, f.name)
        shown = "" if d == q is None else f" [default: {q}]" if d == q else f" [paper preset: {q}, demo preset: {d}]"
        _add_config_option(p, f.name, default=argparse.SUPPRESS, suffix=shown)
    p.set_defaults(func=_run_train)


def _add_config_option(p: argparse._ActionsContainer, name: str, *, default: object, suffix: str = "") -> None:
    """`--field-name` for a TrainConfig field, typed and explained as the field is."""
    import dataclasses
    import typing

    from inceptionnet.config import TrainConfig

    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    kind = typing.get_type_hints(TrainConfig)[name]
    options: dict = {"dest": name, "default": default, "help": f.metadata["help"] + suffix}
    if kind is bool:
        options["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is typing.Literal:
        options["choices"] = typing.get_args(kind)
    elif name == "model":
        options["choices"] = list_models()
    else:
        options["type"] = next(t for t in (int, float, str) if t is kind or t in typing.get_args(kind))
    p.add_argument("--" + name.replace("_", "-"), **options)


def _run_train(args: argparse.Namespace) -> int:
    import dataclasses
    import signal

    from inceptionnet import checkpoint
    from inceptionnet.config import TrainConfig, resolve_config
    from inceptionnet.train import TrainingDiverged, train

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    stored = checkpoint.load(args.resume)["config"] if args.resume else None
    cfg = resolve_config(preset_name=args.preset, overrides=overrides, stored=stored)
    try:
        result = train(cfg, resume=args.resume)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if result.stopped_by in ("SIGTERM", "SIGINT", "signal"):
        print(f"continue with: inceptionnet train --resume {result.out_dir}", file=sys.stderr)
        return 128 + (signal.Signals[result.stopped_by].value if result.stopped_by != "signal" else signal.SIGTERM)
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="top-k ImageNet classes of image files",
        description="Classify images with a pretrained network and print the top-k ImageNet classes with their "
        "probabilities. Unreadable files are reported and skipped; the exit code is 1 if any failed.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--model", default="inception_v4", choices=list_models(), help="network (default inception_v4)")
    p.add_argument(
        "--weights", help="published tag (e.g. tf_in1k) or checkpoint file; default: the model's default tag"
    )
    p.add_argument("--top-k", type=int, default=5, help="classes to print per image (default 5)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    import json

    from inceptionnet.predict import format_predictions, predict, predictions_to_json

    results = predict(args.images, model=args.model, weights=args.weights, top_k=args.top_k)
    print(json.dumps(predictions_to_json(results), indent=2) if args.json else format_predictions(results))
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"error: {len(failed)} of {len(results)} files could not be classified", file=sys.stderr)
    return 1 if failed else 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a network to ONNX, TorchScript or a torch.export program, checked against PyTorch",
        description="Export the inference network (eval mode, logits only, BatchNorm folded into the convolutions), "
        "then run the exported file and compare its logits with eager PyTorch (max abs difference <= 1e-4).",
    )
    p.add_argument("model", choices=list_models())
    p.add_argument("--weights", help="published tag (e.g. tf_in1k) or checkpoint file; default: random initialisation")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript", "exported-program"])
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension (default: batch 1)")
    p.add_argument("--output", help="output file (default: MODEL.onnx / MODEL.pt / MODEL.pt2)")
    p.add_argument("--input-size", type=int, help="square input size (default: the weights' preprocessing, 299)")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from inceptionnet.export import ExportError, export_model

    model = create_model(args.model, weights=args.weights)
    try:
        result = export_model(
            model, format=args.format, output=args.output, input_size=args.input_size, dynamic_batch=args.dynamic_batch
        )
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    batch = "dynamic batch" if result.dynamic_batch else "batch 1"
    print(
        f"wrote {result.path} ({result.format}, {result.input_size}x{result.input_size}, {batch}, "
        f"{result.folded_batchnorms} BatchNorms folded); max abs difference vs eager PyTorch: {result.max_abs_diff:.3g}"
    )
    return 0


STUDY_OPTIONS = (
    *("model", "width", "input_size", "epochs", "batch_size", "lr", "lr_decay_rate", "lr_decay_epochs"),
    *("train_per_class", "val_per_class", "log_every", "num_workers", "device", "precision", "channels_last"),
)


def _add_study(sub: argparse._SubParsersAction) -> None:
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
        help="ImageFolder root with train/ and val/ (or test/); default: ../shared/data/cifar10 when present, "
        "else the built-in demo data",
    )
    p.add_argument("--out-dir", help="study folder (default: runs/study-KIND, or runs/study-KIND-quick)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3; --quick uses at most 2)")
    p.add_argument("--quick", action="store_true", help="a tiny version of the study, about a minute on a CPU")
    p.add_argument("--threads", type=int, help="CPU threads of this process (torch.set_num_threads)")
    recipe = p.add_argument_group("recipe: each option replaces the study's value (docs/reproduction.md)")
    for name in STUDY_OPTIONS:
        _add_config_option(recipe, name, default=None, suffix=" (scaling study only)" if name == "model" else "")
    recipe.add_argument(
        "--warmup-epochs", type=float, default=2.0, help="scaling only: the warm-up arm's linear warm-up (default 2)"
    )
    p.set_defaults(func=_run_study)


def _run_study(args: argparse.Namespace) -> int:
    import torch

    from inceptionnet.study import build_study, run_study
    from inceptionnet.studyreport import format_report

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    overrides = {name: getattr(args, name) for name in STUDY_OPTIONS}
    study = build_study(
        args.kind, seeds=args.seeds, quick=args.quick, data=args.data, warmup_epochs=args.warmup_epochs, **overrides
    )
    out_dir = args.out_dir or f"runs/study-{args.kind}{'-quick' if args.quick else ''}"
    summary = run_study(study, out_dir)
    print(format_report(summary))
    print(f"tables, summary.json and {args.kind}.png in {out_dir}")
    if not summary["complete"]:
        print(f"the study is incomplete; continue with the same command (--out-dir {out_dir})", file=sys.stderr)
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inceptionnet",
        description="Inception-v4, Inception-ResNet-v1/v2 and Inception-v3: networks, weights, training, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"inceptionnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_summary(sub)
    _add_bench(sub)
    _add_eval(sub)
    _add_train(sub)
    _add_predict(sub)
    _add_export(sub)
    _add_study(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # bad input: say what is wrong, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
