"""Train the runs of a sweep that differ only in their seeds and in elementwise optimizer
hyperparameters (a study's trials) as one vectorized model.

Each member is built exactly as its own run would be (`build_parts` after seeding with its
seed); then the members' parameters are stacked (`optexp.vector.stack`) and one optimizer
steps them all (`optexp.vector.steps`), which for an elementwise optimizer is K
independent steps: torch's own where the members' hyperparameters agree, a stacked step
(`optexp.vector.optimizers`) where they differ. Each member keeps its own optimizer and
schedule as the holders of its hyperparameters, which the stacked step reads before every
step, so each member follows its own schedule. The loop is the one of `optexp.train`:
validation, early stopping, divergence, checkpoints, TensorBoard and metrics.json are each
member's ordinary per-run code on its own parts, whose modules are views of their slices
and whose optimizer is its view of the stacked one. A member that ends (early stopping,
divergence) is finished then and there, and its loss leaves the sum."""

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
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from optexp import rundir, train
from optexp.averaging import OptimizerWeights
from optexp.joints import EvaluationWeights
from optexp.parts import Parts, build, build_parts, fused_kernel, optimizer_groups
from optexp.provenance import Launch
from optexp.state import RunState, resume, seed_everything
from optexp.steps import forked_rng
from optexp.train import About, Member
from optexp.vector.optimizers import STACKED, NotVectorizable
from optexp.vector.stack import MemberModes, MemberOptimizer, Stack, stacked_state
from optexp.vector.steps import GroupSteps, member_losses

__all__ = ["NotVectorizable", "RunSpec", "run_group"]

# Optimizers whose step is elementwise: one step on the stack is K independent steps. A
# class of your own says so with `elementwise = True` (or `stacks_members = True`).
ELEMENTWISE = (
    {f"torch.optim.{n}" for n in ("SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adamax", "NAdam")}
    | {f"optexp.optim.textbook.{n}" for n in ("SGD", "Momentum", "AdaGrad", "RMSprop", "Adam")}
    | {f"pytorch_optimizer.{n}" for n in ("Lion", "ADOPT")}
)


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
    resumed = bool(states[0].step or states[0].batches_done)
    steps = stacked([spec.cfg for spec in specs], parts, resumed)
    members = [
        train.make_member(p, state, a, shows=k == 0, writes=True)
        for k, (p, state, a) in enumerate(zip(steps.parts, states, about, strict=True))
    ]
    return members, steps


def stacked(cfgs: list[DictConfig], parts: list[Parts], resumed: bool) -> GroupSteps:
    """The members' parameters stacked, with one optimizer over them (loaded with the
    members' states when `resumed`); each member's parts then hold its views of them, its
    own schedule, and one copy of data the members share."""
    stack = Stack([p.model for p in parts])
    optimizer = stacked_optimizer(cfgs, parts, stack)
    if resumed:
        stacked_state(optimizer, [p.optimizer.state_dict() for p in parts])
    for p in parts:  # its own optimizer now holds hyperparameters only, which its schedule
        p.optimizer.state.clear()  # sets; the stacked one holds the state and steps
        p.optimizer._opt_called = True  # type: ignore[attr-defined]  # torch: "stepped", no warning
    datasets = {
        repr((p.data_seed, OmegaConf.to_container(c.dataset, resolve=True)))
        for p, c in zip(parts, cfgs, strict=True)
    }
    shared = len(datasets) == 1  # the same data and batch order: one copy
    for k, p in enumerate(parts):
        if isinstance(p.weights, OptimizerWeights):  # its eval() and train(): its slices'
            p.weights.optimizer = MemberModes(optimizer, k)
    views = [
        dataclasses.replace(
            p,
            optimizer=MemberOptimizer(optimizer, k, p.optimizer),
            data=parts[0].data if shared else p.data,
        )
        for k, p in enumerate(parts)
    ]
    return GroupSteps(views, stack, optimizer, shared)


def refuse_unvectorizable(parts: Parts, cfg: DictConfig) -> None:
    """What a stack of runs cannot do as separate runs do, named."""
    target = cfg.optimizer._target_
    reasons = [
        (parts.closure, f"{target} evaluates the loss itself (a closure)"),
        (
            type(parts.weights) is not EvaluationWeights and not evaluates_members(parts, target),
            "its evaluation weights are kept per run (trainer.ema, trainer.swa, an optimizer's"
            " eval() without a stacked step): they average weights per run",
        ),
        (not elementwise(target), f"{target} is not known to step each element on its own"),
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


def stacked_optimizer(
    cfgs: list[DictConfig], parts: list[Parts], stack: Stack
) -> torch.optim.Optimizer:
    """The optimizer of the members' config over the stacked parameters, in the parameter
    groups of one member (weight decay off biases and norms, as each run has it): torch's
    own where every member's hyperparameters agree, else a stacked step taking them per
    member (`optexp.vector.optimizers`)."""
    node, lead = cfgs[0].optimizer, parts[0]
    index = {id(p): i for i, p in enumerate(lead.model.parameters())}
    groups = optimizer_groups(node, lead.model)
    for group in groups:
        group["params"] = [stack.params[index[id(p)]] for p in group["params"]]
    differing = differing_hyperparameters(parts, cfgs)
    if not differing and not evaluates_members(lead, node._target_):
        return build("optimizer", node, params=groups, **fused_kernel(node, lead.device))
    stacking = stacked_step(node._target_)
    if stacking is None:
        named = ", ".join(sorted(STACKED))
        raise NotVectorizable(
            f"the members differ in {', '.join(differing)}, and {node._target_} has no stacked"
            f" step taking them per member (optexp.vector.optimizers has: {named})"
        )
    given = dict(lead.optimizer.defaults)  # what torch's (or its) optimizer was given
    given["maximize"] = given.get("maximize") or getattr(lead.optimizer, "maximize", False)
    return stacking(groups, **given)


def differing_hyperparameters(parts: list[Parts], cfgs: list[DictConfig]) -> list[str]:
    """The hyperparameters (`optimizer.KEY`, or the scheduler) that differ between the
    members; `NotVectorizable` where they differ in what no step takes per member: the
    parameter groups, or a setting that is not a number."""
    owns = [p.optimizer.param_groups for p in parts]
    if len({tuple(len(g["params"]) for g in groups) for groups in owns}) > 1:
        raise NotVectorizable("the members' parameter groups differ (weight_decay 0 in some)")
    differing = []
    settings = parts[0].optimizer.defaults  # not what a schedule records (initial_lr)
    for g, group in enumerate(owns[0]):
        for key, value in group.items():
            values = [groups[g][key] for groups in owns]
            if key not in settings or all(v == value for v in values):
                continue
            if not all(is_number(v) for v in values):
                raise NotVectorizable(f"the members differ in optimizer.{key}: {values[:3]}")
            differing.append(f"optimizer.{key}")
    schedules = {str(resolved(cfg.scheduler)) for cfg in cfgs}
    return sorted(set(differing)) + (["scheduler"] if len(schedules) > 1 else [])


def resolved(node: Any) -> Any:
    """A config node as plain values (None for no scheduler, a study's Schedule-Free)."""
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def is_number(value: Any) -> bool:
    if isinstance(value, tuple | list):
        return all(is_number(v) for v in value)
    return isinstance(value, int | float) and not isinstance(value, bool)


def elementwise(target: str) -> bool:
    """Whether the optimizer's step treats each element on its own (a stack of members
    steps as K separate runs)."""
    if target in ELEMENTWISE or target in STACKED:
        return True
    cls = get_object(target)  # imported already: the members' own optimizers were built
    return bool(getattr(cls, "elementwise", False) or getattr(cls, "stacks_members", False))


def evaluates_members(parts: Parts, target: str) -> bool:
    """Whether the run evaluates at its optimizer's other weights (`eval()`, Schedule-Free's
    x) and the optimizer's stacked step moves each member there on its own (`eval(k)`)."""
    return type(parts.weights) is OptimizerWeights and hasattr(stacked_step(target), "eval")


def stacked_step(target: str) -> type[torch.optim.Optimizer] | None:
    """The class that steps the stack with hyperparameters per member: optexp's for
    `target`, or `target` itself if it says `stacks_members = True`."""
    if target in STACKED:
        return STACKED[target]
    cls = get_object(target)  # imported already: the members' own optimizers were built
    return cls if getattr(cls, "stacks_members", False) else None


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
