"""What a run shows and leaves in tb/: a rich progress bar (or one plain line per epoch
when output is not a terminal), TensorBoard events, and the summary table at the end.
It writes what it is handed (`optexp.metrics` computes it) and computes nothing."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from optexp import rundir
from optexp.config import TrainerConfig

if TYPE_CHECKING:
    import torch

    from optexp.metrics import IntervalRecord, Position, RunRecord

T = TypeVar("T")
console = Console()
# Whether runs show their epochs and summary table: a sweep in this process shows its own
# progress instead (`optexp.cli.progress.SweepProgress`), unless asked to show them.
RUNS_SHOWN = True

# TensorBoard's Custom Scalars tab: one chart per metric, each run a line, so it still
# reads with twenty runs (the regexes match the tag in every run).
CURVES = {
    "across runs": {
        "training loss": ["Multiline", ["^train/loss$"]],
        "validation loss": ["Multiline", ["^val/loss$"]],
        "training accuracy": ["Multiline", ["^train/acc$"]],
        "validation accuracy": ["Multiline", ["^val/acc$"]],
        "learning rate": ["Multiline", ["^lr$", "^lr/"]],
        "gradient norm": ["Multiline", ["^grad_norm$"]],
    }
}


class Tracker:
    """Progress display and TensorBoard writer of one run; use as a context manager."""

    def __init__(
        self,
        run_dir: Path,
        trainer: TrainerConfig,
        batches_per_epoch: int,
        start: int = 0,
        shows: bool = True,
        writes: bool = True,
    ) -> None:
        """`start`: the x of TensorBoard's curves where the run is (the epochs completed, or
        the steps with trainer.eval_every_steps). `shows` false: nothing on the terminal;
        `writes` false: no TensorBoard (another rank than 0's writes neither)."""
        self.epochs, self.batches_per_epoch = trainer.epochs, batches_per_epoch
        self.step = start  # the last x logged: where the end-of-run records go
        self.writer = None
        if trainer.tensorboard and writes:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run wrote past its last checkpoint.
            tb = str(rundir.tb_dir(run_dir))
            self.writer = SummaryWriter(tb, purge_step=start + 1)
            self.writer.add_custom_scalars(CURVES)
        self.progress, self.shows = None, shows and RUNS_SHOWN
        if console.is_terminal and self.shows:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=console,
            )
            self.epoch_task = self.progress.add_task("epochs", total=self.epochs, info="")
            self.batch_task = self.progress.add_task("batches", total=batches_per_epoch, info="")

    def __enter__(self) -> Tracker:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.writer is not None:
            self.writer.close()

    @property
    def writes_tensorboard(self) -> bool:
        return self.writer is not None

    def batches(self, batches: Iterable[T], first: int = 0) -> Iterator[T]:
        """Pass batches through, advancing the batch bar on a terminal."""
        if self.progress is None:
            yield from batches
            return
        self.progress.reset(self.batch_task, total=self.batches_per_epoch, completed=first)
        for batch in batches:
            yield batch
            self.progress.advance(self.batch_task)

    def log_interval(self, record: IntervalRecord) -> None:
        at = record.position
        self.step = at.x
        if self.writer is not None:
            self._scalars(record.scalars, at.x)
            for tag, values in record.histograms.items():
                self.writer.add_histogram(tag, values, at.x)
        line = epoch_line(at, self.epochs, record.metrics)
        if not self.shows:
            return
        if self.progress is None:
            print(line, flush=True)  # a log file or a pipe: no styling to render
        else:
            done = at.epoch if at.epoch_end else at.epoch - 1
            self.progress.update(self.epoch_task, completed=done, info=line.split("  ", 1)[1])

    def log_text(self, texts: dict[str, str]) -> None:
        """Markdown by tag, in the Text tab at step 0."""
        if self.writer is not None:
            for tag, text in texts.items():
                self.writer.add_text(tag, text, 0)

    def note(self, tag: str, text: str) -> None:
        """A line on the terminal (`optexp: TEXT`) and in TensorBoard's Text tab."""
        self.log_text({tag: text})
        if self.shows:
            console.print(f"optexp: {text}", highlight=False, soft_wrap=True)

    def log_images(self, images: dict[str, torch.Tensor], step: int) -> None:
        """(C, H, W) images in [0, 1] by tag."""
        if self.writer is not None:
            for tag, image in images.items():
                self.writer.add_image(tag, image, step)

    def log_results(self, record: RunRecord) -> None:
        """The run for TensorBoard's HParams dashboard, in this run's own directory; its
        metrics, images and texts at the run's last step, at the end of the curves."""
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        metrics = {f"hparams/{k}": v for k, v in record.metrics.items() if math.isfinite(v)}
        # Session records only: with no per-run experiment record, TensorBoard builds the
        # comparison from all runs of a sweep (the union of their hparams and metrics, the
        # values of text and bool hparams as their filter's choices) instead of picking
        # one run's lists arbitrarily.
        _experiment, session_start, session_end = hparams_summary(record.hparams, metrics)
        self.writer.file_writer.add_summary(session_start, self.step)
        self.writer.file_writer.add_summary(session_end, self.step)
        self._scalars(metrics, self.step)
        for tag, image in record.images.items():
            self.writer.add_image(tag, image, self.step, dataformats="HWC")
        for tag, text in record.texts.items():
            self.writer.add_text(tag, text, self.step)

    def _scalars(self, values: dict[str, float], step: int) -> None:
        """One event holding every scalar: what add_scalar writes per tag, at a tenth of the
        cost (it builds and queues an event for each)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        tagged = [Summary.Value(tag=tag, simple_value=v) for tag, v in values.items()]
        self.writer.file_writer.add_summary(Summary(value=tagged), step)


def epoch_line(at: Position, epochs: int, metrics: dict[str, float]) -> str:
    shown = ("train/loss", "train/acc", "val/loss", "val/acc", "lr")
    parts = [f"{k} {metrics[k]:.4g}" for k in shown if k in metrics]
    where = f"epoch {at.epoch}/{epochs}" + ("" if at.epoch_end else f" step {at.step}")
    return f"{where}  " + "  ".join(parts)


def print_summary(summary: rundir.Summary, run_dir: Path) -> None:
    if not RUNS_SHOWN:
        return
    best, test = summary.best or {}, summary.test or {}
    rows = [
        ("train (best epoch)", best.get("train/loss"), best.get("train/acc")),
        (f"val (best epoch {summary.best_epoch})", best.get("val/loss"), best.get("val/acc")),
        (f"test ({summary.test_weights} weights)", test.get("loss"), test.get("acc")),
    ]
    title = f"optexp: {summary.status}"
    footer = f"epochs {summary.epochs_completed}  wall {summary.wall_s:.1f}s  run dir {run_dir}"
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


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"
