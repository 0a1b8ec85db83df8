"""Write the generated tables of docs/embeddings.md from benchmarks/results/retrieval/, or check them.

    PYTHONPATH=src:benchmarks python -m retrievalbench.tables          # rewrite every generated table
    PYTHONPATH=src:benchmarks python -m retrievalbench.tables --check  # exit 1 naming each table that differs

The same markers as docs/performance.md's (docs_tables.py): a table between `<!-- table: NAME -->` and
`<!-- /table -->` is rendered by TABLES[NAME] from the result it names; any other table carries
`<!-- by hand: why -->` on the line before it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from docs_tables import BLOCK, unaccounted_tables

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "retrieval"
DOC = ROOT / "docs" / "embeddings.md"


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def _about(r: dict) -> str:
    return f"{r['machine']}, {r['threads']} threads, {r['date']} (UTC); `{r['command']}`"


def precision_table() -> str:
    r = load("precision")
    lines = [
        _about(r),
        "",
        f"| data | gallery (train split) | queries (test split) | vector size | precision@{r['k']} "
        "| classifier top-1 |",
        "|---|---|---|---|---|---|",
    ]
    names = {"demo": "built-in demo subset", "cifar10": "CIFAR-10"}
    for row in r["rows"]:
        lines.append(
            f"| {names[row['data']]} | {row['gallery']:,} | {row['queries']:,} | {row['dim']} | "
            f"{row['precision_at_10']:.2f}% | {row['top1']:.2f}% |"
        )
    return "\n".join(lines)


def speed_table() -> str:
    r = load("speed")
    ratios = [x["embed"] / x["predict"] for x in r["rounds"]]
    return "\n".join([
        _about(r),
        "",
        "| engine | images per round | rounds | predict --json img/s | embed img/s "
        "| embed / predict: median (min, max) |",
        "|---|---|---|---|---|---|",
        f"| {r['engine_line']} | {r['images']} | {len(r['rounds'])} | {r['predict_images_per_s']:.1f} | "
        f"{r['embed_images_per_s']:.1f} | {r['ratio_median']:.2f} ({min(ratios):.2f}, {max(ratios):.2f}) |",
    ])  # fmt: skip


def search_table() -> str:
    r = load("search")
    lines = [
        _about(r),
        "",
        f"{r['dim']}-dimensional vectors ({r['real_vectors']:,} real, synthetic beyond), {r['queries']:,} queries; "
        "q/s: queries per second, all queries in one call / one query per call.",
        "",
        "| vectors | exact q/s (batch / one) | IVF lists, probed | IVF build s | IVF q/s (batch / one) "
        "| IVF recall@10 |",
        "|---|---|---|---|---|---|",
    ]
    for s in r["sizes"]:
        e, i = s["exact"], s["ivf"]
        lines.append(
            f"| {s['vectors']:,} | {e['batch_qps']:,.0f} / {e['single_qps']:,.0f} | {i['lists']:,}, {i['nprobe']} "
            f"| {i['build_s']:.1f} | {i['batch_qps']:,.0f} / {i['single_qps']:,.0f} | {i['recall_at_10']:.3f} |"
        )
    return "\n".join(lines)


def libraries_table() -> str:
    r = load("libraries")
    lines = [
        _about(r) + f"; usearch {r['usearch']}",
        "",
        f"{r['vectors']:,} vectors of {r['dim']} dimensions. Setting: ef of search (HNSW), lists probed (IVF).",
        "",
        "| index | build s | setting | q/s (batch / one) | recall@10 |",
        "|---|---|---|---|---|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['index']} | {x['build_s']:.1f} | {x['setting']} | {x['batch_qps']:,.0f} / {x['single_qps']:,.0f} "
            f"| {x['recall_at_10']:.3f} |"
        )
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {
    "retrieval-precision": precision_table,
    "embed-speed": speed_table,
    "search-speed": search_table,
    "search-libraries": libraries_table,
}


def render(doc: str) -> str:
    unknown = sorted({m["name"] for m in BLOCK.finditer(doc)} - set(TABLES))
    if unknown:
        raise SystemExit(f"docs/embeddings.md names tables this script does not know: {unknown}")
    return BLOCK.sub(lambda m: f"{m.group(1)}{TABLES[m['name']]()}\n{m.group(4)}", doc)


def differing(doc: str) -> list[str]:
    now = {m["name"]: m["body"] for m in BLOCK.finditer(doc)}
    fresh = {m["name"]: m["body"] for m in BLOCK.finditer(render(doc))}
    return sorted(name for name in now if now[name] != fresh[name])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs")
    args = parser.parse_args()
    doc = DOC.read_text(encoding="utf-8")
    problems = [f"{n}: differs from its results" for n in differing(doc)]
    problems += [f"a table neither generated nor marked by hand, {w}" for w in unaccounted_tables(doc)]
    if args.check:
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    DOC.write_text(render(doc), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
