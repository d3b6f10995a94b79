"""The `optexp` command. Hydra composes the config from optexp/configs/ and the command line;
optexp checks it, trains, and returns the monitored metric to the sweeper.

Only Hydra is imported up front: `--help` and config errors answer fast; torch is
imported when there is something to train.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import math
import os
import shlex
import signal
import string
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import hydra
import yaml
from hydra._internal.config_repository import IConfigRepository
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.errors import HydraException, MissingConfigException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import optexp
from optexp import rundir
from optexp.rundir import FINISHED
from optexp.checks import check_config, check_hydra
from optexp.errors import UserError, debug_requested, exit_with_error
from optexp.user_configs import search_first

CONFIG_MODULE = "optexp.configs"  # found by package: works from any folder, in any install
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
_job_started = False
_as_found: rundir.AsFound | None = None  # a single run's directory, for a refusal to restore
_failed_jobs: list[str] = []  # a sweep's jobs that failed, each with its reason
_sweep_started = 0.0  # when this process's sweep began: older metrics.json are not its own
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


class Rejected(BaseException):
    """A config refused by `CheckBeforeRun`. A BaseException: Hydra turns an Exception
    raised in a callback into a warning and carries on with the run."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class JobFailed(UserError):
    """A sweep job that failed, raised to a sweeper that decides itself how many failures
    end the sweep (Optuna's max_failure_rate); Hydra's own sweeper gets NaN and goes on."""


class CheckBeforeRun(Callback):
    """Checks a single run's config before Hydra creates its directory and log file, and
    notes which folders of that directory are new: a run refused when its parts are built
    and checked (`optexp.checks`) leaves none of them behind."""

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        global _sweep_started, _as_found
        _sweep_started = time.time()
        try:
            check_hydra(config, multirun=True)
        except UserError as error:
            raise Rejected(error) from None
        sweep_dir = Path(config.hydra.sweep.dir).absolute()
        _as_found = rundir.AsFound.look(sweep_dir, [sweep_dir / "multirun.yaml"])

    def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
        """Jobs that ran in other processes (joblib, submitit, SLURM) left their failures
        in metrics.json only: collect them, so the sweep's exit says so as in-process."""
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir() or not any(path.is_dir() for path in sweep_dir.iterdir()):
            raise Rejected(UserError(f"the sweep has no jobs: {' '.join(sys.argv[1:])}"))
        for metrics in sorted(sweep_dir.glob("*/metrics.json")):
            name = metrics.parent.name
            if any(f"({name})" in entry for entry in _failed_jobs):  # recorded in-process
                continue
            with contextlib.suppress(OSError, ValueError):
                if metrics.stat().st_mtime < _sweep_started:
                    continue  # an earlier sweep's
                summary = json.loads(metrics.read_text())
                if summary.get("status") == "failed":
                    _failed_jobs.append(f"{name}: {summary.get('error')}")

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        global _as_found
        try:
            check_hydra(config, multirun=False)
            check_config(config)
        except (UserError, OmegaConfBaseException) as error:  # an interpolation error too
            raise Rejected(error) from None
        run_dir = Path(config.hydra.run.dir).absolute()
        saved = run_dir / config.hydra.output_subdir  # never null: check_hydra refuses it
        found = rundir.AsFound.look(run_dir, [saved / name for name in rundir.HYDRA_FILES])
        try:  # before Hydra writes its files there: another run's stay as they are
            rundir.acquire(run_dir)
        except UserError as error:  # the directory is the other process's
            raise Rejected(error) from None
        except OSError as error:  # a file in the way, a read-only folder
            verb = "write in" if run_dir.is_dir() else "create"
            message = f"cannot {verb} the run directory {run_dir}: {error.strerror or error}"
            raise Rejected(UserError(message)) from None
        _as_found = found


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="config")
def train_from_config(cfg: DictConfig) -> float:
    """One job: check the composed config (again, for a sweep's jobs), train, return the
    objective for sweepers. A single run's user error leaves through `Rejected`, past
    Hydra's "Error executing job" preamble; a sweep job's is recorded and the sweep goes on."""
    global _job_started
    _job_started = True
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN and (done := finished(run_dir, cfg, hydra_cfg)):
        print(
            f"optexp: job {hydra_cfg.job.num}: {done['status']} already, skipped", file=sys.stderr
        )
        objective = done.get("objective")
        return math.nan if objective is None else objective
    try:
        check_config(cfg)
        rundir.acquire(run_dir)  # a sweep's job here; a single run's in CheckBeforeRun
        from optexp.tracking import Launch
        from optexp.train import run

        summary = run(cfg, run_dir, chosen_options(hydra_cfg), Launch.from_hydra(hydra_cfg))
    except (UserError, OSError, OmegaConfBaseException) as error:
        if isinstance(error, OSError):  # the file system: a full disk, a read-only folder
            error = UserError(f"cannot write in {run_dir}: {error.strerror or error}")
        if hydra_cfg.mode != RunMode.MULTIRUN:
            raise Rejected(error) from None
        record_failure(run_dir, error, hydra_cfg.job.num)
        if hydra_cfg.sweeper._target_ != BASIC_SWEEPER:
            raise JobFailed(_failed_jobs[-1]) from None
        return math.nan
    finally:
        rundir.release(run_dir)
    if summary["status"] == "interrupted":  # by SIGINT/SIGTERM: exit as the signal would
        if summary["signal"] == signal.SIGUSR2:  # last.pt is saved: submitit requeues the job
            signal.raise_signal(signal.SIGUSR2)
        print(f"optexp: to continue: {continue_command(hydra_cfg)}", file=sys.stderr)
        sys.exit(128 + summary["signal"])
    return summary["objective"]


def finished(run_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig) -> dict[str, Any] | None:
    """The metrics.json of a job this directory holds finished with the same config: a
    re-run sweep skips it without loading anything or rewriting its results. One whose
    config changed is resumed, which refuses changes other than more epochs, naming them."""
    try:
        summary = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("status") not in FINISHED:
        return None
    from optexp.tracking import config_digest

    same = {"choices": chosen_options(hydra_cfg), "seed": cfg.seed, "data_seed": cfg.data_seed}
    if "config_digest" in summary:  # what it ran with (older results: its options and seeds)
        same = {"config_digest": config_digest(cfg)}
    return summary if all(summary.get(k) == v for k, v in same.items()) else None


def record_failure(run_dir: Path, error: Exception, job: int) -> None:
    """A sweep job that failed says why in its metrics.json (optexp-report lists it), unless
    the directory holds an earlier result: nothing already written is lost."""
    from optexp.tracking import write_json

    _failed_jobs.append(f"job {job} ({run_dir.name}): {describe(error)}")
    print(f"optexp: job {job} failed: {describe(error)}", file=sys.stderr)
    metrics = run_dir / "metrics.json"
    if isinstance(error, rundir.RunDirInUse):
        return  # the directory is another process's
    with contextlib.suppress(OSError, ValueError):
        if json.loads(metrics.read_text()).get("status") in FINISHED:
            return
    with contextlib.suppress(OSError):  # a full disk: the message above still says why
        write_json(metrics, {"status": "failed", "error": describe(error)})


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


def main() -> None:
    """Console entry point: user errors, Hydra's included, print one line and exit 2."""
    debug = debug_requested()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's errors reach us instead of printing
    if "--version" in sys.argv[1:]:  # Hydra's own flag prints only Hydra's version
        print(f"optexp {optexp.__version__} (Hydra {hydra.__version__})")
        return
    parser = get_args_parser()  # Hydra's own command line, its errors in one line
    parser.error = lambda message: fail(UserError(command_line_error(message)), debug)
    args = parser.parse_args(sys.argv[1:])
    try:
        search_first(sys.argv[1:])  # every --config-dir, each checked
        if args.help and not other_flags(args):
            print_help(args.overrides)
            return
        try:
            train_from_config()
        except Exception:
            if not _failed_jobs:
                raise
            # A sweeper that stops at failed jobs (Optuna's max_failure_rate), or finds no
            # finished trial: those jobs are the reason, said below.
    except (UserError, HydraException, OmegaConfBaseException, yaml.YAMLError) as error:
        undo_refused_run()
        fail(error, debug)
    except Rejected as rejected:
        undo_refused_run()
        fail(rejected.error, debug)
    except OSError as error:  # before a job: Hydra making the run directory
        if _job_started:
            raise
        fail(UserError(f"cannot write {error.filename or 'the output'}: {error.strerror}"), debug)
    except ValueError as error:  # before a job: Hydra refusing a combination of flags
        if _job_started:
            raise  # from inside a job it is a bug: show the traceback
        fail(error, debug)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        sys.exit(128 + signal.SIGINT)
    except BrokenPipeError:  # `optexp --help | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if _failed_jobs:
        count = f"{len(_failed_jobs)} sweep job{'s' * (len(_failed_jobs) > 1)} failed"
        fail(UserError(f"{count} (status: failed in metrics.json): {_failed_jobs[0]}"), False)


def undo_refused_run() -> None:
    if _as_found is not None:
        _as_found.restore()


def command_line_error(message: str) -> str:
    if message.startswith("unrecognized arguments") and "=" in message:
        return f"{message}: flags such as -m go before the overrides (see optexp --help)"
    return f"{message} (see optexp --help)"


def other_flags(args: argparse.Namespace) -> list[str]:
    """Hydra flags set besides --help, --config-dir and the overrides: Hydra's own help
    handles those."""
    defaults = vars(get_args_parser().parse_args([]))
    return [
        name
        for name, value in vars(args).items()
        if value != defaults[name] and name not in ("help", "config_dir", "overrides")
    ]


def fail(error: Exception, debug: bool) -> NoReturn:
    if debug:
        raise error
    exit_with_error("optexp", describe(error))


def print_help(overrides: list[str]) -> None:
    """Print what Hydra's --help prints, from one composition. (Hydra's own help copies
    its whole config repository once per group: over a second.)"""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        # The loader's repository itself: the loader's get_group_options copies it per call.
        repository = GlobalHydra.instance().config_loader().repository
        groups = "".join(
            f"{group}: {', '.join(group_options(repository, group))}\n"
            for group in repository.get_group_options("", ObjectType.GROUP)
            if group != "hydra"
        )
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    print(
        string.Template(cfg.hydra.help.template).safe_substitute(
            APP_CONFIG_GROUPS=groups, CONFIG=OmegaConf.to_yaml(job)
        )
    )


def group_options(repository: IConfigRepository, group: str) -> list[str]:
    """A group's options over the whole search path, the user's folders included; those
    of a nested folder as e.g. `textbook/adam`."""
    names = repository.get_group_options(group, ObjectType.CONFIG)
    for sub in repository.get_group_options(group, ObjectType.GROUP):
        names += [f"{sub}/{name}" for name in group_options(repository, f"{group}/{sub}")]
    return sorted(names)


def options(group: Path) -> list[str]:
    """The option names of a built-in config group folder, nested ones as e.g.
    `textbook/adam` (what the tests run)."""
    return sorted(str(path.relative_to(group).with_suffix("")) for path in group.rglob("*.yaml"))


def describe(error: BaseException) -> str:
    """One line: Hydra's message, its cause's first line, and the closest valid key if one
    was misspelt (never Hydra's "+key" hint: a key the part lacks is refused anyway)."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{mark.name}:{mark.line + 1}:{mark.column + 1}: YAML syntax: {error.problem}"
    message = str(error).split("Config search path:")[0].strip()  # drop Hydra's path dump
    if isinstance(error, MissingConfigException) and error.options:
        return f"{message.splitlines()[0]}. Allowed: {', '.join(error.options)}."
    lines = [line for line in message.splitlines() if not line.startswith("To append")]
    if isinstance(error, OmegaConfBaseException):  # name the key, drop OmegaConf's context
        context = ("full_key:", "object_type=", "reference_type=")
        lines = [line for line in lines if not line.strip().startswith(context)]
        if getattr(error, "full_key", None) and lines:
            lines[0] = f"{error.full_key}: {lines[0]}"
    override = getattr(error, "override", None)
    if override and lines:
        lines[0] = f"in override {override!r}: {lines[0]}"
        if "LexerNoViableAlt" in lines[0]:
            key, _, value = override.partition("=")
            lines.append(f"Characters outside Hydra's grammar need quotes: '{key}=\"{value}\"'")
    cause = error.__cause__
    if isinstance(cause, OmegaConfBaseException):
        lines.append(str(cause).strip().splitlines()[0])
        lines.extend(_suggestion(cause))
    parts = [line.strip() for line in lines if line.strip()]
    return " ".join(p if p.endswith((".", "?", ":")) else f"{p}." for p in parts)


def _suggestion(cause: OmegaConfBaseException) -> list[str]:
    key, parent = getattr(cause, "key", None), getattr(cause, "parent_node", None)
    if not isinstance(key, str) or parent is None or not hasattr(parent, "keys") or key in parent:
        return []
    close = difflib.get_close_matches(key, [str(k) for k in parent], n=1)
    if not close:
        return []
    full_key = getattr(cause, "full_key", key) or key
    return [f"Did you mean {full_key[: len(full_key) - len(key)]}{close[0]}?"]


if __name__ == "__main__":
    main()
