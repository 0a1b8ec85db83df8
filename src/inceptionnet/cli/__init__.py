"""The `inceptionnet` command: one thin module per subcommand that parses, calls the library and prints."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from inceptionnet._version import __version__
from inceptionnet.cli import (
    bench,
    calibrate,
    embed,
    evaluate,
    explain,
    export,
    predict,
    quantize,
    serve,
    shards,
    similar,
    study,
    summary,
    train,
)


def build_parser() -> argparse.ArgumentParser:
    """The `inceptionnet` parser: one subcommand per module of this package."""
    parser = argparse.ArgumentParser(
        prog="inceptionnet",
        description="Inception-v4, Inception-ResNet-v1/v2 and Inception-v3: networks, weights, training, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"inceptionnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (
        summary,
        bench,
        evaluate,
        train,
        shards,
        predict,
        embed,
        similar,
        calibrate,
        explain,
        export,
        quantize,
        serve,
        study,
    ):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status. A ValueError (bad input) is printed as `error: ...`, status 2."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given (results record it)
    try:
        return args.func(args)
    except ValueError as err:  # bad input: say what is wrong, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
