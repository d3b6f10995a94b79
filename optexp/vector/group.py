"""Train the runs of a sweep that differ only in `seed` as one vectorized model.

Each member is built exactly as its own run would be (`build_parts` after seeding with its
seed); then the members' parameters are stacked (`optexp.vector.stack`) and one optimizer
steps them all (`optexp.vector.steps`), which for an elementwise optimizer is K
independent steps. The loop is the one of `optexp.train`: validation, early stopping,
divergence, checkpoints, TensorBoard and metrics.json are each member's ordinary per-run
code on its own parts, whose modules are views of their slices, whose optimizer is its
view of the stacked one and whose schedule is the group's. A member that ends (early
stopping, divergence) is finished then and there, and its loss leaves the sum."""

from __future__ import annotations

import copy
import dataclasses
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from optexp import rundir, train
from optexp.joints import EvaluationWeights
from optexp.parts import (
    Parts,
    build,
    build_parts,
    build_schedule,
    fused_kernel,
    optimizer_groups,
)
from optexp.provenance import Launch
from optexp.state import RunState, resume, seed_everything
from optexp.steps import forked_rng
from optexp.train import About, Member
from optexp.vector.stack import MemberOptimizer, Stack, stacked_state
from optexp.vector.steps import GroupSteps, member_losses

# Optimizers whose step is elementwise: one step on the stack is K independent steps.
ELEMENTWISE = (
    {f"torch.optim.{n}" for n in ("SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adamax", "NAdam")}
    | {f"optexp.optim.textbook.{n}" for n in ("SGD", "Momentum", "AdaGrad", "RMSprop", "Adam")}
    | {f"pytorch_optimizer.{n}" for n in ("Lion", "ADOPT")}
)


class NotVectorizable(Exception):
    """The group trains as separate runs instead; the message says why."""


@dataclass
class RunSpec:
    """One job of the group: what `optexp.train.run` would be given."""

    cfg: DictConfig
    run_dir: Path
    choices: dict[str, str]
    launch: Launch | None = None


def run_group(specs: list[RunSpec]) -> list[dict[str, Any]]:
    """Train the runs as one; return what each one's metrics.json holds. Raises
    `NotVectorizable`, before anything is written, for what cannot be vectorized."""
    started = time.perf_counter()
    members, steps = build_group(specs)
    return [dataclasses.asdict(summary) for summary in train.train(members, steps, started)]


def build_group(specs: list[RunSpec]) -> tuple[list[Member], GroupSteps]:
    """Every member's parts as its own run builds them, resumed from its checkpoint if it
    has one, then stacked; refused (`NotVectorizable`) where the stack would not train as
    the separate runs do, as soon as the first member shows it, before any write."""
    parts, states, about = [], [], []
    for spec in specs:
        seed_everything(spec.cfg.seed)
        member_parts = build_parts(spec.cfg)
        refuse_unvectorizable(member_parts, spec.cfg)
        if not parts:
            check_traceable(member_parts, spec.cfg)
        config = OmegaConf.to_container(spec.cfg, resolve=True)
        states.append(resume(member_parts, spec.run_dir, config))
        identity = rundir.identity(spec.cfg, member_parts.device, spec.choices)
        about.append(About(spec.run_dir, config, spec.choices, identity, spec.launch))
        parts.append(member_parts)
    refuse_unequal(parts, states)
    steps = stacked(specs[0].cfg, parts, resumed=bool(states[0].step or states[0].batches_done))
    members = [
        train.make_member(p, state, a, shows=k == 0, writes=True)
        for k, (p, state, a) in enumerate(zip(steps.parts, states, about, strict=True))
    ]
    return members, steps


def stacked(cfg: DictConfig, parts: list[Parts], resumed: bool) -> GroupSteps:
    """The members' parameters stacked, with one optimizer and one schedule over them
    (loaded with the members' states when `resumed`); each member's parts then hold its
    views of them, and one copy of data the members share."""
    stack = Stack([p.model for p in parts])
    optimizer = stacked_optimizer(cfg, parts[0], stack)
    schedule = build_schedule(cfg.scheduler, optimizer, parts[0].trainer, parts[0].steps_per_epoch)
    if resumed:
        stacked_state(optimizer, [p.optimizer.state_dict() for p in parts])
        schedule.load_state_dict(parts[0].schedule.state_dict())
    shared = len({p.data_seed for p in parts}) == 1
    views = [
        dataclasses.replace(
            p,
            optimizer=MemberOptimizer(optimizer, k),
            schedule=schedule,
            data=parts[0].data if shared else p.data,
        )
        for k, p in enumerate(parts)
    ]
    return GroupSteps(views, stack, optimizer, schedule, shared)


def refuse_unvectorizable(parts: Parts, cfg: DictConfig) -> None:
    """What a stack of runs cannot do as separate runs do, named."""
    target = cfg.optimizer._target_
    reasons = [
        (parts.closure, f"{target} evaluates the loss itself (a closure)"),
        (
            type(parts.weights) is not EvaluationWeights,
            "its evaluation weights are kept per run (trainer.ema, trainer.swa, Schedule-Free's"
            " x): they average weights per run",
        ),
        (target not in ELEMENTWISE, f"{target} is not known to step each element on its own"),
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


def refuse_unequal(parts: list[Parts], states: list[RunState]) -> None:
    """The members must train alike and be at the same place (all fresh, or resumed from
    the same step)."""
    if len({p.batches_per_epoch for p in parts}) > 1:
        raise NotVectorizable("the members' training sets differ in size")
    places = {(q.epoch, q.step, q.batches_done) for q in states}
    if len(places) > 1:
        raise NotVectorizable(f"the members' checkpoints are at different places: {sorted(places)}")


def stacked_optimizer(cfg: DictConfig, lead: Parts, stack: Stack) -> torch.optim.Optimizer:
    """The optimizer of the members' config over the stacked parameters, in the parameter
    groups of one member (weight decay off biases and norms, as each run has it)."""
    node = cfg.optimizer
    index = {id(p): i for i, p in enumerate(lead.model.parameters())}
    groups = optimizer_groups(node, lead.model)
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
        with forked_rng(lead.device), warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            member_losses(lead.loss_fn, stack.forward(x, True), y, True).sum().backward()
    except RuntimeError as error:
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise NotVectorizable(f"vmap cannot run {model}: {first}") from None
    for warning in seen:
        if (found := re.search(r"batching rule for (\S+?)\.? ", str(warning.message))) is not None:
            raise NotVectorizable(f"vmap has no batching rule for {found[1]} of {model}")
