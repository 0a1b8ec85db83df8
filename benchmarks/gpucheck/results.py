"""What one run of the GPU check found, typed as the benchmark's results are (perf/results.py): the
machine, each section's outcome, each network section's timed rounds, the input pipeline, the
verdicts; one row per measurement (ours, timm, ours / timm) and the whole as JSON.

Unlike the benchmark's, these objects grow while the check runs (each section fills its own as it
goes, and the report is rewritten after every section), so a stopped section keeps what it measured.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from inceptionnet.perf.measure import rates
from inceptionnet.perf.pipeline import DecodeSpeed, LoaderSpeed, Verdict


@dataclass
class Section:
    """One section's outcome: ok, skipped (cannot run here, or no time), stopped (past its deadline) or failed."""

    name: str
    kind: str  # the key of its estimate in config.ESTIMATES_S
    status: str = "ok"
    seconds: float = 0.0
    deadline_s: float | None = None  # None: it did not start
    why: str | None = None


@dataclass
class NetworkTiming:
    """One network section: ours and timm's network (or one of them) timed in interleaved rounds at one batch."""

    model: str
    what: str  # "training" or "inference"
    setting: str  # e.g. "bf16 autocast, channels_last, eager"
    dtype: str
    batch: int = 0
    batches_tried: list[int] = field(default_factory=list)
    step_s: dict[str, list[float]] = field(default_factory=dict)  # by contender: "ours", "timm"
    images_per_s: dict[str, float] = field(default_factory=dict)  # batch / median step
    achieved_tflops: dict[str, float] = field(default_factory=dict)
    first_call: str | None = None  # what first_call_s times: "torch.compile and first step", "TensorRT build"
    first_call_s: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # a contender left out, and why

    @property
    def label(self) -> str:
        return f"{self.model} {self.what}, {self.setting}, batch {self.batch}"

    def record(self, times: dict[str, list[float]], *, macs: dict[str, int]) -> None:
        """Fill in interleaved rounds' step times and what follows from them (perf.measure.rates, as bench's)."""
        for key, steps in times.items():
            self.step_s[key] = steps
            ips, tflops = rates(steps, batch=self.batch, macs_per_image=macs[key], training=self.what == "training")
            self.images_per_s[key], self.achieved_tflops[key] = ips, tflops


@dataclass(frozen=True)
class Row:
    """One measurement, ours against timm (None where a side was not measured)."""

    what: str
    unit: str
    ours: float | None
    timm: float | None = None

    @property
    def ratio(self) -> float | None:
        return self.ours / self.timm if self.ours is not None and self.timm and self.timm > 0 else None


@dataclass
class CheckResult:
    """The report as it grows: the machine and versions first, then what each section measured."""

    date: str
    device: dict[str, Any]  # type, name, CPU cores
    versions: dict[str, str | None]
    settings: dict[str, Any]  # cuDNN and matmul settings the timings ran under
    machine: dict[str, Any]  # what the start-up checks found: nvidia-smi, /dev/shm
    config: dict[str, Any]
    ceiling_tflops: dict[str, float] = field(default_factory=dict)
    macs_per_image: dict[str, dict[str, int]] = field(default_factory=dict)
    batch_sizes: dict[str, int] = field(default_factory=dict)
    networks: dict[str, NetworkTiming] = field(default_factory=dict)  # by section name
    loader: LoaderSpeed | None = None
    decode: DecodeSpeed | None = None
    sections: list[Section] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def rows(self) -> list[Row]:
        """One row per measurement: the network sections' in the order they ran (the sections of one setting
        that time ours and timm's network apart, torch.compile's, share a row), then the input pipeline's."""
        merged: dict[str, NetworkTiming] = {}
        for t in self.networks.values():
            if not t.images_per_s:
                continue  # stopped or failed before its timed rounds
            into = merged.setdefault(
                t.label, NetworkTiming(t.model, t.what, t.setting, t.dtype, t.batch, first_call=t.first_call)
            )
            into.images_per_s.update(t.images_per_s)
            into.achieved_tflops.update(t.achieved_tflops)
            into.first_call_s.update(t.first_call_s)
        rows = [row for timing in merged.values() for row in self._network_rows(timing)]
        if self.loader is not None:
            d = self.loader
            setting = f"{d.workers} worker(s), batch {d.batch_size}, {self.config['input_size']} px"
            rows.append(Row(f"JPEG training loader, {setting}: images/s", "images/s", d.images_per_s))
        if self.decode is not None:
            what = f"JPEG decode + training transform on {self.decode.device}, batch {self.decode.batch_size}: images/s"
            rows.append(Row(what, "images/s", self.decode.images_per_s))
        return rows

    def _network_rows(self, t: NetworkTiming) -> list[Row]:
        ips, tflops = t.images_per_s, t.achieved_tflops
        rows = [Row(f"{t.label}: images/s", "images/s", ips.get("ours"), ips.get("timm"))]
        ceiling = self.ceiling_tflops.get("bf16")
        if ceiling:
            share = {k: 100 * v / ceiling for k, v in tflops.items()}
            rows.append(Row(f"{t.label}: MFU, % of the bf16 matmul ceiling", "%", share.get("ours"), share.get("timm")))
        if t.first_call_s:
            first = t.first_call_s
            rows.append(Row(f"{t.model} {t.first_call} (s)", "s", first.get("ours"), first.get("timm")))
        return rows

    def to_json(self) -> str:
        rows = [{**asdict(r), "ratio": r.ratio} for r in self.rows()]
        return json.dumps({**asdict(self), "rows": rows}, indent=2, default=str)
