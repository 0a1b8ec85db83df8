"""What one benchmark run measures: the network, the step, the precision, the engine, the references to compare with."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from inceptionnet.devices import dtype_named
from inceptionnet.inference.engines import ENGINES, bf16_refusal, bf16_supported, choose_engine
from inceptionnet.models import list_models
from inceptionnet.perf.references import TORCH_REFERENCES, reference_name

MODES = ("infer", "train")


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run. `fused=None` means: fused for inference, unfused for training.

    `engine` runs ours as `inceptionnet predict --engine` does ("auto": the same pick); the torch-only
    options (`compile`, `fused=False`, `channels_last=False`, training) make "auto" mean torch.
    `references` are timm's network run each of the ways of `perf.references.REFERENCES`, all
    timed in the same rounds as ours; "none" (or nothing) times ours alone.
    """

    model: str
    batch_size: int = 16
    input_size: int = 299
    mode: str = "infer"
    dtype: str = "fp32"
    engine: str = "auto"
    channels_last: bool = True
    fused: bool | None = None
    compile: bool = False
    checkpointing: bool = False
    merged_heads: bool = True  # training: each block's sibling 1x1 heads as one conv (models/merged.py), as train does
    references: tuple[str, ...] = ()
    reference_dtype: str | None = None  # None: the same dtype as ours
    iters: int = 10
    warmup: int = 2
    device: str = "cpu"
    width: float = 1.0
    num_classes: int = 1000
    seed: int = 0
    int8: str | None = None  # an int8 folder of `inceptionnet quantize` to time as ours (its model and input size)
    allow_emulated_bf16: bool = False  # time bf16 on a CPU that emulates it (refused otherwise)

    def resolved(self) -> BenchConfig:
        """Check the options and fill in the defaults that depend on others (the engine auto picks included)."""
        if self.model not in list_models():
            raise ValueError(f"unknown model {self.model!r}; choose one of: {', '.join(list_models())}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        dtype_named(self.dtype)
        dtype_named(self.reference_dtype or self.dtype)
        if self.iters < 1 or self.warmup < 0 or self.batch_size < 1:
            raise ValueError("iters and batch_size must be >= 1 and warmup >= 0")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
        fused = (self.mode == "infer") if self.fused is None else self.fused
        if fused and self.mode == "train":
            raise ValueError("the fused network is inference-only; drop --fused for --mode train")
        if self.checkpointing and self.mode != "train":
            raise ValueError("activation checkpointing only matters for training; use it with --mode train")
        if not self.merged_heads and self.mode != "train":
            raise ValueError(
                "--no-merged-heads is a training setting (inference merges after folding); use --mode train"
            )
        if self.int8 is not None and (self.mode != "infer" or self.dtype != "fp32" or self.engine == "torch"):
            raise ValueError("an int8 network runs inference on ONNX Runtime or OpenVINO: --mode infer, --dtype fp32")
        references = self._checked_references()
        # emulated bf16, where allowed, runs on torch: auto means torch then
        emulated = self._emulated_bf16() and self.dtype == "bf16" and self.engine == "auto"
        engine = "torch" if emulated else self._resolved_engine(fused)
        return replace(
            self,
            fused=fused,
            engine=engine,
            references=references,
            reference_dtype=self.reference_dtype or self.dtype,
        )

    def _resolved_engine(self, fused: bool) -> str:
        """The engine of ours: torch for the torch-only settings, else the engine `inference_network` would run."""
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose one of: {', '.join(ENGINES)}")
        torch_only = {
            "--mode train": self.mode == "train",
            "--compile": self.compile,
            "--no-fused": self.fused is False,
            "--no-channels-last": not self.channels_last,
        }
        asked = [option for option, on in torch_only.items() if on]
        if self.engine == "torch" or (self.engine == "auto" and asked):
            return "torch"
        if asked:
            raise ValueError(f"{', '.join(asked)}: only with --engine torch, not {self.engine}; drop it or use torch")
        return choose_engine(self.engine, dtype=self.dtype, device=self.device)

    def _checked_references(self) -> tuple[str, ...]:
        """The references without "none" and repeats, checked against the model, the width, the mode and device."""
        references = tuple(dict.fromkeys(r for r in self.references if r != "none"))
        for r in references:
            reference_name(self.model, r)
        if references and self.width != 1.0:
            raise ValueError("a reference comparison needs the full network; drop --width")
        engines = [r for r in references if r not in TORCH_REFERENCES]
        if engines and (self.mode != "infer" or not self.device.startswith("cpu")):
            raise ValueError(
                f"the {', '.join(engines)} reference(s) run inference on the CPU; use --mode infer --device cpu"
            )
        ref_dtype = self.reference_dtype or self.dtype
        if "onnxruntime" in engines and ref_dtype != "fp32":
            raise ValueError("ONNX Runtime runs timm's network in fp32 only; add --reference-dtype fp32")
        if "openvino" in engines and ref_dtype not in ("fp32", "bf16"):
            raise ValueError(f"OpenVINO runs fp32 or bf16, not {ref_dtype}; use --reference-dtype fp32 or bf16")
        return references

    def _emulated_bf16(self) -> bool:
        """Whether bf16 is asked for (ours or the references) on a CPU that emulates it; refused unless allowed."""
        device = torch.device(self.device)
        ours, theirs = self.dtype == "bf16", (self.reference_dtype or self.dtype) == "bf16"
        if not (ours or theirs) or bf16_supported(device):
            return False
        if not self.allow_emulated_bf16:
            raise ValueError(f"{bf16_refusal(device)}, or add --allow-emulated-bf16 to time the emulation")
        if (ours and self.engine == "openvino") or (theirs and "openvino" in self.references):
            raise ValueError("OpenVINO runs bf16 only on CPUs with AVX512-BF16 or AMX; time the emulation on torch")
        return True
