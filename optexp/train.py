"""The training loop. `run` builds every part from the config once, then trains
epochs x batches top to bottom; the helpers below it are small and stateless."""

from __future__ import annotations

import math
import platform
import random
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

import optexp
from optexp import checkpoint
from optexp.config import ConfigError, flatten
from optexp.data import Split, epoch_order
from optexp.parts import Parts, build_parts
from optexp.stopping import EarlyStopping
from optexp.tracking import Tracker, print_summary, write_json


def run(cfg: DictConfig, run_dir: Path, choices: dict[str, str] | None = None) -> dict[str, Any]:
    """Train the experiment `cfg` into `run_dir`; return what metrics.json holds."""
    started = time.perf_counter()
    seed_everything(cfg.seed)
    parts = build_parts(cfg)
    trainer, data, model, optimizer = cfg.trainer, parts.data, parts.model, parts.optimizer
    if trainer.early_stopping.monitor == "val/acc" and not data.is_classification:
        raise ConfigError("trainer.early_stopping.monitor", "val/acc", "val/loss for regression")
    autocast, scaler = mixed_precision(trainer.precision, parts.device)
    stopper = EarlyStopping(**trainer.early_stopping)
    config = OmegaConf.to_container(cfg, resolve=True)
    steps_per_epoch = math.ceil(len(data.train) / parts.batch_size)
    grad_clip = trainer.grad_clip  # a config lookup costs as much as a small op: not per step
    epoch, step, metrics, best_model = 0, 0, {}, None

    if path := checkpoint.resume_path(run_dir, trainer.resume):
        state = checkpoint.load(path)
        checkpoint.check_compatible(state["config"], config, path)
        epoch, step, metrics, best_model = restore(state, parts, scaler, stopper)

    status = "completed"
    with Tracker(run_dir, trainer.epochs, steps_per_epoch, trainer.tensorboard, epoch) as tracker:
        while epoch < trainer.epochs and not stopper.should_stop:
            epoch += 1
            epoch_started = time.perf_counter()
            model.train()
            stats = []  # per batch, on the device: summed at the epoch's end (no sync per step)
            order = epoch_order(len(data.train), cfg.data_seed, epoch, parts.device)
            batches = data.train.batches(parts.batch_size, order)
            for i, (x, y) in enumerate(tracker.batches(batches)):
                if parts.augment is not None:
                    x = parts.augment(x)
                with autocast():
                    out = model(x)
                    loss = parts.loss_fn(out, y)
                penalty = parts.penalty() if parts.penalty is not None else None
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss if penalty is None else loss + penalty).backward()
                if grad_clip or i == steps_per_epoch - 1:
                    scaler.unscale_(optimizer)  # clip and measure the true gradients
                    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip or math.inf)
                scaler.step(optimizer)
                scaler.update()
                parts.schedule.after_step()
                step += 1
                stats.append(batch_stats(out, y, loss, penalty, data.is_classification))

            metrics = epoch_metrics(stats, data.is_classification)
            metrics |= {"grad_norm": grad_norm.item(), "weight_norm": weight_norm(model)}
            metrics |= learning_rates(optimizer)
            if diverged(metrics["train/loss"], trainer.divergence_threshold):
                status = "diverged"  # a result, not a crash: keep the last good checkpoint
                tracker.log_epoch(epoch, metrics)
                break
            val = evaluate(model, data.val, parts.loss_fn, trainer.eval_batch_size, autocast)
            metrics |= {f"val/{k}": v for k, v in val.items()}
            seconds = time.perf_counter() - epoch_started
            metrics |= {
                "time/epoch_s": seconds,
                "throughput/samples_per_s": len(data.train) / seconds,
            }
            tracker.log_epoch(epoch, metrics)

            improved = stopper.update(epoch, metrics)
            if improved:
                best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
            parts.schedule.after_epoch(metrics[stopper.monitor])
            state = snapshot(parts, scaler, stopper, config, epoch, step, metrics, best_model)
            if (
                epoch % trainer.checkpoint.every == 0
                or epoch == trainer.epochs
                or stopper.should_stop
            ):
                checkpoint.save(state, run_dir / "checkpoints" / "last.pt")
            if improved and trainer.checkpoint.keep_best:
                checkpoint.save(state, run_dir / "checkpoints" / "best.pt")

        if status == "completed" and stopper.should_stop:
            status = "early_stopped"
        if best_model is not None:
            model.load_state_dict(best_model)  # report test metrics with the best weights
        test = evaluate(model, data.test, parts.loss_fn, trainer.eval_batch_size, autocast)
        summary = {
            "status": status,
            "epochs_completed": epoch - (status == "diverged"),
            "monitor": stopper.monitor,
            "best_epoch": stopper.best_epoch,
            "best": stopper.best_metrics,
            "final": metrics,
            "test": test or None,
            "objective": objective(status, stopper),
            "global_step": step,
            "wall_s": time.perf_counter() - started,
            "seed": cfg.seed,
            "data_seed": cfg.data_seed,
            "device": str(parts.device),
            "choices": choices or {},
            "versions": versions(),
        }
        write_json(run_dir / "metrics.json", summary)
        tracker.log_hparams(
            hparams(config, choices),
            {
                "best_" + k.replace("/", "_"): v
                for k, v in stopper.best_metrics.items()
                if k.startswith("val/")
            }
            | {f"test_{k}": v for k, v in test.items()},
        )
    print_summary(summary, run_dir)
    return summary


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
    """This batch's mean loss, correct count, penalty and size, left on the device: fewer
    small ops per step than adding them into running sums, which costs on a CPU."""
    correct = (out.argmax(1) == y).sum() if classification else None
    return loss.detach(), correct, None if penalty is None else penalty.detach(), len(y)


def epoch_metrics(stats: list[BatchStats], classification: bool) -> dict[str, float]:
    """Sample-weighted means of the epoch's batch statistics, read once per epoch."""
    losses, corrects, penalties, sizes = zip(*stats, strict=True)
    n = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device)
    metrics = {
        "train/loss": weighted_mean(losses, n),
        "train/penalty": 0.0 if penalties[0] is None else weighted_mean(penalties, n),
    }
    if classification:
        metrics["train/acc"] = torch.stack(corrects).sum().item() / sum(sizes)
    return metrics


def weighted_mean(values: tuple[torch.Tensor, ...], weights: torch.Tensor) -> float:
    return (torch.stack(values).float() @ weights / weights.sum()).item()


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


def weight_norm(model: nn.Module) -> float:
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.detach().float()) for p in model.parameters()])
    ).item()


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
    config: dict[str, Any],
    epoch: int,
    step: int,
    metrics: dict[str, float],
    best_model: dict[str, torch.Tensor] | None,
) -> dict[str, Any]:
    """Everything needed to continue exactly where the run is now: plain state only."""
    return {
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.schedule.state_dict(),
        "scaler": scaler.state_dict(),
        "early_stopping": stopper.state_dict(),
        "best_model": best_model,
        "epoch": epoch,
        "global_step": step,
        "metrics": metrics,
        "rng": checkpoint.rng_state(),
        "config": config,
    }


def restore(
    state: dict[str, Any], parts: Parts, scaler: torch.amp.GradScaler, stopper: EarlyStopping
) -> tuple[int, int, dict[str, float], dict[str, Any] | None]:
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.schedule.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    stopper.load_state_dict(state["early_stopping"])
    checkpoint.set_rng_state(state["rng"])
    best = state["best_model"]
    if best is not None:
        best = {k: v.to(parts.device) for k, v in best.items()}
    return state["epoch"], state["global_step"], state["metrics"], best


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
