"""The training loop. `run` builds every part from the config once (each checked against
the others), then trains epoch by epoch: train, evaluate, end the epoch. The helpers
below it are small; what changes as the run goes lives in `Progress`."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from optexp import checkpoint, diagnostics, rundir
from optexp.data import Split, epoch_order
from optexp.parts import Parts, build_parts
from optexp.signals import StopRequest
from optexp.stopping import EarlyStopping
from optexp.tracking import Launch, Tracker, about, describe_run, hparams, print_summary, write_json

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
    """Train the experiment `cfg` into `run_dir`; return what metrics.json holds. `launch`:
    how Hydra started it (overrides, command line), for TensorBoard's Text tab."""
    started = time.perf_counter()
    seed_everything(cfg.seed)
    parts = build_parts(cfg)  # every part, checked against the others before anything is written
    trainer = parts.trainer
    config = OmegaConf.to_container(cfg, resolve=True)
    progress = resume(parts, run_dir, config)
    config_json = json.dumps(config)  # for checkpoints: one string to pickle

    run_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(run_dir, trainer, parts.steps_per_epoch, progress.epoch)
    writer = checkpoint.Writer()

    def save(*paths: Path) -> None:
        writer.save(snapshot(parts, progress, config_json), *paths)

    # Anomaly detection (debug): autograd names the forward operation behind a NaN gradient.
    anomaly_detection = torch.autograd.set_detect_anomaly(trainer.detect_anomaly)
    with tracker, writer, StopRequest() as stop, anomaly_detection:
        if progress.epoch == progress.batches_done == 0:  # a fresh start: once per run
            tracker.log_run(describe_run(config, parts.device, launch))
        while (status := ending(parts, progress, stop)) is None:
            epoch_started, first = time.perf_counter(), progress.batches_done
            before = diagnostics.weights_now(parts.model, trainer.tensorboard)  # update ratios
            steps, sums, grad_norms = train_epoch(
                parts, epoch_batches(parts, progress, tracker), stop
            )
            progress.step += steps
            sums += torch.tensor(progress.sums or NO_SUMS, device=parts.device)  # before a stop
            if first + steps < parts.steps_per_epoch:  # stopped by a signal: keep the place
                progress.batches_done, progress.sums = first + steps, sums.tolist()
                continue

            metrics, layers = train_metrics(parts, sums, grad_norms, before)
            if not diverged(metrics["train/loss"], trainer.divergence_threshold):
                metrics |= {f"val/{k}": v for k, v in evaluate(parts, parts.data.val).items()}
            timing = epoch_timing(parts, first, time.perf_counter() - epoch_started)
            tracker.log_epoch(progress.epoch + 1, metrics | timing | layers)
            tracker.log_histograms(progress.epoch + 1, parts.model)
            if due := end_epoch(parts, progress, metrics, timing):
                save(*(checkpoint.file(run_dir, name) for name in due))

        if status == "interrupted":
            save(checkpoint.file(run_dir, "last"))
        test = None if status == "interrupted" else test_metrics(parts, progress)
        summary = results(status, progress, parts, test) | about(cfg, parts.device, choices)
        summary |= {"wall_s": time.perf_counter() - started, "signal": stop.signal}
        write_json(run_dir / "metrics.json", summary)
        if status != "interrupted" and trainer.tensorboard:  # a resumed run: when it ends
            tracker.log_results(hparams(config, choices), hparams_metrics(parts, test))
            tracker.log_confusion(test_confusion(parts))
    print_summary(summary, run_dir)
    return summary


def ending(parts: Parts, progress: Progress, stop: StopRequest) -> str | None:
    """The run's status when it ends, decided here alone; None while an epoch is to train."""
    last_loss = progress.metrics.get("train/loss", 0.0)
    if diverged(last_loss, parts.trainer.divergence_threshold):
        return "diverged"
    if parts.early_stopping.should_stop:
        return "early_stopped"
    if progress.epoch >= parts.trainer.epochs:
        return "completed"
    return "interrupted" if stop else None


def epoch_batches(
    parts: Parts, progress: Progress, tracker: Tracker
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The next epoch's training batches, in that epoch's order, from where the run is."""
    epoch, first = progress.epoch + 1, progress.batches_done
    order = epoch_order(len(parts.data.train), parts.data_seed, epoch, parts.device)
    batches = parts.data.train.batches(parts.batch_size, order, first)
    if epoch == 1 and first == 0 and tracker.shows_images(parts.data.input_shape):
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
        augmented = None
        if parts.augment is not None:
            with forked_rng(parts.device):
                augmented = parts.augment(x)
        tracker.log_first_batch(x, augmented, parts.data.mean, parts.data.std)
        yield x, y
        break
    yield from iterator


def forked_rng(device: torch.device) -> AbstractContextManager[None]:
    """Torch's random state (CPU and `device`'s) as it was, after the block."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device], device_type=device.type)


def train_epoch(
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


class EpochSums(NamedTuple):
    """What an epoch's batches add up to, read from the device once per epoch."""

    loss: float  # mean batch loss x batch size
    correct: float  # correct predictions (classification)
    penalty: float  # regularization penalty x batch size


NO_SUMS = EpochSums(0.0, 0.0, 0.0)


class BatchStats(NamedTuple):
    """One batch's contribution to `EpochSums`, left on the device: no sync per step, and
    fewer small ops than adding into running sums."""

    loss: torch.Tensor
    correct: torch.Tensor | None
    penalty: torch.Tensor | None
    size: int

    @classmethod
    def of(
        cls,
        out: torch.Tensor,
        y: torch.Tensor,
        loss: torch.Tensor,
        penalty: torch.Tensor | None,
        classification: bool,
    ) -> BatchStats:
        correct = (out.argmax(1) == y).sum() if classification else None
        return cls(loss.detach(), correct, None if penalty is None else penalty.detach(), len(y))

    @staticmethod
    def sums(stats: list[BatchStats], device: torch.device) -> torch.Tensor:
        """The `EpochSums` of `stats` as one device tensor, in its field order."""
        if not stats:
            return torch.zeros(len(EpochSums._fields), device=device)
        losses, corrects, penalties, sizes = zip(*stats, strict=True)
        n = torch.tensor(sizes, dtype=torch.float32, device=device)
        zero = n.new_zeros(())
        return torch.stack(
            [
                torch.stack(losses).float() @ n,
                zero if corrects[0] is None else torch.stack(corrects).sum().float(),
                zero if penalties[0] is None else torch.stack(penalties).float() @ n,
            ]
        )


def train_metrics(
    parts: Parts, sums: torch.Tensor, grad_norms: torch.Tensor, before: list[torch.Tensor] | None
) -> tuple[dict[str, float], dict[str, float]]:
    """The epoch's training metrics from its `EpochSums` and the norms, and its per-layer
    statistics for TensorBoard alone (`diagnostics.layer_norms`, from the weights `before`
    it; none without them), read from the device in one transfer (one sync)."""
    layers = diagnostics.layer_norms(parts.model, grad_norms, before)
    norms = torch.linalg.vector_norm(layers[:2], dim=1)  # global gradient and weight norms
    values = torch.cat([sums, norms, layers.flatten()]).tolist()
    totals, (grad, weight), per_layer = values[:3], values[3:5], values[5:]
    loss, correct, penalty = (total / len(parts.data.train) for total in EpochSums(*totals))
    metrics = {"train/loss": loss, "train/penalty": penalty}
    if parts.data.is_classification:
        metrics["train/acc"] = correct
    metrics |= {"grad_norm": grad, "weight_norm": weight} | learning_rates(parts.optimizer)
    names = [name for name, _ in parts.model.named_parameters()]
    return metrics, diagnostics.layer_scalars(names, per_layer)


def epoch_timing(parts: Parts, first: int, seconds: float) -> dict[str, float]:
    """The epoch's wall time, and the samples per second it trained (since `first`)."""
    samples = len(parts.data.train) - first * parts.batch_size
    return {"time/epoch_s": seconds, "throughput/samples_per_s": samples / seconds}


def end_epoch(
    parts: Parts, progress: Progress, metrics: dict[str, float], timing: dict[str, float]
) -> list[str]:
    """Early stopping, the schedule and the best weights take the epoch's metrics (the
    best ones are kept without the machine's timing); returns the checkpoints now due
    ("last", "best")."""
    progress.metrics = metrics | timing
    if diverged(metrics["train/loss"], parts.trainer.divergence_threshold):
        return []  # a result, not a crash: the last good checkpoint stays
    stopper, trainer = parts.early_stopping, parts.trainer
    epoch = progress.epoch + 1
    improved = stopper.update(epoch, metrics)
    parts.schedule.after_epoch(metrics[stopper.monitor])
    if improved:
        progress.best_model = {k: v.clone() for k, v in parts.model.state_dict().items()}
    progress.epoch, progress.batches_done, progress.sums = epoch, 0, []
    due = []  # serialized once, however many files it goes to
    if epoch % trainer.checkpoint.every == 0 or epoch == trainer.epochs or stopper.should_stop:
        due.append("last")
    if improved and trainer.checkpoint.keep_best:
        due.append("best")
    return due


@torch.no_grad()
def evaluate(parts: Parts, split: Split | None) -> dict[str, float]:
    """Mean loss (and accuracy for classification) over `split`, in eval mode."""
    if split is None:
        return {}
    model, classification = parts.model, parts.data.is_classification
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, device=parts.device)
    for x, y in split.batches(parts.trainer.eval_batch_size):
        with parts.autocast():
            out = model(x)
        loss = parts.loss_fn(out.float(), y)
        correct = (out.argmax(1) == y).sum() if classification else loss.new_zeros(())
        sums += torch.stack([loss * len(y), correct.float()])
    model.train(was_training)
    loss_sum, correct_sum = sums.tolist()
    result = {"loss": loss_sum / len(split)}
    if classification:
        result["acc"] = correct_sum / len(split)
    return result


def test_metrics(parts: Parts, progress: Progress) -> dict[str, float]:
    """The test split's metrics with the weights `trainer.test_weights` names."""
    if parts.trainer.test_weights == "best" and progress.best_model is not None:
        parts.model.load_state_dict(progress.best_model)
    return evaluate(parts, parts.data.test)


def test_confusion(parts: Parts) -> torch.Tensor | None:
    """The test split's confusion matrix (classification), with the weights just tested."""
    data, batch_size = parts.data, parts.trainer.eval_batch_size
    if data.test is None or data.num_classes is None:
        return None
    with parts.autocast():
        return diagnostics.confusion_matrix(parts.model, data.test, data.num_classes, batch_size)


def results(
    status: str, progress: Progress, parts: Parts, test: dict[str, float] | None
) -> dict[str, Any]:
    """What the run achieved: the first part of metrics.json."""
    stopper = parts.early_stopping
    return {
        "status": status,
        "epochs_completed": progress.epoch,
        "monitor": stopper.monitor,
        "best_epoch": stopper.best_epoch,
        "best": stopper.best_metrics,
        "final": progress.metrics,
        "test": test or None,
        "test_weights": parts.trainer.test_weights,
        "objective": objective(status, stopper),
        "global_step": progress.step,
    }


def objective(status: str, stopper: EarlyStopping) -> float:
    """What a sweeper optimizes: the best monitored value; the worst one if diverged."""
    if status == "diverged" or math.isnan(stopper.best):
        return stopper.worst
    return stopper.best


def hparams_metrics(parts: Parts, test: dict[str, float] | None) -> dict[str, float]:
    best = {
        "best_" + k.replace("/", "_"): v
        for k, v in parts.early_stopping.best_metrics.items()
        if k.startswith("val/")
    }
    return best | {f"test_{k}": v for k, v in (test or {}).items()}


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


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """`lr` of the first parameter group, and `lr/groupK` for the others if any."""
    groups = optimizer.param_groups
    rates = {"lr": groups[0]["lr"]}
    rates |= {f"lr/group{k}": g["lr"] for k, g in enumerate(groups) if k > 0}
    return rates


def diverged(loss: float, threshold: float | None) -> bool:
    return not math.isfinite(loss) or (threshold is not None and loss > threshold)


def resume(parts: Parts, run_dir: Path, config: dict[str, Any]) -> Progress:
    """A fresh `Progress`, or the one of the checkpoint to continue from, with every part's
    state restored."""
    path = checkpoint.resume_path(run_dir, parts.trainer.resume)
    if path != checkpoint.file(run_dir, "last"):  # a fresh start, or another run's weights
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
