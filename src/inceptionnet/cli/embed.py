"""`inceptionnet embed`: each image's pooled feature vector into a parquet file."""

from __future__ import annotations

import argparse

from inceptionnet.cli.options import add_engine_options, add_model_options, say
from inceptionnet.ranks import from_env
from inceptionnet.retrieval import embed


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="each image's feature vector (the pooled output of the last block) into a parquet file",
        description="Write one parquet row per image: its path, its label where the data has labels, and the "
        "pooled feature vector after the network's last block (1536 values for Inception-v4), L2-normalised. The "
        "network runs on the fastest engine, as predict runs it. Under `torchrun --nproc_per_node N -m "
        "inceptionnet embed` each process embeds its share; the same command again embeds only what the file "
        "lacks. `inceptionnet similar` searches the file (docs/embeddings.md).",
    )
    p.add_argument(
        "data",
        nargs="+",
        metavar="DATA",
        help="one data source of --data (a folder of class folders DIR/<class>/<image>, a metadata folder, WebDataset "
        "shards, hf:ORG/NAME, a save_to_disk folder, parquet files), its images labelled; or image files and folders "
        "of images (no labels)",
    )
    p.add_argument("--output", required=True, metavar="FILE.parquet", help="the embeddings file to write or complete")
    p.add_argument("--split", choices=("train", "val"), help="the split of a DATA with splits (DATA/train, DATA/val)")
    p.add_argument("--image-column", help="image column of a Hugging Face dataset; default: its one Image column")
    p.add_argument("--label-column", help="label column of a Hugging Face dataset; default: its ClassLabel column")
    add_model_options(p, also=" or an int8 folder of `inceptionnet quantize`")
    p.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="keep each vector's length (default: L2-normalised, so that cosine similarity is a dot product)",
    )
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument(
        "--workers", type=int, default=0, help="processes decoding images ahead of the network (default 0: none)"
    )
    add_engine_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ranks = from_env()
    summary = embed(
        args.data,
        output=args.output,
        model=args.model,
        weights=args.weights,
        split=args.split,
        normalize=args.normalize,
        batch_size=args.batch_size,
        device=args.device,
        engine=args.engine,
        dtype=args.dtype,
        workers=args.workers,
        image_column=args.image_column,
        label_column=args.label_column,
        log=say,
    )
    where = f"rank {ranks.rank} of {ranks.world_size}: " if ranks.distributed else ""
    say(f"{where}engine: {summary.engine}")
    say(f"{where}embedded {summary.embedded} images ({summary.failed} unreadable), {summary.done_before} done before")
    if summary.rows is None:
        return 0
    print(f"wrote {summary.output}: {summary.rows} images")
    return 1 if summary.failed else 0
