"""Losses that torch.nn does not provide in the form a classification-or-regression
experiment needs. cross_entropy and hinge are torch.nn classes named in their YAML."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MSELoss(nn.MSELoss):
    """Mean squared error averaged over all elements, as torch.nn.MSELoss. Integer class
    labels become one-hot rows of the output's width (classification by regression);
    float targets are compared directly, with (N, 1) outputs matched to (N,) targets."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        if target.is_floating_point():
            input = input.reshape(target.shape)
        else:
            target = F.one_hot(target, input.shape[-1]).to(input.dtype)
        return super().forward(input, target)
