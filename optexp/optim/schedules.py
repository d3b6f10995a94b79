"""Learning-rate schedules: torch's schedulers, plus an optional linear warm-up in front
and one stepping interface (per epoch or per optimizer step)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LinearLR, LRScheduler, ReduceLROnPlateau, SequentialLR


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
