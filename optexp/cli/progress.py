"""A sweep that says where it is: one progress bar for the sweep (jobs done of the total,
failed, diverged, elapsed, an ETA) and one line per finished job, in place of each job's
epoch lines and summary table. `hydra.callbacks.progress.show_epochs=true` keeps those.

The total is known where Hydra's own sweeper expands the sweep (the product of its
values); other sweepers (Optuna) get a count without a total. Jobs that a launcher runs
in other processes (joblib, submitit, SLURM) each print their own line there, and show
their epochs: what the launcher can know."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from optexp import rundir, tracking
from optexp.cli.app import is_prepared
from optexp.cli.session import BASIC_SWEEPERS

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher"


def sweep_size(config: DictConfig) -> int | None:
    """The number of jobs Hydra's own sweeper will launch: the product of each key's
    values, the command line's taking the place of the preset's (`hydra.sweeper.params`);
    None for another sweeper."""
    if config.hydra.sweeper._target_ not in BASIC_SWEEPERS:
        return None
    node = config.hydra.sweeper.get("params")
    params = OmegaConf.to_container(node, resolve=False) if node is not None else {}
    typed = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    overrides = [f"{k}={v}" for k, v in params.items()] + list(typed)
    sizes: dict[str, int] = {}
    for o in OverridesParser.create().parse_overrides(overrides):
        sweeps = o.is_sweep_override() and o.is_discrete_sweep()
        sizes[o.get_key_element()] = len(list(o.sweep_string_iterator())) if sweeps else 1
    return math.prod(sizes.values())


class SweepProgress(Callback):
    """One bar and one line per job for a sweep run in this process (Hydra's basic
    launcher); the jobs' own epoch lines and tables unless `show_epochs`."""

    def __init__(self, show_epochs: bool = False) -> None:
        self.show_epochs = show_epochs
        self.progress: Progress | None = None
        self.counts = {"done": 0, "failed": 0, "diverged": 0}
        self.started = 0.0
        self.total: int | None = None
        self.sweep_process = -1  # where the sweep counts its jobs: not a launcher's worker

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started, self.total = time.perf_counter(), sweep_size(config)
        self.sweep_process = os.getpid()
        tracking.RUNS_SHOWN = self.show_epochs
        if not self.show_epochs:  # its "#12 : overrides" line per job: ours says it at the end
            logging.getLogger(BASIC_LAUNCHER).setLevel(logging.WARNING)
        if tracking.console.is_terminal and not self.show_epochs:
            self.progress = Progress(
                TextColumn("[bold]sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=tracking.console,
            )
            self.task = self.progress.add_task("sweep", total=self.total, info="")
            self.progress.start()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN or is_prepared(job_return):
            return  # a job prepared for a stack is counted when the stack has trained it
        summary = rundir.read_summary(Path(config.hydra.runtime.output_dir)) or {}
        status = summary.get("status") or (
            "failed" if job_return.status == JobStatus.FAILED else "ended"
        )
        if os.getpid() != self.sweep_process:  # a launcher's worker: its own line only
            print(job_line(config, summary, status), flush=True)
            return
        self.counts["done"] += 1
        if status in ("failed", "diverged"):
            self.counts[status] += 1
        done = f"{self.counts['done']}/{self.total or '?'} done"
        line = job_line(config, summary, status, done)
        if self.progress is None:
            print(line, flush=True)
            return
        self.progress.console.print(line, highlight=False, soft_wrap=True)
        info = f"{self.counts['failed']} failed, {self.counts['diverged']} diverged"
        self.progress.update(self.task, completed=self.counts["done"], info=info)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
        tracking.RUNS_SHOWN = True
        c, seconds = self.counts, time.perf_counter() - self.started
        print(
            f"optexp: sweep: {c['done']} jobs, {c['failed']} failed, {c['diverged']} diverged, "
            f"in {seconds / 60:.1f} min",
            flush=True,
        )


def job_line(config: DictConfig, summary: dict[str, Any], status: str, done: str = "") -> str:
    """`job 11 (12/80 done)  completed  2.1 s  val/loss 0.2315  +problem=...,optimizer=...`"""
    wall = summary.get("wall_s")
    monitor = summary.get("monitor")
    best = (summary.get("best") or {}).get(monitor) if monitor else None
    parts = [f"job {config.hydra.job.num}" + (f" ({done})" if done else ""), str(status)]
    if isinstance(wall, int | float):
        parts.append(f"{wall:.1f} s")
    if isinstance(best, int | float):
        parts.append(f"{monitor} {best:.4g}")
    return "  ".join(parts) + f"  {config.hydra.job.override_dirname}"
