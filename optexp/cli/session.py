"""What one optexp process knows of the run or sweep it was started for (`Session`), and
the Hydra callback that fills it in (`CheckBeforeRun`).

Hydra instantiates the callback itself, from optexp/configs/hydra/default.yaml, so the
callback, the job and `main` share the one `SESSION` of this process. Hydra turns an
exception raised in a callback into a warning and carries on; a refusal there therefore
reports itself and exits (`Session.refuse`).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from optexp import rundir
from optexp.checks import check_config
from optexp.cli.errors import describe
from optexp.cli.settings import check_hydra
from optexp.errors import USER_ERROR, ConfigError, UserError, exit_with_error
from optexp.rundir import Status
from optexp.search_space import with_trial

# Hydra's own sweeper and optexp's (hydra_plugins/optexp_sweeper), which differs only in
# how it composes its jobs: the sweepers that go on past a failed job.
BASIC_SWEEPERS = (
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra_plugins.optexp_sweeper.sweeper.OptexpSweeper",
)


class JobFailed(UserError):
    """A sweep job that failed, raised to a sweeper that decides itself how many failures
    end the sweep (Optuna's max_failure_rate); Hydra's own sweeper gets NaN and goes on."""


@dataclass
class Session:
    debug: bool = False  # OPTEXP_DEBUG: tracebacks instead of one line
    job_started: bool = False  # past Hydra's set-up: an error from here on may be a bug
    as_found: rundir.AsFound | None = None  # the directory to leave as found if refused
    sweep_started: float = 0.0  # older metrics.json in the sweep folder are not its own
    failed_jobs: list[str] = field(default_factory=list)  # each with its reason

    def refuse(self, error: Exception) -> NoReturn:
        """Leave the run or sweep directory as found, then report `error` in one line (its
        traceback with OPTEXP_DEBUG) and exit with 2."""
        if self.as_found is not None:
            self.as_found.restore()
        if self.debug:
            traceback.print_exception(error)
            raise SystemExit(USER_ERROR)
        exit_with_error("optexp", describe(error))

    def job_failed(self, run_dir: Path, error: Exception, hydra_cfg: DictConfig) -> float:
        """Record a sweep job's failure (in its metrics.json too, which optexp-report lists,
        unless the directory is another process's or holds a result); the sweep goes on."""
        reason = describe(error)
        self.failed_jobs.append(f"job {hydra_cfg.job.num} ({run_dir.name}): {reason}")
        print(f"optexp: job {hydra_cfg.job.num} failed: {reason}", file=sys.stderr)
        if not isinstance(error, rundir.RunDirInUse):
            with contextlib.suppress(OSError):  # a full disk: the message above says why
                rundir.write_failure(run_dir, reason)
        if hydra_cfg.sweeper._target_ not in BASIC_SWEEPERS:
            raise JobFailed(self.failed_jobs[-1])
        return math.nan

    def collect_failures(self, sweep_dir: Path) -> None:
        """Jobs that ran in other processes (joblib, submitit, SLURM) left their failures in
        metrics.json only: collect them, so the sweep's exit says so as in-process."""
        for metrics in sorted(sweep_dir.glob(f"*/{rundir.METRICS_FILE}")):
            name = metrics.parent.name
            if any(f"({name})" in entry for entry in self.failed_jobs):  # recorded in-process
                continue
            with contextlib.suppress(OSError):
                if metrics.stat().st_mtime < self.sweep_started:
                    continue  # an earlier sweep's
            summary = rundir.read_summary(metrics.parent) or {}
            if summary.get("status") == Status.FAILED:
                self.failed_jobs.append(f"{name}: {summary.get('error')}")

    def end(self) -> None:
        """A sweep whose jobs failed ends with one line naming the first, and exit 2."""
        if self.failed_jobs:
            count = f"{len(self.failed_jobs)} sweep job{'s' * (len(self.failed_jobs) > 1)} failed"
            exit_with_error(
                "optexp", f"{count} (status: failed in metrics.json): {self.failed_jobs[0]}"
            )


SESSION = Session()


def one_of_many_ranks(config: DictConfig) -> bool:
    """Whether this process is a rank other than 0 of a run that torchrun or SLURM started
    as one optexp command per rank. Each is its own Hydra job: they share a run directory
    only when it is named (`hydra.run.dir=PATH`), not made from the clock."""
    from optexp.world import World

    world = World.from_environment()
    if (
        world.size > 1
        and "${now:" in OmegaConf.to_container(config.hydra.run, resolve=False)["dir"]
    ):
        raise ConfigError(
            "hydra.run.dir",
            OmegaConf.to_container(config.hydra.run, resolve=False)["dir"],
            "a fixed folder (every rank of the run writes into it)",
            problem=f"differs per rank: {world.size} ranks started as separate optexp commands",
        )
    return world.size > 1 and not world.is_main


class CheckBeforeRun(Callback):
    """Checks a single run's config before Hydra creates its directory and log file, and
    notes which folders of that directory are new: a run refused when its parts are built
    and checked (`optexp.checks`) leaves none of them behind."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(config.hydra.run.dir).absolute()
        try:
            check_hydra(config, multirun=False)
            check_config(with_trial(config))
            saved = run_dir / config.hydra.output_subdir  # never null: check_hydra refuses it
            found = rundir.AsFound.look(run_dir, [saved / name for name in rundir.HYDRA_FILES])
            if not one_of_many_ranks(config):  # rank 0 holds the lock (and restores)
                rundir.acquire(run_dir)  # before Hydra writes there: another run's files stay
        except (UserError, OmegaConfBaseException) as error:  # an interpolation error too
            SESSION.refuse(error)
        except OSError as error:  # a file in the way, a read-only folder
            verb = "write in" if run_dir.is_dir() else "create"
            message = f"cannot {verb} the run directory {run_dir}: {error.strerror or error}"
            SESSION.refuse(UserError(message))
        if not one_of_many_ranks(config):
            SESSION.as_found = found

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        SESSION.sweep_started = time.time()
        try:
            check_hydra(config, multirun=True)
        except UserError as error:
            SESSION.refuse(error)
        sweep_dir = Path(config.hydra.sweep.dir).absolute()
        SESSION.as_found = rundir.AsFound.look(sweep_dir, [sweep_dir / "multirun.yaml"])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir() or not any(path.is_dir() for path in sweep_dir.iterdir()):
            SESSION.refuse(UserError(f"the sweep has no jobs: {' '.join(sys.argv[1:])}"))
        SESSION.collect_failures(sweep_dir)
