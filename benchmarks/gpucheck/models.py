"""The GPU check's network sections: the matmul ceiling, training (eager and torch.compile'd) and
inference (fp32, bf16, TensorRT) of ours against timm's, each filling its NetworkTiming."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from gpucheck.state import Check, SectionSkipped
from gpucheck.steps import describe_error, largest_batch, random_batch, tensorrt_module
from inceptionnet.devices import sync
from inceptionnet.export.fuse import fuse_for_inference
from inceptionnet.perf.measure import Step, infer_step, matmul_ceiling_tflops, timed, train_step

EAGER_TRAINING = "bf16 autocast, channels_last, eager"
COMPILED_TRAINING = "bf16 autocast, channels_last, torch.compile"


def ceiling(check: Check) -> None:
    """Best-of-10 speed of a large torch.mm in bf16 and in fp32: the card's practical peak."""
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        tflops = matmul_ceiling_tflops(device=check.device, dtype=dtype, n=check.cfg.ceiling_n, reps=10)
        check.result.ceiling_tflops[name] = tflops


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


def train_eager(check: Check, name: str) -> None:
    """Training steps, bf16 autocast, channels_last, eager, at the largest batch that fits both networks."""
    nets, cfg = check.pair(name), check.cfg
    timing = check.timing(f"{name} training eager", name, "training", EAGER_TRAINING, "bf16")

    def steps_at(batch: int) -> dict[str, Step]:
        x, y = random_batch(batch, cfg.input_size, device=check.device)
        return {k: train_step(m, x, y, autocast=torch.bfloat16) for k, m in nets.items()}

    timing.batch, timing.batches_tried = _fit(check, steps_at, cfg.max_batch)
    check.result.batch_sizes[f"{name} training"] = timing.batch
    check.timed_rounds(steps_at(timing.batch), timing)
    for model in nets.values():
        model.zero_grad(set_to_none=True)


def infer(check: Check, name: str, dtype: str) -> None:
    """Inference of a batch: ours fused (bf16 weights for bf16), timm's as it is (autocast for bf16)."""
    nets, cfg = check.pair(name), check.cfg
    low = torch.bfloat16 if dtype == "bf16" else None
    tf32 = dtype == "fp32" and check.device.type == "cuda" and torch.backends.cudnn.allow_tf32
    setting = f"{dtype}, channels_last, eager" + (" (cuDNN may use TF32)" if tf32 else "")
    timing = check.timing(f"{name} inference {dtype}", name, "inference", setting, dtype)
    ours = fuse_for_inference(nets["ours"]).to(memory_format=torch.channels_last)
    ours = ours.to(low) if low is not None else ours  # no BatchNorm left: cast once instead of autocasting

    def steps_at(batch: int) -> dict[str, Step]:
        x, _ = random_batch(batch, cfg.input_size, device=check.device)
        steps = {"ours": infer_step(ours, x.to(low) if low is not None else x, autocast=None)}
        if "timm" in nets:
            steps["timm"] = infer_step(nets["timm"], x, autocast=low)
        return steps

    timing.batch, timing.batches_tried = _fit(check, steps_at, cfg.max_batch)
    check.result.batch_sizes[f"{name} inference {dtype}"] = timing.batch
    check.timed_rounds(steps_at(timing.batch), timing)


def train_compiled(check: Check, name: str, side: str) -> None:
    """Training steps of one network (`side`: "ours" or "timm") under torch.compile (default mode), at the
    eager section's batch: compiled, its first step timed apart, then timed at once, before the next
    network is compiled; the compiled graphs are dropped afterwards."""
    batch = check.result.batch_sizes.get(f"{name} training")
    if batch is None:
        raise SectionSkipped("needs the batch size the eager training section finds, and it found none")
    model = check.pair(name)[side]
    timing = check.timing(f"{name} training compiled, {side}", name, "training", COMPILED_TRAINING, "bf16")
    timing.batch, timing.first_call = batch, "torch.compile and first step"
    x, y = random_batch(batch, check.cfg.input_size, device=check.device)
    step = train_step(torch.compile(model), x, y, autocast=torch.bfloat16)
    try:  # a compiler error fails this section alone, recorded with its message
        timing.first_call_s[side] = timed(step, check.device)
        check.timed_rounds({side: step}, timing)
    finally:
        del step
        model.zero_grad(set_to_none=True)
        torch._dynamo.reset()  # drop the compiled graphs and what they hold


def tensorrt(check: Check, name: str) -> None:
    """Inference through torch-tensorrt (fp16 kernels allowed) of ours (fused) and timm's network."""
    nets = check.pair(name)
    timing = check.timing(f"{name} inference TensorRT", name, "inference", "TensorRT fp16", "fp16")
    timing.batch = check.result.batch_sizes.get(f"{name} inference fp32", check.cfg.max_batch)
    timing.first_call = "TensorRT build"
    x = random_batch(timing.batch, check.cfg.input_size, device=check.device)[0].contiguous()  # engines take NCHW
    candidates = {"ours": fuse_for_inference(nets["ours"]).to(memory_format=torch.channels_last)}
    if "timm" in nets:
        candidates["timm"] = nets["timm"].eval()
    engines = {}
    for label, model in candidates.items():
        start = time.perf_counter()
        try:
            engines[label] = tensorrt_module(model, x)
        except Exception as err:  # an operation TensorRT cannot take fails the build: record it, go on
            timing.errors[label] = describe_error(err)
            continue
        timing.first_call_s[label] = time.perf_counter() - start
    if not engines:
        raise RuntimeError(f"TensorRT failed for every network: {timing.errors}")
    check.timed_rounds({k: infer_step(m, x, autocast=None) for k, m in engines.items()}, timing)
