"""Train the runs of a sweep that differ only in `seed` as one vectorized model.

Each member is built exactly as its own run would be (`build_parts` after seeding with its
seed); then the members' parameters are stacked (`optexp.vector.stack`) and one optimizer
steps them all, which for an elementwise optimizer is K independent steps. Everything
that is not a training step is the ordinary per-run code of `optexp.train` on the member's
own parts, whose modules are views of their slices: validation, early stopping,
divergence, checkpoints, TensorBoard and metrics.json. A member that ends (early
stopping, divergence) is finished then and there, and its loss leaves the sum."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.func import vmap

from optexp import checkpoint, metrics, rundir, train
from optexp.data import epoch_order
from optexp.metrics import NO_SUMS, EpochRecord
from optexp.optim import param_groups
from optexp.optim.schedules import Schedule
from optexp.parts import Parts, build, build_parts, build_schedule, fused_kernel
from optexp.provenance import Launch, describe_run
from optexp.rundir import Status, Summary
from optexp.signals import StopRequest
from optexp.steps import windows
from optexp.tracking import Tracker, print_summary
from optexp.train import About, Progress
from optexp.vector.stack import Stack, member_state, stacked_state

# (x, y, shared): one batch for every member, or one per member stacked (shared False)
GroupBatch = tuple[torch.Tensor, torch.Tensor, bool]
# Optimizers whose step is elementwise: one step on the stack is K independent steps.
ELEMENTWISE = {
    f"torch.optim.{name}" for name in ("SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adamax")
} | {f"optexp.optim.textbook.{name}" for name in ("SGD", "Momentum", "AdaGrad", "RMSprop", "Adam")}


class NotVectorizable(Exception):
    """The group trains as separate runs instead; the message says why."""


@dataclass
class Member:
    """One job of the group: what `optexp.train.run` would be given."""

    cfg: DictConfig
    run_dir: Path
    choices: dict[str, str]
    launch: Launch | None = None


class GroupStepped:
    """A member's schedule: the group's one schedule steps the stacked optimizer."""

    def after_step(self, epoch: int) -> None:
        pass

    def after_epoch(self, epoch: int, monitored: float) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}


@dataclass
class Group:
    """The members' parts (their modules views of the stack) and progress, and the stack
    with its one optimizer and schedule."""

    parts: list[Parts]
    progress: list[Progress]
    about: list[About]
    stack: Stack
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    shared_data: bool  # one dataset and batch order for all: the same data_seed
    active: list[int]  # the members still training

    @property
    def lead(self) -> Parts:
        return self.parts[self.active[0]]

    @property
    def place(self) -> Progress:
        """Where the group is: every active member's step, epoch and batch."""
        return self.progress[self.active[0]]


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
            for k, status in ended(group, bool(stop)).items():
                if status == Status.INTERRUPTED:
                    save(group, k, writer, ["last"])
                parts, progress, about = group.parts[k], group.progress[k], group.about[k]
                summaries[k] = train.conclude(
                    parts, progress, status, trackers[k], about, started, stop.signal
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
            Tracker(run_dir, parts.trainer, parts.batches_per_epoch, start, k == 0, writes=True)
        )
    return trackers


def build_group(members: list[Member]) -> Group:
    """Every member's parts as its own run builds them, resumed from its checkpoint if it
    has one, then stacked; refused (`NotVectorizable`) where the stack would not train as
    the separate runs do."""
    parts, progress, about = [], [], []
    for member in members:
        train.seed_everything(member.cfg.seed)
        member_parts = build_parts(member.cfg)
        refuse_unvectorizable(member_parts, member.cfg)
        config = OmegaConf.to_container(member.cfg, resolve=True)
        progress.append(train.resume(member_parts, member.run_dir, config))
        identity = rundir.identity(member.cfg, member_parts.device, member.choices)
        about.append(About(member.run_dir, config, member.choices, identity))
        parts.append(member_parts)
    refuse_unequal(parts, progress)
    stack = Stack([p.model for p in parts])
    optimizer = stacked_optimizer(members[0].cfg, parts[0], stack)
    schedule = build_schedule(
        members[0].cfg.scheduler, optimizer, parts[0].trainer, parts[0].steps_per_epoch
    )
    if progress[0].step or progress[0].batches_done:  # resumed: the members' states stacked
        stacked_state(optimizer, [p.optimizer.state_dict() for p in parts])
        schedule.load_state_dict(parts[0].schedule.state_dict())
    shared = len({p.data_seed for p in parts}) == 1
    data = [parts[0].data if shared else p.data for p in parts]  # one copy of shared data
    parts = [
        dataclasses.replace(p, optimizer=optimizer, schedule=GroupStepped(), data=d)
        for p, d in zip(parts, data, strict=True)
    ]
    everyone = list(range(len(parts)))
    group = Group(parts, progress, about, stack, optimizer, schedule, shared, everyone)
    check_traceable(group, members[0].cfg)
    return group


def refuse_unvectorizable(parts: Parts, cfg: DictConfig) -> None:
    """What a stack of runs cannot do as separate runs do, named."""
    target = cfg.optimizer._target_
    reasons = [
        (parts.closure, f"{target} evaluates the loss itself (a closure)"),
        (target not in ELEMENTWISE, f"{target} is not known to step each element on its own"),
        (parts.average is not None, "trainer.ema and trainer.swa average weights per run"),
        (parts.penalty is not None, "a regularizer's penalty is not computed per member"),
        (parts.scaler.is_enabled(), "fp16's gradient scaler skips a step for every member"),
        (parts.trainer.compile, "trainer.compile compiles one run's model"),
        (
            isinstance(parts.schedule.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau),
            "ReduceLROnPlateau follows one run's validation metric",
        ),
        (parts.world.size > 1, "a data-parallel run (trainer.devices, trainer.num_nodes)"),
    ]
    for refused, reason in reasons:
        if refused:
            raise NotVectorizable(reason)


def refuse_unequal(parts: list[Parts], progress: list[Progress]) -> None:
    """The members must train alike and be at the same place (all fresh, or resumed from
    the same step)."""
    if len({p.batches_per_epoch for p in parts}) > 1:
        raise NotVectorizable("the members' training sets differ in size")
    places = {(q.epoch, q.step, q.batches_done) for q in progress}
    if len(places) > 1:
        raise NotVectorizable(f"the members' checkpoints are at different places: {sorted(places)}")


def stacked_optimizer(cfg: DictConfig, lead: Parts, stack: Stack) -> torch.optim.Optimizer:
    """The optimizer of the members' config over the stacked parameters, in the parameter
    groups of one member (weight decay off biases and norms, as each run has it)."""
    node = cfg.optimizer
    index = {id(p): i for i, p in enumerate(lead.model.parameters())}
    groups = param_groups(
        lead.model, node.get("weight_decay", 0.0), node.get("regularize_bias_and_norm", False)
    )
    for group in groups:
        group["params"] = [stack.params[index[id(p)]] for p in group["params"]]
    return build("optimizer", node, params=groups, **fused_kernel(node, lead.device))


def check_traceable(group: Group, cfg: DictConfig) -> None:
    """One forward and backward of the stack on a training batch (in eval mode, the random
    state put back: nothing changes), or `NotVectorizable` naming what vmap refused."""
    batch = next(group_batches(group), None)
    if batch is None:
        return
    x, y, shared = batch
    try:
        with train.forked_rng(group.lead.device):
            group.stack.train(False)
            losses = member_losses(group, group.stack.forward(x, shared), y, shared)
            losses.sum().backward()
    except RuntimeError as error:
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise NotVectorizable(f"vmap cannot run model={cfg.model._target_}: {first}") from None
    finally:
        group.stack.train(True)
        group.optimizer.zero_grad(set_to_none=True)


def member_losses(
    group: Group, out: torch.Tensor, target: torch.Tensor, shared: bool
) -> torch.Tensor:
    """(K,): each member's loss on its outputs."""
    return vmap(group.lead.loss_fn, in_dims=(0, None if shared else 0))(out, target)


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
    budget_spent = place.step >= until or time_up
    records = {}
    for k in group.active:
        progress = group.progress[k]
        progress.seconds += time.perf_counter() - started
        member_sums = sums[k] + torch.tensor(progress.sums or NO_SUMS, device=sums.device)
        if progress.batches_done < group.lead.batches_per_epoch and not budget_spent:
            progress.sums = member_sums.tolist()  # a stop signal: the place and sums are kept
            continue
        norms = None if grad_norms is None else grad_norms[k]
        position = train.position(group.parts[k], progress)
        records[k] = metrics.epoch_record(group.parts[k], position, starts[k], member_sums, norms)
    return records or None


def group_batches(group: Group) -> Iterator[GroupBatch]:
    """The next epoch's training batches from where the group is: the one order of a
    shared data_seed, or each member's own batch, stacked."""
    place = group.place
    epoch, first = place.epoch + 1, place.batches_done
    members = group.parts[:1] if group.shared_data else group.parts
    iterators = [
        p.data.train.batches(
            p.batch_size, epoch_order(len(p.data.train), p.data_seed, epoch, p.device), first
        )
        for p in members
    ]
    for batch in zip(*iterators, strict=True):
        if group.shared_data:
            yield (*batch[0], True)
        else:
            xs, ys = zip(*batch, strict=True)
            yield torch.stack(xs), torch.stack(ys), False


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
            progress.step, progress.batches_done = (
                progress.step + 1,
                progress.batches_done + len(window),
            )
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
            losses = member_losses(group, out, target, per_member)
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
