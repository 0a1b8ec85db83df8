"""`inceptionnet eval`: the paper's 1/10/12/144-crop evaluation of one network or an ensemble."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inceptionnet import evaluation as ev
from inceptionnet.cli.options import add_engine_options, say, write_json
from inceptionnet.data import open_split
from inceptionnet.data.sources import source_kind
from inceptionnet.evaluation import EvalResult
from inceptionnet.evaluation.multilabel_run import MultiLabelResult
from inceptionnet.evaluation.report import build_report, sklearn_metrics
from inceptionnet.evaluation.unknown import UnknownResult, measure_unknown
from inceptionnet.factory import load_model, parse_model_spec
from inceptionnet.inference.engines import describe_engine
from inceptionnet.inference.loading import inference_device, names_int8_folder, open_for_inference
from inceptionnet.ranks import from_env, process_group

DESCRIPTION = (
    "Evaluate networks on an ImageFolder (DIR/<class>/<image>) with the paper's protocol: softmax averaged over the "
    "views of each image and over the ensemble's members (docs/evaluation.md). Under `torchrun --nproc_per_node N "
    "-m inceptionnet eval`, each process scores its share of the images and the counts are summed: one result, "
    "printed once."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="top-1 / top-5 error over 1, 10, 12 or 144 crops, of one network or an ensemble",
        description=DESCRIPTION,
    )
    p.add_argument(
        "--data",
        help="one split: an image folder DIR/<class>/<image> (ImageNet synset folders map to 1000 classes), a "
        "folder with a metadata.csv or metadata.jsonl, or a Hugging Face dataset (its validation split): "
        "hf:ORG/NAME, a save_to_disk folder or parquet files (docs/training.md, Data sources)",
    )
    p.add_argument("--image-column", help="image column of a Hugging Face dataset; default: its one Image column")
    p.add_argument(
        "--label-column", help="label column of a Hugging Face dataset; default: its one ClassLabel column, else label"
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="MODEL",
        help="network name, NAME:WEIGHTS (tag, file or folder), a run folder, a model folder, a weights file or "
        "hf-hub:ORG/NAME (docs/weights.md); repeat for an ensemble",
    )
    p.add_argument("--crops", type=int, default=1, choices=(1, 10, 12, 144), help="views per image (default 1)")
    p.add_argument("--batch-size", type=int, default=32, help="views per forward pass (default 32)")
    p.add_argument("--workers", type=int, default=None, help="data-loading processes (default: CPU count, at most 8)")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of torch and of the engines (default: all)")
    add_engine_options(p)
    p.add_argument("--input-size", type=int, default=None, help="override every network's input size")
    p.add_argument("--max-images", type=int, default=None, help="evaluate an evenly spaced subset of N images")
    p.add_argument(
        "--num-classes", type=int, default=None, help="outputs of networks built without weights (weights bring theirs)"
    )
    p.add_argument(
        "--width",
        type=float,
        default=None,
        help="width multiplier of networks built without weights (weights bring theirs)",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        help="also write every number (and the configuration) as JSON to PATH ('-': print only the JSON)",
    )
    p.add_argument("--per-class", action="store_true", help="also report each class's accuracy (its recall)")
    p.add_argument(
        "--report",
        metavar="DIR",
        help="also write an HTML report to DIR/index.html: confusion matrix, per-class precision / recall / F1, "
        "reliability diagram with the calibration error, most confident mistakes (needs inceptionnet[report])",
    )
    _add_ood_option(p)
    p.add_argument(
        "--data-only",
        action="store_true",
        help="measure decoding + view cutting alone, no network (the network alone: `inceptionnet bench`)",
    )
    p.set_defaults(func=run)


def _add_ood_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ood",
        metavar="DIR",
        help="also score images of none of the classes (every image below DIR, any layout) against --data's: "
        "AUROC and false-positive rate at 95%% true positives of each unknown-image score, and the share the "
        "card's threshold rejects, one central view per image (one network; needs inceptionnet[report])",
    )


def run(args: argparse.Namespace) -> int:
    workers = ev.DEFAULT_WORKERS if args.workers is None else args.workers
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.model and not args.data_only:
        raise ValueError(
            "name at least one network with --model MODEL (docs/weights.md: a name, NAME:WEIGHTS, a run, ...)"
        )
    if args.data is None:
        raise ValueError("name the image folder with --data DIR")
    if source_kind(args.data) == "folder" and not Path(args.data).is_dir():  # before building networks (seconds)
        raise ValueError(f"dataset folder {args.data} does not exist; expected {args.data}/<class name>/<image files>")
    ranks = from_env()
    if ranks.distributed and (args.report is not None or args.data_only):
        raise ValueError("under torchrun, eval scores the images only: run --report or --data-only in one process")
    if args.ood is not None and (ranks.distributed or len(args.model) != 1):
        raise ValueError("--ood scores one network in one process: name one --model, without torchrun")
    if args.report is not None or args.ood is not None:
        sklearn_metrics()  # a missing optional dependency fails before the evaluation, not after it
    columns = {"image_column": args.image_column, "label_column": args.label_column}
    # a request the engine cannot run fails before the networks are built
    request = dict(engine=args.engine, dtype=args.dtype, device=args.device, ranks=ranks, check=not args.data_only)
    device = inference_device(args.model, **request)
    models = _networks(args, device)
    common = dict(crops=args.crops, batch_size=args.batch_size, input_size=args.input_size, **columns)
    if args.data_only:
        return _measure_loading(args, models, workers=workers, **common)
    options = dict(workers=workers, device=device, max_images=args.max_images, progress=sys.stderr.isatty())
    with process_group(ranks):  # under torchrun: this rank's share of the images, the counts of all summed
        result = ev.evaluate(
            models, args.data, **common, **options, keep_predictions=args.report is not None, ranks=ranks
        )
    if not ranks.is_main:
        return 0
    unknown = _unknown(args, models, device, workers) if args.ood is not None else None
    _show(args, result, unknown)
    if args.report is not None:
        say(f"report: {_write_report(args, result, columns, unknown)}")
    return 0


def _unknown(
    args: argparse.Namespace, models: dict[str, nn.Module], device: torch.device, workers: int
) -> UnknownResult:
    """--ood: the unknown-image scores of the one network (evaluation/unknown.py)."""
    (model,) = models.values()
    columns = {"image_column": args.image_column, "label_column": args.label_column}
    how = dict(batch_size=args.batch_size, workers=workers, device=device, max_images=args.max_images)
    return measure_unknown(model, args.data, args.ood, **how, **columns)


def _show(args: argparse.Namespace, result: EvalResult | MultiLabelResult, unknown: UnknownResult | None) -> None:
    """The console table (unless the JSON goes to stdout) and the --json file (--ood: its "unknown" entry)."""
    if args.json != "-":
        print(result.table())
        if unknown is not None:
            print(unknown.table())
        if isinstance(result, EvalResult):
            print(result.describe())
            if args.per_class:
                print(f"\nper class ({result.scores[-1].model}):\n{result.scores[-1].per_class_table()}")
    if args.json is not None:
        as_dict = result.to_dict(per_class=args.per_class) if isinstance(result, EvalResult) else result.to_dict()
        write_json(args.json, {**as_dict, **({"unknown": unknown.to_dict()} if unknown is not None else {})})


def _write_report(
    args: argparse.Namespace, result: EvalResult | MultiLabelResult, columns: dict, unknown: UnknownResult | None
) -> Path:
    """--report: the page of a single-label evaluation (report.py), or a multi-label one's scores page."""
    if isinstance(result, MultiLabelResult):
        return result.write_report(args.report)
    title = f"{result.scores[-1].model} on {args.data}"
    source = open_split(args.data, **columns)
    return build_report(result.predictions, args.report, source=source, title=title, unknown=unknown)


def _networks(args: argparse.Namespace, device: torch.device) -> dict[str, nn.Module]:
    """{--model spec: network}, each built from its specification (the weights bring their options and classes)
    and, unless only the data is measured, made ready on the engine asked for."""
    models = {}
    for spec in args.model:
        int8 = names_int8_folder(spec)
        name, weights = (spec, spec) if int8 else parse_model_spec(spec)
        if weights is None and not args.data_only:
            say(f"note: {name} has no weights: randomly initialised")
        options = {"num_classes": args.num_classes, "width": args.width}
        if args.data_only:
            model = open_for_inference(spec, pretrained=False, log=say) if int8 else load_model(spec, **_given(options))
        else:
            run = dict(engine=args.engine, dtype=args.dtype, input_size=args.input_size, device=device, log=say)
            model = open_for_inference(spec, pretrained=False, images=_views(args), **run, **_given(options))
            say(f"engine: {describe_engine(model)}")
        models[spec] = model
    return models


def _given(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


def _views(args: argparse.Namespace) -> int:
    """How many views this process runs (the engine choice depends on it): its share under torchrun."""
    images = len(open_split(args.data, image_column=args.image_column, label_column=args.label_column))
    return len(from_env().share(range(min(images, args.max_images or images)))) * args.crops


def _measure_loading(args: argparse.Namespace, models: dict[str, nn.Module], *, workers: int, **common: Any) -> int:
    """--data-only: the evaluation's loader alone, cutting the views of every network named."""
    pres = [m.preprocessing for m in models.values()] or None
    load = dict(workers=workers, max_images=args.max_images)
    runs = [ev.measure_loading(args.data, preprocessing=pres, **common, **load)]
    if args.json != "-":
        for r in runs:
            print(r.describe())
    if args.json is not None:
        write_json(args.json, [r.to_dict() for r in runs])
    return 0
