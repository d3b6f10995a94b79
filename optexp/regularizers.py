"""Explicit penalties added to the training loss. (Dropout and batch norm are model
options, weight decay an optimizer option, early stopping a trainer option.)"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from optexp.optim import regularized
from optexp.optim.groups import matching, parameters


class NormPenalty:
    """Elastic net: l1 * sum|theta| + l2 * sum theta^2 (L1 = lasso, L2 = ridge).

    Biases and normalization weights are left out unless `regularize_bias_and_norm`
    (the rule of `optexp.optim.regularized`, which weight decay follows too); `match`
    picks the penalized parameters instead, by the conditions of optimizer groups'
    rules (`optexp.optim.groups`), e.g. {layer: [Linear], output: false}.
    """

    def __init__(
        self,
        model: nn.Module,
        l1: float = 0.0,
        l2: float = 0.0,
        regularize_bias_and_norm: bool = False,
        match: dict[str, Any] | None = None,
    ):
        self.l1, self.l2 = l1, l2
        if match is None:
            self.params, _ = regularized(model, regularize_bias_and_norm)
        else:
            chosen = matching(parameters(model), match, "regularizer.match", type(model).__name__)
            self.params = [p.tensor for p in chosen]

    def __call__(self) -> Tensor:
        total = torch.zeros((), device=self.params[0].device)
        for p in self.params:
            if self.l1:
                total = total + self.l1 * p.abs().sum()
            if self.l2:
                total = total + self.l2 * p.square().sum()
        return total
