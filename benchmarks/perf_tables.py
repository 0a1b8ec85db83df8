"""The renderers of docs/performance.md's PyTorch, training, memory, loader and serving tables, each from the
JSON its command wrote into benchmarks/results/ (docs_tables.py places them in the page)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TORCH_RUNS = [
    f"torch/{model}_{kind}"
    for model in ("inception_v4", "inception_resnet_v2")
    for kind in ("infer_fp32_nchw", "infer_fp32_nhwc", "infer_bf16_vs_fp32", "train_fp32")
]
TRAIN_RUNS = [f"train/{m}_{d}" for m in ("inception_v4", "inception_resnet_v2") for d in ("fp32", "bf16")]


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def spread(s: dict) -> str:
    """A speed-up's median, quartiles and range, as every table shows it."""
    return f"{s['median']:.2f}x ({s['q1']:.2f}-{s['q3']:.2f}; {s['min']:.2f}-{s['max']:.2f})"


def _stamp(runs: list[dict]) -> str:
    """The machine, versions and time span of some runs, as the line above their table."""
    first = runs[0]
    versions = ", ".join(f"{k} {v}" for k, v in sorted(first.get("versions", {}).items()))
    torch_version = first.get("torch_version", "")
    dates = sorted(r["date"] for r in runs)
    span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    return f"{first['machine']}; torch {torch_version}{', ' + versions if versions else ''}; {span} (UTC)."


def _commands(runs: list[dict]) -> list[str]:
    return ["", "Commands:", ""] + [f"- `{r['command']}`" for r in runs]


def torch_table() -> str:
    """The fused torch network against timm on PyTorch: inference in fp32 (both layouts) and bf16, a training step."""
    runs = [load(name) for name in TORCH_RUNS]
    lines = [
        _stamp(runs),
        "",
        "| model | mode | dtype ours / timm | timm layout | ours img/s | timm img/s | speed-up median (IQR; range), "
        "rounds | share of the ceiling: ours / timm | peak MB: ours / timm |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        cfg, ours, (ref,), (s,) = r["config"], r["ours"], r["references"], r["speedups"]
        mode = "infer (fused)" if cfg["mode"] == "infer" else cfg["mode"]
        layout = "NHWC" if ref["key"] == "timm-channels-last" else "NCHW"
        memory = " / ".join(_mb(m["peak_memory_mb"]) for m in (ours, ref))
        lines.append(
            f"| {cfg['model']} | {mode} | {ours['dtype']} / {ref['dtype']} | {layout} | {ours['images_per_s']:.2f} | "
            f"{ref['images_per_s']:.2f} | {spread(s)}, {len(s['per_round'])} | {ours['ceiling_share']:.0%} / "
            f"{ref['ceiling_share']:.0%} | {memory} |"
        )
    return "\n".join(lines + _commands(runs))


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def torch_targets_table() -> str:
    """The targets of the fused torch network against timm, from the torch table's runs."""
    by = {name.split("/")[1]: load(name)["speedups"][0] for name in TORCH_RUNS}

    def cell(kind: str) -> str:
        return ", ".join(f"{m} {spread(by[f'{m}_{kind}'])}" for m in ("inception_v4", "inception_resnet_v2"))

    def met(kind: str, target: float) -> str:
        ok = [round(by[f"{m}_{kind}"]["median"], 2) >= target for m in ("inception_v4", "inception_resnet_v2")]
        return (
            "yes"
            if all(ok)
            else (
                "**no**"
                if not any(ok)
                else "v4 " + ("yes" if ok[0] else "**no**") + ", IR-v2 " + ("yes" if ok[1] else "**no**")
            )
        )

    rows = [
        ("inference fp32 >= 1.4x timm default (eager, NCHW)", "infer_fp32_nchw", 1.4),
        ("inference fp32 >= 1.1x timm's best eager setting (channels_last)", "infer_fp32_nhwc", 1.1),
        ("bf16 inference >= 2.5x timm fp32 default", "infer_bf16_vs_fp32", 2.5),
        ("training step fp32 >= 1.2x timm default", "train_fp32", 1.2),
    ]
    lines = ["| target | measured (median of the interleaved rounds, IQR; range) | met? |", "|---|---|---|"]
    lines += [f"| {what} | {cell(kind)} | {met(kind, target)} |" for what, kind, target in rows]
    return "\n".join(lines)


def training_table() -> str:
    """Ours against timm in channels_last, a training step in fp32 and under bf16 autocast."""
    runs = [load(name) for name in TRAIN_RUNS]
    lines = [
        _stamp(runs),
        "",
        "| model | dtype | ours img/s | timm img/s | speed-up median (IQR; range) | ours / timm ms per step |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        cfg, ours, (ref,), (s,) = r["config"], r["ours"], r["references"], r["speedups"]
        dtype = "bf16 autocast" if cfg["dtype"] == "bf16" else cfg["dtype"]
        ms = " / ".join(f"{1000 * cfg['batch_size'] / m['images_per_s']:.0f}" for m in (ours, ref))
        lines.append(
            f"| {cfg['model']} | {dtype} | {ours['images_per_s']:.2f} | {ref['images_per_s']:.2f} | {spread(s)} "
            f"| {ms} |"
        )
    return "\n".join(lines + _commands(runs))


def memory_table() -> str:
    """Activation checkpointing: the peak memory of a training step and its time, with and without it."""
    runs = [load("memory/plain"), load("memory/checkpointing")]
    lines = [
        _stamp(runs),
        "",
        "| setting | peak RSS growth over one step | s/step (median) | command |",
        "|---|---|---|---|",
    ]
    for label, r in zip(("plain", "checkpointing per block"), runs, strict=True):
        ours = r["ours"]
        step = sorted(ours["step_s"])[len(ours["step_s"]) // 2]
        lines.append(f"| {label} | {ours['peak_memory_mb']:.0f} MB | {step:.1f} | `{r['command']}` |")
    return "\n".join(lines)


def loader_table() -> str:
    """`bench --mode loader`: each training input pipeline's images/s, per core, against ours from the folder."""
    r = load("loader")
    rates = {row["key"]: row for row in r["rates"]}
    base = next(iter(rates.values()))["images_per_s"]
    workers = r["config"]["workers"]
    lines = [
        f"{r['machine']}, {workers} workers; torch {r['torch_version']}; {r['files']} JPEGs; {r['date']} (UTC); "
        f"`{r['command']}`.",
        "",
        "| loader | images/s (median of the rounds; range) | per core | against ours (folder) |",
        "|---|---|---|---|",
    ]
    for row in rates.values():
        rate = row["images_per_s"]
        lines.append(
            f"| {row['label']} | {rate:.1f} ({min(row['rounds']):.1f}-{max(row['rounds']):.1f}) | "
            f"{rate / workers:.1f} | {rate / base:.2f}x |"
        )
    return "\n".join(lines)


def serve_table(name: str) -> str:
    """`bench --mode serve` of one network: each client count's rate and latency, the offline engine, the bad mix."""
    r = load(f"serve/{name}")
    cfg = r["config"]
    lines = [
        f"{r['machine']}; torch {r['torch_version']}; engine {r['engine']}; `--max-batch {cfg['max_batch']} "
        f"--max-wait-ms {cfg['max_wait_ms']:g}`; {r['date']} (UTC); `{r['command']}`.",
        "",
        "| clients | requests | requests/s (= images/s) | p50 ms | p99 ms | images per forward | not 200 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        rate = row["requests"] / row["seconds"]
        lines.append(
            f"| {row['clients']} | {row['requests']} | {rate:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['mean_batch']:.1f} | {row['failed']} |"
        )
    best = max(r["rows"], key=lambda row: row["requests"] / row["seconds"])
    lone = next(row for row in r["rows"] if row["clients"] == 1)
    alone = r["decode_ms"] + r["forward1_ms"]
    mix = ", ".join(f"{count:,} x {status}" for status, count in sorted(r["mix"].items()))
    fives = sum(count for status, count in r["mix"].items() if int(status) >= 500)
    before, after = r["rss_mb"]
    lines += [
        "",
        "| offline, same engine, same run | |",
        "|---|---|",
        f"| batches of {cfg['max_batch']} | {r['offline_images_per_s']:,.1f} images/s |",
        f"| one JPEG decoded and prepared + a batch-1 forward | {r['decode_ms']:.1f} ms + {r['forward1_ms']:.1f} ms = "
        f"{alone:.1f} ms (a lone request: {lone['p50_ms']:.1f} ms at p50, {lone['p50_ms'] / alone:.2f}x) |",
        f"| at saturation ({best['clients']} clients) | {best['requests'] / best['seconds']:,.1f} images/s, "
        f"{best['requests'] / best['seconds'] / r['offline_images_per_s']:.2f}x the offline rate |",
        f"| bad mix: {sum(r['mix'].values()):,} requests, {cfg['bad_fraction']:.0%} bad | {mix}; "
        f"{'**no 5xx**' if fives == 0 else f'**{fives} x 5xx**'}; server RSS {before:,.0f} MB before, "
        f"{after:,.0f} MB after |",
    ]
    return "\n".join(lines)


def soak_table() -> str:
    """The load-and-soak run of benchmarks/soak.py: good requests alone and beside the hostile ones."""
    r = load("serve/soak")
    base, mixed, rss = r["baseline"], r["mixed"], r["rss_mb"]
    hostile = sum(r["hostile_statuses"].values())
    fives = {k: n for k, n in r["hostile_statuses"].items() if k.split()[-1].startswith("5")}
    fives_good = {s: n for run in (base, mixed) for s, n in run["statuses"].items() if s.startswith("5")}
    lines = [
        f"{r['machine']}; torch {r['versions']['torch']}, hey {r['versions']['hey']}; {r['date']} (UTC); "
        f"`{r['command']}`; server options `{' '.join(r['config']['server_options'])}`.",
        "",
        "| run | good requests | hostile requests | good: statuses | good p50 ms | good p99 ms | requests/s |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, run, bad in (("good only", base, 0), ("with hostile", mixed, hostile)):
        statuses = ", ".join(f"{n:,} x {s}" for s, n in sorted(run["statuses"].items()))
        lines.append(
            f"| {name}, {run['clients']} + {r['config']['hostile_clients'] if bad else 0} clients | "
            f"{run['requests']:,} | {bad:,} | {statuses} | {run['p50_ms']:.1f} | {run['p99_ms']:.1f} | "
            f"{run['requests'] / run['seconds']:,.0f} |"
        )
    kinds = ", ".join(f"{n:,} x {k}" for k, n in sorted(r["hostile_statuses"].items()))
    lines += [
        "",
        f"Good p99 with the hostile part / without: **{mixed['p99_ms'] / base['p99_ms']:.2f}x**. "
        f"5xx: {sum(fives.values()) + sum(fives_good.values())} ({fives or 'none among the hostile'}). "
        f"Server RSS: {rss['after_warmup']:,.0f} MB after warm-up, {rss['peak']:,.0f} MB at its peak, "
        f"{rss['end']:,.0f} MB at the end (**{rss['end'] / rss['after_warmup'] - 1:+.1%}**).",
        "",
        f"Hostile requests by kind and status: {kinds}.",
        "",
        "Server refusal counters at the end: " + ", ".join(f"{k} {v:,.0f}" for k, v in r["refusals"].items()) + ".",
    ]
    return "\n".join(lines)


def crosscheck_table() -> str:
    """bench --mode serve beside hey at the same client counts, and the /v2 path against /v1 at saturation."""
    r = load("serve/crosscheck")
    cfg = r["config"]
    runs = {"bench": r["bench"], **{k: r[k] for k in ("v1_new_connections", "v1_keep_alive", "v2_keep_alive")}}
    lines = [
        f"{r['machine']}; torch {r['versions']['torch']}, hey {r['versions']['hey']}; engine {r['engine']}; "
        f"{cfg['model']} at 1/{round(1 / cfg['width'])} width, {cfg['input_size']} px, random weights; "
        f"{r['date']} (UTC); `{r['command']}`.",
        "",
        "| clients | bench --mode serve req/s | hey, /v1, new connections | hey, /v1, kept alive "
        "| hey, /v2 (OIP), kept alive |",
        "|---:|---:|---:|---:|---:|",
    ]
    bench = {row["clients"]: row["per_s"] for row in r["bench"]}
    for i, clients in enumerate(cfg["clients"]):
        cells = [f"{bench[clients]:.0f}"]
        for key in ("v1_new_connections", "v1_keep_alive", "v2_keep_alive"):
            row = runs[key][i]
            cells.append(f"{row['per_s']:.0f} ({row['per_s'] / bench[clients]:.2f}x)")
        lines.append(f"| {clients} | " + " | ".join(cells) + " |")
    rounds = r["saturation_rounds"]
    ratios = sorted(x["v2"]["per_s"] / x["v1"]["per_s"] for x in rounds)
    pairs = ", ".join(f"{x['v1']['per_s']:.0f} / {x['v2']['per_s']:.0f}" for x in rounds)
    failed = sum(row["failed"] for key in runs for row in runs[key])
    failed += sum(x[k]["failed"] for x in rounds for k in ("v1", "v2"))
    lines += [
        "",
        f"At saturation ({max(cfg['clients'])} clients, kept alive; the server pinned to one core on torch, hey on "
        f"the other), `/v1` / `/v2` requests/s in {len(rounds)} alternating rounds: {pairs}; `/v2` / `/v1` "
        f"median **{ratios[len(ratios) // 2]:.2f}x** (range {ratios[0]:.2f}-{ratios[-1]:.2f}). "
        f"Answers other than 200: {failed}.",
    ]
    return "\n".join(lines)
