"""`embed` against `predict --json` on the same engine and images, in interleaved rounds."""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from inceptionnet.data import DEMO_DATA, eval_transform
from inceptionnet.export.runtimes import DescribedNetwork
from inceptionnet.inference.batchjob import job_meta, run_job
from inceptionnet.inference.features import feature_network
from inceptionnet.inference.loading import open_for_inference
from inceptionnet.inference.predict import classify, prediction_record
from inceptionnet.ranks import Ranks
from inceptionnet.retrieval.embed import embed_batches, parquet_output, table_meta
from inceptionnet.retrieval.inputs import open_images

BATCH = 32
ONE = Ranks(rank=0, world_size=1, local_rank=0)


def predict_job(net: DescribedNetwork, files: list[str], out: Path) -> None:
    """What `predict FILES --json OUT.jsonl` runs once the network is open."""

    def records(todo: list[str]) -> Iterator[list[dict[str, Any]]]:
        batches = classify(todo, net, top_k=None, batch_size=BATCH, device=torch.device("cpu"))
        return ([prediction_record(r) for r in batch] for batch in batches)

    run_job(files, out, meta=job_meta(net, None), ranks=ONE, classify=records)


def embed_job(features: DescribedNetwork, files: list[str], out: Path) -> None:
    """What `embed FILES --output OUT.parquet` runs once the network is open."""
    images = open_images(files)
    images.transform = eval_transform(features.preprocessing)
    meta = table_meta(features, normalize=True)

    def records(todo: list[str]) -> Iterator[list[dict[str, Any]]]:
        return embed_batches(images, todo, features, normalize=True, batch_size=BATCH)

    run_job(images.keys, out, meta=meta, ranks=ONE, classify=records, fmt=parquet_output(meta))


def _timed(job: Callable[[Path], None], folder: Path, images: int) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    job(folder)
    return images / (time.perf_counter() - start)


def step_speed(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    files = sorted(str(p) for p in (DEMO_DATA / "val").glob("*/*.jpg"))[: args.speed_images]
    net = open_for_inference(args.run, engine=args.engine, images=len(files)).eval()
    features = feature_network(net).eval()
    jobs = {
        "predict": lambda folder: predict_job(net, files, folder / "out.jsonl"),
        "embed": lambda folder: embed_job(features, files, folder / "out.parquet"),
    }
    for name, job in jobs.items():  # warm-up: the engines compile their batch sizes
        _timed(job, work / f"warm-{name}", len(files))
    rounds = []
    for i in range(args.rounds):
        order = ("predict", "embed") if i % 2 == 0 else ("embed", "predict")
        rounds.append({name: round(_timed(jobs[name], work / f"round-{name}", len(files)), 2) for name in order})
    ratios = [r["embed"] / r["predict"] for r in rounds]
    return {
        "engine_line": f"{net.engine}, {net.precision}, {net.threads} threads",
        "images": len(files),
        "batch_size": BATCH,
        "rounds": rounds,
        "embed_images_per_s": statistics.median(r["embed"] for r in rounds),
        "predict_images_per_s": statistics.median(r["predict"] for r in rounds),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
    }
