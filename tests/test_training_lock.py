"""A run folder belongs to one command at a time: a second `train` into a folder a live run holds is refused
before it writes anything, naming the holder; a holder killed with SIGKILL blocks nobody."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inceptionnet.atomic import atomic_write
from inceptionnet.cli import main
from inceptionnet.training import runlock
from inceptionnet.training.distributed import Context
from inceptionnet.training.runlock import RunFolderBusy, claim, run_owner
from inceptionnet.weights.runfolder import OWNER, read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

WAIT = 120  # seconds: the longest any wait below may take before the test fails


@pytest.fixture(scope="module")
def data(tmp_path_factory, make_image_folder) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("lock") / "data", train=3, val=1)


def _command(data: Path, out: Path, workers: int = 0) -> list[str]:
    """A training command of 2 epochs x 2 steps (6 images, batch 3) that saves a checkpoint after every step."""
    args = ["train", "--data", str(data), "--out-dir", str(out), "--model", "inception_v3", "--width", "0.125"]
    args += ["--input-size", "75", "--epochs", "2", "--batch-size", "3", "--num-workers", str(workers)]
    args += ["--device", "cpu"]
    return [*args, "--no-progress", "--lr", "0.01", "--log-every", "1", "--checkpoint-every", "1"]


def _start(data: Path, out: Path, workers: int = 0) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    command = [sys.executable, "-m", "inceptionnet", *_command(data, out, workers)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(condition, job: subprocess.Popen, what: str) -> None:
    """Poll `condition()` until it holds; fail if `job` ends first or WAIT seconds pass."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if job.poll() is not None:
            pytest.fail(f"the run ended before {what}: {job.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {WAIT} s")
        time.sleep(0.02)


def _holder(folder: Path) -> int | None:
    """The process id the folder's owner file names, None while there is none."""
    try:
        return json.loads((folder / OWNER).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def _assert_each_record_once(folder: Path) -> None:
    records = read_metrics(folder / "metrics.jsonl")
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2, 3, 4]


def test_a_second_command_into_a_held_folder_is_refused_and_writes_nothing(data, tmp_path) -> None:
    out = tmp_path / "run"
    first = _start(data, out)
    try:
        _wait_for(lambda: _holder(out) == first.pid, first, "lock")
        first.send_signal(signal.SIGSTOP)  # the folder stays as it is while the second command tries
        before = _hashes(out)
        second = _start(data, out)
        log, _ = second.communicate(timeout=WAIT)
        assert second.returncode == 2, log[-3000:]
        assert f"{out} is in use by another training run, process {first.pid} on host {socket.gethostname()}" in log
        assert "choose another --out-dir" in log and " ".join(_command(data, out)) in log
        assert _hashes(out) == before
        first.send_signal(signal.SIGCONT)
        log, _ = first.communicate(timeout=WAIT)
    finally:
        first.send_signal(signal.SIGCONT)
        first.kill()
    assert first.returncode == 0, log[-3000:]
    _assert_each_record_once(out)
    assert not (out / OWNER).exists()  # the run let the folder go


def test_a_holder_killed_with_sigkill_blocks_nothing(data, tmp_path, capsys) -> None:
    # Its loader worker outlives it for a few seconds, and holds no lock: the same command, right away, goes on.
    out = tmp_path / "run"
    job = _start(data, out, workers=1)
    try:
        _wait_for(lambda: (out / "last.pt").exists(), job, "checkpoint")
        job.send_signal(signal.SIGKILL)
        job.communicate(timeout=WAIT)
    finally:
        job.kill()
    assert _holder(out) == job.pid  # its owner file is left behind, its lock is not
    assert main(_command(data, out, workers=1)) == 0  # the same command continues the run
    assert f"{out} holds this run: continuing" in capsys.readouterr().out
    _assert_each_record_once(out)
    assert not (out / OWNER).exists()


def test_under_torchrun_rank_0_is_refused_and_the_group_stops(data, tmp_path) -> None:
    out = tmp_path / "run"
    lock = claim(out)
    try:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--max-restarts", "0"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
        job = subprocess.run(
            [*launcher, "-m", "inceptionnet", *_command(data, out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert job.returncode != 0
        assert f"{out} is in use by another training run, process {os.getpid()}" in job.stderr
        assert sorted(p.name for p in out.iterdir()) == [OWNER]
    finally:
        lock.release()


def test_the_folder_is_refused_while_held_and_free_once_released(tmp_path) -> None:
    folder = tmp_path / "new" / "run"
    lock = claim(folder, world_size=2)
    with pytest.raises(RunFolderBusy, match=rf"process {os.getpid()} on host .*, rank 0 of 2 processes, started"):
        claim(folder)
    lock.release()
    assert not (tmp_path / "new").exists()  # the folders the claim made, left empty, are gone again
    claim(folder).release()
    # A command that opened the owner file just before its holder left finds it gone and claims afresh.
    held = claim(folder)
    waiting = os.open(folder / OWNER, os.O_RDWR)
    held.release()
    fcntl.flock(waiting, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not runlock._still_named(waiting, folder / OWNER)
    os.close(waiting)
    # A forked child (a loader worker) does not keep the lock of its parent alive.
    held = claim(folder)
    child = os.fork()
    if child == 0:  # its copy of the locked file is closed
        try:
            os.fstat(held.fd)
        except OSError:
            os._exit(0)
        os._exit(1)
    assert os.waitpid(child, 0)[1] == 0
    held.release()


def test_a_file_system_without_locks_runs_unlocked_with_a_note(tmp_path, monkeypatch) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    notes: list[str] = []
    ctx = Context(rank=0, world_size=1, local_rank=0, device=None)
    with run_owner(tmp_path / "run", ctx, say=notes.append):
        assert not (tmp_path / "run" / OWNER).exists()
    assert len(notes) == 1 and "has no file locks" in notes[0]


def test_a_link_at_the_owner_file_is_refused_and_its_target_untouched(tmp_path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("the user's file\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / OWNER).symlink_to(target)
    with pytest.raises(ValueError, match="is a symbolic link, not the file that says who trains"):
        claim(folder)
    assert target.read_text() == "the user's file\n"


def test_an_owner_file_with_unexpected_content_still_names_the_folder_busy(tmp_path) -> None:
    """A holder whose file says something else (another version, a hand edit) is reported, not a crash."""
    folder = tmp_path / "run"
    folder.mkdir()
    fd = os.open(folder / OWNER, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another open file: flock makes this process wait like any other
        os.write(fd, json.dumps({"processes": "many", "pid": [1], "host": None}).encode())
        with pytest.raises(RunFolderBusy, match="is in use by another training run"):
            claim(folder)
    finally:
        os.close(fd)


def test_an_atomic_rewrite_keeps_the_files_permissions_and_replaces_a_link(tmp_path) -> None:
    private = tmp_path / "private.json"
    private.write_text("{}")
    private.chmod(0o600)
    atomic_write(private, b"{}")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    target = tmp_path / "elsewhere.txt"
    target.write_text("kept\n")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write(link, b"new")
    assert target.read_text() == "kept\n" and not link.is_symlink() and link.read_bytes() == b"new"
