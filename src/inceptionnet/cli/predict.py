"""`inceptionnet predict`: the top-k classes of images, named by the network's own classes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

import torch

from inceptionnet.cli.options import add_engine_options, add_model_options, say, write_json
from inceptionnet.export.runtimes import DescribedNetwork
from inceptionnet.inference.batchjob import is_jsonl, job_meta, run_job
from inceptionnet.inference.engines import describe_engine
from inceptionnet.inference.loading import inference_device, open_for_inference
from inceptionnet.inference.predict import (
    classify,
    format_predictions,
    image_files,
    predict,
    prediction_record,
    predictions_to_json,
)
from inceptionnet.ranks import Ranks, from_env, process_group


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="top-k classes of images (ImageNet, or the classes of your own run)",
        description="Classify images and print the top-k classes with their probabilities: the ImageNet classes "
        "of published weights, or the class folders of a training run. Unreadable files are reported and skipped; "
        "the exit code is 1 if any failed.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders (their images, recursively)")
    add_model_options(p, also=" or an int8 folder of `inceptionnet quantize`")
    p.add_argument("--top-k", type=int, default=None, help="classes to print per image (default 5, at most all)")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument(
        "--workers", type=int, default=0, help="processes decoding images ahead of the network (default 0: none)"
    )
    add_engine_options(p)
    p.add_argument(
        "--reject-unknown",
        action="store_true",
        help="answer 'unknown' (with its score) for an image whose unknown-image score is below the threshold of "
        "the network's card, fitted by `inceptionnet calibrate` or at the end of training (docs/calibration.md)",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        help="also write the results as JSON to PATH ('-': print only the JSON). A PATH ending in .jsonl gets one "
        "line per image, resumable (a rerun predicts only the images not yet in it), and split over the processes "
        "of `torchrun --nproc_per_node N -m inceptionnet predict` (docs/export.md)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ranks = from_env()
    if ranks.distributed and not is_jsonl(args.json):
        raise ValueError("under torchrun, predict writes its results to a .jsonl file: add --json OUT.jsonl")
    request = dict(weights=args.weights, engine=args.engine, dtype=args.dtype, device=args.device, ranks=ranks)
    device = inference_device([args.model], **request)  # a request the engine cannot run fails before the loading
    files = image_files(args.images)
    mine = len(ranks.share(files))  # the images this process classifies: what --engine auto weighs
    options = dict(engine=args.engine, dtype=args.dtype, device=device, images=mine, log=say)
    model = open_for_inference(args.model, weights=args.weights, **options)
    say(f"engine: {describe_engine(model)}")
    if is_jsonl(args.json):
        with process_group(ranks):
            return run_jsonl(args, files, model, device, ranks)
    run = dict(top_k=args.top_k, batch_size=args.batch_size, device=device, workers=args.workers)
    results = predict(files, model=model, reject_unknown=args.reject_unknown, **run)
    if args.json != "-":
        print(format_predictions(results))
    if args.json is not None:
        write_json(args.json, predictions_to_json(results, model=model, device=str(device)))
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"error: {len(failed)} of {len(results)} files could not be classified", file=sys.stderr)
    return 1 if failed else 0


def run_jsonl(
    args: argparse.Namespace, files: list[str], model: DescribedNetwork, device: torch.device, ranks: Ranks
) -> int:
    """One line per image in the .jsonl of --json, this process's share of them (inference/batchjob.py)."""
    model = model.to(device).eval()

    def classify_files(todo: list[str]) -> Iterator[list[dict[str, Any]]]:
        run = dict(top_k=args.top_k, batch_size=args.batch_size, device=device, workers=args.workers)
        run["reject_unknown"] = args.reject_unknown
        multi_label = model.card.label_mode == "multi"
        return (
            [prediction_record(r, multi_label=multi_label) for r in batch] for batch in classify(todo, model, **run)
        )

    meta = job_meta(model, args.top_k)
    summary, records = run_job(files, args.json, meta=meta, ranks=ranks, classify=classify_files)
    where = f"rank {ranks.rank} of {ranks.world_size}: " if ranks.distributed else ""
    say(f"{where}predicted {summary.predicted} images ({summary.failed} unreadable), {summary.done_before} done before")
    if records is None:
        return 0
    failed = sum(r["error"] is not None for r in records)
    print(f"wrote {args.json}: {len(records)} images, {failed} could not be classified")
    return 1 if failed else 0
