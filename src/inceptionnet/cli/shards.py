"""`inceptionnet shards`: a dataset's train and val splits as WebDataset tar shards, for training on many nodes."""

from __future__ import annotations

import argparse

from inceptionnet.data.shardwriter import DEFAULT_SHARD_SIZE, WrittenSplit, write_shards


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shards",
        help="write a dataset's train and val splits as WebDataset tar shards",
        description="Write the train and val splits of SRC (any --data train takes: an image folder "
        "SRC/train/<class>/*, SRC/val/<class>/*, ...) as WebDataset tar shards in the new folder DST: "
        "DST/train/*.tar and DST/val/*.tar, each with an _info.json (samples per shard, class names), and "
        "DST/_info.json for timm's wds reader. JPEG, PNG and WebP images are copied as they are, others "
        "written as PNG; the training samples are shuffled once (--seed) so that each shard mixes the "
        "classes. Then: inceptionnet train --data DST (torchrun: each process reads its own shards).",
    )
    p.add_argument("src", metavar="SRC", help="the dataset to convert (with train/ and val/ splits)")
    p.add_argument("dst", metavar="DST", help="the new folder for the shards (must not exist, or be empty)")
    size = f"samples per shard (default {DEFAULT_SHARD_SIZE})"
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, metavar="N", help=size)
    p.add_argument("--seed", type=int, default=0, help="the seed of the training samples' order (default 0)")
    p.set_defaults(func=run)


def _report(split: WrittenSplit) -> None:
    shards = len(split.shard_lengths)
    line = f"{split.name}: {split.samples} images in {shards} shard{'s' * (shards != 1)}"
    if split.encoded_as_png:
        line += f", {split.encoded_as_png} written as PNG"
    if split.unreadable:
        line += f", {split.unreadable} unreadable images left out"
    print(line, flush=True)


def run(args: argparse.Namespace) -> int:
    write_shards(args.src, args.dst, shard_size=args.shard_size, seed=args.seed, progress=_report)
    print(f"wrote {args.dst}; train on it with: inceptionnet train --data {args.dst}")
    return 0
