"""A run of the GPU check as it goes: the time budget, the sections done, the networks built, the report."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from gpucheck.config import DEADLINE_FACTOR, ESTIMATES_S, CheckConfig
from gpucheck.report import header, write_report
from gpucheck.results import NetworkTiming, Section
from gpucheck.steps import describe_error, free_memory
from inceptionnet.factory import create_model
from inceptionnet.models.summary import count_macs
from inceptionnet.perf.measure import Step, interleaved
from inceptionnet.perf.references import build_reference


class BudgetExceeded(BaseException):
    """A section ran past its deadline (a BaseException, so that no `except Exception` swallows it)."""


class SectionSkipped(Exception):
    """A section that cannot run here, with the reason."""


@contextlib.contextmanager
def deadline(seconds: float, why: str = "the time budget ran out") -> Iterator[None]:
    """Raise BudgetExceeded(`why`) inside the block once `seconds` have passed (SIGALRM: main thread, Unix
    only; elsewhere the block runs without a deadline). The signal is handled between Python bytecodes:
    a single native call that never returns (a hung kernel or driver call) is not interrupted."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_kill"):
        yield
        return

    def expire(_signum: int, _frame: object) -> None:
        raise BudgetExceeded(f"stopped {seconds:.3g} s after the section began: {why}")

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
        self.result = header(cfg, self.device)

    def remaining(self) -> float:
        return self.cfg.budget_s - (time.perf_counter() - self.began)

    def expected(self, kind: str) -> float:
        """Seconds a section of `kind` should take: the estimate, then 1.2 x the longest of its kind so far."""
        return 1.2 * self.longest[kind] if kind in self.longest else ESTIMATES_S[kind]

    def skip(self, name: str, kind: str, why: str) -> None:
        """Record a section that does not run."""
        self.result.sections.append(Section(name, kind, status="skipped", why=why))
        self.say(f"[{name}] skipped: {why}")
        self.write()

    def section(self, name: str, kind: str, run: Callable[[], None]) -> None:
        """Run `run()` if the time it is expected to take fits the budget left, with a deadline of
        DEADLINE_FACTOR times that (or the budget's end, if sooner).

        Its status is ok, skipped (SectionSkipped, or no time), stopped (past its deadline) or failed
        (any other error, recorded); what it measured stays in the report either way.
        """
        left, expected = self.remaining(), self.expected(kind)
        if left < expected:
            return self.skip(name, kind, f"needs about {expected:.0f} s, {max(left, 0):.0f} s of the budget left")
        limit = min(left, DEADLINE_FACTOR * expected)
        why = "the time budget ran out" if limit == left else f"{DEADLINE_FACTOR:g} x its estimate of {expected:.3g} s"
        self.say(f"[{name}] ({left:.0f} s of the budget left, deadline {limit:.0f} s) ...")
        entry = Section(name, kind, deadline_s=limit)
        start = time.perf_counter()
        try:
            with deadline(limit, why):
                run()
        except BudgetExceeded as err:
            entry.status, entry.why = "stopped", str(err)
        except SectionSkipped as err:
            entry.status, entry.why = "skipped", str(err)
        except Exception as err:  # recorded in the report; the other sections still run
            entry.status, entry.why = "failed", describe_error(err)
            self.say(traceback.format_exc())
        entry.seconds = time.perf_counter() - start
        if entry.status == "ok":
            self.longest[kind] = max(self.longest.get(kind, 0.0), entry.seconds)
        self.result.sections.append(entry)
        self.say(f"[{name}] {entry.status} in {entry.seconds:.1f} s" + (f": {entry.why}" if entry.why else ""))
        free_memory(self.device)
        return self.write()

    def write(self) -> None:
        """(Re)write the JSON and markdown report with everything measured so far."""
        self.result.elapsed_s = time.perf_counter() - self.began
        write_report(self.result, Path(self.cfg.out))

    def timing(self, section: str, model: str, what: str, setting: str, dtype: str) -> NetworkTiming:
        """The empty NetworkTiming of a network section, in the report from the start (it keeps what a
        stopped section measured)."""
        timing = self.result.networks[section] = NetworkTiming(model, what, setting, dtype)
        return timing

    def pair(self, name: str) -> dict[str, nn.Module]:
        """Ours and timm's network `name` (timm's unless the check runs without timm) on the device in
        channels_last, built once, and their multiply-adds per image in result.macs_per_image."""
        if name not in self.networks:
            torch.manual_seed(0)
            nets = {"ours": create_model(name), **({"timm": build_reference(name)} if self.cfg.timm else {})}
            with torch.device("meta"):  # shapes only: counting costs no arithmetic
                shapes = {"ours": create_model(name), **({"timm": build_reference(name)} if self.cfg.timm else {})}
                macs = {k: count_macs(m, input_size=self.cfg.input_size) for k, m in shapes.items()}
            self.result.macs_per_image[name] = macs
            self.networks[name] = {k: m.to(self.device, memory_format=torch.channels_last) for k, m in nets.items()}
        return self.networks[name]

    def timed_rounds(self, steps: dict[str, Step], timing: NetworkTiming) -> None:
        """Interleaved rounds of `steps` (perf.measure, as the benchmark's) at timing.batch, into `timing`."""
        times = interleaved(steps, rounds=self.cfg.iters, warmup=self.cfg.warmup, device=self.device)
        timing.record(times, macs=self.result.macs_per_image[timing.model])
