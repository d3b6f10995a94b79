"""A group's stacked step, as the loop (`optexp.train.Steps`) asks for it: every active
member's loss on its batch, one backward through the stack, one optimizer step on the
stacked parameters with each member's hyperparameters as its own schedule has set them;
for an elementwise optimizer, K independent steps."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from optexp.data import epoch_order
from optexp.joints import Joint
from optexp.metrics import NO_SUMS
from optexp.parts import Parts
from optexp.state import RunState
from optexp.tracking import Tracker
from optexp.vector.stack import Stack

# (x, y, shared): one batch for every member, or one per member stacked (shared False)
GroupBatch = tuple[torch.Tensor, torch.Tensor, bool]


@dataclass
class GroupSteps:
    """The members' parts (their modules views of the stack, their optimizers views of
    the stacked one over their own parameter groups), the stack and its one optimizer."""

    parts: list[Parts]
    stack: Stack
    optimizer: torch.optim.Optimizer
    shared_data: bool  # one dataset and batch order for all: the same data_seed

    @property
    def joints(self) -> Sequence[Joint]:  # each member's own, on its own groups and weights
        return [joint for p in self.parts for joint in (p.schedule, p.weights)]

    def set_hyperparameters(self) -> None:
        """The stacked optimizer's hyperparameters from the members' own parameter groups:
        a number where they agree, a (K,) tensor where they differ (a stacked step's)."""
        own = [p.optimizer.param_groups for p in self.parts]
        device = self.parts[0].device
        for g, group in enumerate(self.optimizer.param_groups):
            for key in own[0][g].keys() & group.keys() - {"params"}:  # not the stack's counts
                group[key] = agreed([groups[g][key] for groups in own], device)

    def keep_counters(self) -> None:
        """The counters a stacked step keeps in its parameter groups (`counters`:
        Schedule-Free's step count, lr_max, weight_sum), copied into each member's own
        groups: what the next step reads back, its checkpoint keeps and its logs show."""
        own = [p.optimizer.param_groups for p in self.parts]
        for g, group in enumerate(self.optimizer.param_groups):
            for key in getattr(self.optimizer, "counters", ()):
                value = group[key]
                values = value.tolist() if isinstance(value, torch.Tensor) else [value] * len(own)
                for groups, member_value in zip(own, values, strict=True):
                    groups[g][key] = member_value

    def batches(self, place: RunState, tracker: Tracker) -> Iterator[GroupBatch]:
        """The next epoch's training batches from where the group is: the one order of a
        shared data_seed, or each member's own batch, stacked."""
        epoch, first = place.epoch + 1, place.batches_done
        members = self.parts[:1] if self.shared_data else self.parts
        iterators = [
            p.data.train.batches(
                p.batch_size, epoch_order(len(p.data.train), p.data_seed, epoch, p.device), first
            )
            for p in members
        ]
        return tracker.batches(self._zipped(iterators), first)

    def _zipped(self, iterators: list[Iterator[tuple[torch.Tensor, ...]]]) -> Iterator[GroupBatch]:
        for batch in zip(*iterators, strict=True):
            if self.shared_data:
                yield (*batch[0], True)
            else:
                xs, ys = zip(*batch, strict=True)
                yield torch.stack(xs), torch.stack(ys), False

    def step(
        self, window: list[GroupBatch], measure: bool, active: list[int]
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """`optexp.steps.optimizer_step` for the group: each member's loss weighted by its
        batch's share of the window, the ended members' masked out, summed, one backward
        and one step. Gradient clipping is per member, as in each run. Returns each
        batch's (K, 4) `IntervalSums` and, if measured, (K, P) gradient norms."""
        lead, stack = self.parts[0], self.stack
        self.optimizer.zero_grad(set_to_none=True)
        mask = torch.zeros(len(self.parts), dtype=torch.bool, device=lead.device)
        mask[active] = True
        samples = sum(batch_size(y, shared) for _, y, shared in window)
        stats = []
        for x, y, shared in window:
            x, target, per_member = self.augmented(x, y, shared)
            n = batch_size(y, shared)
            with lead.autocast():
                out = stack.forward(x, per_member)
                losses = member_losses(lead.loss_fn, out, target, per_member)
            objective = torch.where(mask, losses, 0).sum()
            (objective if n == samples else objective * (n / samples)).backward()
            stats.append(batch_sums(lead, out, y, losses, n))
        grad_norms = None
        if lead.trainer.grad_clip or measure:
            grad_norms = stack.grad_norms()
            if lead.trainer.grad_clip:
                stack.clip(grad_norms, lead.trainer.grad_clip)
        self.set_hyperparameters()
        self.optimizer.step()
        self.keep_counters()
        return stats, grad_norms

    def augmented(
        self, x: torch.Tensor, y: torch.Tensor, shared: bool
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(inputs, targets, shared): with augmentation, each member augments its own
        batch (its own draw, from the group's one random stream)."""
        if self.parts[0].augment is None:
            return x, y, shared
        pairs = [
            p.augment(x if shared else x[k], y if shared else y[k])
            for k, p in enumerate(self.parts)
        ]
        xs, targets = zip(*pairs, strict=True)
        return torch.stack(xs), torch.stack(targets), False

    def totals(
        self, stats: list[torch.Tensor], grad_norms: torch.Tensor | None
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        size, device = len(self.parts), self.parts[0].device
        none = torch.zeros(size, len(NO_SUMS), device=device)
        sums = torch.stack(stats).sum(0) if stats else none
        return [(sums[k], None if grad_norms is None else grad_norms[k]) for k in range(size)]


def agreed(values: list[Any], device: torch.device) -> Any:
    """The members' value when they agree; else one (K,) float64 tensor per number."""
    if all(v == values[0] for v in values):
        return values[0]
    if isinstance(values[0], tuple | list):
        return tuple(agreed(list(column), device) for column in zip(*values, strict=True))
    return torch.tensor(values, dtype=torch.float64, device=device)


def batch_size(y: torch.Tensor, shared: bool) -> int:
    return len(y) if shared else y.shape[1]


def batch_sums(
    lead: Parts, out: torch.Tensor, y: torch.Tensor, losses: torch.Tensor, n: int
) -> torch.Tensor:
    """(K, 4): each member's `IntervalSums` of one batch."""
    losses = losses.detach().float()
    zero = torch.zeros_like(losses)
    correct = zero
    if lead.data.is_classification:
        correct = (out.argmax(2) == y).flatten(1).sum(1).float()
    return torch.stack([losses * n, correct, zero, torch.full_like(losses, n)], dim=1)


def member_losses(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    out: torch.Tensor,
    target: torch.Tensor,
    shared: bool,
) -> torch.Tensor:
    """(K,): each member's loss on its outputs, by the run's own loss function (a loop:
    fewer operations than vmap's for one small call)."""
    targets = [target] * len(out) if shared else list(target)
    return torch.stack([loss_fn(o, t) for o, t in zip(out, targets, strict=True)])
