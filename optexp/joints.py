"""The loop's joints: the fixed places where `optexp.train` calls what a part may need.

A part that moves with the run (the learning-rate schedule, weight averaging) subclasses
`Joint` and overrides the calls it needs; the others do nothing. `EvaluationWeights`
says which weights validation, early stopping's best weights, the best checkpoint and the
test use: the weights trained, unless a subclass keeps others (EMA and SWA in
`optexp.averaging`). The loop calls each joint once per step of the whole group, so a
vectorized group's members share them (`optexp.vector`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn


class Joint:
    """Called by the loop after each optimizer step and at each epoch's end."""

    def after_step(self, step: int, epoch: int) -> None:
        """`step`: the optimizer steps taken, this one included; `epoch`: the one being
        trained (1 for the first)."""

    def after_epoch(self, epoch: int, monitored: float) -> None:
        """`epoch`: the one just trained; `monitored`: its early-stopping metric."""


class EvaluationWeights(Joint):
    """The weights a run is evaluated at: here the ones trained, nothing kept besides."""

    def __init__(self, model: nn.Module) -> None:
        self.source = model

    def evaluated_model(self) -> nn.Module:
        """The weights validation and the test use."""
        return self.source

    def other_model(self) -> tuple[str, nn.Module] | None:
        """Weights validated beside the evaluated ones, with their tag prefix."""
        return None

    def before_test(self, batches: Iterable[Any]) -> None:
        """Called once before the test, with the training batches (SWA's batch norm)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
