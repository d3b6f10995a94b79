"""Optimizers: torch.optim (or any import path) named by `_target_`, plus parameter
groups that keep weight decay off biases and normalization weights (timm's rule)."""

from __future__ import annotations

from typing import Any

from torch import nn


def param_groups(
    model: nn.Module, weight_decay: float, decay_bias_and_norm: bool
) -> list[dict[str, Any]]:
    """One group, or two when biases and norm weights (all 1-D tensors) skip decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_bias_and_norm or weight_decay == 0:
        return [{"params": params}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
