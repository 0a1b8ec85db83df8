"""`inceptionnet similar`: the nearest indexed images of query images, by cosine similarity."""

from __future__ import annotations

import argparse
import sys

from inceptionnet.cli.options import MODEL_HELP, add_engine_options, add_weights_option, say, write_json
from inceptionnet.retrieval.search import DEFAULT_TOP_K, Match, similar


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "similar",
        help="the nearest images of an embeddings file (inceptionnet embed) to query images",
        description="Embed each query image with the network that wrote the embeddings file and print its nearest "
        "images by cosine similarity: exact search up to 50,000 vectors, an inverted-file index (FAISS) beyond. "
        "The index is built from the file on first use and kept beside it (FILE.parquet.faiss), rebuilt when the "
        "file changes. Needs the `retrieval` extra (docs/embeddings.md).",
    )
    p.add_argument("queries", nargs="+", metavar="QUERY", help="image files, or folders (their images, recursively)")
    p.add_argument("--index", required=True, metavar="FILE.parquet", help="an embeddings file of inceptionnet embed")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help=f"images per query (default {DEFAULT_TOP_K})")
    p.add_argument(
        "--model",
        default=None,
        metavar="MODEL",
        help=f"the network embedding the queries: default the one that wrote the file; {MODEL_HELP}",
    )
    add_weights_option(p)
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=32, help="query images per forward pass (default 32)")
    add_engine_options(p)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-': print only the JSON)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    matches = similar(
        args.queries,
        index=args.index,
        top_k=args.top_k,
        model=args.model,
        weights=args.weights,
        engine=args.engine,
        dtype=args.dtype,
        device=args.device,
        batch_size=args.batch_size,
        log=say,
    )
    if args.json != "-":
        print(format_matches(matches))
    if args.json is not None:
        write_json(args.json, {"index": args.index, "top_k": args.top_k, "results": [m.to_json() for m in matches]})
    failed = [m for m in matches if m.error is not None]
    if failed:
        print(f"error: {len(failed)} of {len(matches)} query images could not be read", file=sys.stderr)
    return 1 if failed else 0


def format_matches(matches: list[Match]) -> str:
    """Per query, its nearest images with their similarity and label."""
    lines = []
    for m in matches:
        lines.append(f"{m.path}:" if m.error is None else f"{m.path}: error: {m.error}")
        for n in m.neighbours:
            label = f"  ({n.label})" if n.label is not None else ""
            lines.append(f"  {n.similarity:.4f}  {n.path}{label}")
    return "\n".join(lines)
