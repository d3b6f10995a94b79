"""The training loop. `run` builds every part from the config once (each checked against
the others), then trains epoch by epoch: train, evaluate, end the epoch. The helpers
below it are small; what changes as the run goes lives in `Progress`."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from optexp import checkpoint, diagnostics, metrics, rundir
from optexp.data import epoch_order
from optexp.metrics import NO_SUMS, BatchStats, EpochRecord, diverged
from optexp.parts import Parts, build_parts
from optexp.provenance import Launch, describe_run
from optexp.rundir import Status, Summary
from optexp.signals import StopRequest
from optexp.steps import Batch, optimizer_step, windows
from optexp.tracking import Tracker
from optexp.world import World

T = TypeVar("T")


@dataclass
class Progress:
    """Where the run is: what a checkpoint holds besides the parts' own state."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    batches_done: int = 0  # batches of the current epoch already taken
    sums: list[float] = field(default_factory=list)  # `EpochSums` since the last evaluation
    metrics: dict[str, float] = field(default_factory=dict)  # of the last evaluation
    best_model: dict[str, torch.Tensor] | None = None  # the weights evaluated at the best
    seconds: float = 0.0  # spent training so far, resumed runs included (trainer.max_time)


def run(
    cfg: DictConfig,
    run_dir: Path,
    choices: dict[str, str] | None = None,
    launch: Launch | None = None,
    world: World | None = None,
) -> dict[str, Any]:
    """Train the experiment `cfg` into `run_dir`; return what metrics.json holds. `choices`:
    the option of each config group; `launch`: how Hydra started it (TensorBoard's Text);
    `world`: this process's rank of a data-parallel run (`optexp.distributed`), only rank
    0 writing."""
    started, world = time.perf_counter(), world or World()
    seed_everything(cfg.seed)
    parts = build_parts(cfg, world)  # every part, checked against the others, before any write
    seed_everything(cfg.seed * 1_000_003 + world.rank if world.size > 1 else None)
    config = OmegaConf.to_container(cfg, resolve=True)
    progress = resume(parts, run_dir, config)
    about = About(run_dir, config, choices or {}, rundir.identity(cfg, parts.device, choices or {}))
    run_dir.mkdir(parents=True, exist_ok=True)
    start = x_of(parts, progress)
    main = world.is_main  # another rank neither shows nor writes
    tracker = Tracker(run_dir, parts.trainer, parts.batches_per_epoch, start, main, main)
    writer = checkpoint.Writer()

    def save(*names: str) -> None:
        rng = world.gather(checkpoint.rng_state())  # a collective: every rank saves alike
        if world.is_main:
            paths = [rundir.checkpoint_file(run_dir, name) for name in names]
            writer.save(snapshot(parts, progress, json.dumps(config), rng), *paths)

    # Anomaly detection (debug): autograd names the forward operation behind a NaN gradient.
    anomaly_detection = torch.autograd.set_detect_anomaly(parts.trainer.detect_anomaly)
    with tracker, writer, StopRequest() as stop, anomaly_detection:
        if progress.epoch == progress.batches_done == 0:  # a fresh start: once per run
            tracker.log_text(describe_run(config, parts.device, launch))
        while (status := ending(parts, progress, bool(stop))) is None:
            if (record := train_interval(parts, progress, tracker, stop)) is not None:
                tracker.log_epoch(record)
                if due := end_interval(parts, progress, record):
                    save(*due)
        if status == Status.INTERRUPTED:
            save("last")
        summary = conclude(parts, progress, status, tracker, about, started, stop.signal)
    tracker.print_summary(summary, run_dir)
    return dataclasses.asdict(summary)


@dataclass
class About:
    """What a run's records say besides its results."""

    run_dir: Path
    config: dict[str, Any]  # resolved
    choices: dict[str, str]  # the option of each config group
    identity: dict[str, Any]  # `rundir.identity`


def conclude(
    parts: Parts,
    progress: Progress,
    status: Status,
    tracker: Tracker,
    about: About,
    started: float,
    signal: int | None,
) -> Summary:
    """A run's end: its test (unless interrupted), metrics.json, TensorBoard's HParams."""
    test = None if status == Status.INTERRUPTED else test_metrics(parts, progress)
    summary = results(status, parts, progress, test) | about.identity
    summary = Summary(**summary, wall_s=time.perf_counter() - started, signal=signal)
    if parts.world.is_main:
        rundir.write_summary(about.run_dir, summary)
    if status != Status.INTERRUPTED and tracker.writes_tensorboard:  # once, when it ends
        tracker.log_results(metrics.run_record(parts, about.config, about.choices, test))
    return summary


def ending(parts: Parts, progress: Progress, stopped: bool) -> Status | None:
    """The run's status when it ends, decided here alone; None while there is more to train."""
    trainer = parts.trainer
    if diverged(progress.metrics.get("train/loss", 0.0), trainer.divergence_threshold):
        return Status.DIVERGED
    if parts.early_stopping.should_stop:
        return Status.EARLY_STOPPED
    if progress.epoch >= trainer.epochs or progress.step >= (trainer.max_steps or math.inf):
        return Status.COMPLETED
    if progress.seconds >= (trainer.max_time or math.inf):
        return Status.TIME_LIMIT
    return Status.INTERRUPTED if stopped else None


def train_interval(
    parts: Parts, progress: Progress, tracker: Tracker, stop: StopRequest
) -> EpochRecord | None:
    """Train from where the run is to its next evaluation (the epoch's end, the next
    multiple of `trainer.eval_every_steps`, or a step or time budget), then measure it
    (`metrics`); None when a stop signal came first: `progress` keeps the place and the
    sums so far."""
    start, until = metrics.EpochStart.now(parts), next_evaluation(parts, progress)
    deadline = start.started + (parts.trainer.max_time or math.inf) - progress.seconds
    batches = epoch_batches(parts, progress, tracker)
    sums, grad_norms, time_up = train_steps(parts, progress, batches, stop, (until, deadline))
    spent = progress.seconds + time.perf_counter() - start.started
    progress.seconds = parts.world.maximum(spent)  # one clock for every rank's decisions
    sums += torch.tensor(progress.sums or NO_SUMS, device=parts.device)  # since the last one
    budget_spent = progress.step >= until or time_up
    if progress.batches_done < parts.batches_per_epoch and not budget_spent:
        progress.sums = sums.tolist()  # a stop signal: the place and the sums are kept
        return None
    return metrics.epoch_record(parts, position(parts, progress), start, sums, grad_norms)


def next_evaluation(parts: Parts, progress: Progress) -> float:
    """The step of the next evaluation: the epoch's end, at most (batches run out there),
    the next multiple of `trainer.eval_every_steps`, or the step budget."""
    trainer = parts.trainer
    until = min(progress.step + parts.steps_per_epoch, trainer.max_steps or math.inf)
    if trainer.eval_every_steps:
        every = trainer.eval_every_steps
        until = min(until, (progress.step // every + 1) * every)
    return until


def position(parts: Parts, progress: Progress) -> metrics.Position:
    """The epoch in progress (or just completed), the step, and the x of TensorBoard's
    curves there: the epoch, or the step with `trainer.eval_every_steps`."""
    epoch, epoch_end = progress.epoch + 1, progress.batches_done == parts.batches_per_epoch
    epochs = progress.epoch + progress.batches_done / parts.batches_per_epoch
    return metrics.Position(epoch, progress.step, x_of(parts, progress, epoch), epoch_end, epochs)


def x_of(parts: Parts, progress: Progress, epoch: int | None = None) -> int:
    if parts.trainer.eval_every_steps:
        return progress.step
    return progress.epoch if epoch is None else epoch


def epoch_batches(
    parts: Parts, progress: Progress, tracker: Tracker
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The next epoch's training batches, in that epoch's order, from where the run is."""
    epoch, first = progress.epoch + 1, progress.batches_done
    order = epoch_order(len(parts.data.train), parts.data_seed, epoch, parts.device)
    batches = parts.data.train.batches(parts.batch_size, order, first)
    shows = tracker.writes_tensorboard and diagnostics.is_image(parts.data.input_shape)
    if epoch == 1 and first == 0 and shows:
        batches = show_first(batches, parts, tracker)
    return tracker.batches(batches, first)


def show_first(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], parts: Parts, tracker: Tracker
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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


def train_steps(
    parts: Parts,
    progress: Progress,
    batches: Iterable[Batch],
    stop: StopRequest,
    until: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Optimizer steps, each on a window of `trainer.accumulate_batches` batches, until the
    batches run out, a stop signal comes, or `until` (a step count, a perf_counter
    deadline) is reached. Returns the `EpochSums` of the batches taken (on the device),
    each parameter's gradient norm at the last step (None if not measured), and whether
    the time budget ended it. A signal or the deadline on any rank stops every rank at
    the same step (`stop` then holds the signal on each)."""
    steps, deadline = until
    grad_norms, stats, time_up = None, [], False
    for window, last in mark_last(windows(batches, parts.trainer.accumulate_batches)):
        signum, time_up = parts.world.agree(
            stop.signal if stop else 0, time.perf_counter() >= deadline, parts.device
        )
        if signum or time_up:
            stop.signal = stop.signal or signum or None
            break
        measure = last or progress.step + 1 >= steps or deadline < math.inf
        taken, norms = optimizer_step(parts, window, measure)
        stats += taken
        grad_norms = norms if measure else grad_norms
        progress.step, progress.batches_done = (
            progress.step + 1,
            progress.batches_done + len(window),
        )
        parts.schedule.after_step(progress.epoch + 1)
        if parts.average is not None:
            parts.average.after_step(progress.step)
        if progress.step >= steps:
            break
    return BatchStats.sums(stats, parts.device), grad_norms, time_up


def mark_last(items: Iterable[T]) -> Iterator[tuple[T, bool]]:
    """Each item with whether it is the last one."""
    iterator = iter(items)
    for current in iterator:
        for following in iterator:
            yield current, False
            current = following
        yield current, True


def end_interval(parts: Parts, progress: Progress, record: EpochRecord) -> list[str]:
    """Early stopping and the best weights take the evaluation's metrics (the best ones
    kept without the machine's timing); at an epoch's end, the schedule and SWA too.
    Returns the checkpoints now due ("last", "best")."""
    progress.metrics, progress.sums = record.metrics | record.timing, []
    if diverged(record.metrics["train/loss"], parts.trainer.divergence_threshold):
        return []  # a result, not a crash: the last good checkpoint stays
    stopper, trainer = parts.early_stopping, parts.trainer
    improved = stopper.update(record.position.epoch, record.metrics, record.position.step)
    if improved:
        progress.best_model = {k: v.clone() for k, v in evaluated(parts).state_dict().items()}
    epoch_done = progress.batches_done == parts.batches_per_epoch
    if epoch_done:
        progress.epoch, progress.batches_done = progress.epoch + 1, 0
        parts.schedule.after_epoch(progress.epoch, record.metrics[stopper.monitor])
        if parts.average is not None:
            parts.average.after_epoch(progress.epoch)
    due = []  # serialized once, however many files it goes to
    every = epoch_done and progress.epoch % trainer.checkpoint.every == 0
    if every or ending(parts, progress, stopped=False) is not None:
        due.append("last")
    if improved and trainer.checkpoint.keep_best:
        due.append("best")
    return due


def evaluated(parts: Parts) -> nn.Module:
    """The weights that validation, early stopping and the test use."""
    return parts.model if parts.average is None else parts.average.evaluated_model()


def test_metrics(parts: Parts, progress: Progress) -> dict[str, float]:
    """The test split's metrics with the weights `trainer.test_weights` names (SWA's batch
    norm statistics recomputed first)."""
    if parts.average is not None:
        parts.average.finish(parts.data.train.batches(parts.trainer.eval_batch_size))
    model = evaluated(parts)
    if parts.trainer.test_weights == "best" and progress.best_model is not None:
        model.load_state_dict(progress.best_model)
    return metrics.evaluate(parts, parts.data.test, model)


def results(
    status: Status, parts: Parts, progress: Progress, test: dict[str, float] | None
) -> dict[str, Any]:
    """What the run achieved: the first fields of its `Summary`."""
    stopper = parts.early_stopping
    return {
        "status": status,
        "epochs_completed": progress.epoch,
        "global_step": progress.step,
        "monitor": stopper.monitor,
        "best_epoch": stopper.best_epoch,
        "best_step": stopper.best_step,
        "best": stopper.best_metrics,
        "final": progress.metrics,
        "test": test or None,
        "test_weights": parts.trainer.test_weights,
        "objective": metrics.objective(status, stopper),
    }


def seed_everything(seed: int | None) -> None:
    """Python's, numpy's and torch's generators from `seed` (None: left as they are)."""
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def resume(parts: Parts, run_dir: Path, config: dict[str, Any]) -> Progress:
    """A fresh `Progress`, or the one of the checkpoint to continue from, with every part's
    state restored."""
    path = checkpoint.resume_path(run_dir, parts.trainer.resume)
    if path != rundir.checkpoint_file(run_dir, "last"):  # a fresh start, or another run's
        rundir.check_no_results(run_dir)
    if path is None:
        return Progress()
    state = checkpoint.load(path, checkpoint.STATE_KEYS)
    checkpoint.check_compatible(state["config"], config, path)
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.schedule.load_state_dict(state["scheduler"])
    parts.scaler.load_state_dict(state["scaler"])
    parts.early_stopping.load_state_dict(state["early_stopping"])
    if parts.average is not None:
        parts.average.load_state_dict(state["average"])
    checkpoint.set_rng_state(state.get("rng_ranks", [state["rng"]])[parts.world.rank])
    progress = Progress(**state["progress"])
    if progress.best_model is not None:
        progress.best_model = {k: v.to(parts.device) for k, v in progress.best_model.items()}
    return progress


def snapshot(
    parts: Parts, progress: Progress, config_json: str, rng: list[dict[str, Any]]
) -> dict[str, Any]:
    """Everything needed to continue exactly where the run is now: plain state only. `rng`:
    every rank's random state, by rank."""
    model = parts.model.state_dict()
    position = vars(progress).copy()  # not asdict: that deep-copies the best weights
    now_best = parts.early_stopping.best_step == progress.step and evaluated(parts) is parts.model
    if now_best and progress.best_model is not None:  # the best weights are the current:
        position["best_model"] = model  # torch.save stores tensors it meets twice once
    averaged = {} if parts.average is None else {"average": parts.average.state_dict()}
    return (
        averaged
        | {
            "model": model,
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.schedule.state_dict(),
            "scaler": parts.scaler.state_dict(),
            "early_stopping": parts.early_stopping.state_dict(),
            "progress": position,
            "rng": rng[0],
            "config": config_json,
        }
        | ({"rng_ranks": rng} if len(rng) > 1 else {})
    )
