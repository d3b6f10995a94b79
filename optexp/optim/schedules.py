"""Learning-rate schedules: torch's schedulers, plus an optional linear warm-up in front
and one stepping interface (per epoch or per optimizer step). The two schedules torch
lacks in the form we want are below: the sine cycle, and cosine annealing whose length
follows the run.

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
    LinearLR,
    LRScheduler,
    ReduceLROnPlateau,
    SequentialLR,
)

from optexp.errors import ConfigError


@dataclass
class Schedule:
    """A scheduler and when to step it: after every optimizer step or every epoch."""

    scheduler: LRScheduler | ReduceLROnPlateau
    interval: str = "epoch"  # epoch | step

    def after_step(self) -> None:
        if self.interval == "step":
            self.scheduler.step()

    def after_epoch(self, monitored: float) -> None:
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(monitored)
        elif self.interval == "epoch":
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


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
