"""The group's training loop: `optexp.train`'s loop for a stack of members. Each
interval trains every active member in one step at a time; each member's evaluation,
early stopping, checkpoints and end are the per-run code on its own parts."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any

import torch

from optexp import checkpoint, metrics, rundir, train
from optexp.metrics import NO_SUMS, EpochRecord
from optexp.provenance import describe_run
from optexp.rundir import Status, Summary
from optexp.signals import StopRequest
from optexp.steps import windows
from optexp.tracking import Tracker, print_summary
from optexp.vector.group import Group, GroupBatch, Member, build_group, group_batches, member_losses
from optexp.vector.stack import member_state


def run_group(members: list[Member]) -> list[dict[str, Any]]:
    """Train the members as one; return what each one's metrics.json holds. Raises
    `NotVectorizable`, before anything is written, for what cannot be vectorized."""
    started = time.perf_counter()
    group = build_group(members)
    summaries: dict[int, Summary] = {}
    with ExitStack() as context:
        writer = context.enter_context(checkpoint.Writer())
        trackers = [context.enter_context(tracker) for tracker in make_trackers(group)]
        stop = context.enter_context(StopRequest())
        if group.place.epoch == group.place.batches_done == 0:  # a fresh start
            for k, tracker in enumerate(trackers):
                config, device = group.about[k].config, group.lead.device
                tracker.log_text(describe_run(config, device, members[k].launch))
        while group.active:
            ending, ended_at = ended(group, bool(stop)), time.perf_counter()
            for k, status in ending.items():
                # wall_s: the group's time to this end, and this member's own conclusion
                waited = time.perf_counter() - ended_at  # the others' conclusions
                if status == Status.INTERRUPTED:
                    save(group, k, writer, ["last"])
                parts, progress, about = group.parts[k], group.progress[k], group.about[k]
                summaries[k] = train.conclude(
                    parts, progress, status, trackers[k], about, started + waited, stop.signal
                )
                group.active.remove(k)
            if group.active and (records := train_interval(group, trackers[0], stop)):
                end_interval(group, records, trackers, writer)
    for k, summary in sorted(summaries.items()):
        print_summary(summary, members[k].run_dir)
    return [dataclasses.asdict(summaries[k]) for k in range(len(members))]


def ended(group: Group, stopped: bool) -> dict[int, Status]:
    """The active members that end now, with their status."""
    statuses = {k: train.ending(group.parts[k], group.progress[k], stopped) for k in group.active}
    return {k: status for k, status in statuses.items() if status is not None}


def make_trackers(group: Group) -> list[Tracker]:
    """Each member's TensorBoard; the terminal shows the first member's bar and lines."""
    trackers = []
    for k, (parts, progress) in enumerate(zip(group.parts, group.progress, strict=True)):
        start, run_dir = train.x_of(parts, progress), group.about[k].run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        trackers.append(
            Tracker(run_dir, parts.trainer, parts.batches_per_epoch, start, shows=k == 0)
        )
    return trackers


def train_interval(
    group: Group, tracker: Tracker, stop: StopRequest
) -> dict[int, EpochRecord] | None:
    """`optexp.train.train_interval` for the group: train to the next evaluation, then
    measure each active member; None when a stop signal came first."""
    place = group.place
    until = train.next_evaluation(group.lead, place)
    starts = {k: metrics.EpochStart.now(group.parts[k]) for k in group.active}
    started = min(s.started for s in starts.values())
    deadline = started + (group.lead.trainer.max_time or math.inf) - place.seconds
    batches = tracker.batches(group_batches(group), place.batches_done)
    sums, grad_norms, time_up = train_steps(group, batches, stop, (until, deadline))
    budget_spent, spent = place.step >= until or time_up, time.perf_counter() - started
    records = {}
    for k in group.active:
        progress = group.progress[k]
        progress.seconds += spent
        member_sums = sums[k] + torch.tensor(progress.sums or NO_SUMS, device=sums.device)
        if progress.batches_done < group.lead.batches_per_epoch and not budget_spent:
            progress.sums = member_sums.tolist()  # a stop signal: the place and sums are kept
            continue
        norms = None if grad_norms is None else grad_norms[k]
        position = train.position(group.parts[k], progress)
        records[k] = metrics.epoch_record(group.parts[k], position, starts[k], member_sums, norms)
    return records or None


def train_steps(
    group: Group, batches: Iterable[GroupBatch], stop: StopRequest, until: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """`optexp.train.train_steps` for the group: (K, 4) `EpochSums`, (K, P) gradient norms
    at the last step (None if not measured), whether the time budget ended it."""
    steps, deadline = until
    grad_norms, stats, time_up = None, [], False
    place, trainer = group.place, group.lead.trainer
    for window, last in train.mark_last(windows(batches, trainer.accumulate_batches)):
        time_up = time.perf_counter() >= deadline
        if stop or time_up:
            break
        measure = last or place.step + 1 >= steps or deadline < math.inf
        taken, norms = group_step(group, window, measure)
        stats += taken
        grad_norms = norms if measure else grad_norms
        for k in group.active:
            progress = group.progress[k]
            progress.step += 1
            progress.batches_done += len(window)
        group.schedule.after_step(place.epoch + 1)
        if place.step >= steps:
            break
    device, size = group.lead.device, len(group.parts)
    sums = torch.stack(stats).sum(0) if stats else torch.zeros(size, len(NO_SUMS), device=device)
    return sums, grad_norms, time_up


def group_step(
    group: Group, window: list[GroupBatch], measure: bool
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """`optexp.steps.optimizer_step` for the group: each member's loss weighted by its
    batch's share of the window, the ended members' masked out, summed, one backward and
    one step. Gradient clipping is per member, as in each run."""
    lead, stack = group.lead, group.stack
    group.optimizer.zero_grad(set_to_none=True)
    mask = torch.zeros(len(group.parts), dtype=torch.bool, device=lead.device)
    mask[group.active] = True
    samples = sum(batch_size(y, shared) for _, y, shared in window)
    stats = []
    for x, y, shared in window:
        x, target, per_member = augmented(group, x, y, shared)
        n = batch_size(y, shared)
        with lead.autocast():
            out = stack.forward(x, per_member)
            losses = member_losses(lead.loss_fn, out, target, per_member)
        objective = torch.where(mask, losses, 0).sum()
        (objective if n == samples else objective * (n / samples)).backward()
        stats.append(batch_sums(group, out, y, losses, n))
    grad_norms = None
    if lead.trainer.grad_clip or measure:
        grad_norms = stack.grad_norms()
        if lead.trainer.grad_clip:
            stack.clip(grad_norms, lead.trainer.grad_clip)
    group.optimizer.step()
    return stats, grad_norms


def batch_size(y: torch.Tensor, shared: bool) -> int:
    return len(y) if shared else y.shape[1]


def augmented(
    group: Group, x: torch.Tensor, y: torch.Tensor, shared: bool
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(inputs, targets, shared): with augmentation, each member augments its own batch
    (its own draw, from the group's one random stream)."""
    if group.lead.augment is None:
        return x, y, shared
    pairs = [
        p.augment(x if shared else x[k], y if shared else y[k]) for k, p in enumerate(group.parts)
    ]
    xs, targets = zip(*pairs, strict=True)
    return torch.stack(xs), torch.stack(targets), False


def batch_sums(
    group: Group, out: torch.Tensor, y: torch.Tensor, losses: torch.Tensor, n: int
) -> torch.Tensor:
    """(K, 4): each member's `EpochSums` of one batch."""
    losses = losses.detach().float()
    zero = torch.zeros_like(losses)
    correct = zero
    if group.lead.data.is_classification:
        correct = (out.argmax(2) == y).flatten(1).sum(1).float()
    return torch.stack([losses * n, correct, zero, torch.full_like(losses, n)], dim=1)


def end_interval(
    group: Group, records: dict[int, EpochRecord], trackers: list[Tracker], writer: Any
) -> None:
    """Each member's evaluation logged and taken (`optexp.train.end_interval`: early
    stopping, the best weights, its checkpoints); at an epoch's end, the schedule."""
    for k, record in records.items():
        trackers[k].log_epoch(record)
        save(group, k, writer, train.end_interval(group.parts[k], group.progress[k], record))
    if next(iter(records.values())).position.epoch_end:
        group.schedule.after_epoch(group.place.epoch, math.nan)


def save(group: Group, k: int, writer: checkpoint.Writer, names: list[str]) -> None:
    """Member `k`'s checkpoint, as its own run would write it: its slices of the weights
    and the optimizer's state, the group's schedule and random state."""
    if not names:
        return
    parts, progress, about = group.parts[k], group.progress[k], group.about[k]
    model = {name: t.clone() for name, t in parts.model.state_dict().items()}  # not the stack
    state = train.snapshot(parts, progress, json.dumps(about.config), [checkpoint.rng_state()])
    if state["progress"]["best_model"] is not progress.best_model:  # the best is now
        state["progress"]["best_model"] = model
    state |= {
        "model": model,
        "optimizer": member_state(group.optimizer, k),
        "scheduler": group.schedule.state_dict(),
    }
    writer.save(state, *[rundir.checkpoint_file(about.run_dir, name) for name in names])
