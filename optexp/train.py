"""The training loop. `run` builds every part from the config once, then trains
epochs x batches top to bottom; the helpers below it are small and stateless."""

from __future__ import annotations

import json
import math
import platform
import random
import subprocess
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

import optexp
from optexp import checkpoint
from optexp.config import ConfigError, TrainerConfig, flatten
from optexp.data import Split, epoch_order
from optexp.parts import Parts, build_parts
from optexp.signals import StopRequest
from optexp.stopping import EarlyStopping
from optexp.tracking import Tracker, print_summary, write_json


@dataclass
class Progress:
    """Where the run is: what a checkpoint holds besides the parts' own state."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    batches_done: int = 0  # batches of the next epoch already taken (after a mid-epoch stop)
    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # ...and their sums
    metrics: dict[str, float] = field(default_factory=dict)  # of the last completed epoch
    best_model: dict[str, torch.Tensor] | None = None


def run(cfg: DictConfig, run_dir: Path, choices: dict[str, str] | None = None) -> dict[str, Any]:
    """Train the experiment `cfg` into `run_dir`; return what metrics.json holds."""
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)  # checkpoints make it too, but on their thread
    seed_everything(cfg.seed)
    parts = build_parts(cfg)
    # Plain dataclasses from here on: a DictConfig lookup costs as much as a small tensor op.
    trainer: TrainerConfig = OmegaConf.to_object(cfg.trainer)
    data, model = parts.data, parts.model
    if trainer.early_stopping.monitor == "val/acc" and not data.is_classification:
        raise ConfigError("trainer.early_stopping.monitor", "val/acc", "val/loss for regression")
    autocast, scaler = mixed_precision(trainer.precision, parts.device)
    stopper = EarlyStopping(**vars(trainer.early_stopping))
    config = OmegaConf.to_container(cfg, resolve=True)
    config_json = json.dumps(config)  # for checkpoints: one string to pickle, not ~300 objects
    last_pt, best_pt = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    progress = Progress()
    if path := checkpoint.resume_path(run_dir, trainer.resume):
        state = checkpoint.load(path)
        checkpoint.check_compatible(state["config"], config, path)
        progress = restore(state, parts, scaler, stopper)

    writer = checkpoint.Writer()

    def save(*paths: Path) -> None:
        writer.save(snapshot(parts, scaler, stopper, config_json, progress), *paths)

    status = "completed"
    tracker = Tracker(
        run_dir, trainer.epochs, parts.steps_per_epoch, trainer.tensorboard, progress.epoch
    )
    with tracker, writer, StopRequest() as stop:
        while progress.epoch < trainer.epochs and not stopper.should_stop:
            epoch, epoch_started = progress.epoch + 1, time.perf_counter()
            order = epoch_order(len(data.train), cfg.data_seed, epoch, parts.device)
            first = progress.batches_done
            batches = tracker.batches(data.train.batches(parts.batch_size, order, first), first)
            sums = torch.tensor(progress.sums, device=parts.device)
            done, grad_norm = train_epoch(
                parts, trainer, autocast, scaler, batches, first, sums, stop
            )
            progress.step += done - first
            if done < parts.steps_per_epoch:  # stopped by a signal: keep the place in the epoch
                progress.batches_done, progress.sums = done, sums.tolist()
                save(last_pt)
                status = "interrupted"
                break

            metrics = epoch_metrics(sums, grad_norm, model, len(data.train), data.is_classification)
            metrics |= learning_rates(parts.optimizer)
            if diverged(metrics["train/loss"], trainer.divergence_threshold):
                status = "diverged"  # a result, not a crash: the last good checkpoint stays
                progress.metrics = metrics
                tracker.log_epoch(epoch, metrics)
                break
            val = evaluate(model, data.val, parts.loss_fn, trainer.eval_batch_size, autocast)
            metrics |= {f"val/{k}": v for k, v in val.items()}
            improved = stopper.update(epoch, metrics)
            seconds = time.perf_counter() - epoch_started
            metrics |= {
                "time/epoch_s": seconds,
                "throughput/samples_per_s": (len(data.train) - first * parts.batch_size) / seconds,
            }
            tracker.log_epoch(epoch, metrics)

            parts.schedule.after_epoch(metrics[stopper.monitor])
            if improved:
                progress.best_model = {k: v.clone() for k, v in model.state_dict().items()}
            progress = replace(
                progress, epoch=epoch, batches_done=0, sums=[0.0] * 3, metrics=metrics
            )
            due = []  # serialized once, however many files it goes to
            if (
                epoch % trainer.checkpoint.every == 0
                or epoch == trainer.epochs
                or stopper.should_stop
            ):
                due.append(last_pt)
            if improved and trainer.checkpoint.keep_best:
                due.append(best_pt)
            if due:
                save(*due)

        if status == "completed" and stopper.should_stop:
            status = "early_stopped"
        test = None
        if status != "interrupted":
            if trainer.test_weights == "best" and progress.best_model is not None:
                model.load_state_dict(progress.best_model)
            test = evaluate(model, data.test, parts.loss_fn, trainer.eval_batch_size, autocast)
        summary = summarize(status, progress, stopper, test, cfg, parts.device, choices)
        summary |= {"wall_s": time.perf_counter() - started, "signal": stop.signal}
        write_json(run_dir / "metrics.json", summary)
        tracker.log_hparams(hparams(config, choices), hparams_metrics(stopper, test))
    print_summary(summary, run_dir)
    return summary


def train_epoch(
    parts: Parts,
    trainer: TrainerConfig,
    autocast: Callable[[], AbstractContextManager[Any]],
    scaler: torch.amp.GradScaler,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    first: int,
    sums: torch.Tensor,
    stop: StopRequest,
) -> tuple[int, torch.Tensor | None]:
    """One optimizer step per batch, adding each batch's loss, accuracy and penalty to `sums`.
    Returns the index the epoch got to (short of `parts.steps_per_epoch` if `stop` was set)
    and the gradient norm at its last step."""
    model, optimizer, last = parts.model, parts.optimizer, parts.steps_per_epoch - 1
    classification = parts.data.is_classification
    model.train()
    done, grad_norm, stats = first, None, []
    for x, y in batches:
        if stop:
            break
        if parts.augment is not None:
            x = parts.augment(x)
        with autocast():
            out = model(x)
            loss = parts.loss_fn(out, y)
        penalty = parts.penalty() if parts.penalty is not None else None
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss if penalty is None else loss + penalty).backward()
        if trainer.grad_clip or done == last:
            scaler.unscale_(optimizer)  # clip and measure the true gradients
            grad_norm = clip_gradients(model, trainer.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        parts.schedule.after_step()
        stats.append(batch_stats(out, y, loss, penalty, classification))
        done += 1
    if stats:
        sums += stats_sums(stats)
    return done, grad_norm


def summarize(
    status: str,
    progress: Progress,
    stopper: EarlyStopping,
    test: dict[str, float] | None,
    cfg: DictConfig,
    device: torch.device,
    choices: dict[str, str] | None,
) -> dict[str, Any]:
    """The content of metrics.json (wall time added by the caller)."""
    return {
        "status": status,
        "epochs_completed": progress.epoch,
        "monitor": stopper.monitor,
        "best_epoch": stopper.best_epoch,
        "best": stopper.best_metrics,
        "final": progress.metrics,
        "test": test or None,
        "test_weights": cfg.trainer.test_weights,
        "objective": objective(status, stopper),
        "global_step": progress.step,
        "seed": cfg.seed,
        "data_seed": cfg.data_seed,
        "device": str(device),
        "choices": choices or {},
        "versions": versions(),
    }


def hparams_metrics(stopper: EarlyStopping, test: dict[str, float] | None) -> dict[str, float]:
    best = {
        "best_" + k.replace("/", "_"): v
        for k, v in stopper.best_metrics.items()
        if k.startswith("val/")
    }
    return best | {f"test_{k}": v for k, v in (test or {}).items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def mixed_precision(
    precision: str, device: torch.device
) -> tuple[Callable[[], AbstractContextManager[Any]], torch.amp.GradScaler]:
    """autocast context and gradient scaler: bf16 needs no scaling, fp16 does."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = nullcontext if dtype is None else partial(torch.autocast, device.type, dtype=dtype)
    return autocast, torch.amp.GradScaler(device.type, enabled=precision == "fp16")


BatchStats = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, int]


def batch_stats(
    out: torch.Tensor,
    y: torch.Tensor,
    loss: torch.Tensor,
    penalty: torch.Tensor | None,
    classification: bool,
) -> BatchStats:
    """This batch's mean loss, correct count, penalty and size, left on the device: no sync
    per step, and fewer small ops than adding into running sums (which costs on a CPU)."""
    correct = (out.argmax(1) == y).sum() if classification else None
    return loss.detach(), correct, None if penalty is None else penalty.detach(), len(y)


def stats_sums(stats: list[BatchStats]) -> torch.Tensor:
    """[loss * n, correct, penalty * n] summed over the batches, as one device tensor."""
    losses, corrects, penalties, sizes = zip(*stats, strict=True)
    n = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device)
    zero = n.new_zeros(())
    return torch.stack(
        [
            torch.stack(losses).float() @ n,
            zero if corrects[0] is None else torch.stack(corrects).sum().float(),
            zero if penalties[0] is None else torch.stack(penalties).float() @ n,
        ]
    )


def epoch_metrics(
    sums: torch.Tensor, grad_norm: torch.Tensor, model: nn.Module, n: int, classification: bool
) -> dict[str, float]:
    """The epoch's training metrics, read from the device in one transfer (one sync)."""
    weights = global_norm(model.parameters())
    *sums_read, grad, weight = torch.cat([sums, torch.stack([grad_norm, weights])]).tolist()
    loss, correct, penalty = (s / n for s in sums_read)
    metrics = {"train/loss": loss, "train/penalty": penalty}
    if classification:
        metrics["train/acc"] = correct
    return metrics | {"grad_norm": grad, "weight_norm": weight}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split | None,
    loss_fn: Callable[..., torch.Tensor],
    batch_size: int,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> dict[str, float]:
    """Mean loss (and accuracy for classification) over `split`, in eval mode."""
    if split is None:
        return {}
    was_training = model.training
    model.eval()
    classification = not split.y.is_floating_point()
    sums = torch.zeros(2, device=split.y.device)
    for x, y in split.batches(batch_size):
        with autocast():
            out = model(x)
        loss = loss_fn(out.float(), y)
        correct = (out.argmax(1) == y).sum() if classification else loss.new_zeros(())
        sums += torch.stack([loss * len(y), correct.float()])
    model.train(was_training)
    loss_sum, correct_sum = sums.tolist()
    result = {"loss": loss_sum / len(split)}
    if classification:
        result["acc"] = correct_sum / len(split)
    return result


def clip_gradients(model: nn.Module, max_norm: float | None) -> torch.Tensor:
    """The global gradient norm (before clipping); gradients scaled down to `max_norm` if set."""
    if max_norm:
        return nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return global_norm(p.grad for p in model.parameters() if p.grad is not None)


@torch.no_grad()
def global_norm(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all `tensors` together, on their device. `nn.utils.get_total_norm`
    computes the same but takes twice as long for a model's few tensors (it groups them
    by device and dtype first): ~50 against ~25 us for the benchmark MLP on a CPU."""
    norms = [torch.linalg.vector_norm(t) for t in tensors]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """`lr` of the first parameter group, and `lr/groupK` for the others if any."""
    groups = optimizer.param_groups
    rates = {"lr": groups[0]["lr"]}
    rates |= {f"lr/group{k}": g["lr"] for k, g in enumerate(groups) if k > 0}
    return rates


def diverged(loss: float, threshold: float | None) -> bool:
    return not math.isfinite(loss) or (threshold is not None and loss > threshold)


def objective(status: str, stopper: EarlyStopping) -> float:
    """What a sweeper optimizes: the best monitored value; the worst one if diverged."""
    if status == "diverged" or math.isnan(stopper.best):
        return stopper.worst
    return stopper.best


def snapshot(
    parts: Parts,
    scaler: torch.amp.GradScaler,
    stopper: EarlyStopping,
    config_json: str,
    progress: Progress,
) -> dict[str, Any]:
    """Everything needed to continue exactly where the run is now: plain state only."""
    model = parts.model.state_dict()
    position = vars(progress).copy()  # not asdict: that deep-copies the best weights
    if stopper.best_epoch == progress.epoch:  # the best weights are the current ones:
        position["best_model"] = model  # torch.save stores tensors it meets twice once
    return {
        "model": model,
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.schedule.state_dict(),
        "scaler": scaler.state_dict(),
        "early_stopping": stopper.state_dict(),
        "progress": position,
        "rng": checkpoint.rng_state(),
        "config": config_json,
    }


def restore(
    state: dict[str, Any], parts: Parts, scaler: torch.amp.GradScaler, stopper: EarlyStopping
) -> Progress:
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.schedule.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    stopper.load_state_dict(state["early_stopping"])
    checkpoint.set_rng_state(state["rng"])
    progress = Progress(**state["progress"])
    if progress.best_model is not None:
        progress.best_model = {k: v.to(parts.device) for k, v in progress.best_model.items()}
    return progress


def hparams(config: dict[str, Any], choices: dict[str, str] | None) -> dict[str, Any]:
    """Group choices plus the scalar knobs of each part, for TensorBoard's HParams tab."""
    flat = {k: v for k, v in flatten(config).items() if not k.startswith("hydra")}
    keep = (
        "seed",
        "data_seed",
        "optimizer.",
        "scheduler.",
        "regularizer.",
        "model.",
        "loss.",
        "augmentation.",
        "dataset.",
        "trainer.batch_size",
        "trainer.epochs",
        "trainer.precision",
    )
    chosen = {k: v for k, v in flat.items() if k.startswith(keep)}
    chosen = {
        k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in chosen.items()
    }
    return dict(choices or {}) | chosen


def versions() -> dict[str, str | None]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "optexp": optexp.__version__,
        "git_commit": _git_commit(),
    }


@cache  # the code a process runs does not change under it: ask git once per sweep
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(optexp.__file__).parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
