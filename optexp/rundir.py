"""A run directory, owned here: where each file goes, what metrics.json holds (`Summary`)
and how a run's `Status` reads, one process at a time (the lock), and a refused run
leaving the directory as it found it. Every other module asks this one.

    RUN_DIR/.hydra/          Hydra's: config.yaml, hydra.yaml, overrides.yaml
    RUN_DIR/metrics.json     `Summary` when the run ends; {"status": "failed", "error"} if refused
    RUN_DIR/checkpoints/     last.pt, best.pt (`optexp.checkpoint`)
    RUN_DIR/tb/              TensorBoard events
    RUN_DIR/.optexp.lock     names the process training here

One process: an exclusive `flock` on the lock file. The kernel drops it when its process
ends, however it ends (kill -9 included), so a killed run never blocks the next one; the
file, which only names the holder, stays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from optexp.errors import ConfigError, UserError

METRICS_FILE = "metrics.json"
TB_DIR = "tb"
CHECKPOINT_DIR = "checkpoints"
HYDRA_DIR = ".hydra"  # hydra.output_subdir, as optexp's configs set it
LOCK_FILE = ".optexp.lock"
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")  # what Hydra writes per run
HYDRA_OWN = (HYDRA_DIR, "multirun.yaml", LOCK_FILE)  # and its logs: no results of a run
_held: dict[Path, int] = {}  # run directory -> the open lock file of this process


class Status(str, enum.Enum):
    """How a run ended, as metrics.json says it."""

    COMPLETED = "completed"  # every epoch trained
    EARLY_STOPPED = "early_stopped"  # the monitor stopped improving
    DIVERGED = "diverged"  # a non-finite or too large training loss: a result, not a crash
    TIME_LIMIT = "time_limit"  # trainer.max_time spent: a result, continued by more time
    INTERRUPTED = "interrupted"  # a signal: last.pt holds the place to continue from
    FAILED = "failed"  # refused or broken before it could train (metrics.json says why)

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """A result: a re-run skips it, and nothing may replace it."""
        return self in FINISHED


FINISHED = (Status.COMPLETED, Status.EARLY_STOPPED, Status.DIVERGED, Status.TIME_LIMIT)


@dataclass
class Summary:
    """metrics.json of a run that trained: what it achieved, then what identifies it.
    docs/architecture.md lists the fields; non-finite numbers are written as null."""

    status: Status
    epochs_completed: int
    global_step: int  # optimizer steps taken
    monitor: str  # the early-stopping metric
    best_epoch: int  # the epoch of the best evaluation (0: none)
    best_step: int  # the optimizer steps taken by then
    best: dict[str, float]  # that epoch's metrics
    final: dict[str, float]  # the last epoch's metrics (and timing)
    test: dict[str, float] | None  # with the `test_weights`; None if not tested
    test_weights: str  # best | last
    # the training split with the test's weights, in evaluation mode; None if not tested
    # (absent in metrics.json files older than this field: readers use .get)
    train_eval: dict[str, float] | None
    objective: float  # what a sweeper optimizes: the best monitored value (worst if diverged)
    wall_s: float
    signal: int | None  # the signal that interrupted it
    seed: int
    data_seed: int
    device: str
    choices: dict[str, str]  # the option of each config group, e.g. {"optimizer": "adam"}
    config_digest: str  # the resolved config, hashed (`config_digest`)
    versions: dict[str, str | None]  # python, torch, optexp, git commit
    # torch threads, processor, deterministic algorithms, cudnn.benchmark (absent in
    # metrics.json files older than this field: readers use .get)
    environment: dict[str, Any]


def metrics_file(run_dir: Path) -> Path:
    return run_dir / METRICS_FILE


def tb_dir(run_dir: Path) -> Path:
    return run_dir / TB_DIR


def checkpoint_file(run_dir: Path, name: str) -> Path:
    """Where a run keeps its checkpoint `name` ("last" or "best")."""
    return run_dir / CHECKPOINT_DIR / f"{name}.pt"


def write_summary(run_dir: Path, summary: Summary) -> None:
    _write_json(metrics_file(run_dir), dataclasses.asdict(summary))


def write_failure(run_dir: Path, reason: str) -> None:
    """A run refused or broken: metrics.json says why (optexp-report lists it), unless it
    holds a finished result, which is never replaced."""
    if finished_status(read_summary(run_dir)) is None:
        _write_json(metrics_file(run_dir), {"status": Status.FAILED, "error": reason})


def load_summary(run_dir: Path) -> dict[str, Any] | None:
    """metrics.json as written (older runs' too); None if there is none yet; a file that
    cannot be read raises UserError saying why."""
    path = metrics_file(run_dir)
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:  # ValueError: bad JSON, not UTF-8
        raise UserError(f"cannot read {path}: {error}") from None
    if not isinstance(summary, dict):
        raise UserError(f"cannot read {path}: not a JSON object")
    return summary


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """metrics.json, or None if absent or unreadable (for the runner's own decisions)."""
    try:
        return load_summary(run_dir)
    except UserError:
        return None


def finished_status(summary: dict[str, Any] | None) -> Status | None:
    """The status of a finished run's summary; None for anything else."""
    status = (summary or {}).get("status")
    return Status(status) if status in {s.value for s in FINISHED} else None


def finished_with(run_dir: Path, cfg: DictConfig, older: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a run this directory holds finished with the same resolved config
    (its digest; for results older than the digest, the `older` fields), else None."""
    summary = read_summary(run_dir)
    if finished_status(summary) is None:
        return None
    same = {"config_digest": config_digest(cfg)} if "config_digest" in summary else older
    return summary if all(summary.get(k) == v for k, v in same.items()) else None


def check_no_results(run_dir: Path) -> None:
    """A run that starts afresh (or from another run's checkpoint) in `run_dir` would
    replace the results of a finished run there that left no checkpoint to continue."""
    status = finished_status(read_summary(run_dir))
    if status is not None:
        raise ConfigError(
            "hydra.run.dir",
            str(run_dir),
            "a new folder, or one whose checkpoints/last.pt the run continues",
            problem=f"holds a finished run (status: {status}) that this run would replace",
        )


def identity(cfg: DictConfig, device: Any, choices: dict[str, str]) -> dict[str, Any]:
    """The fields of a `Summary` that say what the run was."""
    from optexp.provenance import environment, versions

    return {
        "seed": cfg.seed,
        "data_seed": cfg.data_seed,
        "device": str(device),
        "choices": choices,
        "config_digest": config_digest(cfg),
        "versions": versions(),
        "environment": environment(device),
    }


def config_digest(cfg: DictConfig) -> str:
    """The resolved config, hashed: a re-run sweep skips a finished job only if its config
    is still the one that job ran (an option file may have been edited since)."""
    config = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True)
    return hashlib.sha256(config.encode()).hexdigest()[:16]


def _write_json(path: Path, content: dict[str, Any]) -> None:
    """Write atomically, so a reader never sees half a file. NaN/inf become null."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_finite(content), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _finite(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _finite(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_finite(v) for v in tree]
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    return tree


# ---------------------------------------------------------------- one process at a time


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


# ---------------------------------------------------------------- as a refused run found it


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
