"""What TensorBoard shows beyond the curves: how the optimizer moved each parameter tensor
in an epoch, the training images as the model saw them, and the test confusion matrix.

Everything here works on tensors and stays on their device until the epoch's one read
(`optexp.train.train_metrics`); writing to TensorBoard is `optexp.tracking`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from optexp.data import Split

# Per-layer tags are KIND/PARAMETER (e.g. `update_ratio/layers.0.weight`): TensorBoard
# groups cards by the first path component, so each kind is one section comparing the
# layers (beside the global `grad_norm` and `weight_norm`), and the tag filter picks one
# layer across kinds by its name.
LAYER_KINDS = ("grad_norm", "weight_norm", "update_ratio")
GRID_IMAGES = 64  # of the first batch
GRID_COLUMNS = 8
# Smaller images are scaled up by a whole factor, so that they stay sharp when
# TensorBoard stretches the card; not more: the PNG encoding grows with the pixels.
MIN_TILE_PX = 16


@torch.no_grad()
def norms(tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """The L2 norm of each tensor (0 for None: a parameter without gradient), stacked into
    one tensor on the device: read with the epoch's other numbers."""
    present = [t for t in tensors if t is not None]
    if not present:
        return torch.zeros(len(tensors))
    values = torch._foreach_norm(present)  # one kernel per device and dtype
    if len(present) < len(tensors):
        values, zero = iter(values), present[0].new_zeros(())
        values = [zero if t is None else next(values) for t in tensors]
    return torch.stack(values).float()


@torch.no_grad()
def weights_now(model: nn.Module, wanted: bool = True) -> list[torch.Tensor] | None:
    """A detached copy of every parameter, the start of the epoch's update ratios (None
    when not `wanted`: no TensorBoard to show them)."""
    return [p.detach().clone() for p in model.parameters()] if wanted else None


@torch.no_grad()
def layer_norms(
    model: nn.Module, grad_norms: torch.Tensor, before: list[torch.Tensor] | None
) -> torch.Tensor:
    """(3, P) on the device: per parameter tensor, the gradient norm at the epoch's last
    step, the weight norm now, and ||theta_now - theta_before|| / ||theta_now|| (a tensor
    that started at 0 reads 1: all of it is new). Without `before`: the first two rows
    alone, which the global norms need."""
    weights = [p.detach() for p in model.parameters()]
    weight = norms(weights)
    if before is None:
        return torch.stack([grad_norms.float(), weight])
    update = norms(torch._foreach_sub(weights, before))
    return torch.stack([grad_norms.float(), weight, update / weight.clamp_min(1e-12)])


def layer_scalars(names: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    """`layer_norms`' numbers (read from the device, row after row) as TensorBoard tags;
    none without the update ratios (no TensorBoard)."""
    if len(values) < len(LAYER_KINDS) * len(names):
        return {}
    tags = [f"{kind}/{name}" for kind in LAYER_KINDS for name in names]
    return dict(zip(tags, values, strict=True))


def is_image(shape: Sequence[int]) -> bool:
    """Inputs TensorBoard can show: (C, H, W) with one or three channels."""
    return len(shape) == 3 and shape[0] in (1, 3)


@torch.no_grad()
def image_grid(
    x: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None
) -> torch.Tensor:
    """The first `GRID_IMAGES` of a batch (N, C, H, W) as one (C, H', W') image in [0, 1],
    de-normalized, with a white line between the tiles."""
    x = x[:GRID_IMAGES].detach().float().cpu()
    if mean is not None and std is not None:
        x = x * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    n, c, h, w = x.shape
    k = max(1, -(-MIN_TILE_PX // max(h, w)))
    x = x.clamp(0, 1).repeat_interleave(k, 2).repeat_interleave(k, 3)
    x = nn.functional.pad(x, (0, 1, 0, 1), value=1.0)  # the line right of and below each
    rows = -(-n // GRID_COLUMNS)
    columns = min(n, GRID_COLUMNS)
    x = torch.cat([x, x.new_ones(rows * columns - n, *x.shape[1:])])
    _, _, th, tw = x.shape
    return x.view(rows, columns, c, th, tw).permute(2, 0, 3, 1, 4).reshape(c, rows * th, -1)


@torch.no_grad()
def confusion_matrix(
    model: nn.Module, split: Split, num_classes: int, batch_size: int
) -> torch.Tensor:
    """Counts (true class, predicted class) over `split`, on the CPU, in eval mode."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(num_classes * num_classes, dtype=torch.long)
    for x, y in split.batches(batch_size):
        pairs = y * num_classes + model(x).argmax(1)
        counts += torch.bincount(pairs, minlength=num_classes**2).cpu()
    model.train(was_training)
    return counts.view(num_classes, num_classes)
