"""Datasets as splits of (x, y) batches, in the order of a permutation.

Sets that fit in memory are `Split`s: tensors on the training device, batched by
indexing. Sets read from files are `FileSplit`s: DataLoader workers decode each batch.
A dataset option is a function returning `Data`; its YAML names it by `_target_`.
Splits and batch order depend on `data_seed` alone, so every optimizer of a
comparison sees the same batches in the same order.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from optexp.errors import ConfigError, UserError


@dataclass
class Split:
    """Inputs `x` and targets `y` (class indices, or float targets for regression)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> Split:
        """On `device`; images in `memory_format` (e.g. channels-last), which batches keep."""
        x = self.x.to(device, memory_format=memory_format or torch.preserve_format)
        return Split(x, self.y.to(device))

    def head(self, n: int) -> Split:
        return Split(self.x[:n], self.y[:n])

    def batches(
        self, batch_size: int, order: Tensor | None = None, first: int = 0
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (x, y) batches from batch index `first` on, in `order` (a permutation)."""
        start = first * batch_size
        if order is None:
            xs, ys = self.x[start:].split(batch_size), self.y[start:].split(batch_size)
            yield from zip(xs, ys, strict=True)
            return
        for index in order[start:].split(batch_size):
            yield _rows(self.x, index), _rows(self.y, index)


def _rows(t: Tensor, index: Tensor) -> Tensor:
    """`t[index]`. index_select copies whole rows faster than general indexing
    (benchmarks/RESULTS.md), but returns a contiguous tensor: channels-last images keep
    their layout through `t[index]`."""
    return t.index_select(0, index) if t.is_contiguous() else t[index]


@dataclass
class FileSplit:
    """Images read from files batch by batch, for sets too large to hold in memory.

    DataLoader workers decode and resize each batch to uint8 (in pinned memory when the
    device is a GPU); it is copied to the device without blocking, then scaled to [0, 1]
    and normalized there. Batches as `Split.batches` gives them, in the same order.
    """

    images: Dataset  # sample i -> (uint8 image (C, H, W), label)
    y: Tensor  # every label, in sample order
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    workers: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    memory_format: torch.memory_format | None = None

    def __len__(self) -> int:
        return len(self.y)

    def to(
        self, device: torch.device, memory_format: torch.memory_format | None = None
    ) -> FileSplit:
        return replace(self, y=self.y.to(device), device=device, memory_format=memory_format)

    def head(self, n: int) -> FileSplit:
        n = min(n, len(self))
        return replace(self, images=Subset(self.images, range(n)), y=self.y[:n])

    def batches(
        self, batch_size: int, order: Tensor | None = None, first: int = 0
    ) -> Iterator[tuple[Tensor, Tensor]]:
        start = first * batch_size
        indices = range(start, len(self)) if order is None else order[start:].tolist()
        loader = DataLoader(
            self.images,
            batch_size,
            sampler=indices,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_leave_stop_signals_to_the_trainer,
        )
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, device=self.device).view(shape)
        std = torch.tensor(self.std, device=self.device).view(shape)
        try:
            for x, y in loader:
                x = x.to(self.device, non_blocking=True)
                x = x.to(torch.float32, memory_format=self.memory_format or torch.preserve_format)
                yield x.div_(255).sub_(mean).div_(std), y.to(self.device, non_blocking=True)
        except OSError as error:  # a file that went missing or does not decode
            raise UserError(image_error(error)) from None


class UnreadableImage(OSError):
    """An image file that does not read; the message names it and says what to do."""


def image_error(error: OSError) -> str:
    """The one line for an image that could not be read: `UnreadableImage`'s own (it
    names the file), else the error's last line after "cannot read an image of ..."."""
    detail = worker_error(error)
    if isinstance(error, UnreadableImage):  # a worker's has its type's name in front
        return detail.removeprefix(f"{UnreadableImage.__module__}.UnreadableImage: ")
    return f"cannot read an image of dataset.path: {detail}"


def worker_error(error: BaseException) -> str:
    """The message of an error a DataLoader worker raised, without the worker's traceback
    that DataLoader puts in it: its last line names the file (PIL's "cannot identify
    image file '...'")."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """A worker ignores Ctrl-C and SIGTERM sent to the whole process group: the training
    process stops gracefully and shuts its workers down (they exit if it dies). Forked
    workers also ignore them before this runs (see `optexp.signals`); spawned ones start
    with Python's own handlers."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


@dataclass
class Data:
    train: Split | FileSplit
    val: Split | FileSplit
    test: Split | FileSplit | None
    num_classes: int | None  # None: a regression task
    # Per-channel statistics the inputs were normalized with (None: inputs in [0, 1]);
    # augmentations that work in pixel space (colour jitter) undo and redo it.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape

    @property
    def is_classification(self) -> bool:
        return self.num_classes is not None

    @property
    def num_outputs(self) -> int:
        return self.num_classes if self.num_classes is not None else _target_width(self.train.y)

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> Data:
        """Every split on `device`, images in `memory_format` if given."""
        train, val = self.train.to(device, memory_format), self.val.to(device, memory_format)
        test = self.test.to(device, memory_format) if self.test is not None else None
        return replace(self, train=train, val=val, test=test)

    def head(self, n: int) -> Data:
        """The first `n` samples of each split: a quick run on a sliver of the data."""
        test = self.test.head(n) if self.test is not None else None
        return replace(self, train=self.train.head(n), val=self.val.head(n), test=test)


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


def train_head(train: Split, train_size: int | None) -> Split:
    """The first `train_size` samples of a (shuffled) training split, or all of it (null)."""
    if train_size is None:
        return train
    if not 2 <= train_size <= len(train):
        allowed = f"null, or an integer in [2, {len(train)}] (the training split's size)"
        raise ConfigError("dataset.train_size", train_size, allowed)
    return train.head(train_size)
