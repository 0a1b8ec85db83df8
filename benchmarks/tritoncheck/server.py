"""The `tritonserver` that the nvidia-pytriton wheel bundles, started on a model repository and stopped.

The wheel holds pytriton/tritonserver/bin/tritonserver (a real Triton Inference Server, built with
the Python backend only), backends/python/ (libtriton_python.so, triton_python_backend_utils.py), one
Python backend stub per Python version in python_backend_stubs/X.Y/, and the shared libraries they
need in nvidia_pytriton.libs/. Triton looks for the stub next to libtriton_python.so, so a backend
folder of links to those files and this Python's stub is made in a temporary folder. The stub embeds
libpython X.Y and takes its packages from the first `python3` on PATH, so this venv's bin/ goes first
on PATH and this Python's library folder first on LD_LIBRARY_PATH.

The server listens on 127.0.0.1 only, on free ports, in a session (and process group) of its own with
the stubs it starts; `stop` ends that whole group and removes the shared-memory regions the Python
backend made under /dev/shm (their names start with a prefix chosen here).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

SHM = Path("/dev/shm")
STOP_WAIT_S = 20.0


class ServerError(RuntimeError):
    """The bundled tritonserver is missing, cannot run here, or did not become ready."""


@dataclass(frozen=True)
class Bundle:
    server: Path  # bin/tritonserver
    backend: Path  # backends/python/
    stub: Path  # this Python's triton_python_backend_stub
    libs: Path  # nvidia_pytriton.libs/


def find_bundle() -> Bundle:
    """The server, backend, stub and libraries inside the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(f"nvidia-pytriton is not installed for {sys.executable}; run `make triton-check`")
    package = Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stubs = root / "python_backend_stubs"
    bundle = Bundle(
        server=root / "bin" / "tritonserver",
        backend=root / "backends" / "python",
        stub=stubs / version / "triton_python_backend_stub",
        libs=package.parent / "nvidia_pytriton.libs",
    )
    if not bundle.stub.is_file():
        have = sorted(p.name for p in stubs.iterdir()) if stubs.is_dir() else []
        raise ServerError(
            f"nvidia-pytriton has no Python backend stub for Python {version} (it has: {', '.join(have) or 'none'}); "
            "make .venv-triton with one of those (make triton-check PYTHON=python3.12)"
        )
    for path in (bundle.server, bundle.backend / "libtriton_python.so", bundle.libs):
        if not path.exists():
            raise ServerError(f"{path} is missing from the nvidia-pytriton wheel; reinstall it (rm -rf .venv-triton)")
    return bundle


def server_environment(bundle: Bundle) -> dict[str, str]:
    """The environment of the server and its stubs: this venv's python3 first on PATH, the libraries found."""
    env = dict(os.environ)
    libdirs = [str(bundle.libs)]
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):  # this Python's own libpython, before any other X.Y
        libdirs.insert(0, str(sysconfig.get_config_var("LIBDIR")))
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libdirs, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def check_libraries(bundle: Bundle, env: dict[str, str]) -> None:
    """Fail early, naming the library, where the server or the stub cannot be loaded on this machine."""
    for binary in (bundle.server, bundle.stub):
        try:
            out = subprocess.run(["ldd", str(binary)], env=env, capture_output=True, text=True, check=False).stdout
        except FileNotFoundError:
            return  # no ldd: the server's own log will say what is missing
        missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
        if missing and binary == bundle.stub and any(m.startswith("libpython") for m in missing):
            raise ServerError(
                f"the Python backend stub needs {', '.join(missing)}, and {sys.executable} (Python "
                f"{sys.version.split()[0]}) was built without a shared libpython: install it (Debian: apt-get "
                f"install libpython{sys.version_info.major}.{sys.version_info.minor}) or make .venv-triton with "
                "a Python built with --enable-shared (make triton-check PYTHON=...)"
            )
        if missing:
            raise ServerError(f"{binary} cannot load {', '.join(missing)} on this machine (ldd {binary})")


def backend_folder(bundle: Bundle, folder: Path) -> Path:
    """A backend folder whose python/ holds links to the wheel's backend files and this Python's stub."""
    python = folder / "python"
    python.mkdir(parents=True)
    for source in (*bundle.backend.iterdir(), bundle.stub):
        if source.is_file():
            (python / source.name).symlink_to(source)
    return folder


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class LocalTriton:
    """The bundled tritonserver on `repository`, on 127.0.0.1; a context manager that always stops it.

    `http` and `grpc` are "127.0.0.1:PORT"; `log` receives the server's output (stdout and stderr).
    """

    def __init__(self, repository: Path, workdir: Path, *, ready_timeout_s: float = 120.0) -> None:
        self.bundle = find_bundle()
        self.env = server_environment(self.bundle)
        check_libraries(self.bundle, self.env)
        self.log = workdir / "tritonserver.log"
        self.shm_prefix = f"tritoncheck-{uuid.uuid4().hex[:12]}-"
        http, grpc = free_ports(2)
        self.http, self.grpc = f"127.0.0.1:{http}", f"127.0.0.1:{grpc}"
        self.command = [
            str(self.bundle.server),
            f"--model-repository={repository}",
            f"--backend-directory={backend_folder(self.bundle, workdir / 'backends')}",
            "--http-address=127.0.0.1",
            f"--http-port={http}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc}",
            "--allow-metrics=false",
            "--pinned-memory-pool-byte-size=0",  # CPU only: no CUDA pinned memory
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--exit-timeout-secs=5",
        ]
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.removed_shm: list[str] = []  # the regions `stop` found left behind and removed

    def __enter__(self) -> LocalTriton:
        with self.log.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self) -> None:
        """Poll /v2/health/ready until the server and its models are ready, at most `ready_timeout_s`."""
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with status {self.process.returncode}\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.http}/v2/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass  # not listening yet, or 400 while models load
            time.sleep(0.25)
        raise ServerError(f"tritonserver not ready after {self.ready_timeout_s:.0f} s\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The server log's error lines (level E), then its last `lines` lines."""
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        errors = [line for line in text if line.startswith("E") and line[1:5].isdigit()]
        return "\n".join(
            [f"--- errors in {self.log} ---", *errors, f"--- last {lines} lines of {self.log} ---", *text[-lines:]]
        )

    def stop(self) -> list[str]:
        """End the server's process group (SIGTERM, then SIGKILL), then remove its /dev/shm regions; their names."""
        if self.process is not None:
            group = self.process.pid  # its own session: the group id is its pid
            _signal_group(group, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                _signal_group(group, signal.SIGKILL)
                self.process.wait()
            _signal_group(group, signal.SIGKILL)  # stubs that outlived the server
            self.process = None
        removed = sorted(p.name for p in SHM.glob(f"{self.shm_prefix}*"))
        for name in removed:
            (SHM / name).unlink(missing_ok=True)
        self.removed_shm.extend(removed)
        return removed


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone
        os.killpg(group, signum)
