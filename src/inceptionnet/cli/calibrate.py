"""`inceptionnet calibrate`: fit a trained network's temperature and unknown-image threshold on validation images."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from inceptionnet.card import DEFAULT_KNOWN_KEPT, UNKNOWN_SCORES
from inceptionnet.cli.options import write_json
from inceptionnet.evaluation.calibrate import calibrate
from inceptionnet.evaluation.unknown import DEFAULT_SCORE
from inceptionnet.training.runlock import claim
from inceptionnet.weights.artifact import is_model_folder

DESCRIPTION = (
    "Fit a single-label network's temperature (its probabilities become softmax(logits / T), T minimising the "
    "negative log-likelihood of the validation images) and its unknown-image threshold (the score that the given "
    "share of the validation images reach; below it predict --reject-unknown and serve's reject_unknown answer "
    "'unknown'), and write both into the network's card: in place in a run's model folder or a model folder, or "
    "as a new model folder with --output. Training fits the same at each evaluation; this command is for runs "
    "and folders made before, or for another validation split."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit the temperature and unknown-image threshold of a trained network")
    p.description = DESCRIPTION
    p.add_argument("model", metavar="RUN", help="a training run folder or a model folder (any model with --output)")
    p.add_argument("--data", required=True, help="the labelled validation split (any source eval takes)")
    p.add_argument(
        "--score",
        choices=UNKNOWN_SCORES,
        default=DEFAULT_SCORE,
        help=f"the unknown-image score the threshold is on (default {DEFAULT_SCORE}, the best measured)",
    )
    p.add_argument(
        "--known-kept",
        type=float,
        default=DEFAULT_KNOWN_KEPT,
        help=f"share of the validation images the threshold keeps as known (default {DEFAULT_KNOWN_KEPT})",
    )
    p.add_argument("--output", metavar="DIR", help="write a calibrated model folder here instead of in place")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    p.add_argument("--max-images", type=int, default=None, help="fit on an evenly spaced subset of N images")
    p.add_argument("--json", metavar="PATH", help="also write what was fitted and measured as JSON ('-': print it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fit = dict(score=args.score, known_kept=args.known_kept, batch_size=args.batch_size, workers=args.workers)
    fit.update(device=args.device, max_images=args.max_images)
    with _held(args.model, writes_in_place=args.output is None):
        done, folder = calibrate(args.model, args.data, output=args.output, **fit)
    if args.json != "-":
        print(done.describe())
        print(f"wrote the calibrated card into {folder}")
    if args.json is not None:
        write_json(args.json, {"model_folder": str(folder), **done.check.to_dict(), "unknown": done.unknown.to_dict()})
    return 0


@contextlib.contextmanager
def _held(model: str, *, writes_in_place: bool) -> Iterator[None]:
    """A training run's folder is held for the write, as training holds it: refused while a run trains there."""
    folder = Path(model)
    if not writes_in_place or is_model_folder(folder) or not folder.is_dir():
        yield
        return
    lock = claim(folder)
    try:
        yield
    finally:
        lock.release()
