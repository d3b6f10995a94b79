"""The training loop. `run` builds every part from the config once (each checked against
the others), then trains epoch by epoch: train, evaluate, end the epoch. The helpers
below it are small; what changes as the run goes lives in `Progress`."""

from __future__ import annotations

import dataclasses
import json
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
from optexp.tracking import Tracker, print_summary

T = TypeVar("T")


@dataclass
class Progress:
    """Where the run is: what a checkpoint holds besides the parts' own state."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    batches_done: int = 0  # batches of the next epoch already taken (after a mid-epoch stop)
    sums: list[float] = field(default_factory=list)  # ...and their `EpochSums`
    metrics: dict[str, float] = field(default_factory=dict)  # of the last epoch trained
    best_model: dict[str, torch.Tensor] | None = None


def run(
    cfg: DictConfig,
    run_dir: Path,
    choices: dict[str, str] | None = None,
    launch: Launch | None = None,
) -> dict[str, Any]:
    """Train the experiment `cfg` into `run_dir`; return what metrics.json holds. `choices`:
    the option of each config group; `launch`: how Hydra started it (TensorBoard's Text)."""
    started = time.perf_counter()
    seed_everything(cfg.seed)
    parts = build_parts(cfg)  # every part, checked against the others before anything is written
    config = OmegaConf.to_container(cfg, resolve=True)
    progress = resume(parts, run_dir, config)
    identity = rundir.identity(cfg, parts.device, choices or {})
    config_json = json.dumps(config)  # for checkpoints: one string to pickle

    run_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(run_dir, parts.trainer, parts.steps_per_epoch, progress.epoch)
    writer = checkpoint.Writer()

    def save(*names: str) -> None:
        if not names:  # none due this epoch: no snapshot to serialize
            return
        paths = [rundir.checkpoint_file(run_dir, name) for name in names]
        writer.save(snapshot(parts, progress, config_json), *paths)

    # Anomaly detection (debug): autograd names the forward operation behind a NaN gradient.
    anomaly_detection = torch.autograd.set_detect_anomaly(parts.trainer.detect_anomaly)
    with tracker, writer, StopRequest() as stop, anomaly_detection:
        if progress.epoch == progress.batches_done == 0:  # a fresh start: once per run
            tracker.log_text(describe_run(config, parts.device, launch))
        while (status := ending(parts, progress, stop)) is None:
            if (record := train_epoch(parts, progress, tracker, stop)) is not None:
                tracker.log_epoch(record)
                save(*end_epoch(parts, progress, record))
        if status == Status.INTERRUPTED:
            save("last")
        test = None if status == Status.INTERRUPTED else test_metrics(parts, progress)
        summary = results(status, parts, progress, test) | identity
        summary = Summary(**summary, wall_s=time.perf_counter() - started, signal=stop.signal)
        rundir.write_summary(run_dir, summary)
        if status != Status.INTERRUPTED and tracker.writes_tensorboard:  # once, when it ends
            tracker.log_results(metrics.run_record(parts, config, choices or {}, test))
    print_summary(summary, run_dir)
    return dataclasses.asdict(summary)


def ending(parts: Parts, progress: Progress, stop: StopRequest) -> Status | None:
    """The run's status when it ends, decided here alone; None while an epoch is to train."""
    last_loss = progress.metrics.get("train/loss", 0.0)
    if diverged(last_loss, parts.trainer.divergence_threshold):
        return Status.DIVERGED
    if parts.early_stopping.should_stop:
        return Status.EARLY_STOPPED
    if progress.epoch >= parts.trainer.epochs:
        return Status.COMPLETED
    return Status.INTERRUPTED if stop else None


def train_epoch(
    parts: Parts, progress: Progress, tracker: Tracker, stop: StopRequest
) -> EpochRecord | None:
    """Train the next epoch from where the run is, then measure it (`metrics`); None when
    a stop signal came first: `progress` keeps the place and the sums so far."""
    start = metrics.EpochStart.now(parts, progress.batches_done)
    steps, sums, grad_norms = train_steps(parts, epoch_batches(parts, progress, tracker), stop)
    progress.step += steps
    sums += torch.tensor(progress.sums or NO_SUMS, device=parts.device)  # before a stop
    if start.first + steps < parts.steps_per_epoch:
        progress.batches_done, progress.sums = start.first + steps, sums.tolist()
        return None
    return metrics.epoch_record(parts, progress.epoch + 1, start, sums, grad_norms)


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
                images["images/train_batch_augmented"] = parts.augment(x)
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
    parts: Parts, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], stop: StopRequest
) -> tuple[int, torch.Tensor, torch.Tensor | None]:
    """One optimizer step per batch, until the batches run out or `stop` is set. Returns
    the steps taken, the sums of their `EpochSums` (on the device) and each parameter's
    gradient norm at the epoch's last batch (None if it stopped before)."""
    model, optimizer, scaler, trainer = parts.model, parts.optimizer, parts.scaler, parts.trainer
    classification = parts.data.is_classification
    model.train()
    grad_norms, stats = None, []
    for (x, y), last in mark_last(batches):
        if stop:
            break
        if parts.augment is not None:
            x = parts.augment(x)
        with parts.autocast():
            out = model(x)
            loss = parts.loss_fn(out, y)
        penalty = parts.penalty() if parts.penalty is not None else None
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss if penalty is None else loss + penalty).backward()
        if trainer.grad_clip or last:
            scaler.unscale_(optimizer)  # clip and measure the true gradients
            grad_norms = clip_gradients(model, trainer.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        parts.schedule.after_step()
        stats.append(BatchStats.of(out, y, loss, penalty, classification))
    return len(stats), BatchStats.sums(stats, parts.device), grad_norms


def mark_last(items: Iterable[T]) -> Iterator[tuple[T, bool]]:
    """Each item with whether it is the last one."""
    iterator = iter(items)
    for current in iterator:
        for following in iterator:
            yield current, False
            current = following
        yield current, True


def end_epoch(parts: Parts, progress: Progress, record: EpochRecord) -> list[str]:
    """Early stopping, the schedule and the best weights take the epoch's metrics (the
    best ones are kept without the machine's timing); returns the checkpoints now due
    ("last", "best")."""
    progress.metrics = record.metrics | record.timing
    if diverged(record.metrics["train/loss"], parts.trainer.divergence_threshold):
        return []  # a result, not a crash: the last good checkpoint stays
    stopper, trainer = parts.early_stopping, parts.trainer
    epoch = record.epoch
    improved = stopper.update(epoch, record.metrics)
    parts.schedule.after_epoch(record.metrics[stopper.monitor])
    if improved:
        progress.best_model = {k: v.clone() for k, v in parts.model.state_dict().items()}
    progress.epoch, progress.batches_done, progress.sums = epoch, 0, []
    due = []  # serialized once, however many files it goes to
    if epoch % trainer.checkpoint.every == 0 or epoch == trainer.epochs or stopper.should_stop:
        due.append("last")
    if improved and trainer.checkpoint.keep_best:
        due.append("best")
    return due


def test_metrics(parts: Parts, progress: Progress) -> dict[str, float]:
    """The test split's metrics with the weights `trainer.test_weights` names."""
    if parts.trainer.test_weights == "best" and progress.best_model is not None:
        parts.model.load_state_dict(progress.best_model)
    return metrics.evaluate(parts, parts.data.test)


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
        "best": stopper.best_metrics,
        "final": progress.metrics,
        "test": test or None,
        "test_weights": parts.trainer.test_weights,
        "objective": metrics.objective(status, stopper),
    }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def clip_gradients(model: nn.Module, max_norm: float | None) -> torch.Tensor:
    """Each parameter's gradient norm (before clipping); the gradients scaled down to a
    global norm of `max_norm` if set."""
    params = list(model.parameters())
    grad_norms = diagnostics.norms([p.grad for p in params])
    if max_norm:
        nn.utils.clip_grads_with_norm_(params, max_norm, torch.linalg.vector_norm(grad_norms))
    return grad_norms


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
    checkpoint.set_rng_state(state["rng"])
    progress = Progress(**state["progress"])
    if progress.best_model is not None:
        progress.best_model = {k: v.to(parts.device) for k, v in progress.best_model.items()}
    return progress


def snapshot(parts: Parts, progress: Progress, config_json: str) -> dict[str, Any]:
    """Everything needed to continue exactly where the run is now: plain state only."""
    model = parts.model.state_dict()
    position = vars(progress).copy()  # not asdict: that deep-copies the best weights
    if parts.early_stopping.best_epoch == progress.epoch:  # the best weights are the current:
        position["best_model"] = model  # torch.save stores tensors it meets twice once
    return {
        "model": model,
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.schedule.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "early_stopping": parts.early_stopping.state_dict(),
        "progress": position,
        "rng": checkpoint.rng_state(),
        "config": config_json,
    }
