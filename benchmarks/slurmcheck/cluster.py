"""A Slurm cluster on this machine for the length of a check: munged, slurmctld and two slurmd, all in
one temporary folder.

Debian's slurm-wlm (22.05 on bookworm) and munge. Nothing under /etc, /run or /var is read for the
cluster or written: munged gets its own key, socket, pid, log and seed files, and slurm.conf names
its state, spool, pid and log files, the munge socket (AuthInfo) and an empty plugin stack. No
cgroups: processes are tracked through /proc (proctrack/linuxproc) and tasks are not bound
(task/none). Both slurmd run here under two node names (`slurmd -N NAME`, each with a port of its
own and the machine's CPUs and memory as `slurmd -C` reports them); the first node is named after
the machine, so the first node of a job resolves (a job script's rendezvous host). Every daemon
listens on 127.0.0.1 only (CommunicationParameters=NoCtldInAddrAny,NoInAddrAny).

Every process started here carries SLURMCHECK=<id> in its environment, and so does all that Slurm
starts for it (slurmstepd, the job scripts, torchrun and its workers): `stop` ends the daemons'
process groups, then every process still carrying the mark, and says if one would not end.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

MARK = "SLURMCHECK"
START_TIMEOUT_S = 60.0
STOP_WAIT_S = 10.0
JOB_END_S = 45.0  # Slurm's KillWait (30 s) between SIGTERM and SIGKILL, and its clean-up
NEEDED = {"munged": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd", "sbatch": "slurm-client"}


class ClusterError(RuntimeError):
    """Slurm or munge is missing, or a daemon did not start or stop."""


def missing_commands() -> dict[str, str]:
    """The commands of the check this machine lacks, each with the Debian package that has it."""
    return {command: package for command, package in NEEDED.items() if shutil.which(command) is None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hardware() -> dict[str, str]:
    """This machine as `slurmd -C` describes it: NodeName, CPUs, SocketsPerBoard, CoresPerSocket, ..."""
    line = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    return dict(field.split("=", 1) for field in line.split())


def node_line(name: str, port: int, hw: dict[str, str]) -> str:
    return (
        f"NodeName={name} NodeHostname={name} NodeAddr=127.0.0.1 Port={port} CPUs={hw['CPUs']} "
        f"Sockets={hw['SocketsPerBoard']} CoresPerSocket={hw['CoresPerSocket']} "
        f"ThreadsPerCore={hw['ThreadsPerCore']} RealMemory={hw['RealMemory']} State=UNKNOWN"
    )


def slurm_conf(root: Path, nodes: dict[str, int], ctld_port: int, hw: dict[str, str]) -> str:
    """slurm.conf of a one-partition cluster whose every file lies under `root`."""
    lines = [
        "ClusterName=slurmcheck",
        f"SlurmctldHost={hw['NodeName']}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}/%n",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run'}/slurmd-%n.pid",
        f"SlurmctldLogFile={root / 'logs' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'logs'}/slurmd-%n.log",
        f"PlugStackConfig={root / 'plugstack.conf'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerParameters=bf_interval=2",  # a job made eligible again starts within seconds
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "SwitchType=switch/none",
        "MailProg=/bin/true",
        "ReturnToService=2",
        "KillWait=30",
        "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
        *(node_line(name, port, hw) for name, port in nodes.items()),
        "PartitionName=check Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4",
    ]
    return "\n".join(lines) + "\n"


def marked_processes(mark: str) -> list[int]:
    """The processes whose environment holds `SLURMCHECK=<mark>` (this one excepted)."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def listening(pid: int) -> list[str]:
    """The TCP addresses (hex, as /proc/net/tcp writes them) on which process `pid` listens."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # an fd closed meanwhile
            with_inode = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
            if with_inode:
                inodes.add(with_inode.group(1))
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                found.append(fields[1])
    return found


class LocalSlurm:
    """`with LocalSlurm(root) as slurm:` munged, slurmctld and a slurmd per node, running until the block ends.

    `slurm.env`: the environment for Slurm's commands and jobs (SLURM_CONF, the mark); `slurm.nodes`: the
    node names, the machine's hostname first.
    """

    def __init__(self, root: Path, *, nodes: int = 2) -> None:
        self.root = root
        self.mark = uuid.uuid4().hex
        self.hw = hardware()
        host = self.hw["NodeName"]
        try:
            socket.gethostbyname(host)
        except OSError as err:
            raise ClusterError(
                f"this machine's name {host} does not resolve ({err}), and a job's first node must: "
                f"add `127.0.0.1 {host}` to /etc/hosts"
            ) from err
        self.nodes = [host, *(f"{host}-{i + 1}" for i in range(1, nodes))]
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), MARK: self.mark}
        self.daemons: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> LocalSlurm:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._write_files()
        munge, key = self.root / "munge", self.root / "munge" / "key"
        files = [f"--{kind}-file={key / ('munged.' + kind)}" for kind in ("pid", "log", "seed")]
        socket_, key_file = f"--socket={munge / 'munge.socket'}", f"--key-file={key / 'munge.key'}"
        self._daemon("munged", ["munged", "-F", "--force", socket_, key_file, *files])
        self._wait_for(lambda: (munge / "munge.socket").exists(), "munged's socket")
        self._daemon("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        for name in self.nodes:
            self._daemon(f"slurmd-{name}", ["slurmd", "-D", "-N", name, "-f", str(self.conf)])
        self._wait_for(self._all_idle, f"nodes {', '.join(self.nodes)} idle")

    def _write_files(self) -> None:
        self.root.chmod(0o755)
        for sub in ("munge/key", "state", "run", "logs", *(f"spool/{n}" for n in self.nodes)):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "munge" / "key").chmod(0o700)
        key = self.root / "munge" / "key" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        (self.root / "plugstack.conf").write_text("")
        ports = {name: free_port() for name in self.nodes}
        self.conf.write_text(slurm_conf(self.root, ports, free_port(), self.hw))

    def _daemon(self, name: str, command: list[str]) -> None:
        log = (self.root / "logs" / f"{name}.out").open("w")
        self.daemons[name] = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def _wait_for(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            dead = [name for name, p in self.daemons.items() if p.poll() is not None]
            if dead:
                raise ClusterError(f"{', '.join(dead)} exited while waiting for {what}: see {self.root / 'logs'}")
            if ready():
                return
            time.sleep(0.5)
        raise ClusterError(f"no {what} after {START_TIMEOUT_S:.0f} s: see {self.root / 'logs'}")

    def _all_idle(self) -> bool:
        done = self.run(["sinfo", "-h", "-N", "-o", "%N %T"], check=False)
        states = dict(line.split() for line in done.stdout.splitlines() if line.strip())
        return all(states.get(name) == "idle" for name in self.nodes)

    def run(
        self, command: list[str], *, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """A Slurm command (sbatch, squeue, scontrol, ...) against this cluster; `env` is added to its environment."""
        environment = {**self.env, **(env or {})}
        done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise ClusterError(f"{' '.join(command)} exited with {done.returncode}: {done.stderr.strip()}")
        return done

    def listening_addresses(self) -> dict[str, list[str]]:
        """Each daemon's listening addresses, as a.b.c.d:port."""
        return {name: [_address(hex_) for hex_ in listening(p.pid)] for name, p in self.daemons.items()}

    def cancel_jobs(self) -> None:
        """Cancel the jobs still queued or running and wait (up to KillWait and a little) until Slurm let them go."""
        if "slurmctld" not in self.daemons or self.daemons["slurmctld"].poll() is not None:
            return
        jobs = self.run(["squeue", "-h", "-o", "%i"], check=False).stdout.split()
        if jobs:
            self.run(["scancel", *jobs], check=False)
        deadline = time.monotonic() + JOB_END_S
        while time.monotonic() < deadline and self.run(["squeue", "-h", "-o", "%i"], check=False).stdout.strip():
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel the jobs, end the daemons' process groups, then every process that carries the mark; fail if
        one remains."""
        self.cancel_jobs()
        for process in self.daemons.values():
            _signal_group(process, signal.SIGTERM)
        for process in self.daemons.values():
            try:
                process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=STOP_WAIT_S)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in marked_processes(self.mark):
                _kill(pid, sig)
            if _gone(self.mark):
                return
        raise ClusterError(f"processes {marked_processes(self.mark)} of the check would not end")


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _gone(mark: str) -> bool:
    deadline = time.monotonic() + STOP_WAIT_S
    while marked_processes(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not marked_processes(mark)


def _address(hex_: str) -> str:
    """'0100007F:1F90' -> '127.0.0.1:8080' (IPv4; IPv6 addresses are shown as they are)."""
    host, port = hex_.split(":")
    if len(host) != 8:
        return f"[{host}]:{int(port, 16)}"
    return ".".join(str(int(host[i : i + 2], 16)) for i in (6, 4, 2, 0)) + f":{int(port, 16)}"


# Where Debian's Slurm and munge keep their files by default: the check must leave them as they were.
DEFAULT_PLACES = tuple(
    Path(p)
    for p in (
        "/etc/slurm",
        "/etc/munge",
        "/run/munge",
        "/run/slurm",
        "/run/slurmctld",
        "/run/slurmd",
        "/var/spool/slurm",
        "/var/spool/slurmd",
        "/var/spool/slurmctld",
        "/var/lib/slurm",
        "/var/lib/munge",
        "/var/log/slurm",
        "/var/log/munge",
    )
)


def snapshot(places: tuple[Path, ...] = DEFAULT_PLACES) -> dict[str, float]:
    """Every file and folder under `places`, with its modification time."""
    found = {}
    for place in places:
        for path in [place, *place.rglob("*")] if place.exists() else []:
            found[str(path)] = path.lstat().st_mtime
    return found


def changed(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """Paths added, removed or modified between two snapshots."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
