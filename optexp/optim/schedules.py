"""Learning-rate schedules: torch's schedulers, plus an optional linear warm-up in front
and one stepping interface (per epoch or per optimizer step). The schedules torch lacks
in the form we want are below: the sine cycle, and those whose length follows the run
(cosine annealing, linear decay to zero, warmup-stable-decay).

A schedule's `t` (torch's `last_epoch`) counts intervals (epochs or optimizer steps, as
`scheduler.interval` says) from 0; optexp fills in `total_steps`, the number of intervals
the main schedule runs (after any warm-up), for targets that ask for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    ReduceLROnPlateau,
    SequentialLR,
)
from torch.optim.swa_utils import SWALR

from optexp.config import TrainerConfig
from optexp.errors import ConfigError
from optexp.joints import Joint


@dataclass
class Schedule(Joint):
    """A scheduler and when to step it: after every optimizer step or every epoch; then,
    with `trainer.swa` and its lr, SWA's phase (`swa`, after `swa_start` epochs)."""

    scheduler: LRScheduler | ReduceLROnPlateau
    interval: str = "epoch"  # epoch | step
    swa: SWALR | None = None
    swa_start: int = 0

    def after_step(self, step: int, epoch: int) -> None:
        if self.interval == "step" and not self.in_swa(epoch):
            self.scheduler.step()

    def after_epoch(self, epoch: int, monitored: float) -> None:
        if self.swa is not None and epoch >= self.swa_start:
            self.swa.step()  # the lr of the epochs after swa_start
        elif isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(monitored)
        elif self.interval == "epoch":
            self.scheduler.step()

    def in_swa(self, epoch: int) -> bool:
        return self.swa is not None and epoch > self.swa_start

    def state_dict(self) -> dict[str, Any]:
        state = self.scheduler.state_dict()
        return state if self.swa is None else {"main": state, "swa": self.swa.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.swa is None:
            self.scheduler.load_state_dict(state)
            return
        self.scheduler.load_state_dict(state["main"])
        self.swa.load_state_dict(state["swa"])


def swa_phase(optimizer: Optimizer, trainer: TrainerConfig) -> dict[str, Any]:
    """SWA's learning-rate phase (torch's `SWALR`), for `Schedule`: none without
    `trainer.swa.lr`. Building it leaves the lr as it is until its first step."""
    swa = trainer.swa
    if not (swa.enabled and swa.lr):
        return {}
    phase = SWALR(optimizer, swa.lr, swa.anneal_epochs, swa.anneal_strategy)
    return {"swa": phase, "swa_start": swa.start_epoch}


def with_warmup(optimizer: Optimizer, main: LRScheduler, warmup: int) -> LRScheduler:
    """Linear warm-up over `warmup` intervals, then `main`."""
    if warmup <= 0:
        return main
    ramp = LinearLR(optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup)
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])


class CyclicSine(LRScheduler):
    """lr = base + (max_lr - base) * |sin(pi * t / (2 * step_size))|, base = optimizer.lr.

    base at t = 0, max_lr at t = step_size, base again at t = 2 * step_size: one cycle.
    """

    def __init__(self, optimizer: Optimizer, max_lr: float, step_size: int, last_epoch: int = -1):
        if step_size < 1:
            raise ConfigError("scheduler.step_size", step_size, "an integer >= 1")
        self.max_lr, self.step_size = max_lr, step_size
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        wave = abs(math.sin(math.pi * self.last_epoch / (2 * self.step_size)))
        return [base + (self.max_lr - base) * wave for base in self.base_lrs]


def cosine(optimizer: Optimizer, total_steps: int, eta_min: float = 0.0) -> CosineAnnealingLR:
    """Cosine annealing from optimizer.lr to eta_min over the whole run: T_max = total_steps."""
    return CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=eta_min)


def linear_decay(optimizer: Optimizer, total_steps: int) -> LinearLR:
    """lr = optimizer.lr * (1 - t / total_steps): linear decay to 0 at the end of the run."""
    return LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=total_steps)


COOLDOWN_SHAPES = {"linear": lambda s: 1.0 - s, "1-sqrt": lambda s: 1.0 - math.sqrt(s)}


class Cooldown:
    """WSD's lr factor at t: 1 for `stable` intervals, then down to 0 over `cooldown`.

    A class, not a closure, so that LambdaLR saves its numbers with the schedule: a
    resumed run keeps the horizon it started with, as torch's schedulers keep theirs.
    """

    def __init__(self, stable: int, cooldown: int, shape: str):
        self.stable, self.cooldown, self.shape = stable, cooldown, shape

    def __call__(self, t: int) -> float:
        progress = min(max(t - self.stable, 0) / self.cooldown, 1.0)
        return COOLDOWN_SHAPES[self.shape](progress)


def wsd(
    optimizer: Optimizer,
    total_steps: int,
    cooldown_fraction: float = 0.2,
    cooldown_shape: str = "linear",
) -> LambdaLR:
    """Warmup-stable-decay (the warm-up is optexp's `warmup_epochs`): optimizer.lr for
    the first total_steps - C intervals, then a cooldown to 0 over the last
    C = round(cooldown_fraction * total_steps) (at least 1): lr * (1 - s) (`linear`) or
    lr * (1 - sqrt(s)) (`1-sqrt`), s = (t - total_steps + C) / C in [0, 1]."""
    if cooldown_shape not in COOLDOWN_SHAPES:
        raise ConfigError("scheduler.cooldown_shape", cooldown_shape, " | ".join(COOLDOWN_SHAPES))
    if not 0 < cooldown_fraction <= 1:
        raise ConfigError("scheduler.cooldown_fraction", cooldown_fraction, "a number in (0, 1]")
    cooldown = max(round(cooldown_fraction * total_steps), 1)
    return LambdaLR(optimizer, Cooldown(total_steps - cooldown, cooldown, cooldown_shape))
