"""One optimizer step, as the loop takes it: a window of `trainer.accumulate_batches`
batches whose losses are weighted by their share of the window's samples (so that K
batches of B step exactly as one batch of K x B, for a model without batch norm), or, for
an optimizer that evaluates the loss itself (L-BFGS, SAM), one batch through a closure.
Augmentation, mixed precision, the penalty, gradient clipping and the measured gradient
norms happen here; `optexp.train` decides when to step and what comes after. `RunSteps`
is what the loop is handed for one run: its batches, its step, its joints."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import torch
from torch import nn

from optexp import diagnostics
from optexp.data import epoch_order
from optexp.joints import Joint
from optexp.metrics import BatchStats
from optexp.parts import Parts

if TYPE_CHECKING:
    from optexp.state import RunState
    from optexp.tracking import Tracker

Batch = tuple[torch.Tensor, torch.Tensor]


class RunSteps:
    """One run's steps, as `optexp.train.Steps` asks: `optimizer_step` on the run's parts."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.joints: Sequence[Joint] = (parts.schedule, parts.weights)

    def batches(self, place: RunState, tracker: Tracker) -> Iterator[Batch]:
        return epoch_batches(self.parts, place, tracker)

    def step(
        self, window: list[Batch], measure: bool, active: list[int]
    ) -> tuple[list[BatchStats], torch.Tensor | None]:
        return optimizer_step(self.parts, window, measure)

    def totals(
        self, stats: list[BatchStats], grad_norms: torch.Tensor | None
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        return [(BatchStats.sums(stats, self.parts.device), grad_norms)]


def epoch_batches(parts: Parts, place: RunState, tracker: Tracker) -> Iterator[Batch]:
    """The next epoch's training batches, in that epoch's order, from where the run is."""
    epoch, first = place.epoch + 1, place.batches_done
    order = epoch_order(len(parts.data.train), parts.data_seed, epoch, parts.device)
    batches = parts.data.train.batches(parts.batch_size, order, first)
    shows = tracker.writes_tensorboard and diagnostics.is_image(parts.data.input_shape)
    if epoch == 1 and first == 0 and shows:
        batches = show_first(batches, parts, tracker)
    return tracker.batches(batches, first)


def show_first(batches: Iterable[Batch], parts: Parts, tracker: Tracker) -> Iterator[Batch]:
    """Pass the batches through; the first one also goes to TensorBoard, as it is and as
    augmented. The random state is put back after, so the loop draws the very same
    augmentation: the image shows what the model saw, and the run is unchanged."""
    iterator = iter(batches)
    for x, y in iterator:
        images = {"images/train_batch": x}
        if parts.augment is not None:
            with forked_rng(parts.device):
                images["images/train_batch_augmented"] = parts.augment(x, y)[0]
        mean, std = parts.data.mean, parts.data.std
        tracker.log_images({k: diagnostics.image_grid(v, mean, std) for k, v in images.items()}, 1)
        yield x, y
        break
    yield from iterator


def forked_rng(device: torch.device) -> AbstractContextManager[None]:
    """Torch's random state (CPU and `device`'s) as it was, after the block."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device], device_type=device.type)


def windows(batches: Iterable[Batch], size: int) -> Iterator[list[Batch]]:
    """The batches in consecutive lists of `size` (the last one may be shorter)."""
    window: list[Batch] = []
    for batch in batches:
        window.append(batch)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


def optimizer_step(
    parts: Parts, window: list[Batch], measure: bool
) -> tuple[list[BatchStats], torch.Tensor | None]:
    """One optimizer step on `window`: each batch's loss weighted by its share of the
    window's samples, so that accumulated batches step as one batch of them all. Returns
    each batch's stats and, if `measure`, each parameter's gradient norm (before clipping)."""
    if parts.closure:
        return closure_step(parts, window[0], measure)
    optimizer, scaler, trainer = parts.optimizer, parts.scaler, parts.trainer
    optimizer.zero_grad(set_to_none=True)
    samples, world = sum(len(y) for _, y in window), parts.world
    shards = [world.shard(x, y) for x, y in window]  # this rank's part of each batch
    # Across ranks, DistributedDataParallel averages the gradients: x world restores the sum.
    stats = [
        forward_backward(parts, *augmented(parts, x, y), len(y) / samples * world.size)[1]
        for x, y in shards
    ]
    grad_norms = None
    if trainer.grad_clip or measure:
        scaler.unscale_(optimizer)  # clip and measure the true gradients
        grad_norms = clip_gradients(parts.model, trainer.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return stats, grad_norms


def closure_step(
    parts: Parts, batch: Batch, measure: bool
) -> tuple[list[BatchStats], torch.Tensor | None]:
    """One step of an optimizer that evaluates the loss itself (L-BFGS, SAM), through a
    closure that zeroes the gradients, runs forward and backward on the batch (augmented
    once: every evaluation sees the same one) and returns the loss. The batch's stats
    are those of the first evaluation."""
    x, target, y = augmented(parts, *batch)
    stats: list[BatchStats] = []

    def closure() -> torch.Tensor:
        parts.optimizer.zero_grad(set_to_none=True)
        objective, batch_stats = forward_backward(parts, x, target, y, 1.0)
        if parts.trainer.grad_clip:
            clip_gradients(parts.model, parts.trainer.grad_clip)
        stats[:] = stats or [batch_stats]
        return objective

    parts.optimizer.step(closure)
    grad_norms = diagnostics.norms([p.grad for p in parts.model.parameters()]) if measure else None
    return stats, grad_norms


def augmented(parts: Parts, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(inputs, training targets, labels): augmented, mixed targets for mixup and cutmix;
    the labels stay for the accuracy."""
    if parts.augment is None:
        return x, y, y
    x, target = parts.augment(x, y)
    return x, target, y


def forward_backward(
    parts: Parts, x: torch.Tensor, target: torch.Tensor, y: torch.Tensor, weight: float
) -> tuple[torch.Tensor, BatchStats]:
    """The loss (and penalty) of one batch, its gradient added to `.grad` with `weight`."""
    with parts.autocast():
        out = parts.forward(x)
        # A rank's part of a last, short batch may be empty: it still takes part in the
        # gradients' all-reduce, with a zero loss.
        loss = parts.loss_fn(out, target) if len(y) else out.sum() * 0
    penalty = parts.penalty() if parts.penalty is not None else None
    objective = loss if penalty is None else loss + penalty
    parts.scaler.scale(objective if weight == 1 else objective * weight).backward()
    return objective, BatchStats.of(out, y, loss, penalty, parts.data.is_classification)


def clip_gradients(model: nn.Module, max_norm: float | None) -> torch.Tensor:
    """Each parameter's gradient norm (before clipping); the gradients scaled down to a
    global norm of `max_norm` if set."""
    params = list(model.parameters())
    grad_norms = diagnostics.norms([p.grad for p in params])
    if max_norm:
        nn.utils.clip_grads_with_norm_(params, max_norm, torch.linalg.vector_norm(grad_norms))
    return grad_norms
