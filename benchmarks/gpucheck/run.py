"""The GPU check's sections in order, within the budget, and its command line."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from gpucheck import inputs, models
from gpucheck.config import CheckConfig
from gpucheck.report import JSON_NAME, LOG_NAME, MARKDOWN_NAME, markdown
from gpucheck.results import CheckResult
from gpucheck.state import Check
from gpucheck.steps import tensorrt_version
from inceptionnet.factory import create_model
from inceptionnet.models import list_models


def _network_sections(check: Check) -> None:
    names = check.cfg.models
    for name in names:
        check.section(f"{name} training eager", "train", partial(models.train_eager, check, name))
    for name in names:
        for dtype in ("fp32", "bf16"):
            check.section(f"{name} inference {dtype}", "infer", partial(models.infer, check, name, dtype))


def _module_count(name: str) -> int:
    with torch.device("meta"):  # no weights: only the structure is counted
        return sum(1 for _ in create_model(name).modules())


def _late_sections(check: Check) -> None:
    """The costly extras, last: torch.compile (ours, then timm's, of each network), then TensorRT. The
    network with the fewest modules (the smallest graph to compile) goes first, so that a tight budget
    still gets one network measured."""
    names = sorted(check.cfg.models, key=_module_count)
    for name in names:
        for side in ("ours", "timm") if check.cfg.timm else ("ours",):
            section = f"{name} training compiled, {side}"
            if check.cfg.compile:
                check.section(section, "compile", partial(models.train_compiled, check, name, side))
            else:
                check.skip(section, "compile", "torch.compile switched off (--no-compile or --tiny)")
    version, why = tensorrt_version()
    for name in names:
        if version is None:
            check.skip(f"{name} inference TensorRT", "tensorrt", why)
        else:
            check.section(f"{name} inference TensorRT", "tensorrt", partial(models.tensorrt, check, name))


def _refuse(cfg: CheckConfig) -> None:
    """Fail before anything is measured on what would spoil the whole run."""
    unknown = [name for name in cfg.models if name not in list_models()]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from: {', '.join(list_models())}")
    if cfg.timm and importlib.util.find_spec("timm") is None:
        raise ValueError(
            "timm is not installed, and every comparison needs it; install timm, or pass --no-timm to "
            "measure our networks alone"
        )
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("no CUDA device is visible; `--tiny` runs the check's CPU self-test instead")


def _say_machine(check: Check) -> None:
    r = check.result
    check.say(f"device: {r.device['name']} ({r.device['cpu_cores']} CPU cores)")
    check.say("versions: " + ", ".join(f"{k} {v}" for k, v in r.versions.items()))
    check.say(f"nvidia-smi: {r.machine['nvidia_smi']}")
    check.say(f"/dev/shm: {r.machine['shm']}")
    for note in r.notes:
        check.say(f"note: {note}")


def run_check(cfg: CheckConfig, *, log: Callable[[str], None] = print) -> CheckResult:
    """Run every section that fits the budget and write cfg.out/gpu-check.json and gpu-check.md; return the result."""
    _refuse(cfg)
    if cfg.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # both networks get cuDNN's fastest algorithm per shape
    check = Check(cfg, log=log)
    _say_machine(check)
    check.write()
    with tempfile.TemporaryDirectory(prefix="inceptionnet-gpucheck-") as tmp:
        check.section("matmul ceiling", "ceiling", partial(models.ceiling, check))
        _network_sections(check)
        check.section("JPEG training loader", "loader", partial(inputs.loader, check, Path(tmp)))
        check.section("JPEG decode on the device", "decode", partial(inputs.device_decode, check, Path(tmp)))
        _late_sections(check)
    check.result.verdicts = inputs.verdicts(check)
    check.write()
    return check.result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpucheck",
        description="Ours against timm on one CUDA GPU within a time budget: training and inference images/s, "
        "MFU, torch.compile, TensorRT, and the JPEG input pipeline. Writes OUT/gpu-check.json, OUT/gpu-check.md "
        "and OUT/gpu-check.log.",
    )
    parser.add_argument("--out", required=True, help="folder for the results (created); on a lent device, under $OUT")
    parser.add_argument("--tiny", action="store_true", help="CPU self-test: 75 px, batch 2, one round, no compile")
    parser.add_argument("--budget-s", type=float, help="seconds for all sections (default 440; --tiny: 600)")
    parser.add_argument("--models", nargs="+", help="networks (default: inception_resnet_v2 inception_v4)")
    parser.add_argument("--images", help="a folder of JPEGs for the input-pipeline sections (default: generated)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile sections")
    parser.add_argument("--no-timm", action="store_true", help="measure our networks alone, without timm's")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; exit status 1 when a section failed (its error is in the report), 2 on bad arguments."""
    args = build_parser().parse_args(argv)
    changes: dict[str, Any] = {"budget_s": args.budget_s, "images": args.images}
    changes["models"] = tuple(args.models) if args.models else None
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.no_compile:
        changes["compile"] = False
    if args.no_timm:
        changes["timm"] = False
    cfg = CheckConfig.tiny_run(args.out, **changes) if args.tiny else CheckConfig(out=args.out, **changes)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with (out / LOG_NAME).open("w") as log_file:

        def log(message: str) -> None:  # printed, and kept beside the results (a console may keep only its tail)
            line = f"[{time.perf_counter() - start:6.1f} s] {message}"
            print(line, flush=True)
            print(line, file=log_file, flush=True)

        try:
            result = run_check(cfg, log=log)
        except ValueError as err:
            log(f"error: {err}")
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(markdown(result), flush=True)
    print(f"written: {out / JSON_NAME}, {out / MARKDOWN_NAME}, {out / LOG_NAME}")
    return 1 if any(s.status == "failed" for s in result.sections) else 0
