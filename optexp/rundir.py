"""A run directory: one process at a time, and left as found by a run that is refused.

One process: an exclusive `flock` on RUN_DIR/.optexp.lock. The kernel drops the lock
when its process ends, however it ends (kill -9 included), so a killed run never blocks
the next one; the file, which only names the holder, stays.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from optexp.config import UserError

LOCK_FILE = ".optexp.lock"
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")  # what Hydra writes per run
HYDRA_OWN = (".hydra", "multirun.yaml", LOCK_FILE)  # and its logs: no results of a run
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


@dataclass
class AsFound:
    """A run or sweep directory as a run found it, so that a refused run leaves it so: a
    new directory (and the parents made for it) goes, an existing one gets back the files
    Hydra rewrote in it. A run that wrote results keeps the config it ran with."""

    root: Path
    new_folders: list[Path]  # the root and those of its parents that were missing
    files: dict[Path, bytes | None]  # Hydra's, as found (None: not there)
    looked: float

    @classmethod
    def look(cls, root: Path, hydra_files: list[Path]) -> AsFound:
        missing = [path for path in (root, *root.parents) if not path.exists()]
        return cls(root, missing, {path: _read(path) for path in hydra_files}, time.time())

    def restore(self) -> None:
        if any(path.stat().st_mtime >= self.looked for path in results(self.root)):
            return
        if self.new_folders:
            shutil.rmtree(self.root, ignore_errors=True)
            for folder in self.new_folders[1:]:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty: another run may have started in it since
            return
        for path, content in self.files.items():
            with contextlib.suppress(OSError):
                path.unlink() if content is None else path.write_bytes(content)
        for folder in {path.parent for path in self.files} - {self.root}:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty, as Hydra made it


def results(run_dir: Path) -> Iterator[Path]:
    """The files of a run or sweep directory besides Hydra's and the lock."""
    for path in run_dir.rglob("*"):
        top = path.relative_to(run_dir).parts[0]
        if path.is_file() and top not in HYDRA_OWN and path.suffix != ".log":
            yield path


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
