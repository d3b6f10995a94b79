"""Train the runs of a sweep that differ only in `seed` as one vectorized model.

Each member is built exactly as its own run would be (`build_parts` after seeding with its
seed); then the members' parameters are stacked (`optexp.vector.stack`) and one optimizer
steps them all, which for an elementwise optimizer is K independent steps. Everything
that is not a training step is the ordinary per-run code of `optexp.train` on the member's
own parts, whose modules are views of their slices: validation, early stopping,
divergence, checkpoints, TensorBoard and metrics.json. A member that ends (early
stopping, divergence) is finished then and there, and its loss leaves the sum."""

from __future__ import annotations

import copy
import dataclasses
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from optexp import rundir, train
from optexp.data import epoch_order
from optexp.optim import param_groups
from optexp.optim.schedules import Schedule
from optexp.parts import Parts, build, build_parts, build_schedule, fused_kernel
from optexp.provenance import Launch
from optexp.train import About, Progress
from optexp.vector.stack import Stack, stacked_state

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


def build_group(members: list[Member]) -> Group:
    """Every member's parts as its own run builds them, resumed from its checkpoint if it
    has one, then stacked; refused (`NotVectorizable`) where the stack would not train as
    the separate runs do, as soon as the first member shows it."""
    parts, progress, about = [], [], []
    for member in members:
        train.seed_everything(member.cfg.seed)
        member_parts = build_parts(member.cfg)
        refuse_unvectorizable(member_parts, member.cfg)
        if not parts:
            check_traceable(member_parts, member.cfg)
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
    return Group(parts, progress, about, stack, optimizer, schedule, shared, everyone)


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


def check_traceable(lead: Parts, cfg: DictConfig) -> None:
    """One forward and backward of a stack of two copies of the first member's model on
    its first training batch, or `NotVectorizable` naming what vmap refused or would run
    as a loop over the members (slower than separate runs). The copies keep the member
    as it is; the random state is put back."""
    x, y = next(iter(lead.data.train.batches(lead.batch_size)))
    stack = Stack([copy.deepcopy(lead.model) for _ in range(2)])
    model = f"model={cfg.model._target_}"
    try:
        with train.forked_rng(lead.device), warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            member_losses(lead.loss_fn, stack.forward(x, True), y, True).sum().backward()
    except RuntimeError as error:
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise NotVectorizable(f"vmap cannot run {model}: {first}") from None
    for warning in seen:
        if (found := re.search(r"batching rule for (\S+?)\.? ", str(warning.message))) is not None:
            raise NotVectorizable(f"vmap has no batching rule for {found[1]} of {model}")


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
