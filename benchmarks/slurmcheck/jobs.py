"""Batch jobs on the local cluster: submitted with sbatch, followed through `scontrol show job` and their
output file."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from slurmcheck.cluster import LocalSlurm

WAIT_S = 300.0
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL"}


class JobError(RuntimeError):
    """A job did not reach the state, or write the line, that the check waits for."""


@dataclass(frozen=True)
class Job:
    slurm: LocalSlurm
    id: str
    name: str
    output: Path

    def info(self) -> dict[str, str]:
        """`scontrol show job`'s fields (JobState, ExitCode, Restarts, RunTime, ...)."""
        text = self.slurm.run(["scontrol", "show", "job", "-o", self.id]).stdout
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def wait(self, *states: str, timeout: float = WAIT_S) -> dict[str, str]:
        """Wait until the job is in one of `states` (or finished in another, which fails the check)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.info()
            if info.get("JobState") in states:
                return info
            if info.get("JobState") in FINISHED:
                raise JobError(f"job {self.name} ({self.id}) ended {info.get('JobState')}, not {states}: {self.tail()}")
            time.sleep(0.5)
        raise JobError(f"job {self.name} ({self.id}) is not {states} after {timeout:.0f} s: {self.tail()}")

    def wait_for_line(self, pattern: str, *, after: int = 0, timeout: float = WAIT_S) -> re.Match[str]:
        """The first match of `pattern` in the job's output after character `after`, once it is written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.compile(pattern).search(self.text(), after)
            if found:
                return found
            if self.info().get("JobState") in FINISHED:
                break
            time.sleep(0.3)
        raise JobError(f"job {self.name} ({self.id}) wrote no line matching {pattern!r}: {self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return f"\n--- {self.output} (end) ---\n{self.text()[-chars:]}"


def submit(slurm: LocalSlurm, script: str, name: str, *options: str, env: dict[str, str]) -> Job:
    """sbatch `script` (its text) with `options` before it; the job's output is appended to jobs/NAME-ID.log."""
    folder = slurm.root / "jobs"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.sbatch"
    path.write_text(script)
    output = ["--output", f"{folder}/{name}-%j.log", "--open-mode=append", "--job-name", name]
    command = ["sbatch", "--parsable", *output, f"--chdir={slurm.root}", *options, str(path)]
    done = slurm.run(command, check=False, env=env)
    if done.returncode != 0:
        raise JobError(f"sbatch refused job {name}: {done.stderr.strip()}")
    job_id = done.stdout.strip().split(";")[0]
    return Job(slurm=slurm, id=job_id, name=name, output=folder / f"{name}-{job_id}.log")
