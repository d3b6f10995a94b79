"""The LR range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks";
fastai's `lr_find`, Lightning's LR finder): `optexp lr_range=default [overrides]`.

On the run's problem and optimizer, the learning rate grows exponentially per optimizer
step from `min_lr` to `max_lr` (every parameter group keeps its ratio to the first); the
training loss of each step is smoothed by a bias-corrected exponential average, and the
test stops once the smoothed loss exceeds `diverge` times its minimum (or is not finite).
The suggestion is the rule Lightning's finder uses: the learning rate where the smoothed
loss falls fastest against log lr (`numpy.gradient`), leaving out the first tenth of the
steps and the last one. The run directory gets lr_range.csv, lr_range.png, lr_range.json
and TensorBoard events (`lr_range/*`, x axis: the step).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from torch import Tensor

from optexp import plotting, rundir
from optexp.config import LrRangeConfig
from optexp.data import epoch_order
from optexp.parts import Parts, build_parts
from optexp.state import seed_everything
from optexp.steps import optimizer_step, windows

SKIP_START = 0.1  # the share of the first steps the suggestion leaves out, as Lightning's


@dataclass
class RangeTest:
    learning_rates: list[float]
    losses: list[float]  # each step's training loss
    smoothed: list[float]
    suggested_lr: float | None  # None: too few steps, or no descent
    stopped: str  # why it ended: "diverged" or "max_lr"

    def grid(self, points: int = 5) -> list[float]:
        """A log-spaced grid of `points` around the suggestion, a factor of ~10 each way."""
        if self.suggested_lr is None:
            return []
        exponents = np.linspace(-1, 1, points)
        return [float(f"{self.suggested_lr * 10**e:.2g}") for e in exponents]


def run(cfg: DictConfig, run_dir: Path) -> RangeTest:
    """The range test of `cfg`'s problem and optimizer, its files written into `run_dir`."""
    seed_everything(cfg.seed)
    settings = LrRangeConfig(**cfg.lr_range)
    parts = build_parts(cfg)
    lrs, losses, smoothed = ramp(parts, settings)
    stopped = "max_lr" if len(losses) == settings.steps else "diverged"
    test = RangeTest(lrs, losses, smoothed, suggest(lrs, smoothed), stopped)
    run_dir.mkdir(parents=True, exist_ok=True)
    write(test, run_dir, parts.trainer.tensorboard)
    return test


def ramp(parts: Parts, settings: LrRangeConfig) -> tuple[list[float], list[float], list[float]]:
    """Optimizer steps at exponentially growing learning rates until the smoothed loss
    explodes: the learning rates, each step's training loss, and the smoothed loss (the
    bias-corrected exponential average fastai and Lightning use)."""
    ratio, beta = settings.max_lr / settings.min_lr, settings.smoothing
    lrs = [settings.min_lr * ratio ** (i / (settings.steps - 1)) for i in range(settings.steps)]
    groups = parts.optimizer.param_groups
    scale = [group["lr"] / groups[0]["lr"] for group in groups]
    losses, smoothed, average = [], [], 0.0
    for lr, window in zip(lrs, batch_windows(parts), strict=False):
        for group, factor in zip(groups, scale, strict=True):
            group["lr"] = lr * factor
        stats, _ = optimizer_step(parts, window, measure=False)
        losses.append(sum(float(s.loss) * s.size for s in stats) / sum(s.size for s in stats))
        average = beta * average + (1 - beta) * losses[-1]
        smoothed.append(average / (1 - beta ** len(losses)))
        if not math.isfinite(smoothed[-1]) or smoothed[-1] > settings.diverge * min(smoothed):
            break
    return lrs[: len(losses)], losses, smoothed


def batch_windows(parts: Parts) -> Iterator[list[tuple[Tensor, Tensor]]]:
    """The training batches, epoch after epoch in each epoch's order, one optimizer step's
    worth at a time."""
    for epoch in itertools.count(1):
        order = epoch_order(len(parts.data.train), parts.data_seed, epoch, parts.device)
        batches = parts.data.train.batches(parts.batch_size, order)
        yield from windows(batches, parts.trainer.accumulate_batches)


def suggest(lrs: list[float], smoothed: list[float]) -> float | None:
    """The learning rate of the steepest descent of the smoothed loss against log lr,
    leaving out the first tenth of the steps and the last one; None with too few points
    or no descent."""
    first, last = max(1, int(len(smoothed) * SKIP_START)), len(smoothed) - 1
    values = np.array(smoothed[first:last])
    if len(values) < 3 or not np.isfinite(values).all():
        return None
    slopes = np.gradient(values, np.log10(lrs[first:last]))
    steepest = int(np.argmin(slopes))
    falls = slopes[steepest] < -1e-9 * max(float(np.abs(values).max()), 1.0)  # not rounding
    return float(lrs[first + steepest]) if falls else None


def write(test: RangeTest, run_dir: Path, tensorboard: bool) -> None:
    """lr_range.json (the suggestion, a grid around it, the curve), .csv, .png and TensorBoard."""
    summary = asdict(test) | {"grid": test.grid(), "rule": RULE}
    (run_dir / "lr_range.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (run_dir / "lr_range.csv").open("w", newline="") as f:
        rows = csv.writer(f, lineterminator="\n")
        rows.writerow(["step", "lr", "loss", "smoothed_loss"])
        rows.writerows([i, *point] for i, point in enumerate(points(test)))
    draw(test, run_dir / "lr_range.png")
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(rundir.tb_dir(run_dir))) as writer:
            for i, (lr, loss, s) in enumerate(
                zip(test.learning_rates, test.losses, test.smoothed, strict=True)
            ):
                writer.add_scalars("lr_range", {"lr": lr, "loss": loss, "smoothed_loss": s}, i)


def points(test: RangeTest) -> list[tuple[float, float, float]]:
    return list(zip(test.learning_rates, test.losses, test.smoothed, strict=True))


RULE = "steepest descent of the smoothed loss against log lr (first tenth and last step left out)"


def draw(test: RangeTest, path: Path) -> None:
    figure = plotting.new_figure(figsize=(7, 4.5))
    ax = figure.subplots()
    ax.plot(test.learning_rates, test.losses, color="0.75", label="loss per step")
    ax.plot(test.learning_rates, test.smoothed, color="C0", label="smoothed")
    if test.suggested_lr is not None:
        ax.axvline(
            test.suggested_lr, color="C3", ls="--", label=f"suggested {test.suggested_lr:.2g}"
        )
    ax.set_xscale("log")
    finite = [v for v in test.smoothed if math.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.1)
    ax.set(xlabel="learning rate (log)", ylabel="training loss", title="LR range test")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    plotting.save(figure, path)
