"""Weight averaging, on torch's own `torch.optim.swa_utils`: an exponential moving average
of the weights (`trainer.ema`: updated every `every` optimizer steps after `start`) or
stochastic weight averaging (`trainer.swa`: the equal mean of the weights at each epoch
end after `start_epoch`, with its own learning-rate phase, `SWALR`, built by
`optexp.optim.schedules`). Buffers (batch norm's running statistics) are averaged too;
SWA recomputes them on the training data before the test (`update_bn`), as its paper does.

`trainer.evaluate_averaged` picks the weights that validation, early stopping, the best
checkpoint and the test use, once averaging has begun; the others are logged beside them.

An optimizer may keep an average of its own that it evaluates at (Schedule-Free's x):
`OptimizerWeights`.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
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
        if self.swa.enabled and self.started and has_batch_norm(self.model):
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


def keeps_evaluation_weights(optimizer: object) -> bool:
    """An optimizer with `train()` and `eval()` methods evaluates at other weights than it
    trains at: the ecosystem's convention (schedulefree), which a user's optimizer may
    follow too. torch's optimizers have neither."""
    return callable(getattr(optimizer, "train", None)) and callable(
        getattr(optimizer, "eval", None)
    )


class OptimizerWeights(EvaluationWeights):
    """The weights an optimizer says to evaluate at (its `eval()`), computed into a copy of
    the model, while training goes on at its training weights (`train()`). The package's
    own in-place `eval()` / `train()` round trip is not bit-exact: here the training
    weights are put back as they were, so a run's trajectory does not depend on how often
    it is evaluated. With batch norm, the statistics are recomputed at the evaluation
    weights on `bn_batches` training batches (the schedulefree README's advice), with the
    random state put back."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Any,
        batches: Callable[[], Iterable[Any]],
        bn_batches: int,
    ) -> None:
        super().__init__(model)
        self.optimizer, self.batches, self.bn_batches = optimizer, batches, bn_batches
        self.copy = copy.deepcopy(model)
        self.current = False  # whether `copy` holds the weights of the last step
        optimizer.train()  # it starts in eval mode: steps need train mode

    def after_step(self, step: int, epoch: int) -> None:
        self.current = False

    def evaluated_model(self) -> nn.Module:
        if not self.current:
            self._evaluation_weights()
            self.current = True
        return self.copy

    @torch.no_grad()
    def _evaluation_weights(self) -> None:
        params = list(self.source.parameters())
        training = [p.detach().clone() for p in params]
        self.optimizer.eval()
        for target, p in zip(self.copy.parameters(), params, strict=True):
            target.copy_(p)
        self.optimizer.train()
        for p, saved in zip(params, training, strict=True):
            p.copy_(saved)
        for target, buffer in zip(self.copy.buffers(), self.source.buffers(), strict=True):
            target.copy_(buffer)
        if self.bn_batches and has_batch_norm(self.copy):
            device = next(self.copy.parameters()).device
            devices = [] if device.type == "cpu" else [device]
            with torch.random.fork_rng(devices=devices, device_type=device.type):
                update_bn(itertools.islice(self.batches(), self.bn_batches), self.copy)

    def state_dict(self) -> dict[str, Any]:
        """The evaluation weights beside the checkpoint's training state (recomputed from
        that state on resume: they are kept for whoever reads the checkpoint)."""
        return {"evaluated": self.evaluated_model().state_dict()}


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
