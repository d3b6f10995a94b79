"""In-memory datasets: tensors on the training device, batched by indexing.

A dataset option is a function returning `Data`; its YAML names it by `_target_`.
Splits and batch order depend on `data_seed` alone, so every optimizer of a
comparison sees the same batches in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass
class Split:
    """Inputs `x` and targets `y` (class indices, or float targets for regression)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device))

    def batches(
        self, batch_size: int, order: Tensor | None = None, first: int = 0
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (x, y) batches from batch index `first` on, in `order` (a permutation)."""
        for start in range(first * batch_size, len(self), batch_size):
            if order is None:
                yield self.x[start : start + batch_size], self.y[start : start + batch_size]
            else:
                index = order[start : start + batch_size]
                yield self.x[index], self.y[index]


@dataclass
class Data:
    train: Split
    val: Split
    test: Split | None
    num_classes: int | None  # None: a regression task
    # Per-channel statistics the inputs were normalized with (None: inputs in [0, 1]);
    # augmentations that work in pixel space (colour jitter) undo and redo it.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def is_classification(self) -> bool:
        return self.num_classes is not None

    @property
    def num_outputs(self) -> int:
        return self.num_classes if self.num_classes is not None else _target_width(self.train.y)

    def to(self, device: torch.device) -> Data:
        test = self.test.to(device) if self.test is not None else None
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=test)


def _target_width(y: Tensor) -> int:
    return 1 if y.ndim == 1 else y.shape[1]


def epoch_order(n: int, data_seed: int, epoch: int, device: torch.device) -> Tensor:
    """The permutation of training samples for `epoch`: a pure function of its arguments,
    so a resumed run draws exactly the batches the uninterrupted run would have."""
    generator = torch.Generator().manual_seed(data_seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


def split(
    x: Tensor, y: Tensor, val_fraction: float, test_fraction: float, seed: int
) -> tuple[Split, Split, Split | None]:
    """Shuffle with `seed`, then cut into train / val / test (test may be empty: None)."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_val, n_test = round(len(y) * val_fraction), round(len(y) * test_fraction)
    val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
    test_split = Split(x[test], y[test]) if n_test else None
    return Split(x[train], y[train]), Split(x[val], y[val]), test_split
