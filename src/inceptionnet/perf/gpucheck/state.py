"""A run of the GPU check as it goes: the time budget, the sections done, the networks built, the report."""

from __future__ import annotations

import contextlib
import signal
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inceptionnet.factory import create_model
from inceptionnet.models.summary import count_macs
from inceptionnet.perf.gpucheck.config import ESTIMATES_S, CheckConfig
from inceptionnet.perf.gpucheck.report import header, write_report
from inceptionnet.perf.gpucheck.steps import describe_error, free_memory
from inceptionnet.perf.measure import Step, interleaved
from inceptionnet.perf.references import build_reference


class BudgetExceeded(BaseException):
    """The time budget ran out inside a section (a BaseException, so that no `except Exception` swallows it)."""


class SectionSkipped(Exception):
    """A section that cannot run here, with the reason."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise BudgetExceeded inside the block once `seconds` have passed (SIGALRM: main thread, Unix only;
    elsewhere the block runs without a deadline)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_kill"):
        yield
        return

    def expire(_signum: int, _frame: object) -> None:
        raise BudgetExceeded(f"stopped when the time budget ran out ({seconds:.0f} s after the section began)")

    # A timer thread signals the main thread itself: a process-wide timer signal may land on a native
    # thread of an inference engine or a BLAS pool, which some of them do not survive.
    timer = threading.Timer(max(seconds, 0.001), signal.pthread_kill, (threading.main_thread().ident, signal.SIGALRM))
    timer.daemon = True
    previous = signal.signal(signal.SIGALRM, expire)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()  # a signal being sent now arrives before the previous handler is back
        signal.signal(signal.SIGALRM, previous)


class Check:
    """The state of one run: configuration, device, budget, networks built so far, the report as it grows."""

    def __init__(self, cfg: CheckConfig, *, log: Callable[[str], None]) -> None:
        self.cfg, self.say = cfg, log
        self.device = torch.device(cfg.device)
        self.began = time.perf_counter()
        self.networks: dict[str, dict[str, nn.Module]] = {}
        self.longest: dict[str, float] = {}  # seconds of the longest finished section of each kind
        self.report = header(cfg, self.device)

    def remaining(self) -> float:
        return self.cfg.budget_s - (time.perf_counter() - self.began)

    def expected(self, kind: str) -> float:
        """Seconds a section of `kind` should take: the estimate, then 1.2 x the longest of its kind so far."""
        return 1.2 * self.longest[kind] if kind in self.longest else ESTIMATES_S[kind]

    def skip(self, name: str, kind: str, why: str) -> None:
        """Record a section that does not run."""
        self.report["sections"].append({"name": name, "kind": kind, "status": "skipped", "why": why, "seconds": 0.0})
        self.say(f"[{name}] skipped: {why}")
        self.write()

    def section(self, name: str, kind: str, run: Callable[[dict[str, Any]], None]) -> None:
        """Run `run(detail)` if the time it is expected to take fits the budget left; stop it at the budget's end.

        Its status is ok, skipped (SectionSkipped, or no time), stopped (out of time) or failed (any
        other error, recorded); `detail` (report["details"][name]) keeps what it measured either way.
        """
        left, expected = self.remaining(), self.expected(kind)
        if left < expected:
            return self.skip(name, kind, f"needs about {expected:.0f} s, {max(left, 0):.0f} s of the budget left")
        self.say(f"[{name}] ({left:.0f} s of the budget left) ...")
        entry: dict[str, Any] = {"name": name, "kind": kind, "status": "ok"}
        start = time.perf_counter()
        try:
            with deadline(left):
                run(self.report["details"].setdefault(name, {}))
        except BudgetExceeded as err:
            entry.update(status="stopped", why=str(err))
        except SectionSkipped as err:
            entry.update(status="skipped", why=str(err))
        except Exception as err:  # recorded in the report; the other sections still run
            entry.update(status="failed", why=describe_error(err))
            self.say(traceback.format_exc())
        entry["seconds"] = time.perf_counter() - start
        if entry["status"] == "ok":
            self.longest[kind] = max(self.longest.get(kind, 0.0), entry["seconds"])
        self.report["sections"].append(entry)
        self.say(
            f"[{name}] {entry['status']} in {entry['seconds']:.1f} s" + (f": {entry['why']}" if "why" in entry else "")
        )
        free_memory(self.device)
        return self.write()

    def write(self) -> None:
        """(Re)write the JSON and markdown report with everything measured so far."""
        self.report["elapsed_s"] = time.perf_counter() - self.began
        write_report(self.report, Path(self.cfg.out))

    def pair(self, name: str) -> dict[str, nn.Module]:
        """Ours and timm's network `name` on the device in channels_last, built once (timm's where timm is
        installed), and their multiply-adds per image in report["macs_per_image"]."""
        if name not in self.networks:
            torch.manual_seed(0)
            nets = {"ours": create_model(name)}
            try:
                nets["timm"] = build_reference(name)
            except ValueError as err:
                self.report["notes"].append(f"{name}: measured without timm's network ({err})")
            with torch.device("meta"):  # shapes only: counting costs no arithmetic
                shapes = {"ours": create_model(name), **({"timm": build_reference(name)} if "timm" in nets else {})}
                macs = {k: count_macs(m, input_size=self.cfg.input_size) for k, m in shapes.items()}
            self.report["macs_per_image"][name] = macs
            self.networks[name] = {k: m.to(self.device, memory_format=torch.channels_last) for k, m in nets.items()}
        return self.networks[name]

    def timed_rounds(self, steps: dict[str, Step], detail: dict[str, Any], *, training: bool) -> None:
        """Interleaved rounds of `steps` at detail["batch"] into `detail`: step times, images/s, TFLOP/s."""
        times = interleaved(steps, rounds=self.cfg.iters, warmup=self.cfg.warmup, device=self.device)
        macs = self.report["macs_per_image"][detail["model"]]
        flops_per_mac = 2 * (3 if training else 1)  # a backward pass costs about twice the forward
        ips = {k: detail["batch"] / statistics.median(v) for k, v in times.items()}
        detail.update(
            step_s=times,
            images_per_s=ips,
            achieved_tflops={k: macs[k] * flops_per_mac * v / 1e12 for k, v in ips.items()},
        )
