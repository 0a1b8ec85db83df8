"""`python -m tritoncheck`: check a served image classifier over the Open Inference Protocol (HTTP and gRPC).

    PYTHONPATH=benchmarks .venv-triton/bin/python -m tritoncheck --http 127.0.0.1:8000 --grpc 127.0.0.1:8001 \\
        --model inception_v3 --reference predict.json IMAGE...

Any server that speaks the protocol with Triton's model configuration, classification and statistics
extensions, and serves a model of `export --format triton`'s contract, can be checked; `make triton-check`
runs it against a real Triton. Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tritonclient.utils import InferenceServerException

from tritoncheck.check import run_check
from tritoncheck.client import CheckError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def image_paths(given: list[Path]) -> list[Path]:
    """The files given, and the images of the folders given (sorted)."""
    paths: list[Path] = []
    for path in given:
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
        paths.extend(found)
    return paths


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tritoncheck", description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="images at the model's input size")
    parser.add_argument("--http", required=True, help="the HTTP endpoint, HOST:PORT")
    parser.add_argument("--grpc", required=True, help="the gRPC endpoint, HOST:PORT")
    parser.add_argument("--model", required=True, help="the model's name on the server")
    parser.add_argument("--reference", type=Path, help="`inceptionnet predict --json` of the same images")
    parser.add_argument("--top-k", type=int, default=3, help="classes asked of the classification extension")
    parser.add_argument("--max-diff", type=float, default=1e-4, help="largest allowed probability difference")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of single-image requests sent at once")
    parser.add_argument(
        "--max-rounds", type=int, default=20, help="more rounds, up to this many, while no batch has formed"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= args.max_rounds:
        parser.error(f"--rounds must be at least 1 and at most --max-rounds ({args.max_rounds}), got {args.rounds}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images = image_paths(args.images)
    try:
        outcome = run_check(
            http=args.http.removeprefix("http://"),
            grpc=args.grpc.removeprefix("grpc://"),
            model=args.model,
            images=images,
            reference=args.reference,
            top_k=args.top_k,
            max_diff=args.max_diff,
            rounds=args.rounds,
            max_rounds=args.max_rounds,
        )
    except (CheckError, InferenceServerException, OSError) as err:  # OSError: no server at the address
        print(f"tritoncheck: FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    against = "predict --json" if args.reference else "the server's first answer"
    print(
        f"largest absolute difference vs {against}: {outcome.largest:.3g} over {outcome.compared} answers "
        f"(at most {args.max_diff:g})"
    )
    for failure in outcome.failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    print("tritoncheck: " + ("FAILED" if outcome.failures else "OK"))
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
