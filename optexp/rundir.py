"""One run directory, one process: an exclusive `flock` on RUN_DIR/.optexp.lock.

The kernel drops the lock when its process ends, however it ends (kill -9 included), so
a killed run never blocks the next one; the file, which only names the holder, stays.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from optexp.config import UserError

LOCK_FILE = ".optexp.lock"
_held: dict[Path, int] = {}  # run directory -> the open lock file of this process


class RunDirInUse(UserError):
    """Another live optexp process holds the run directory."""


def acquire(run_dir: Path) -> None:
    """Lock `run_dir` (made if missing) for this process, or raise RunDirInUse naming
    the process that holds it. Taking a lock this process holds already is a no-op."""
    run_dir = run_dir.absolute()
    if run_dir in _held:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirInUse(
            f"run directory {run_dir} is in use by optexp process {holder}: wait for it, "
            "stop it, or choose another hydra.run.dir / hydra.sweep.dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[run_dir] = fd


def release(run_dir: Path) -> None:
    fd = _held.pop(run_dir.absolute(), None)
    if fd is not None:
        os.close(fd)  # closing the last descriptor drops the lock
