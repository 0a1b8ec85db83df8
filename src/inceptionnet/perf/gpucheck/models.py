"""The GPU check's network sections: the matmul ceiling, training (eager and torch.compile'd) and
inference (fp32, bf16, TensorRT) of ours against timm's, each filling its `detail` dict."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from inceptionnet.devices import sync
from inceptionnet.export.fuse import fuse_for_inference
from inceptionnet.perf.gpucheck.state import Check, SectionSkipped
from inceptionnet.perf.gpucheck.steps import (
    describe_error,
    first_calls,
    largest_batch,
    random_batch,
    tensorrt_module,
)
from inceptionnet.perf.measure import Step, infer_step, matmul_ceiling_tflops, train_step


def ceiling(check: Check, detail: dict[str, Any]) -> None:
    """Best-of-10 speed of a large torch.mm in bf16 and in fp32: the card's practical peak."""
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        tflops = matmul_ceiling_tflops(device=check.device, dtype=dtype, n=check.cfg.ceiling_n, reps=10)
        detail[name] = check.report["ceiling_tflops"][name] = tflops


def _fit(check: Check, steps_at: Callable[[int], dict[str, Step]], start: int) -> tuple[int, list[int]]:
    """The largest batch (halving from `start`) at which every step of `steps_at(batch)` runs once."""
    nets = list(check.networks.values())

    def fits(batch: int) -> None:
        for pair in nets:
            for model in pair.values():
                model.zero_grad(set_to_none=True)  # gradients a failed try left behind
        for step in steps_at(batch).values():
            step()
        sync(check.device)

    return largest_batch(fits, start=start, device=check.device)


def train_eager(check: Check, name: str, detail: dict[str, Any]) -> None:
    """Training steps, bf16 autocast, channels_last, eager, at the largest batch that fits both networks."""
    nets, cfg = check.pair(name), check.cfg

    def steps_at(batch: int) -> dict[str, Step]:
        x, y = random_batch(batch, cfg.input_size, device=check.device)
        return {k: train_step(m, x, y, autocast=torch.bfloat16) for k, m in nets.items()}

    batch, tried = _fit(check, steps_at, cfg.max_batch)
    setting = "bf16 autocast, channels_last, eager"
    detail.update(model=name, what="training", setting=setting, dtype="bf16", batch=batch, batches_tried=tried)
    check.report["batch_sizes"][f"{name} training"] = batch
    check.timed_rounds(steps_at(batch), detail, training=True)
    for model in nets.values():
        model.zero_grad(set_to_none=True)


def infer(check: Check, name: str, dtype: str, detail: dict[str, Any]) -> None:
    """Inference of a batch: ours fused (bf16 weights for bf16), timm's as it is (autocast for bf16)."""
    nets, cfg = check.pair(name), check.cfg
    low = torch.bfloat16 if dtype == "bf16" else None
    ours = fuse_for_inference(nets["ours"]).to(memory_format=torch.channels_last)
    ours = ours.to(low) if low is not None else ours  # no BatchNorm left: cast once instead of autocasting

    def steps_at(batch: int) -> dict[str, Step]:
        x, _ = random_batch(batch, cfg.input_size, device=check.device)
        steps = {"ours": infer_step(ours, x.to(low) if low is not None else x, autocast=None)}
        if "timm" in nets:
            steps["timm"] = infer_step(nets["timm"], x, autocast=low)
        return steps

    batch, tried = _fit(check, steps_at, cfg.max_batch)
    tf32 = dtype == "fp32" and check.device.type == "cuda" and torch.backends.cudnn.allow_tf32
    setting = f"{dtype}, channels_last, eager" + (" (cuDNN may use TF32)" if tf32 else "")
    detail.update(model=name, what="inference", setting=setting, dtype=dtype, batch=batch, batches_tried=tried)
    check.report["batch_sizes"][f"{name} inference {dtype}"] = batch
    check.timed_rounds(steps_at(batch), detail, training=False)


def train_compiled(check: Check, name: str, detail: dict[str, Any]) -> None:
    """Training steps of both networks under torch.compile (default mode) at the eager section's batch.

    The first call's time (compilation and one step) is kept apart; a network whose compilation fails
    is recorded with its error and left out.
    """
    eager = check.report["details"].get(f"{name} training eager", {})
    if "images_per_s" not in eager:
        raise SectionSkipped("needs the batch size of the eager training section, which did not finish")
    nets = check.pair(name)
    x, y = random_batch(eager["batch"], check.cfg.input_size, device=check.device)
    setting = "bf16 autocast, channels_last, torch.compile"
    detail.update(model=name, what="training", setting=setting, dtype="bf16", batch=eager["batch"])
    steps = {k: train_step(torch.compile(m), x, y, autocast=torch.bfloat16) for k, m in nets.items()}
    try:
        errors = detail.setdefault("errors", {})
        first_calls(steps, device=check.device, seconds=detail.setdefault("compile_s", {}), errors=errors)
        if not steps:
            raise RuntimeError(f"torch.compile failed for every network: {errors}")
        check.timed_rounds(steps, detail, training=True)
    finally:
        steps.clear()
        for model in nets.values():
            model.zero_grad(set_to_none=True)
        torch._dynamo.reset()  # drop the compiled graphs and what they hold


def tensorrt(check: Check, name: str, detail: dict[str, Any]) -> None:
    """Inference through torch-tensorrt (fp16 kernels allowed) of ours (fused) and timm's network."""
    nets = check.pair(name)
    batch = check.report["batch_sizes"].get(f"{name} inference fp32", check.cfg.max_batch)
    x = random_batch(batch, check.cfg.input_size, device=check.device)[0].contiguous()  # engines take NCHW
    detail.update(model=name, what="inference", setting="TensorRT fp16", dtype="fp16", batch=batch)
    candidates = {"ours": fuse_for_inference(nets["ours"]).to(memory_format=torch.channels_last)}
    if "timm" in nets:
        candidates["timm"] = nets["timm"].eval()
    errors, builds, engines = detail.setdefault("errors", {}), detail.setdefault("build_s", {}), {}
    for label, model in candidates.items():
        start = time.perf_counter()
        try:
            engines[label] = tensorrt_module(model, x)
            builds[label] = time.perf_counter() - start
        except Exception as err:  # an operation TensorRT cannot take fails the build: record it, go on
            errors[label] = describe_error(err)
    if not engines:
        raise RuntimeError(f"TensorRT failed for every network: {errors}")
    check.timed_rounds({k: infer_step(m, x, autocast=None) for k, m in engines.items()}, detail, training=False)
