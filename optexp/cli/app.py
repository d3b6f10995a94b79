"""The Hydra app: one job checks its config (a sweep's job; a single run's was checked
by `CheckBeforeRun` before Hydra wrote anything), trains, and returns the objective to
the sweeper. A single run's user error ends the process in one line; a sweep job's is
recorded and the sweep goes on."""

from __future__ import annotations

import math
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from optexp import rundir
from optexp.checks import check_config
from optexp.cli.session import SESSION
from optexp.errors import UserError
from optexp.rundir import Status
from optexp.search_space import describe as describe_trial
from optexp.search_space import with_trial
from optexp.world import World

CONFIG_MODULE = "optexp.configs"  # found by package: works from any folder, in any install
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
# What a job reports as one line: a user error, the file system, a config Hydra refuses.
USER_ERRORS = (UserError, OSError, OmegaConfBaseException)


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="config")
def train_from_config(cfg: DictConfig) -> float:
    job = prepare_job(cfg)
    return train_job(job) if isinstance(job, Job) else job


def train_job(job: Job) -> float:
    """Train a prepared job (or run its LR range test), its lock released at the end;
    the objective for the sweeper."""
    try:
        if job.cfg.get("lr_range") is not None:
            return lr_range_test(job.cfg, job.run_dir)
        summary = train(job.cfg, job.run_dir, job.hydra_cfg)
    except USER_ERRORS as error:
        return job.failed(error)
    finally:
        rundir.release(job.run_dir)
    return job.objective(summary)


@dataclass
class Job:
    """A job checked and holding its run directory's lock, ready to train: `cfg` with its
    study trial's values (`optexp.search_space`)."""

    cfg: DictConfig
    run_dir: Path
    hydra_cfg: DictConfig

    @property
    def in_sweep(self) -> bool:
        return self.hydra_cfg.mode == RunMode.MULTIRUN

    def failed(self, error: Exception) -> float:
        """A single run's user error ends the process in one line; a sweep job's is
        recorded, and the sweep goes on."""
        if isinstance(error, OSError):  # the file system: a full disk, a read-only folder
            error = UserError(f"cannot write in {self.run_dir}: {error.strerror or error}")
        if not self.in_sweep:
            SESSION.refuse(error)
        return SESSION.job_failed(self.run_dir, error, self.hydra_cfg)

    def objective(self, summary: dict[str, Any]) -> float:
        """What the sweeper gets; an interrupted run exits as the signal would."""
        if summary["status"] == Status.INTERRUPTED:
            exit_interrupted(summary["signal"], self.hydra_cfg)
        return summary["objective"]


def is_prepared(result: JobReturn) -> bool:
    """A Hydra job that `prepare_job` left checked and locked, ready to train (not finished
    already, nor refused): the vectorized launcher trains it later, in a stack."""
    return result.status == JobStatus.COMPLETED and isinstance(result.return_value, Job)


def prepare_job(cfg: DictConfig) -> Job | float:
    """The job of `cfg` (under Hydra's job config), checked and locked; or the objective
    of a sweep job that is finished already (skipped) or refused (recorded)."""
    SESSION.job_started = True
    hydra_cfg = HydraConfig.get()
    job = Job(cfg, Path(hydra_cfg.runtime.output_dir), hydra_cfg)
    try:
        job.cfg = with_trial(cfg)
    except USER_ERRORS as error:
        return job.failed(error)
    if job.in_sweep and (done := finished(job.run_dir, job.cfg, hydra_cfg)) is not None:
        print(
            f"optexp: job {hydra_cfg.job.num}: {done['status']} already, skipped", file=sys.stderr
        )
        objective = done.get("objective")
        return math.nan if objective is None else objective
    try:
        if job.in_sweep:  # a single run's config and lock: CheckBeforeRun, before Hydra wrote
            check_config(job.cfg)
            if World.from_environment().is_main:  # rank 0's, for a job on several ranks
                rundir.acquire(job.run_dir)
    except USER_ERRORS as error:
        rundir.release(job.run_dir)
        return job.failed(error)
    return job


def train(cfg: DictConfig, run_dir: Path, hydra_cfg: DictConfig) -> dict[str, Any]:
    """Train `cfg` on this process, or on `trainer.devices` x `trainer.num_nodes` (torch
    is imported here, where there is something to train)."""
    from optexp import distributed
    from optexp.provenance import Launch
    from optexp.train import run

    choices, launch = chosen_options(hydra_cfg), Launch.from_hydra(hydra_cfg)
    if (trial := describe_trial(cfg)) is not None:
        print(f"optexp: {trial}")
    trainer = cfg.trainer
    if trainer.devices * trainer.num_nodes > 1 or World.from_environment().size > 1:
        return distributed.run(cfg, run_dir, choices, launch)
    return run(cfg, run_dir, choices, launch)


def lr_range_test(cfg: DictConfig, run_dir: Path) -> float:
    """`lr_range=...`: the LR range test instead of training; says what it suggests and
    how to use it, and returns the suggested learning rate (NaN if none)."""
    from optexp import lr_range

    test = lr_range.run(cfg, run_dir)
    print(f"optexp: LR range test ({test.stopped}), curve in {run_dir / 'lr_range.png'}")
    if test.suggested_lr is None:
        print("optexp: no learning rate to suggest: the loss did not fall (widen the range)")
        return math.nan
    grid = ",".join(f"{lr:g}" for lr in test.grid())
    print(f"optexp: suggested optimizer.lr={test.suggested_lr:.3g} ({lr_range.RULE})")
    print(f"optexp: a run:  optexp optimizer.lr={test.suggested_lr:.3g} ...")
    print(f"optexp: a grid: optexp -m optimizer.lr={grid} seed=0,1,2 ...")
    return test.suggested_lr


def finished(run_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig) -> dict[str, Any] | None:
    """The metrics.json of a job this directory holds finished with the same config: a
    re-run sweep skips it without loading anything or rewriting its results. One whose
    config changed is resumed, which refuses changes other than more epochs, naming them."""
    older = {"choices": chosen_options(hydra_cfg), "seed": cfg.seed, "data_seed": cfg.data_seed}
    return rundir.finished_with(run_dir, cfg, older)


def exit_interrupted(signum: int, hydra_cfg: DictConfig) -> NoReturn:
    """An interrupted run (SIGINT/SIGTERM) exits as the signal would, saying how to
    continue; submitit's SIGUSR2 goes back to submitit, which requeues the job."""
    if signum == signal.SIGUSR2:  # last.pt is saved
        signal.raise_signal(signal.SIGUSR2)
    print(f"optexp: to continue: {continue_command(hydra_cfg)}", file=sys.stderr)
    sys.exit(128 + signum)


def continue_command(hydra_cfg: DictConfig) -> str:
    """The command that continues an interrupted run or sweep: the same arguments, into
    the same directory (a re-run resumes interrupted jobs and skips finished ones)."""
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    folder = hydra_cfg.sweep.dir if multirun else hydra_cfg.run.dir
    args = [a for a in sys.argv[1:] if not a.startswith((f"{key}=", f"+{key}="))]
    return shlex.join(["optexp", *args, f"{key}={Path(folder).absolute()}"])


def chosen_options(hydra_cfg: DictConfig) -> dict[str, str]:
    """The option picked in each of optexp's config groups, e.g. {"optimizer": "adam"}."""
    return {
        group: option
        for group, option in hydra_cfg.runtime.choices.items()
        if option is not None and not group.startswith("hydra")
    }
