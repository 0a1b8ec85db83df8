"""`inceptionnet summary`: stage table, parameters and multiply-adds of a network."""

from __future__ import annotations

import argparse

from inceptionnet.factory import create_model
from inceptionnet.models import list_models
from inceptionnet.models.summary import format_summary, summarize


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = create_model(args.model, num_classes=args.num_classes, aux_logits=args.aux_logits, width=args.width)
    print(format_summary(summarize(model, input_size=args.input_size)))
    return 0
