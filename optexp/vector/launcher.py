"""The vectorized launcher's work: group a sweep's jobs that differ only in their seeds and
in what a stacked step takes per member (a study's trials: elementwise optimizer
hyperparameters and the schedule), run each group of two or more as one stack
(`optexp.vector.group`) and the rest as Hydra's basic launcher does; a group that cannot be
vectorized runs job by job, saying why.

Grouping reads each job's resolved config (a study names its trials by an index, whose
values `optexp.search_space` writes in), so the candidates are prepared first: composed,
given their directories, checked and locked, as Hydra's basic launcher does before
training. Only jobs whose overrides differ in keys that may stack are candidates; any
other job runs directly."""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from omegaconf import DictConfig, OmegaConf, open_dict

from optexp import rundir
from optexp.cli.app import USER_ERRORS, Job, chosen_options, is_prepared, prepare_job, train_job
from optexp.provenance import Launch

log = logging.getLogger(__name__)

# Overrides of keys that may differ within a group: the seeds, a study's labels, and the
# optimizer's and schedule's values (whether they do stack is decided on the resolved config).
STACKABLE = ("seed", "data_seed", "study.index", "study.trial", "optimizer.", "scheduler")
# The resolved config's keys that may differ within a group, whatever the optimizer.
SEEDS = ("seed", "data_seed", "dataset.seed", "study.index", "study.trial")

Jobs = list[tuple[int, Sequence[str]]]  # (job number, overrides)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], first: int) -> list[JobReturn]:
    """Every job's return, in the sweep's order."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    jobs = list(enumerate(job_overrides, start=first))
    log.info(f"Launching {len(jobs)} jobs locally, vectorized over seeds and trials")
    returns: dict[int, JobReturn] = {}
    for candidates in candidate_groups(jobs, launcher.trials):
        if len(candidates) == 1:
            returns[candidates[0][0]] = run_one(launcher, *candidates[0])
            continue
        prepared = {
            num: run_one(launcher, num, overrides, prepare_job) for num, overrides in candidates
        }
        returns |= prepared
        ready = {num: r.return_value for num, r in prepared.items() if is_prepared(r)}
        for group in stack_groups(ready, launcher.trials):
            returns |= run_together(launcher, {num: prepared[num] for num in group})
    return [returns[num] for num, _ in jobs]


def candidate_groups(jobs: Jobs, trials: bool = True) -> list[Jobs]:
    """The jobs grouped by their overrides of keys that cannot stack (with `trials` false,
    of all but the seeds), in the sweep's order."""
    stackable = STACKABLE if trials else SEEDS
    groups: dict[tuple[str, ...], Jobs] = {}
    for num, overrides in jobs:
        key = tuple(o for o in overrides if not override_key(o).startswith(stackable))
        groups.setdefault(key, []).append((num, overrides))
    return list(groups.values())


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def stack_groups(ready: dict[int, Job], trials: bool = True) -> list[dict[int, Job]]:
    """The prepared jobs grouped by their resolved configs without what may differ within
    a stack: the seeds, and (with `trials`) the optimizer's values and the schedule where
    the optimizer has a stacked step (`optexp.vector.optimizers`)."""
    from optexp.vector.group import stacked_step

    groups: dict[str, dict[int, Job]] = {}
    for num, job in ready.items():
        config = OmegaConf.to_container(job.cfg, resolve=True)
        for key in SEEDS:
            drop(config, key)
        if trials and stacked_step(job.cfg.optimizer._target_) is not None:
            config["optimizer"] = not_stacked(config["optimizer"])
            config.pop("scheduler", None)
        groups.setdefault(repr(config), {})[num] = job
    return list(groups.values())


def not_stacked(optimizer: dict[str, Any]) -> dict[str, Any]:
    """What of an optimizer's config a stacked step cannot take per member: its settings
    that are not numbers, and whether it decays weights at all (its parameter groups)."""
    from optexp.vector.group import is_number

    kept = {key: value for key, value in optimizer.items() if not is_number(value)}
    return kept | {"decays": optimizer.get("weight_decay", 0) != 0}


def drop(config: dict[str, Any], dotted: str) -> None:
    *path, last = dotted.split(".")
    for name in path:
        config = config.get(name) or {}
    config.pop(last, None)


def run_one(launcher: Any, num: int, overrides: Sequence[str], task: Any = None) -> JobReturn:
    """One job as Hydra's basic launcher runs it (with `task` instead of the app's)."""
    log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
    config = launcher.hydra_context.config_loader.load_sweep_config(
        launcher.config, list(overrides)
    )
    with open_dict(config):
        config.hydra.job.id = config.hydra.job.num = num
    return run_composed(launcher, config, task or launcher.task_function)


def run_composed(launcher: Any, config: DictConfig, task: Any) -> JobReturn:
    result = run_job(
        hydra_context=launcher.hydra_context,
        task_function=task,
        config=config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    return result


def run_together(launcher: Any, prepared: dict[int, JobReturn]) -> dict[int, JobReturn]:
    """The prepared jobs trained as one stack (two or more), or one by one; each job's
    return, reported to the sweep's callbacks as it ends."""
    ready: dict[int, Job] = {num: result.return_value for num, result in prepared.items()}
    if len(ready) < 2:
        return one_by_one(launcher, prepared)
    from optexp.vector.group import NotVectorizable, run_group

    named = spans(list(ready))
    try:
        summaries = run_group([spec(job) for job in ready.values()])
    except NotVectorizable as reason:
        print(f"optexp: jobs {named} train one by one, not vectorized: {reason}", file=sys.stderr)
        return one_by_one(launcher, prepared)
    except USER_ERRORS as error:
        summaries = [error] * len(ready)
    finally:
        for job in ready.values():
            rundir.release(job.run_dir)
    for (num, job), summary in zip(ready.items(), summaries, strict=True):
        ended(launcher, prepared[num], job, summary)
    print(f"optexp: jobs {named} trained as one stack", file=sys.stderr)
    return prepared


def ended(launcher: Any, result: JobReturn, job: Job, summary: Any) -> None:
    """A job trained in a stack gets its objective (or its error, `summary`) as Hydra's
    `run_job` keeps it (a sweep's failing job, Optuna's, as its error), and the sweep's
    callbacks hear of it."""
    try:
        failed = isinstance(summary, Exception)
        result.return_value = job.failed(summary) if failed else job.objective(summary)
    except Exception as error:
        result.return_value, result.status = error, JobStatus.FAILED
    launcher.hydra_context.callbacks.on_job_end(config=full_config(result), job_return=result)


def one_by_one(launcher: Any, prepared: dict[int, JobReturn]) -> dict[int, JobReturn]:
    """The prepared jobs trained each in its own Hydra job, from the config composed for
    it already."""
    return {
        num: run_composed(
            launcher, full_config(result), lambda _, job=result.return_value: train_job(job)
        )
        for num, result in prepared.items()
    }


def spans(numbers: list[int]) -> str:
    """Job numbers as runs of consecutive ones: `0-50`, `153,170,187`."""
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)


def full_config(result: JobReturn) -> DictConfig:
    """A job's config with its `hydra` node, as `run_job` was given it."""
    config = copy.deepcopy(result.cfg)
    with open_dict(config):
        config.hydra = result.hydra_cfg.hydra
    return config


def spec(job: Job) -> Any:
    from optexp.vector.group import RunSpec

    choices, launch = chosen_options(job.hydra_cfg), Launch.from_hydra(job.hydra_cfg)
    return RunSpec(job.cfg, job.run_dir, choices, launch)
