"""Optimizers: torch.optim (or any import path) named by `_target_`, plus parameter
groups that keep weight decay off biases and normalization weights (timm's rule)."""

from __future__ import annotations

from typing import Any

from torch import nn


def regularized(
    model: nn.Module, regularize_bias_and_norm: bool
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The trainable parameters as (regularized, exempt). Biases and normalization weights,
    the 1-D tensors, are exempt from weight decay and penalties unless
    `regularize_bias_and_norm`: shrinking them constrains no function the model computes."""
    params = [p for p in model.parameters() if p.requires_grad]
    if regularize_bias_and_norm:
        return params, []
    return [p for p in params if p.ndim > 1], [p for p in params if p.ndim <= 1]


def param_groups(
    model: nn.Module, weight_decay: float, regularize_bias_and_norm: bool
) -> list[dict[str, Any]]:
    """One group, or two when biases and norm weights skip decay."""
    decay, exempt = regularized(model, regularize_bias_and_norm or weight_decay == 0)
    if not exempt:
        return [{"params": decay}]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": exempt, "weight_decay": 0.0},
    ]
