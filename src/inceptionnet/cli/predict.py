"""`inceptionnet predict`: top-k classes of image files."""

from __future__ import annotations

import argparse
import json
import sys

from inceptionnet.inference.predict import format_predictions, predict, predictions_to_json
from inceptionnet.models import list_models


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    results = predict(args.images, model=args.model, weights=args.weights, top_k=args.top_k)
    print(json.dumps(predictions_to_json(results), indent=2) if args.json else format_predictions(results))
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"error: {len(failed)} of {len(results)} files could not be classified", file=sys.stderr)
    return 1 if failed else 0
