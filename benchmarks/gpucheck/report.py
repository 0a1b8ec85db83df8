"""The GPU check's report: the result (results.CheckResult) as JSON (gpu-check.json) and one table row
per measurement, ours against timm, as markdown (gpu-check.md); the log of the run beside them."""

from __future__ import annotations

import dataclasses
import datetime
import math
from pathlib import Path

import torch

from gpucheck.config import CheckConfig, cores
from gpucheck.machine import machine, versions
from gpucheck.results import CheckResult
from inceptionnet.atomic import atomic_write
from inceptionnet.perf.measure import device_name

JSON_NAME = "gpu-check.json"
MARKDOWN_NAME = "gpu-check.md"
LOG_NAME = "gpu-check.log"


def header(cfg: CheckConfig, device: torch.device) -> CheckResult:
    """The report before any section: the machine, the versions, the settings."""
    found, notes = machine(device)
    return CheckResult(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        device={"type": device.type, "name": device_name(device), "cpu_cores": cores()},
        versions=versions(device),
        settings={
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,  # fp32 convolutions may use TF32
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "torch_threads": torch.get_num_threads(),
        },
        machine=found,
        config=dataclasses.asdict(cfg),
        notes=notes,
    )


def _number(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "%":
        return f"{value:.1f}%"
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def markdown(r: CheckResult) -> str:
    """The report as a markdown page: a header line, the table, the data-loading verdicts, what did not run."""
    v, cfg, ceilings = r.versions, r.config, r.ceiling_tflops
    lines = [
        f"# GPU check: {r.device['name']}",
        "",
        f"{r.date}; torch {v['torch']}, torchvision {v['torchvision']}, timm {v['timm'] or 'not installed'}, "
        f"inceptionnet {v['inceptionnet']}; {r.device['cpu_cores']} CPU cores; {cfg['input_size']} px; "
        + (f"bf16 matmul ceiling {ceilings['bf16']:.3g} TFLOP/s; " if "bf16" in ceilings else "")
        + f"{r.elapsed_s:.0f} s of the {cfg['budget_s']:.0f} s budget.",
        "",
        "| what | ours | timm | ours / timm |",
        "|---|---|---|---|",
    ]
    for row in r.rows():
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        lines.append(f"| {row.what} | {_number(row.ours, row.unit)} | {_number(row.timm, row.unit)} | {ratio} |")
    lines += [
        "",
        "Ours: `create_model` networks, fused (`fuse_for_inference`) for inference, bf16 weights for bf16 inference. "
        "timm: the same networks, eager, channels_last, bf16 by autocast. A training step: forward under bf16 "
        "autocast, cross-entropy, backward, SGD with momentum, on a random batch already on the device. "
        "MFU: 2 x multiply-adds x images/s (x 3 for training) over the bf16 matmul ceiling. The loader: the "
        "training loader and transform `train` runs, over JPEGs.",
    ]
    if r.verdicts:
        lines += ["", "Data loading:", ""] + [f"- {verdict.text}" for verdict in r.verdicts]
    not_run = [f"- {s.name}: {s.status}, {s.why}" for s in r.sections if s.status != "ok"]
    for name, timing in r.networks.items():  # one network of a pair that failed (compile, TensorRT)
        not_run += [f"- {name}, {label}: failed, {error}" for label, error in timing.errors.items()]
    if not_run:
        lines += ["", "Not measured:", "", *not_run]
    if r.notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in r.notes]
    return "\n".join(lines) + "\n"


def write_report(r: CheckResult, out: Path) -> None:
    """(Re)write out/gpu-check.json and out/gpu-check.md."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / JSON_NAME, r.to_json().encode())
    atomic_write(out / MARKDOWN_NAME, markdown(r).encode())
