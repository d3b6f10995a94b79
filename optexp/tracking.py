"""What a run shows and leaves behind: a rich progress bar (or one plain line per epoch
when output is not a terminal), TensorBoard events, metrics.json and a summary table."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from omegaconf import OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import optexp
from optexp.config import TrainerConfig, flatten

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig
    from torch import nn

T = TypeVar("T")
console = Console()

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
LIBRARIES = ("hydra-core", "omegaconf", "numpy", "tensorboard", "torchvision")


@dataclass
class Launch:
    """How Hydra started a run, for TensorBoard's Text tab (a run started by calling
    `optexp.train.run` directly has none)."""

    overrides: list[str]  # the job's own
    command: str  # the command line that started it: the sweep's, for a sweep's job

    @classmethod
    def from_hydra(cls, hydra_cfg: DictConfig) -> Launch:
        overrides = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)  # as typed
        return cls(overrides, shlex.join(["optexp", *sys.argv[1:]]))


class Tracker:
    """Progress display and TensorBoard writer of one run; use as a context manager."""

    def __init__(
        self, run_dir: Path, trainer: TrainerConfig, steps_per_epoch: int, start_epoch: int = 0
    ) -> None:
        self.epochs, self.steps_per_epoch = trainer.epochs, steps_per_epoch
        self.histograms_every = trainer.histograms_every
        self.step = start_epoch  # the last epoch logged: where the end-of-run records go
        self.writer = None
        if trainer.tensorboard:
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
                "epochs", total=self.epochs, completed=start_epoch, info=""
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
        self.step = epoch
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

    def log_run(self, texts: dict[str, str]) -> None:
        """What the run is (`describe_run`), in the Text tab at step 0."""
        if self.writer is not None:
            for tag, text in texts.items():
                self.writer.add_text(tag, text, 0)

    def shows_images(self, input_shape: Sequence[int]) -> bool:
        from optexp.diagnostics import is_image

        return self.writer is not None and is_image(input_shape)

    def log_first_batch(
        self,
        x: torch.Tensor,
        augmented: torch.Tensor | None,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
    ) -> None:
        """The first training batch (de-normalized), and as augmented if it was, at step 1."""
        from optexp.diagnostics import image_grid

        assert self.writer is not None
        self.writer.add_image("images/train_batch", image_grid(x, mean, std), 1)
        if augmented is not None:
            grid = image_grid(augmented, mean, std)
            self.writer.add_image("images/train_batch_augmented", grid, 1)

    def log_histograms(self, epoch: int, model: nn.Module) -> None:
        """Weights and gradients (at the epoch's last step), every `histograms_every` epochs."""
        if self.writer is None or not self.histograms_every or epoch % self.histograms_every:
            return
        for name, param in model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", param.detach(), epoch)
            if param.grad is not None:
                self.writer.add_histogram(f"gradients/{name}", param.grad, epoch)

    def log_results(self, hparams: dict[str, Any], results: dict[str, float]) -> None:
        """Record the run for TensorBoard's HParams dashboard, in this run's own directory;
        its metrics at the run's last step, where they sit at the end of the curves."""
        if self.writer is None:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        metrics = {f"hparams/{k}": v for k, v in results.items() if math.isfinite(v)}
        # Session records only: with no per-run experiment record, TensorBoard builds the
        # comparison from all runs of a sweep (the union of their hparams and metrics, the
        # values of text and bool hparams as their filter's choices) instead of picking
        # one run's lists arbitrarily.
        _experiment, session_start, session_end = hparams_summary(hparams, metrics)
        self.writer.file_writer.add_summary(session_start, self.step)
        self.writer.file_writer.add_summary(session_end, self.step)
        values = [Summary.Value(tag=tag, simple_value=v) for tag, v in metrics.items()]
        self.writer.file_writer.add_summary(Summary(value=values), self.step)

    def log_confusion(self, counts: torch.Tensor | None) -> None:
        """The test set's confusion matrix as an image, at the run's last step."""
        if self.writer is None or counts is None:
            return
        from optexp.plotting import confusion_image

        image = confusion_image(counts)
        self.writer.add_image("images/test_confusion_matrix", image, self.step, dataformats="HWC")


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
        "config_digest": config_digest(cfg),
        "versions": versions(),
    }


def config_digest(cfg: DictConfig) -> str:
    """The resolved config, hashed: a re-run sweep skips a finished job only if its config
    is still the one that job ran (an option file may have been edited since)."""
    config = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True)
    return hashlib.sha256(config.encode()).hexdigest()[:16]


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


def describe_run(
    config: dict[str, Any], device: torch.device, launch: Launch | None
) -> dict[str, str]:
    """What the run was, as Markdown for TensorBoard's Text tab: the composed config, how
    it was started, and the code and machine it ran on."""
    import yaml  # PyYAML, Hydra's own: a third of OmegaConf.to_yaml's time on a plain dict

    texts = {"run/config": f"```yaml\n{yaml.safe_dump(config, sort_keys=False)}```"}
    if launch is not None:
        overrides = " ".join(f"`{o}`" for o in launch.overrides) or "(none)"
        texts["run/launch"] = _table({"command": f"`{launch.command}`", "overrides": overrides})
    environment = {k: str(v) for k, v in versions().items()}
    environment |= {name: _version(name) for name in LIBRARIES}
    texts["run/environment"] = _table(environment | {"device": _device_name(device)})
    return texts


def _table(rows: dict[str, str]) -> str:
    return "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows.items())


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    cpu = platform.processor() or platform.machine()
    return f"{device} ({cpu}, {torch.get_num_threads()} torch threads)"


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
