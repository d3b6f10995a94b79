"""The training loop, for one run and for a vectorized group of runs alike.

`run` builds one run's parts from the config (each checked against the others) and hands
them to `train`, as `optexp.vector` hands it a group's members. Until every member has
ended, `train` trains to the next evaluation, where each member is measured, and ends the
interval: early stopping, the best weights, the next epoch, the joints, the checkpoints.
What differs between a run and a group is only how a step is taken (`Steps`). The parts'
joints (`optexp.joints`) are called at fixed places: after each optimizer step, at each
epoch's end, and for the weights that validation, checkpoints and the test use."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from omegaconf import DictConfig, OmegaConf

from optexp import checkpoint, metrics, rundir
from optexp.joints import Joint
from optexp.metrics import NO_SUMS, IntervalRecord, diverged
from optexp.optim.groups import describe
from optexp.parts import Parts, build_parts
from optexp.provenance import Launch, describe_run
from optexp.rundir import Status, Summary
from optexp.signals import StopRequest
from optexp.state import RunState, resume, seed_everything, snapshot
from optexp.steps import RunSteps, windows
from optexp.tracking import Tracker, print_summary
from optexp.world import World

T = TypeVar("T")


@dataclass
class About:
    """What a run's records say besides its results."""

    run_dir: Path
    config: dict[str, Any]  # resolved
    choices: dict[str, str]  # the option of each config group
    identity: dict[str, Any]  # `rundir.identity`
    launch: Launch | None = None  # how Hydra started it (TensorBoard's Text)


@dataclass
class Member:
    """A run the loop trains: the only one, or one of a vectorized group's."""

    parts: Parts
    state: RunState
    about: About
    tracker: Tracker


class Steps(Protocol):
    """How the members take their steps: one run's (`optexp.steps.RunSteps`) or a
    group's stacked step (`optexp.vector.group.GroupSteps`)."""

    joints: Sequence[Joint]  # called once per step and epoch for every member together

    def batches(self, place: RunState, tracker: Tracker) -> Iterator[Any]:
        """The next epoch's batches from `place`, through `tracker`'s bar."""
        ...

    def step(self, window: list[Any], measure: bool, active: list[int]) -> tuple[Any, Any]:
        """One optimizer step for the `active` members: (stats, gradient norms if `measure`)."""
        ...

    def totals(self, stats: list[Any], grad_norms: Any) -> list[tuple[torch.Tensor, Any]]:
        """Each member's `IntervalSums` (on the device) and gradient norms from the steps'."""
        ...


def run(
    cfg: DictConfig,
    run_dir: Path,
    choices: dict[str, str] | None = None,
    launch: Launch | None = None,
    world: World | None = None,
) -> dict[str, Any]:
    """Train the experiment `cfg` into `run_dir`; return what metrics.json holds. `choices`:
    the option of each config group; `launch`: how Hydra started it; `world`: this
    process's rank of a data-parallel run (`optexp.distributed`), only rank 0 writing."""
    started, world, choices = time.perf_counter(), world or World(), choices or {}
    seed_everything(cfg.seed)
    parts = build_parts(cfg, world)  # every part, checked against the others, before any write
    seed_everything(cfg.seed * 1_000_003 + world.rank if world.size > 1 else None)
    config = OmegaConf.to_container(cfg, resolve=True)
    state = resume(parts, run_dir, config)
    about = About(run_dir, config, choices, rundir.identity(cfg, parts.device, choices), launch)
    member = make_member(parts, state, about, shows=world.is_main, writes=world.is_main)
    (summary,) = train([member], RunSteps(parts), started)
    return dataclasses.asdict(summary)


def make_member(parts: Parts, state: RunState, about: About, shows: bool, writes: bool) -> Member:
    """A member with its run directory and its tracker (`shows` on the terminal, `writes`
    TensorBoard)."""
    about.run_dir.mkdir(parents=True, exist_ok=True)
    batches = parts.batches_per_epoch
    tracker = Tracker(about.run_dir, parts.trainer, batches, x_of(parts, state), shows, writes)
    return Member(parts, state, about, tracker)


def train(members: list[Member], steps: Steps, started: float) -> list[Summary]:
    """Train the members until each one ends; their summaries, in order. The first
    member's tracker shows the batch bar."""
    summaries: dict[int, Summary] = {}
    active = list(range(len(members)))
    with ExitStack() as context:
        writer = context.enter_context(checkpoint.Writer())
        for member in members:
            context.enter_context(member.tracker)
            if member.state.fresh:  # once per run
                config, device = member.about.config, member.parts.device
                member.tracker.log_text(describe_run(config, device, member.about.launch))
                if groups := describe(member.parts.optimizer.param_groups):
                    member.tracker.note("run/optimizer_groups", f"parameter groups: {groups}")
        stop = context.enter_context(StopRequest())
        # Anomaly detection (debug): autograd names the forward operation behind a NaN gradient.
        detect = members[0].parts.trainer.detect_anomaly
        context.enter_context(torch.autograd.set_detect_anomaly(detect))
        while active:
            ended_at = time.perf_counter()
            for k, status in ending(members, active, bool(stop)):
                # wall_s: the time to this end, and this member's own conclusion
                waited = time.perf_counter() - ended_at  # the others' conclusions
                if status == Status.INTERRUPTED:
                    save(members[k], writer, ["last"])
                summaries[k] = conclude(members[k], status, started + waited, stop.signal)
                active.remove(k)
            if active and (records := train_interval(members, active, steps, stop)):
                end_interval(members, records, steps, writer)
    for k, member in enumerate(members):
        if member.parts.world.is_main:
            print_summary(summaries[k], member.about.run_dir)
    return [summaries[k] for k in range(len(members))]


def ending(members: list[Member], active: list[int], stopped: bool) -> list[tuple[int, Status]]:
    """The active members that end now, with their status."""
    statuses = [(k, status_now(members[k].parts, members[k].state, stopped)) for k in active]
    return [(k, status) for k, status in statuses if status is not None]


def status_now(parts: Parts, state: RunState, stopped: bool) -> Status | None:
    """A run's status when it ends, decided here alone; None while there is more to train."""
    trainer = parts.trainer
    if diverged(state.metrics.get("train/loss", 0.0), trainer.divergence_threshold):
        return Status.DIVERGED
    if parts.early_stopping.should_stop:
        return Status.EARLY_STOPPED
    if state.epoch >= trainer.epochs or state.step >= (trainer.max_steps or math.inf):
        return Status.COMPLETED
    if state.seconds >= (trainer.max_time or math.inf):
        return Status.TIME_LIMIT
    return Status.INTERRUPTED if stopped else None


def train_interval(
    members: list[Member], active: list[int], steps: Steps, stop: StopRequest
) -> dict[int, IntervalRecord] | None:
    """Train from where the members are to their next evaluation (the epoch's end, the
    next multiple of `trainer.eval_every_steps`, or a step or time budget), then measure
    each (`metrics`); None when a stop signal came first: each state keeps the place and
    the sums so far."""
    lead = members[active[0]]
    place, until = lead.state, next_evaluation(lead.parts, lead.state)
    starts = {k: metrics.IntervalStart.now(members[k].parts) for k in active}
    started = min(start.started for start in starts.values())
    deadline = started + (lead.parts.trainer.max_time or math.inf) - place.seconds
    batches = steps.batches(place, members[0].tracker)
    stats, grad_norms, time_up = train_steps(members, active, steps, batches, stop, until, deadline)
    totals, elapsed = steps.totals(stats, grad_norms), time.perf_counter() - started
    budget_spent = place.step >= until or time_up
    records = {}
    for k in active:
        parts, state, (sums, norms) = members[k].parts, members[k].state, totals[k]
        state.seconds = parts.world.maximum(state.seconds + elapsed, parts.device)  # one clock
        sums = sums + torch.tensor(state.sums or NO_SUMS, device=sums.device)  # since the last
        if time_up and not sums[3].item():  # the budget ran out before a step: nothing to log
            continue
        if state.batches_done < parts.batches_per_epoch and not budget_spent:
            state.sums = sums.tolist()  # a stop signal: the place and the sums are kept
            continue
        at = position(parts, state)
        records[k] = metrics.interval_record(parts, at, starts[k], sums, norms)
    return records or None


def next_evaluation(parts: Parts, state: RunState) -> float:
    """The step of the next evaluation: the epoch's end, at most (batches run out there),
    the next multiple of `trainer.eval_every_steps`, or the step budget."""
    trainer = parts.trainer
    until = min(state.step + parts.steps_per_epoch, trainer.max_steps or math.inf)
    if trainer.eval_every_steps:
        every = trainer.eval_every_steps
        until = min(until, (state.step // every + 1) * every)
    return until


def position(parts: Parts, state: RunState) -> metrics.Position:
    """The epoch in progress (or just completed), the step, and the x of TensorBoard's
    curves there: the epoch, or the step with `trainer.eval_every_steps`."""
    epoch, epoch_end = state.epoch + 1, state.batches_done == parts.batches_per_epoch
    epochs = state.epoch + state.batches_done / parts.batches_per_epoch
    return metrics.Position(epoch, state.step, x_of(parts, state, epoch), epoch_end, epochs)


def x_of(parts: Parts, state: RunState, epoch: int | None = None) -> int:
    if parts.trainer.eval_every_steps:
        return state.step
    return state.epoch if epoch is None else epoch


def train_steps(
    members: list[Member],
    active: list[int],
    steps: Steps,
    batches: Iterable[Any],
    stop: StopRequest,
    until: float,
    deadline: float,
) -> tuple[list[Any], Any, bool]:
    """Optimizer steps, each on a window of `trainer.accumulate_batches` batches, until the
    batches run out, a stop signal comes, or the step `until` or the perf_counter
    `deadline` is reached; the joints after each. Returns the steps' stats, the gradient
    norms at the last step (None if not measured), and whether the time budget ended it.
    A signal or the deadline on any rank stops every rank at the same step (`stop` then
    holds the signal on each)."""
    lead = members[active[0]]
    parts, place = lead.parts, lead.state
    grad_norms, stats, time_up = None, [], False
    for window, last in mark_last(windows(batches, parts.trainer.accumulate_batches)):
        signal = stop.signal if stop else 0
        signal, time_up = parts.world.agree(signal, time.perf_counter() >= deadline, parts.device)
        if signal or time_up:
            stop.signal = stop.signal or signal or None
            break
        measure = last or place.step + 1 >= until or deadline < math.inf
        taken, norms = steps.step(window, measure, active)
        stats += taken
        grad_norms = norms if measure else grad_norms
        for k in active:
            state = members[k].state
            state.step, state.batches_done = state.step + 1, state.batches_done + len(window)
        for joint in steps.joints:
            joint.after_step(place.step, place.epoch + 1)
        if place.step >= until:
            break
    return stats, grad_norms, time_up


def mark_last(items: Iterable[T]) -> Iterator[tuple[T, bool]]:
    """Each item with whether it is the last one."""
    iterator = iter(items)
    for current in iterator:
        for following in iterator:
            yield current, False
            current = following
        yield current, True


def end_interval(
    members: list[Member], records: dict[int, IntervalRecord], steps: Steps, writer: Any
) -> None:
    """Each member's evaluation taken (`take`); at an epoch's end the joints, once for
    all; then each member's checkpoints now due, holding the joints' new state."""
    taken = {k: take(members[k], record) for k, record in records.items()}
    went_on = [k for k, (_, epoch_done) in taken.items() if epoch_done]
    if went_on:
        lead = members[went_on[0]]
        monitored = records[went_on[0]].metrics[lead.parts.early_stopping.monitor]
        for joint in steps.joints:
            joint.after_epoch(lead.state.epoch, monitored)
    for k, (names, _) in taken.items():
        save(members[k], writer, names)


def take(member: Member, record: IntervalRecord) -> tuple[list[str], bool]:
    """The evaluation logged; early stopping and the best weights take its metrics (the
    best ones kept without the machine's timing); at an epoch's end, the next epoch.
    Returns the checkpoints due ("last", "best") and whether the epoch ended. A diverged
    member takes nothing: it ends, and its last good checkpoint stays."""
    parts, state, trainer = member.parts, member.state, member.parts.trainer
    member.tracker.log_interval(record)
    state.metrics, state.sums = record.metrics | record.timing, []
    if diverged(record.metrics["train/loss"], trainer.divergence_threshold):
        return [], False
    at = record.position
    improved = parts.early_stopping.update(at.epoch, record.metrics, at.step)
    if improved:
        evaluated = parts.weights.evaluated_model().state_dict()
        state.best_model = {k: v.clone() for k, v in evaluated.items()}
    epoch_done = state.batches_done == parts.batches_per_epoch
    if epoch_done:
        state.epoch, state.batches_done = state.epoch + 1, 0
    every = epoch_done and state.epoch % trainer.checkpoint.every == 0
    due = ["last"] if every or status_now(parts, state, stopped=False) is not None else []
    return due + (["best"] if improved and trainer.checkpoint.keep_best else []), epoch_done


def save(member: Member, writer: checkpoint.Writer, names: list[str]) -> None:
    """The member's checkpoints `names`, serialized once however many files it goes to."""
    if not names:
        return
    parts = member.parts
    # A collective, so every rank saves alike: each rank's random state and, mid-epoch, its
    # own training sums so far.
    own = (checkpoint.rng_state(), member.state.sums)
    rng, sums = zip(*parts.world.gather(own), strict=True)
    if parts.world.is_main:
        config = json.dumps(member.about.config)
        paths = [rundir.checkpoint_file(member.about.run_dir, name) for name in names]
        writer.save(snapshot(parts, member.state, config, list(rng), list(sums)), *paths)


def conclude(member: Member, status: Status, started: float, signal: int | None) -> Summary:
    """A run's end: its test (unless interrupted), metrics.json, TensorBoard's HParams."""
    parts, state, about = member.parts, member.state, member.about
    test, train = (None, None) if status == Status.INTERRUPTED else final_metrics(parts, state)
    summary = results(status, parts, state, test, train) | about.identity
    summary = Summary(**summary, wall_s=time.perf_counter() - started, signal=signal)
    if parts.world.is_main:
        rundir.write_summary(about.run_dir, summary)
    if status != Status.INTERRUPTED and member.tracker.writes_tensorboard:  # once, at the end
        record = metrics.run_record(parts, about.config, about.choices, test)
        member.tracker.log_results(record)
    return summary


def final_metrics(parts: Parts, state: RunState) -> tuple[dict[str, float], dict[str, float]]:
    """The test split's metrics with the weights `trainer.test_weights` names (the
    evaluation weights made ready first: SWA's batch norm statistics), and the training
    split's with the same weights in the same evaluation mode: the generalization gap's
    other side, free of dropout, augmentation and the running average over an epoch."""
    parts.weights.before_test(parts.data.train.batches(parts.trainer.eval_batch_size))
    model = parts.weights.evaluated_model()
    if parts.trainer.test_weights == "best" and state.best_model is not None:
        model.load_state_dict(state.best_model)
    return (
        metrics.evaluate(parts, parts.data.test, model),
        metrics.evaluate(parts, parts.data.train, model),
    )


def results(
    status: Status,
    parts: Parts,
    state: RunState,
    test: dict[str, float] | None,
    train: dict[str, float] | None,
) -> dict[str, Any]:
    """What the run achieved: the first fields of its `Summary`."""
    stopper = parts.early_stopping
    return {
        "status": status,
        "epochs_completed": state.epoch,
        "global_step": state.step,
        "monitor": stopper.monitor,
        "best_epoch": stopper.best_epoch,
        "best_step": stopper.best_step,
        "best": stopper.best_metrics,
        "final": state.metrics,
        "test": test or None,
        "test_weights": parts.trainer.test_weights,
        "train_eval": train or None,
        "objective": metrics.objective(status, stopper),
    }
