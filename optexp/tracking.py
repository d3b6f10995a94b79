"""What a run shows and leaves behind: a rich progress bar (or one plain line per epoch
when output is not a terminal), TensorBoard events, metrics.json and a summary table."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import optexp
from optexp.config import flatten

T = TypeVar("T")
console = Console()

# TensorBoard's Custom Scalars tab: training and validation curves of every run on one chart.
CURVES = {
    "train vs val": {
        "loss": ["Multiline", ["^train/loss$", "^val/loss$"]],
        "accuracy": ["Multiline", ["^train/acc$", "^val/acc$"]],
    }
}


class Tracker:
    """Progress display and TensorBoard writer of one run; use as a context manager."""

    def __init__(
        self,
        run_dir: Path,
        epochs: int,
        steps_per_epoch: int,
        tensorboard: bool = True,
        start_epoch: int = 0,
    ) -> None:
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run wrote past its last checkpoint.
            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_epoch + 1)
            self.writer.add_custom_scalars(CURVES)
        self.progress = None
        if console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=console,
            )
            self.epoch_task = self.progress.add_task(
                "epochs", total=epochs, completed=start_epoch, info=""
            )
            self.batch_task = self.progress.add_task("batches", total=steps_per_epoch, info="")

    def __enter__(self) -> Tracker:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.writer is not None:
            self.writer.close()

    def batches(self, batches: Iterable[T], first: int = 0) -> Iterator[T]:
        """Pass batches through, advancing the batch bar on a terminal."""
        if self.progress is None:
            yield from batches
            return
        self.progress.reset(self.batch_task, total=self.steps_per_epoch, completed=first)
        for batch in batches:
            yield batch
            self.progress.advance(self.batch_task)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.writer is not None:
            from tensorboard.compat.proto.summary_pb2 import Summary

            # One event holding every scalar: what add_scalar writes per tag, at a tenth
            # of the cost (it builds and queues an event for each).
            values = [Summary.Value(tag=tag, simple_value=v) for tag, v in metrics.items()]
            self.writer.file_writer.add_summary(Summary(value=values), epoch)
        line = epoch_line(epoch, self.epochs, metrics)
        if self.progress is None:
            print(line, flush=True)  # a log file or a pipe: no styling to render
        else:
            self.progress.update(self.epoch_task, completed=epoch, info=line.split("  ", 1)[1])

    def log_hparams(self, hparams: dict[str, Any], results: dict[str, float]) -> None:
        """Record the run for TensorBoard's HParams dashboard, in this run's own directory."""
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        metrics = {f"hparams/{k}": v for k, v in results.items() if math.isfinite(v)}
        # Session records only: with no per-run experiment record, TensorBoard builds the
        # comparison from all runs of a sweep (the union of their hparams and metrics)
        # instead of picking one run's list arbitrarily.
        _experiment, session_start, session_end = hparams_summary(hparams, metrics)
        self.writer.file_writer.add_summary(session_start)
        self.writer.file_writer.add_summary(session_end)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value)


def epoch_line(epoch: int, epochs: int, metrics: dict[str, float]) -> str:
    shown = ("train/loss", "train/acc", "val/loss", "val/acc", "lr")
    parts = [f"{k} {metrics[k]:.4g}" for k in shown if k in metrics]
    return f"epoch {epoch}/{epochs}  " + "  ".join(parts)


def write_json(path: Path, content: dict[str, Any]) -> None:
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


def print_summary(summary: dict[str, Any], run_dir: Path) -> None:
    best, test = summary["best"] or {}, summary["test"] or {}
    rows = [
        ("train (best epoch)", best.get("train/loss"), best.get("train/acc")),
        (f"val (best epoch {summary['best_epoch']})", best.get("val/loss"), best.get("val/acc")),
        (f"test ({summary['test_weights']} weights)", test.get("loss"), test.get("acc")),
    ]
    title = f"optexp: {summary['status']}"
    epochs, wall = summary["epochs_completed"], summary["wall_s"]
    footer = f"epochs {epochs}  wall {wall:.1f}s  run dir {run_dir}"
    if not console.is_terminal:  # a log file: aligned text, quicker than drawing a rich table
        lines = [title, f"  {'split':<24}{'loss':>8}  {'acc':>8}"]
        lines += [f"  {name:<24}{_fmt(loss):>8}  {_fmt(acc):>8}" for name, loss, acc in rows]
        print("\n".join([*lines, footer]), flush=True)
        return
    table = Table(title=title, show_header=True)
    table.add_column("split")
    table.add_column("loss", justify="right")
    table.add_column("acc", justify="right")
    for name, loss, acc in rows:
        table.add_row(name, _fmt(loss), _fmt(acc))
    console.print(table)
    console.print(footer, highlight=False, soft_wrap=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def about(cfg: Any, device: Any, choices: dict[str, str] | None) -> dict[str, Any]:
    """What identifies the run: the second part of metrics.json."""
    return {
        "seed": cfg.seed,
        "data_seed": cfg.data_seed,
        "device": str(device),
        "choices": choices or {},
        "versions": versions(),
    }


def hparams(config: dict[str, Any], choices: dict[str, str] | None) -> dict[str, Any]:
    """Group choices plus the scalar knobs of each part, for TensorBoard's HParams tab."""
    flat = {k: v for k, v in flatten(config).items() if not k.startswith("hydra")}
    keep = (
        "seed",
        "data_seed",
        "optimizer.",
        "scheduler.",
        "regularizer.",
        "model.",
        "loss.",
        "augmentation.",
        "dataset.",
        "trainer.batch_size",
        "trainer.epochs",
        "trainer.precision",
    )
    chosen = {k: v for k, v in flat.items() if k.startswith(keep)}
    chosen = {
        k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in chosen.items()
    }
    return dict(choices or {}) | chosen


def versions() -> dict[str, str | None]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "optexp": optexp.__version__,
        "git_commit": _git_commit(),
    }


@cache  # the code a process runs does not change under it: ask git once per sweep
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(optexp.__file__).parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
