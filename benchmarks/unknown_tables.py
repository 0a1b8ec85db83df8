"""Write the unknown-image and calibration tables of docs/calibration.md and docs/evaluation.md from
benchmarks/results/unknown-images.json (unknown_images.py), or check them.

    python benchmarks/unknown_tables.py          # rewrite every table named below from the result
    python benchmarks/unknown_tables.py --check  # exit 1 naming each table that differs from it

The markers are docs_tables.py's: a table between `<!-- table: NAME -->` and `<!-- /table -->` is rendered
by TABLES[NAME]. PAGES says which page holds which of them; any other table of docs/calibration.md carries
`<!-- by hand: why -->` on the line before it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from docs_tables import BLOCK
from docs_tables import unaccounted_tables as unaccounted

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "unknown-images.json"
PAGES = {
    ROOT / "docs" / "calibration.md": ("unknown-scores", "calibration-error"),
    ROOT / "docs" / "evaluation.md": ("calibration-error-report",),
}
CHECKED_BY_HAND = (ROOT / "docs" / "calibration.md",)  # pages whose every other table must say it is by hand


def load() -> dict:
    return json.loads(RESULT.read_text(encoding="utf-8"))


def _about(r: dict) -> str:
    cfg, images = r["config"], r["images"]
    return (
        f"{cfg['model']} at {cfg['width']} width and {cfg['input_size']} px, {cfg['epochs']} epochs on "
        f"{cfg['train_per_class']} {cfg['data']} training images of each of {', '.join(cfg['known'])}: "
        f"{100 * r['heldout_top1']:.2f}% top-1 on the {images['heldout']} held-out images; thresholds and "
        f"temperature fitted on {images['val']} validation images; {images['unknown']} unknown images of "
        f"{', '.join(cfg['unknown'])}. {r['machine']}, {r['date']} (UTC); `{r['command']}`"
    )


def scores_table() -> str:
    """Each unknown-image score: AUROC, FPR at 95% TPR, and what its validation threshold rejects."""
    r = load()
    lines = [
        _about(r),
        "",
        "| score | AUROC | FPR at 95% TPR | held-out known images rejected | unknown images rejected |",
        "|---|---|---|---|---|",
    ]
    for s in r["scores"]:
        best = "**" if s["score"] == r["best"] else ""
        lines.append(
            f"| {best}{s['score']}{best} | {100 * s['auroc']:.2f}% | {100 * s['fpr_at_95_tpr']:.2f}% | "
            f"{100 * s['known_rejected']:.2f}% | {100 * s['unknown_rejected']:.2f}% |"
        )
    d = r["best_minus_best_of_the_logits"]
    low, high = d["interval_95"]
    lines += [
        "",
        f"AUROC of {r['best']} minus that of {r['best_of_the_logits']}: {100 * d['difference']:+.2f} points, 95% "
        f"interval {100 * low:+.2f} to {100 * high:+.2f} over {d['rounds']} bootstrap resamples of the images.",
    ]
    return "\n".join(lines)


def calibration_table() -> str:
    """The held-out images' calibration error and log-likelihood before and after temperature scaling."""
    r = load()
    c = r["calibration_heldout"]
    card = r["card"]["temperature"]
    return "\n".join(
        [
            _about(r),
            "",
            f"| held-out images ({c['images']}) | expected calibration error (15 bins) | negative log-likelihood |",
            "|---|---|---|",
            f"| raw softmax | {c['ece_before']:.4f} | {c['nll_before']:.4f} |",
            f"| temperature {c['temperature']:.4f} (fitted on the validation images) | {c['ece_after']:.4f} | "
            f"{c['nll_after']:.4f} |",
            "",
            f"The run's card holds the temperature its training fitted on the same validation images at its "
            f"last evaluation: {card:.4f}.",
        ]
    )


def report_table() -> str:
    """The calibration error before and after, for the report's page."""
    c = load()["calibration_heldout"]
    return "\n".join(
        [
            "| five CIFAR-10 classes, demo network (docs/calibration.md) | ECE | negative log-likelihood |",
            "|---|---|---|",
            f"| before temperature scaling | {c['ece_before']:.4f} | {c['nll_before']:.4f} |",
            f"| after, T = {c['temperature']:.4f} | {c['ece_after']:.4f} | {c['nll_after']:.4f} |",
        ]
    )


TABLES: dict[str, Callable[[], str]] = {
    "unknown-scores": scores_table,
    "calibration-error": calibration_table,
    "calibration-error-report": report_table,
}


def render(doc: str, names: tuple[str, ...]) -> str:
    """`doc` with each of its tables `names` rewritten from the result (the page's other blocks left alone)."""

    def table(m: re.Match[str]) -> str:
        return f"{m.group(1)}{TABLES[m['name']]()}\n{m.group(4)}" if m["name"] in names else m.group(0)

    return BLOCK.sub(table, doc)


def problems() -> list[str]:
    """Each table named in PAGES that is missing from its page or differs from the result; unmarked tables."""
    found = []
    for page, names in PAGES.items():
        doc = page.read_text(encoding="utf-8")
        now = {m["name"]: m["body"] for m in BLOCK.finditer(doc) if m["name"] in names}
        found += [f"{page.name}: no table {n}" for n in names if n not in now]
        found += [f"{page.name}: {n} differs from {RESULT.name}" for n in now if now[n] != f"{TABLES[n]()}\n"]
        if page in CHECKED_BY_HAND:
            found += [f"{page.name}: a table neither generated nor marked by hand, {w}" for w in unaccounted(doc)]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs")
    args = parser.parse_args()
    if args.check:
        for line in problems():
            print(line, file=sys.stderr)
        return 1 if problems() else 0
    for page, names in PAGES.items():
        page.write_text(render(page.read_text(encoding="utf-8"), names), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
