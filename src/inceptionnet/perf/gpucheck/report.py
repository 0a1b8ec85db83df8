"""The GPU check's report: everything measured as JSON (gpu-check.json) and one table row per
measurement, ours against timm, as markdown (gpu-check.md)."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import platform
from pathlib import Path
from typing import Any

import torch
import torchvision

from inceptionnet._version import __version__
from inceptionnet.atomic import atomic_write
from inceptionnet.perf.gpucheck.config import CheckConfig, cores
from inceptionnet.perf.measure import device_name

JSON_NAME = "gpu-check.json"
MARKDOWN_NAME = "gpu-check.md"


def _installed(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def header(cfg: CheckConfig, device: torch.device) -> dict[str, Any]:
    """The report before any section: the machine, the versions, the settings, empty result fields."""
    cuda = device.type == "cuda"
    return {
        "check": "inceptionnet GPU check",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": {"type": device.type, "name": device_name(device), "cpu_cores": cores()},
        "versions": {
            "inceptionnet": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "timm": _installed("timm"),
            "torch_tensorrt": _installed("torch-tensorrt"),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "python": platform.python_version(),
        },
        "settings": {
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,  # fp32 convolutions may use TF32
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "torch_threads": torch.get_num_threads(),
        },
        "config": dataclasses.asdict(cfg),
        "ceiling_tflops": {},
        "macs_per_image": {},
        "batch_sizes": {},
        "details": {},
        "sections": [],
        "verdicts": [],
        "notes": [],
        "rows": [],
        "elapsed_s": 0.0,
    }


def _row(what: str, unit: str, ours: float | None, timm: float | None = None) -> dict[str, Any]:
    ratio = ours / timm if ours is not None and timm is not None and timm > 0 else None
    return {"what": what, "unit": unit, "ours": ours, "timm": timm, "ratio": ratio}


def _network_rows(detail: dict[str, Any], ceiling: float | None) -> list[dict[str, Any]]:
    label = f"{detail['model']} {detail['what']}, {detail['setting']}, batch {detail['batch']}"
    ips, tflops = detail["images_per_s"], detail["achieved_tflops"]
    rows = [_row(f"{label}: images/s", "images/s", ips.get("ours"), ips.get("timm"))]
    if ceiling:
        share = {k: 100 * v / ceiling for k, v in tflops.items()}
        rows.append(_row(f"{label}: MFU, % of the bf16 matmul ceiling", "%", share.get("ours"), share.get("timm")))
    for key, what in (("compile_s", "torch.compile: first step with compilation"), ("build_s", "TensorRT build")):
        if detail.get(key):
            times = detail[key]
            rows.append(_row(f"{detail['model']} {what} (s)", "s", times.get("ours"), times.get("timm")))
    return rows


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per measurement, in the order the sections ran: what, ours, timm, ours / timm."""
    out: list[dict[str, Any]] = []
    ceiling = report["ceiling_tflops"].get("bf16")
    for section in report["sections"]:
        detail = report["details"].get(section["name"], {})
        if "achieved_tflops" in detail:
            out += _network_rows(detail, ceiling)
        elif "loader" in detail:
            d = detail["loader"]
            setting = f"{d['workers']} worker(s), batch {d['batch_size']}, {detail['input_size']} px"
            what = f"JPEG training loader, {setting}: images/s"
            out.append(_row(what, "images/s", d["images_per_s"]))
        elif "decode" in detail:
            d = detail["decode"]
            what = f"JPEG decode + augmentation on {d['device']}, batch {d['batch_size']}: images/s"
            out.append(_row(what, "images/s", d["images_per_s"]))
    return out


def _number(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "%":
        return f"{value:.1f}%"
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown page: a header line, the table, the data-loading verdicts, what did not run."""
    v, cfg = report["versions"], report["config"]
    ceilings = report["ceiling_tflops"]
    lines = [
        f"# GPU check: {report['device']['name']}",
        "",
        f"{report['date']}; torch {v['torch']}, torchvision {v['torchvision']}, timm {v['timm'] or 'not installed'}, "
        f"inceptionnet {v['inceptionnet']}; {report['device']['cpu_cores']} CPU cores; {cfg['input_size']} px; "
        + (f"bf16 matmul ceiling {ceilings['bf16']:.3g} TFLOP/s; " if "bf16" in ceilings else "")
        + f"{report['elapsed_s']:.0f} s of the {cfg['budget_s']:.0f} s budget.",
        "",
        "| what | ours | timm | ours / timm |",
        "|---|---|---|---|",
    ]
    for r in report["rows"]:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        lines.append(f"| {r['what']} | {_number(r['ours'], r['unit'])} | {_number(r['timm'], r['unit'])} | {ratio} |")
    lines += [
        "",
        "Ours: `create_model` networks, fused (`fuse_for_inference`) for inference, bf16 weights for bf16 inference. "
        "timm: the same networks, eager, channels_last, bf16 by autocast. A training step: forward under bf16 "
        "autocast, cross-entropy, backward, SGD with momentum, on a random batch already on the device. "
        "MFU: 2 x multiply-adds x images/s (x 3 for training) over the bf16 matmul ceiling.",
    ]
    if report["verdicts"]:
        lines += ["", "Data loading:", ""] + [f"- {verdict['text']}" for verdict in report["verdicts"]]
    not_run = [f"- {s['name']}: {s['status']}, {s['why']}" for s in report["sections"] if s["status"] != "ok"]
    for name, detail in report["details"].items():  # one network of a pair that failed (compile, TensorRT)
        not_run += [f"- {name}, {label}: failed, {error}" for label, error in detail.get("errors", {}).items()]
    if not_run:
        lines += ["", "Not measured:", "", *not_run]
    if report["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> None:
    """Fill in the rows and (re)write out/gpu-check.json and out/gpu-check.md."""
    out.mkdir(parents=True, exist_ok=True)
    report["rows"] = rows(report)
    atomic_write(out / JSON_NAME, json.dumps(report, indent=2, default=str).encode())
    atomic_write(out / MARKDOWN_NAME, markdown(report).encode())
