"""The vectorized launcher's work: group a sweep's jobs by everything but `seed`, run
each group of two or more as one stack (`optexp.vector.group`) and the rest as Hydra's
basic launcher does; a group that cannot be vectorized runs job by job, saying why."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import open_dict

from optexp import rundir
from optexp.cli.app import USER_ERRORS, Job, chosen_options, prepare_job
from optexp.provenance import Launch

log = logging.getLogger(__name__)
SEED_KEYS = ("seed=", "+seed=", "++seed=")

Jobs = list[tuple[int, Sequence[str]]]  # (job number, overrides)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], first: int) -> list[JobReturn]:
    """Every job's return, in the sweep's order."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    jobs = list(enumerate(job_overrides, start=first))
    log.info(f"Launching {len(jobs)} jobs locally, vectorized over seeds")
    returns: dict[int, JobReturn] = {}
    for group in seed_groups(jobs):
        if len(group) == 1:
            returns[group[0][0]] = run_one(launcher, *group[0])
        else:
            returns |= run_together(launcher, group)
    return [returns[num] for num, _ in jobs]


def seed_groups(jobs: Jobs) -> list[Jobs]:
    """The jobs grouped by their overrides other than `seed`, in the sweep's order."""
    groups: dict[tuple[str, ...], Jobs] = {}
    for num, overrides in jobs:
        key = tuple(o for o in overrides if not o.startswith(SEED_KEYS))
        groups.setdefault(key, []).append((num, overrides))
    return list(groups.values())


def run_one(launcher: Any, num: int, overrides: Sequence[str], task: Any = None) -> JobReturn:
    """One job as Hydra's basic launcher runs it (with `task` instead of the app's)."""
    log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
    config = launcher.hydra_context.config_loader.load_sweep_config(
        launcher.config, list(overrides)
    )
    with open_dict(config):
        config.hydra.job.id = config.hydra.job.num = num
    result = run_job(
        hydra_context=launcher.hydra_context,
        task_function=task or launcher.task_function,
        config=config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    return result


def run_together(launcher: Any, group: Jobs) -> dict[int, JobReturn]:
    """The group's jobs prepared by Hydra one by one (config, directory, checks, lock;
    finished or refused ones return there), then trained as one stack."""
    returns = {num: run_one(launcher, num, overrides, prepare_job) for num, overrides in group}
    ready = {num: r.return_value for num, r in returns.items() if isinstance(r.return_value, Job)}
    if len(ready) < 2:
        return returns | one_by_one(launcher, group, ready)
    from optexp.vector.group import NotVectorizable, run_group

    jobs = list(ready.values())
    try:
        summaries = run_group([spec(job) for job in jobs])
    except NotVectorizable as reason:
        seeds = ",".join(str(job.cfg.seed) for job in jobs)
        print(f"optexp: seed={seeds} train one by one, not vectorized: {reason}", file=sys.stderr)
        return returns | one_by_one(launcher, group, ready)
    except USER_ERRORS as error:
        for num, job in ready.items():
            returns[num].return_value = job.failed(error)
        return returns
    finally:
        for job in jobs:
            rundir.release(job.run_dir)
    for (num, job), summary in zip(ready.items(), summaries, strict=True):
        returns[num].return_value = job.objective(summary)
    return returns


def one_by_one(launcher: Any, group: Jobs, ready: dict[int, Job]) -> dict[int, JobReturn]:
    """The prepared jobs of `group` run as separate jobs (their locks released first)."""
    for job in ready.values():
        rundir.release(job.run_dir)
    return {num: run_one(launcher, num, overrides) for num, overrides in group if num in ready}


def spec(job: Job) -> Any:
    from optexp.vector.group import RunSpec

    choices, launch = chosen_options(job.hydra_cfg), Launch.from_hydra(job.hydra_cfg)
    return RunSpec(job.cfg, job.run_dir, choices, launch)
