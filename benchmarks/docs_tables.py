"""Write the generated tables of docs/performance.md from their committed results, or check them.

    python benchmarks/docs_tables.py          # rewrite every generated table from benchmarks/results/
    python benchmarks/docs_tables.py --check  # exit 1 naming each table that differs from its results

A generated table sits in docs/performance.md between `<!-- table: NAME -->` and `<!-- /table -->`;
NAME is a key of TABLES, whose function renders it (the table, the machine and the commands) from
the result files it names. A result is the JSON a command wrote (`inceptionnet bench --json`, or an
experiment script's): the command, the machine, the versions and the date travel with its numbers.
`ceiling_errors` lists every contender whose throughput is above CEILING_MARGIN times its run's
measured matrix-multiply ceiling: a number no run on that machine can give.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import perf_tables
from int8_cpu_kinds import accuracy_table, ceiling_table, speed_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "performance.md"
BLOCK = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)

# The ceiling is the best of a few 2048 x 2048 torch.mm products (perf/measure.py), a practical peak, not
# the cores' theoretical one: on the 2-core Zen 4 the engines' convolutions reach 1.12-1.15x of it
# (OpenVINO and ONNX Runtime, Inception-v4 fp32), while a figure twice the peak cannot be measured.
CEILING_MARGIN = 1.25
ENGINE_FILES = ("inception_v4_fp32", "inception_resnet_v2_fp32", "inception_v4_bf16", "inception_resnet_v2_bf16")
ENGINES = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime", "torch": "torch"}
REFERENCES = {
    "timm": "timm, NCHW",
    "timm-channels-last": "timm, channels_last",
    "onnxruntime": "timm's ONNX on ONNX Runtime",
    "openvino": "timm's ONNX on OpenVINO",
}


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def engine_results() -> list[dict]:
    return [load(f"engines-cpu/{name}") for name in ENGINE_FILES]


def _reference_label(ref: dict) -> str:
    label = REFERENCES[ref["key"]]
    if ref["dtype"] == "bf16":
        label += ", bf16 autocast" if ref["engine"] == "torch" else ", bf16"
    return label


def engines_table() -> str:
    """Ours (what predict and eval run) against each reference, every network and precision, one run each."""
    results = engine_results()
    first = results[0]
    versions = ", ".join(f"{k} {v}" for k, v in sorted(first["versions"].items()))
    cfg = first["config"]
    lines = [
        f"{first['machine']}, {first['threads']} threads; torch {first['torch_version']}, {versions}; batch "
        f"{cfg['batch_size']} at {cfg['input_size']} x {cfg['input_size']}, random weights, {cfg['iters']} "
        f"interleaved rounds after {cfg['warmup']} warm-up step(s) each; "
        f"{min(r['date'] for r in results)} to {max(r['date'] for r in results)} (UTC).",
        "",
        "| model | dtype | ours img/s (engine) | reference | reference img/s | speed-up median (IQR; range) "
        "| share of the ceiling: ours / reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ours, speedups = r["ours"], {s["reference"]: s for s in r["speedups"]}
        for i, ref in enumerate(r["references"]):
            shown = f"{ours['images_per_s']:.2f} ({ENGINES[ours['engine']]})" if i == 0 else ""
            lines.append(
                f"| {r['config']['model']} | {r['config']['dtype']} | {shown} | {_reference_label(ref)} | "
                f"{ref['images_per_s']:.2f} | {perf_tables.spread(speedups[ref['key']])} | "
                f"{ours['ceiling_share']:.0%} / {ref['ceiling_share']:.0%} |"
            )
    lines += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in results]
    return "\n".join(lines)


def engine_targets_table() -> str:
    """The engine targets, measured by the runs of the engines table."""
    by = {(r["config"]["model"], r["config"]["dtype"]): r for r in engine_results()}
    rows = []
    for model, short in (("inception_v4", "v4"), ("inception_resnet_v2", "IR-v2")):
        fp32, bf16 = by[(model, "fp32")], by[(model, "bf16")]
        engines = {
            s["reference"]: s["median"] for s in fp32["speedups"] if s["reference"] in ("onnxruntime", "openvino")
        }
        best_fp32 = max(ref["images_per_s"] for ref in fp32["references"] if ref["engine"] != "torch")
        best_fp32 = max(best_fp32, fp32["ours"]["images_per_s"])
        timm_bf16 = next(s["median"] for s in bf16["speedups"] if s["reference"] == "timm-channels-last")
        rows.append((short, engines, bf16["ours"]["images_per_s"] / best_fp32, timm_bf16))
    fp32_cells = ", ".join(f"{s} {e['onnxruntime']:.2f}x / {e['openvino']:.2f}x" for s, e, _, _ in rows)
    bf16_cells = ", ".join(f"{s} {b:.2f}x" for s, _, b, _ in rows)
    timm_cells = ", ".join(f"{s} {t:.2f}x" for s, _, _, t in rows)
    met = {  # on the figures as shown (two decimals)
        "fp32": all(round(min(e.values()), 2) >= 1.1 for _, e, _, _ in rows),
        "bf16": all(round(b, 2) >= 1.6 for _, _, b, _ in rows),
        "timm": all(round(t, 2) >= 1.2 for _, _, _, t in rows),
    }
    return "\n".join(
        [
            "| target | measured (medians of the rounds) | met? |",
            "|---|---|---|",
            f"| CPU fp32: what predict / eval run >= the best of ONNX Runtime and OpenVINO on timm's export (aim "
            f"1.1x) | {fp32_cells} (ours over ORT / OpenVINO) | {_met(met['fp32'])} |",
            f"| bf16 >= 1.6x the best fp32 engine | {bf16_cells} (ours bf16 img/s over the fastest fp32 row) | "
            f"{_met(met['bf16'])} |",
            f"| bf16 >= 1.2x timm channels_last under bf16 autocast | {timm_cells} | {_met(met['timm'])} |",
        ]
    )


def int8_targets_table() -> str:
    """The int8 targets, from the int8 experiment's native rows (benchmarks/int8_cpu_kinds.py)."""
    r = load("int8-cpu-kinds")
    speed = {(x["network"], x["engine"]): x for x in r["speed"] if x["kind"] == "native"}
    v4 = [f"{ENGINES[e]} {speed[('v4', e)]['speedup']['8-bit']['median']:.2f}x" for e in ("openvino", "onnxruntime")]
    faster = all(round(speed[("v4", e)]["speedup"]["8-bit"]["median"], 2) >= 2 for e in ("openvino", "onnxruntime"))
    opened = [x for x in r["accuracy"] if x["kind"] == "native" and x["weights"] == "8-bit, opened"]
    agreement = [x["agreement"] for x in opened]
    drop = max(x["fp32_top1"] - x["int8_top1"] for x in opened)
    return "\n".join(
        [
            "| target | measured | met? |",
            "|---|---|---|",
            f"| int8 >= 2x our fp32 on the same engine | Inception-v4 at 299, batch 16: {', '.join(v4)} (section "
            f"[CPU kinds](#cpu-kinds), native) | {_met(faster)} |",
            f"| int8 top-1 agreement with fp32 >= 98%, accuracy within 1 point (held-out images of trained "
            f"networks) | agreement {min(agreement):.1%}-{max(agreement):.1%}, accuracy at most "
            f"{100 * drop:.2f} points lower, over {len(opened)} network and engine pairs (section "
            f"[CPU kinds](#cpu-kinds), native) | accuracy {_met(drop <= 0.01)}; agreement "
            f"{_met(min(agreement) >= 0.98)} |",
        ]
    )


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def bench_results() -> list[dict]:
    """Every committed `inceptionnet bench` result of the inference and training modes."""
    names = [*perf_tables.TORCH_RUNS, *perf_tables.TRAIN_RUNS, "memory/plain", "memory/checkpointing"]
    return engine_results() + [load(name) for name in names]


def ceiling_errors() -> list[str]:
    """Every contender of the bench results whose throughput is above CEILING_MARGIN x its run's ceiling."""
    errors = []
    for r in bench_results():
        for c in (r["ours"], *r["references"]):
            if c["achieved_tflops"] > CEILING_MARGIN * c["ceiling_tflops"]:
                errors.append(
                    f"{r['config']['model']} {c['dtype']} {c['label']}: {c['images_per_s']:.2f} img/s is "
                    f"{c['achieved_tflops'] * 1e3:.0f} GFLOP/s, above {CEILING_MARGIN} x the ceiling of "
                    f"{c['ceiling_tflops'] * 1e3:.0f} measured in the same run ({r['command']})"
                )
    return errors


TABLES: dict[str, Callable[[], str]] = {
    "engines-cpu": engines_table,
    "engine-targets": engine_targets_table,
    "int8-targets": int8_targets_table,
    "int8-accuracy": lambda: accuracy_table(load("int8-cpu-kinds")),
    "int8-speed": lambda: speed_table(load("int8-cpu-kinds")),
    "int8-ceiling": lambda: ceiling_table(load("int8-cpu-kinds")),
    "torch-vs-timm": perf_tables.torch_table,
    "torch-targets": perf_tables.torch_targets_table,
    "training-step": perf_tables.training_table,
    "checkpointing-memory": perf_tables.memory_table,
    "loader": perf_tables.loader_table,
    "serve-v4": lambda: perf_tables.serve_table("inception_v4"),
    "serve-demo": lambda: perf_tables.serve_table("demo"),
    "serve-soak": perf_tables.soak_table,
    "serve-crosscheck": perf_tables.crosscheck_table,
}


def render(doc: str) -> str:
    """`doc` with every generated table rewritten from its results."""
    unknown = sorted({m["name"] for m in BLOCK.finditer(doc)} - set(TABLES))
    if unknown:
        raise SystemExit(f"docs/performance.md names tables this script does not know: {unknown}")
    return BLOCK.sub(lambda m: f"{m.group(1)}{TABLES[m['name']]()}\n{m.group(4)}", doc)


HAND = re.compile(r"<!-- by hand: (?P<why>[^>]+) -->")


def unaccounted_tables(doc: str) -> list[str]:
    """The first line of every table of `doc` that is neither generated nor declared written by hand (a
    `<!-- by hand: why -->` line right before it: a table of no measured figures, or of a run whose result
    was not kept)."""
    inside = {i for m in BLOCK.finditer(doc) for i in range(doc.count("\n", 0, m.start()), doc.count("\n", 0, m.end()))}
    lines = doc.split("\n")
    found = []
    for i, line in enumerate(lines):
        starts = line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|"))
        if starts and i not in inside and not (i > 0 and HAND.fullmatch(lines[i - 1].strip())):
            found.append(f"line {i + 1}: {line[:60]}")
    return found


def differing(doc: str) -> list[str]:
    """The names of the generated tables of `doc` that differ from what their results give."""
    now = {m["name"]: m["body"] for m in BLOCK.finditer(doc)}
    fresh = {m["name"]: m["body"] for m in BLOCK.finditer(render(doc))}
    return sorted(name for name in now if now[name] != fresh[name])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs")
    args = parser.parse_args()
    doc = DOC.read_text(encoding="utf-8")
    problems = [f"{name}: differs from its results" for name in differing(doc)] + ceiling_errors()
    problems += [f"a table neither generated nor marked by hand, {where}" for where in unaccounted_tables(doc)]
    if args.check:
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    DOC.write_text(render(doc), encoding="utf-8")
    for line in ceiling_errors():
        print(f"warning: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
