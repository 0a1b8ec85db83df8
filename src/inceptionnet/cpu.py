"""What this CPU computes natively: the one place that decides which CPU features exist.

Two precisions depend on them:

- int8: x86 int8 kernels multiply uint8 activations by int8 weights. With VNNI (AVX512-VNNI,
  AVX-VNNI) or AMX one instruction sums the products in 32 bits. Without them (AVX2 only, or
  AVX-512 without VNNI) the kernels of OpenVINO (oneDNN) and ONNX Runtime (MLAS) use VPMADDUBSW,
  which adds pairs of products in 16 bits and saturates at 32767: 255 x 127 x 2 = 64770 does not
  fit, so a network with 8-bit weights can compute something else than the network quantized.
  Weights in -64..64 (7 bits) keep every pair below 32767 (255 x 64 x 2 = 32640) on every CPU.
  On Arm the engines' int8 kernels widen each product before adding (taken as exact; not measured).
- bf16: AVX512-BF16 or AMX computes it; elsewhere the libraries emulate it, many times slower than
  fp32 (a 2048 x 2048 matrix product: 0.04 s with AVX512-BF16, 42 s emulated on the same CPU).

The flags are the CPU's own (cpuid, read by torch's cpuinfo), as the libraries see them; AVX-VNNI,
which torch does not probe, comes from Linux's /proc/cpuinfo. oneDNN (in PyTorch and in OpenVINO)
reads ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) and then uses no instruction above the ISA it names;
the features here are capped the same way, so that `ONEDNN_MAX_CPU_ISA=AVX2` makes a VNNI / BF16
machine behave, and be described, as an AVX2-only one (docs/performance.md, "CPU kinds"). ONNX
Runtime has no such switch: it always uses what the CPU has.

Any layer may import this module.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# The flags (Linux /proc/cpuinfo names) that decide a precision's speed and exactness here.
FEATURES = ("avx2", "avx512f", "avx_vnni", "avx512_vnni", "amx_int8", "avx512_bf16", "amx_bf16")
_VNNI = frozenset({"avx_vnni", "avx512_vnni", "amx_int8"})
_BF16 = frozenset({"avx512_bf16", "amx_bf16"})

# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) -> the flags of FEATURES each allows. "ALL" (or unset) caps nothing.
_AVX512 = frozenset({"avx2", "avx512f"})
_AMX = frozenset({"amx_int8", "amx_bf16"})
ISA_CAPS: dict[str, frozenset[str]] = {
    "SSE41": frozenset(),
    "AVX": frozenset(),
    "AVX2": frozenset({"avx2"}),
    "AVX2_VNNI": frozenset({"avx2", "avx_vnni"}),
    "AVX2_VNNI_2": frozenset({"avx2", "avx_vnni"}),
    "AVX512_CORE": _AVX512,
    "AVX512_CORE_VNNI": _AVX512 | {"avx512_vnni"},
    "AVX512_CORE_BF16": _AVX512 | {"avx512_vnni", "avx512_bf16"},
    "AVX512_CORE_FP16": _AVX512 | {"avx512_vnni", "avx512_bf16"},
    "AVX10_1_512": _AVX512 | {"avx512_vnni", "avx512_bf16"},
    "AVX10_2_512": _AVX512 | {"avx512_vnni", "avx512_bf16"},
    "AVX512_CORE_AMX": _AVX512 | {"avx512_vnni", "avx512_bf16"} | _AMX,
    "AVX512_CORE_AMX_FP16": _AVX512 | {"avx512_vnni", "avx512_bf16"} | _AMX,
    "AVX10_1_512_AMX": _AVX512 | {"avx512_vnni", "avx512_bf16"} | _AMX,
    "AVX10_1_512_AMX_FP16": _AVX512 | {"avx512_vnni", "avx512_bf16"} | _AMX,
    "AVX10_2_512_AMX_2": _AVX512 | {"avx512_vnni", "avx512_bf16"} | _AMX,
}
CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # oneDNN reads the first one set
INT8_ANY_CPU_RANGE = 64  # |weight| <= 64: no 16-bit saturation without VNNI (255 x 64 x 2 = 32640)
INT8_FULL_RANGE = 127  # symmetric 8-bit weights: exact with VNNI or AMX


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's model name, whether it is x86, and which of FEATURES it has after the ISA cap (`cap`)."""

    name: str
    x86: bool
    flags: frozenset[str]
    cap: str | None = None  # ONEDNN_MAX_CPU_ISA's value where it removed features

    @property
    def vnni(self) -> bool:
        """Int8 dot products summed in 32 bits: AVX512-VNNI, AVX-VNNI or AMX-INT8."""
        return bool(self.flags & _VNNI)

    @property
    def bf16(self) -> bool:
        """bf16 computed natively: AVX512-BF16 or AMX-BF16 (x86); elsewhere, never assumed."""
        return bool(self.flags & _BF16)

    @property
    def int8_saturates(self) -> bool:
        """Whether 8-bit weights can overflow the 16-bit sums of the int8 kernels (x86 without VNNI or AMX)."""
        return self.x86 and not self.vnni

    @property
    def int8_weight_range(self) -> int:
        """The largest |weight| the int8 kernels compute exactly here: 127 with VNNI / AMX (or not x86), else 64."""
        return INT8_ANY_CPU_RANGE if self.int8_saturates else INT8_FULL_RANGE

    def describe(self) -> str:
        """One line: "AMD EPYC (AVX2, AVX-512, VNNI, BF16)", with the cap where one applies."""
        names = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_int8": "AMX"}
        shown = [names[f] for f in ("avx2", "avx512f") if f in self.flags]
        shown += ["VNNI"] if self.vnni else []
        shown += [names[f] for f in ("avx512_bf16", "amx_int8") if f in self.flags]
        what = ", ".join(shown) or ("no AVX2" if self.x86 else platform.machine())
        capped = f"; limited by ONEDNN_MAX_CPU_ISA={self.cap}" if self.cap else ""
        return f"{self.name} ({what}{capped})"


def cpu_features() -> CpuFeatures:
    """This CPU's features, capped by ONEDNN_MAX_CPU_ISA as oneDNN caps its own (read at every call)."""
    cap = next((os.environ[v] for v in CAP_VARIABLES if os.environ.get(v)), None)
    return _capped(_detected(), cap.strip().upper() if cap else None)


@cache
def _capped(found: CpuFeatures, cap: str | None) -> CpuFeatures:
    allowed = ISA_CAPS.get(cap or "")
    if allowed is None or not found.x86:  # "ALL", unset, or a name oneDNN would ignore too
        return found
    flags = found.flags & allowed
    return CpuFeatures(found.name, found.x86, flags, cap if flags != found.flags else None)


@cache
def _detected() -> CpuFeatures:
    machine = platform.machine().lower()
    x86 = machine in ("x86_64", "amd64", "i386", "i686", "x86")
    name, listed = _proc_cpuinfo()
    flags = _torch_probes() if x86 else frozenset()
    if "avx2" in flags and "avx_vnni" in listed:  # AVX-VNNI, which torch does not probe
        flags |= {"avx_vnni"}
    return CpuFeatures(name or platform.processor() or machine, x86, flags)


def _proc_cpuinfo() -> tuple[str | None, frozenset[str]]:
    """The model name and the flags of Linux's /proc/cpuinfo (None and none elsewhere)."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n", 1)[0]  # every core has the same flags
    except OSError:
        return None, frozenset()
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
    return fields.get("model name"), frozenset(fields.get("flags", "").split())


def _torch_probes() -> frozenset[str]:
    """FEATURES as the CPU's cpuid reports them (through torch's cpuinfo): what the libraries dispatch on."""
    import torch

    probes = {
        "avx2": "_is_avx2_supported",
        "avx512f": "_is_avx512_supported",
        "avx512_vnni": "_is_vnni_supported",
        "avx512_bf16": "_is_avx512_bf16_supported",
        "amx_int8": "_is_amx_tile_supported",
        "amx_bf16": "_is_amx_tile_supported",
    }
    return frozenset(flag for flag, probe in probes.items() if getattr(torch.cpu, probe, lambda: False)())
