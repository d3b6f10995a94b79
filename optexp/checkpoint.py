"""Checkpoints: plain dicts of state, written atomically, loaded without unpickling code."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import pickle
import random
import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optexp.config import flatten
from optexp.errors import ConfigError, UserError
from optexp.rundir import checkpoint_file

# Keys that may change between a checkpoint and its resumed run.
RESUMABLE_CHANGES = (
    "trainer.compile",
    "trainer.channels_last",
    "trainer.epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.resume",
    "trainer.checkpoint",
    "trainer.tensorboard",
    "trainer.histograms_every",
    "data_dir",
)


# Test-only (tests/test_faults.py): N:FILE pauses this process's N-th `write` inside it.
PAUSE_VARIABLE = "OPTEXP_TEST_PAUSE_CHECKPOINT_WRITE"
_WRITES = itertools.count(1)


class CheckpointError(UserError):
    """A checkpoint cannot be written or read; the message names the file."""


def serialize(state: dict[str, Any]) -> memoryview:
    """The bytes of `torch.save(state)`: a copy, unaffected by later training steps."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer()


def write(data: memoryview, *paths: Path) -> None:
    """Write `data` to each path atomically: a temporary file beside it, fsynced, then
    renamed over it, so a kill or a full disk mid-write leaves the previous checkpoint
    intact. Written once; further paths are hard links to the first.

    Plain `os` calls, as few as possible: on the checkpoint thread, each call releases the
    GIL and must take it back from the training loop, which then waits (see `Writer`).

    For tests only: with OPTEXP_TEST_PAUSE_CHECKPOINT_WRITE=N:FILE in the environment, the
    process's N-th write stops once its first temporary file is written and fsynced, before
    the rename, writes that file's path to FILE and sleeps, so that a test's kill lands
    inside the write (tests/test_faults.py). Never set it otherwise."""
    first, pause = None, _pause_requested()
    for path in paths:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            if first is None or not _linked(first, tmp):
                _write_synced(tmp, data)
            if pause is not None and first is None:
                _pause(pause, tmp)
            os.replace(tmp, path)
            first = first or path
        except OSError as error:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise CheckpointError(
                f"cannot write checkpoint {path}: {error.strerror or error}"
            ) from None


def _pause_requested() -> Path | None:
    """FILE of OPTEXP_TEST_PAUSE_CHECKPOINT_WRITE=N:FILE when this is the N-th write."""
    setting = os.environ.get(PAUSE_VARIABLE)
    if not setting:
        return None
    count, _, file = setting.partition(":")
    return Path(file) if next(_WRITES) == int(count) else None


def _pause(marker: Path, tmp: Path) -> None:
    """Say where the write stopped (`marker` appears whole), then wait for the kill."""
    marker.with_name(f"{marker.name}.partial").write_text(str(tmp))
    marker.with_name(f"{marker.name}.partial").replace(marker)
    time.sleep(600)


def _write_synced(path: Path, data: memoryview) -> None:
    fd = _create(path)
    try:
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(path: Path) -> int:
    """A new file at `path`, open for writing (permissions as `open` gives: 0o666 less the
    umask); its directory is made if missing. A file already there (a temporary one a
    killed run left) is removed, never written through: it may be a hard link to a
    checkpoint."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return os.open(path, flags, 0o666)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        path.unlink()
    return os.open(path, flags, 0o666)


class Writer:
    """Saves checkpoints with the disk work on a background thread.

    `save` serializes the state at once (a consistent copy) and returns; writing, fsync
    and rename overlap the next epoch. Writes happen one at a time, in order: each `save`
    first waits for the previous one, and a failed write raises its CheckpointError there
    or on leaving the `with` block, which waits for the last write to be on disk.

    The thread is not free: every system call it makes releases the GIL, and taking it
    back interrupts the training loop, which then waits for the thread's next release.
    `write` keeps those calls few (benchmarks/RESULTS.md has the counts and their cost).
    """

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="optexp-checkpoint")
        self._pending: Future[None] | None = None

    def save(self, state: dict[str, Any], *paths: Path) -> None:
        data = serialize(state)
        self.wait()
        self._pending = self._thread.submit(write, data, *paths)

    def wait(self) -> None:
        """Block until the last save is on disk; raise its error if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is None:
                self.wait()
            else:  # finish the write, but report the error already on its way
                with contextlib.suppress(CheckpointError):
                    self.wait()
        finally:
            self._thread.shutdown()


def _linked(source: Path, link: Path) -> bool:
    """Hard-link `link` to `source` (whose data is fsynced) if the file system allows it
    and no stale temporary file is in the way; else the caller writes the data."""
    try:
        os.link(source, link)
    except OSError:
        return False
    return True


def load(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load with `weights_only=True`: tensors and plain containers only, no code runs. A
    file that is no dict holding the `required` keys is refused in one line."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
            raise CheckpointError(f"{path} is not a checkpoint file (torch.save's)") from None
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain data "
            "(not an optexp checkpoint?); nothing in it was run"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        if isinstance(error, OSError) and error.errno is not None:  # permissions, I/O
            raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror}") from None
        detail = " ".join(str(error).split()) or type(error).__name__  # one line
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated or corrupt ({detail})"
        ) from None
    missing = [key for key in required if key not in state] if isinstance(state, dict) else []
    if not isinstance(state, dict) or missing:
        what = f"missing {', '.join(missing)}" if missing else f"it holds a {type(state).__name__}"
        raise CheckpointError(f"{path} is not an optexp checkpoint: {what}")
    return state


def resume_path(run_dir: Path, resume: str | None) -> Path | None:
    """`trainer.resume` (a file, or a run dir meaning its last.pt), else this run dir's own
    last.pt when a run is repeated into the same directory, else None."""
    if resume is None:
        own = checkpoint_file(run_dir, "last")
        return own if own.is_file() else None
    path = Path(resume).expanduser()
    if path.is_dir():
        path = checkpoint_file(path, "last")
    if not path.is_file():
        raise ConfigError(
            "trainer.resume",
            resume,
            "a checkpoint file or a run directory holding checkpoints/last.pt",
            problem="holds no checkpoints/last.pt" if Path(resume).is_dir() else "does not exist",
        )
    return path


def check_compatible(saved: str | dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse a resume whose config differs from the checkpoint's, naming the keys.
    `saved` is the checkpoint's config: JSON text, or a dict in older checkpoints."""
    if isinstance(saved, str):
        try:
            saved = json.loads(saved)
        except json.JSONDecodeError:
            raise CheckpointError(f"cannot read the config stored in {path}") from None
    saved, current = flatten(saved), flatten(current)
    differing = [
        key
        for key in sorted(saved.keys() | current.keys())
        if not key.startswith(RESUMABLE_CHANGES) and saved.get(key) != current.get(key)
    ]
    if differing:
        raise ConfigError(
            "trainer.resume",
            str(path),
            f"the same config as the checkpoint, but for {', '.join(RESUMABLE_CHANGES)}",
            problem=f"was saved with a different config: {', '.join(differing)}",
        )


def rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {
        "python": _python_state(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": numpy_state[2],
            "gauss": (numpy_state[3], numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _python_state() -> dict[str, Any]:
    version, keys, gauss = random.getstate()  # 625 ints: one tensor pickles much faster
    return {"version": version, "keys": torch.from_numpy(np.array(keys, np.int64)), "gauss": gauss}


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["keys"].tolist()), python["gauss"]))
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], *numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
