"""Early stopping: watch a validation metric, remember the best epoch, stop after
`patience` epochs without an improvement larger than `min_delta`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EarlyStopping:
    monitor: str = "val/loss"
    mode: str = "min"  # min | max
    patience: int = 10
    min_delta: float = 0.0
    enabled: bool = True
    best: float = field(default=math.nan)
    best_epoch: int = 0
    best_step: int = 0  # optimizer steps taken at the best evaluation
    best_metrics: dict[str, float] = field(default_factory=dict)
    bad_epochs: int = 0

    def update(self, epoch: int, metrics: dict[str, float], step: int = 0) -> bool:
        """Record an evaluation's metrics (in `epoch`, after `step` optimizer steps); return
        True when the monitored value improved. Patience counts evaluations."""
        value = metrics[self.monitor]
        if self.is_improvement(value):
            self.best, self.best_epoch, self.best_metrics = value, epoch, dict(metrics)
            self.best_step = step
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    def is_improvement(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if math.isnan(self.best):
            return True
        gain = self.best - value if self.mode == "min" else value - self.best
        return gain > self.min_delta

    @property
    def should_stop(self) -> bool:
        return self.enabled and self.bad_epochs >= self.patience

    @property
    def worst(self) -> float:
        """The worst possible value of the monitored metric (a diverged run's objective)."""
        return math.inf if self.mode == "min" else -math.inf

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
