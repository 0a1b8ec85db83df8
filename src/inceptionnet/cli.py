"""The `inceptionnet` command: thin subcommands that parse, call the library and print."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inceptionnet",
        description="Inception-v4, Inception-ResNet-v1/v2 and Inception-v3: networks, weights, training, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"inceptionnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_summary(sub)
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
