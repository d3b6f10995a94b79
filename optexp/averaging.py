"""Weight averaging, on torch's own `torch.optim.swa_utils`: an exponential moving average
of the weights (`trainer.ema`: updated every `every` optimizer steps after `start`) or
stochastic weight averaging (`trainer.swa`: the equal mean of the weights at each epoch
end after `start_epoch`, with its own learning-rate phase, `SWALR`, built by
`optexp.optim.schedules`). Buffers (batch norm's running statistics) are averaged too;
SWA recomputes them on the training data before the test (`update_bn`), as its paper does.

`trainer.evaluate_averaged` picks the weights that validation, early stopping, the best
checkpoint and the test use, once averaging has begun; the others are logged beside them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from optexp.config import TrainerConfig
from optexp.joints import EvaluationWeights


class WeightAverage(EvaluationWeights):
    """The averaged copy of a model and when to update it."""

    def __init__(self, model: nn.Module, trainer: TrainerConfig) -> None:
        super().__init__(model)
        self.ema, self.swa = trainer.ema, trainer.swa
        self.evaluated = trainer.evaluate_averaged
        avg = get_ema_multi_avg_fn(self.ema.decay) if self.ema.enabled else None
        self.model = AveragedModel(model, multi_avg_fn=avg, use_buffers=True)

    @classmethod
    def of(cls, model: nn.Module, trainer: TrainerConfig) -> EvaluationWeights:
        """The averaged weights `trainer.ema` or `trainer.swa` asks for, else the trained."""
        if trainer.ema.enabled or trainer.swa.enabled:
            return cls(model, trainer)
        return EvaluationWeights(model)

    @property
    def started(self) -> bool:
        return int(self.model.n_averaged) > 0

    @property
    def kind(self) -> str:
        return "ema" if self.ema.enabled else "swa"

    def after_step(self, step: int, epoch: int) -> None:
        since = step - self.ema.start
        if self.ema.enabled and since > 0 and (since - 1) % self.ema.every == 0:
            self.model.update_parameters(self.source)

    def after_epoch(self, epoch: int, monitored: float) -> None:
        if self.swa.enabled and epoch > self.swa.start_epoch:
            self.model.update_parameters(self.source)

    def before_test(self, batches: Any) -> None:
        """SWA's batch-norm statistics, recomputed on the training data for the averaged
        weights (a model without batch norm is left as it is)."""
        norms = (nn.modules.batchnorm._BatchNorm,)
        if (
            self.swa.enabled
            and self.started
            and any(isinstance(m, norms) for m in self.model.modules())
        ):
            update_bn(batches, self.model)

    def evaluated_model(self) -> nn.Module:
        """The weights validation and the test use: the average once it has begun (and
        `trainer.evaluate_averaged`), else the model trained."""
        return self.model.module if self.evaluated and self.started else self.source

    def other_model(self) -> tuple[str, nn.Module] | None:
        """The weights logged beside the evaluated ones, with their tag prefix."""
        if not self.started:
            return None
        if self.evaluated:
            return "val_online", self.source
        return "val_averaged", self.model.module

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
