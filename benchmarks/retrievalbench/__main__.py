"""The command line of the measurements (see the package's doc)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from inceptionnet import __version__
from inceptionnet.perf.measure import machine
from inceptionnet.retrieval import embed

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "retrieval"
SHARED = ROOT.parent / "shared" / "data" / "cifar10"
STEPS = ("precision", "speed", "search", "libraries")


def header(args: argparse.Namespace) -> dict[str, Any]:
    """What every result records about its run."""
    import faiss

    return {
        "command": "PYTHONPATH=src:benchmarks python -m retrievalbench " + shlex.join(sys.argv[1:]),
        "machine": machine(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "versions": {"inceptionnet": __version__, "torch": torch.__version__, "faiss": faiss.__version__},
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "run": args.run,
        "engine": args.engine,
    }


def embedded(args: argparse.Namespace, data: Path, split: str, work: Path) -> Path:
    """The embeddings of one split of `data`, kept in `work` for the steps after."""
    out = work / f"{data.name}-{split}.parquet"
    if not out.exists():
        embed(data, split=split, output=out, model=args.run, engine=args.engine, batch_size=64, log=print)
    return out


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="retrievalbench", description=__doc__)
    p.add_argument("--run", required=True, help="the network: a run folder of `inceptionnet train`, or any --model")
    p.add_argument("--data", default=str(SHARED), help="CIFAR-10 as train/ and test/ image folders")
    p.add_argument("--engine", default="openvino", help="the engine of embed, predict and eval (default openvino)")
    p.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    p.add_argument("--work", default=None, help="where the embeddings files go (default: a temporary folder)")
    p.add_argument("--speed-images", type=int, default=512, help="images of each speed round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved speed rounds")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="search sizes")
    p.add_argument("--library-size", type=int, default=10_000, help="vectors of the library comparison")
    return p.parse_args()


def main() -> int:
    from retrievalbench.quality import step_precision
    from retrievalbench.search import step_libraries, step_search
    from retrievalbench.speed import step_speed

    args = parse()
    work = Path(args.work or tempfile.mkdtemp(prefix="retrievalbench-"))
    work.mkdir(parents=True, exist_ok=True)
    steps: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
        "precision": step_precision,
        "speed": step_speed,
        "search": step_search,
        "libraries": step_libraries,
    }
    for name in args.steps:
        result = {**header(args), **steps[name](args, work)}
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {OUT / name}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
