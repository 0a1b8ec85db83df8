"""Who owns a run folder: one process group at a time, by an OS lock that ends with the process holding it.

Two commands training into one folder at once would both write each epoch's records and overwrite
each other's checkpoints. The command that claims the folder holds an exclusive `flock` on the file
`OWNER` inside it, open for the whole run; the file says who holds it (host, process, start time,
command), so that a second command is refused, before it writes anything, with a message naming
the holder. The kernel drops the lock when its process ends in any way, SIGKILL and power loss
included: a stale file blocks nothing, so nothing guesses from process ids whether a holder lives.

Under torchrun the group holds the folder once: rank 0 claims it, before any rank writes, and the
other ranks learn whether it could (`run_owner`). On a file system that refuses `flock` (Lustre
mounted without `-o flock`) the run goes on without a lock, with a note saying so.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from inceptionnet.training import distributed
from inceptionnet.training.distributed import Context
from inceptionnet.weights.runfolder import OWNER

# What flock raises where the file system has no locks: the run then goes on without one.
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


# The owner files this process holds locked. A forked child (a DataLoader worker) shares the lock with
# its parent; it closes its copies at once, so that the lock ends with the process that claimed it.
_HELD: set[int] = set()


def _close_in_child() -> None:
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class RunFolderBusy(ValueError):
    """The run folder is held by another live command (the message names it and what to do)."""


@dataclass
class RunLock:
    """A claimed run folder: the open, locked OWNER file (fd None: a file system without locks)."""

    folder: Path
    fd: int | None
    created: Path | None  # the outermost folder the claim created, removed again if the run leaves it empty

    def release(self) -> None:
        """Remove the owner file and let the lock go; folders the claim created go too if nothing was written.

        The file is removed while still locked: a command that opened it meanwhile finds, once it
        holds the lock, that the path no longer names its file, and claims the folder afresh.
        """
        if self.fd is not None:
            (self.folder / OWNER).unlink(missing_ok=True)
            _HELD.discard(self.fd)
            os.close(self.fd)
            self.fd = None
        if self.created is not None:
            _remove_empty(self.folder, up_to=self.created)


def claim(folder: Path, *, world_size: int = 1) -> RunLock:
    """Create `folder` if needed and lock it for this process, or raise RunFolderBusy naming its holder.

    `world_size`: the processes of this process group, written down for the holder's description.
    """
    created = _first_missing(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the run folder {folder} ({err.strerror}); choose another --out-dir") from err
    while True:
        try:
            fd = os.open(folder / OWNER, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:  # never write through a link: it could name any file of the user's
                raise ValueError(
                    f"{folder / OWNER} is a symbolic link, not the file that says who trains in {folder}; nothing "
                    "was written through it. Remove the link, or choose another --out-dir"
                ) from err
            raise ValueError(
                f"cannot open {folder / OWNER} ({err.strerror}), which says who trains in {folder}; make the folder "
                "writable, or choose another --out-dir"
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_owner(fd)
            os.close(fd)
            raise RunFolderBusy(_busy_message(folder, holder)) from None
        except OSError as err:
            os.close(fd)
            if err.errno not in NO_LOCKS:
                raise
            (folder / OWNER).unlink(missing_ok=True)
            return RunLock(folder, None, created)
        if _still_named(fd, folder / OWNER):
            break
        os.close(fd)  # its holder removed the file on leaving: lock the one now there
    _HELD.add(fd)
    _write_owner(fd, world_size)
    return RunLock(folder, fd, created)


@contextmanager
def run_owner(folder: Path, ctx: Context, *, say: Callable[[str], None]) -> Iterator[None]:
    """Hold `folder` for this process group while the block runs: rank 0 claims it, every rank learns the outcome.

    Raises on every rank when rank 0 cannot claim it: RunFolderBusy naming the holder on rank 0 when
    another command holds it, and on the other ranks an error that points to rank 0's.
    """
    lock, refusal = None, None
    if ctx.is_main:
        try:
            lock = claim(folder, world_size=ctx.world_size)
        except (ValueError, OSError) as err:  # the other ranks wait for the outcome: never leave them waiting
            refusal = err
    if distributed.any_rank(refusal is not None, ctx):
        raise refusal or ValueError(f"rank 0 could not claim {folder} for this run (its error says why)")
    if lock is not None and lock.fd is None:
        say(
            f"note: the file system of {folder} has no file locks: nothing stops another command from training "
            "in this folder at the same time (docs/training.md, 'The run folder's owner')"
        )
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _write_owner(fd: int, world_size: int) -> None:
    """Say who holds the lock: replaces what a holder killed earlier left in the file."""
    owner = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "processes": world_size,
        "command": shlex.join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(owner) + "\n").encode("utf-8"), 0)


def _read_owner(fd: int) -> dict | None:
    """The holder's description, None while it has not written it yet (or wrote something else)."""
    try:
        owner = json.loads(os.pread(fd, 65536, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _busy_message(folder: Path, owner: dict | None) -> str:
    if owner is None:
        who, stop = "a command that has just started (it has not written who it is yet)", "stop it"
    else:
        processes = owner.get("processes")
        group = f", rank 0 of {processes} processes" if isinstance(processes, int) and processes > 1 else ""
        who = (
            f"process {owner.get('pid')} on host {owner.get('host')}{group}, started {owner.get('started')}: "
            f"{owner.get('command')}"
        )
        stop = f"stop it (`kill {owner.get('pid')}` on {owner.get('host')}: it saves a checkpoint first)"
    return (
        f"{folder} is in use by another training run, {who}. Nothing was changed. Wait for it to end, "
        f"{stop}, or choose another --out-dir"
    )


def _still_named(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (a leaving holder removes it)."""
    try:
        named = path.lstat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of `folder`'s path that does not exist yet (None: it exists)."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing


def _remove_empty(folder: Path, *, up_to: Path) -> None:
    """Remove `folder` and its parents up to `up_to`, stopping at the first that holds anything."""
    for path in (folder, *folder.parents):
        try:
            path.rmdir()
        except OSError:  # not empty (or gone)
            return
        if path == up_to:
            return
