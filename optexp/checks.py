"""Every rule on values, in one place.

`check_config` runs on the composed config, before anything is built or written: each
key's range (RULES). The `check_*` functions below it compare parts with each other
(the loss with the targets, the model and augmentation with the input shape, the
schedule with its warm-up, ...); `optexp.parts.build_parts` calls them as the parts are
built, so they too run once, before training and before the run writes anything.

Importing this module costs no torch import: config errors answer fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from optexp.config import ConfigError

if TYPE_CHECKING:
    from optexp.data import Data

PRECISIONS = ("32", "bf16", "fp16")
MONITORS = ("val/loss", "val/acc")
TEST_WEIGHTS = ("best", "last")


def _positive(v: Any) -> bool:
    return v > 0


def _non_negative(v: Any) -> bool:
    return v >= 0


def _fraction(v: Any) -> bool:
    return 0 <= v < 1


def _device(v: str) -> bool:
    kind, _, index = v.partition(":")
    return kind in ("auto", "cpu", "cuda", "mps") and (not index or index.isdigit())


# key -> (test, what is allowed). A key absent from the config is not checked.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "trainer.epochs": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.eval_batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.precision": (lambda v: v in PRECISIONS, " | ".join(PRECISIONS)),
    "trainer.device": (_device, "auto | cpu | cuda | cuda:N | mps"),
    "trainer.grad_clip": (_positive, "null or a number > 0"),
    "trainer.divergence_threshold": (_positive, "null or a number > 0"),
    "trainer.early_stopping.monitor": (lambda v: v in MONITORS, " | ".join(MONITORS)),
    "trainer.early_stopping.mode": (lambda v: v in ("min", "max"), "min | max"),
    "trainer.early_stopping.patience": (_non_negative, "an integer >= 0"),
    "trainer.early_stopping.min_delta": (_non_negative, "a number >= 0"),
    "trainer.checkpoint.every": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.limit_batches": (lambda v: v >= 1, "null or an integer >= 1"),
    "trainer.test_weights": (lambda v: v in TEST_WEIGHTS, " | ".join(TEST_WEIGHTS)),
    "trainer.histograms_every": (_non_negative, "an integer >= 0 (0: no histograms)"),
    "optimizer.lr": (_positive, "a number > 0"),
    "optimizer.weight_decay": (_non_negative, "a number >= 0"),
    "optimizer.momentum": (_fraction, "a number in [0, 1)"),
    "optimizer.alpha": (_fraction, "a number in [0, 1)"),
    "optimizer.betas": (
        lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
        "two numbers in [0, 1), e.g. [0.9, 0.999]",
    ),
    "optimizer.eps": (_positive, "a number > 0"),
    "scheduler.interval": (lambda v: v in ("epoch", "step"), "epoch | step"),
    "scheduler.warmup_epochs": (_non_negative, "a number >= 0"),
    "model.dropout": (_fraction, "a number in [0, 1)"),
    "regularizer.l1": (_non_negative, "a number >= 0"),
    "regularizer.l2": (_non_negative, "a number >= 0"),
    "loss.label_smoothing": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "dataset.val_fraction": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "dataset.test_fraction": (_fraction, "a number in [0, 1)"),
    "dataset.noise": (_non_negative, "a number >= 0"),
    "augmentation.flip": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "augmentation.degrees": (_non_negative, "a number >= 0"),
    "augmentation.brightness": (_non_negative, "a number >= 0"),
    "augmentation.contrast": (_non_negative, "a number >= 0"),
    "augmentation.saturation": (_non_negative, "a number >= 0"),
    "augmentation.padding": (_non_negative, "an integer >= 0"),
    "loss.margin": (_positive, "a number > 0"),
    "loss.p": (lambda v: v in (1, 2), "1 | 2"),
}

GROUPS_WITH_TARGET = ("dataset", "model", "loss", "optimizer")


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError for a missing part or the first value outside its allowed range."""
    for group in GROUPS_WITH_TARGET:
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(group, node, f"a config with _target_, e.g. {group}=<option>")
    for key, (test, allowed) in RULES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:  # absent, or an optional key left unset
            continue
        if isinstance(value, ListConfig):
            value = list(value)
        try:
            ok = test(value)
        except TypeError:
            ok = False
        if not ok or (isinstance(value, float) and math.isnan(value)):
            raise ConfigError(key, value, allowed)


def check_input_shape(
    input_shape: Sequence[int], dims: str, group: str, option: str, instead: str
) -> None:
    """A part that takes samples shaped `dims` (e.g. "C, H, W") refuses other inputs."""
    if len(input_shape) != len(dims.split(",")):
        raise ConfigError(
            group,
            option,
            instead,
            f"needs inputs shaped ({dims}), but the dataset's inputs are {tuple(input_shape)}",
        )


def check_loss(loss_fn: object, data: Data) -> None:
    """Losses that read class labels refuse a regression set (float targets)."""
    from torch import nn

    classification_only = (nn.CrossEntropyLoss, nn.NLLLoss, nn.MultiMarginLoss)
    if isinstance(loss_fn, classification_only) and not data.is_classification:
        raise ConfigError(
            "loss",
            type(loss_fn).__name__,
            "mse for a regression dataset",
            problem="needs class labels, but the dataset has real-valued targets",
        )


def check_monitor(monitor: str, data: Data) -> None:
    if monitor == "val/acc" and not data.is_classification:
        raise ConfigError("trainer.early_stopping.monitor", monitor, "val/loss for regression")


def check_schedule(scheduler: object, interval: str, warmup_epochs: float) -> None:
    """Reduce-on-plateau steps on the epoch's validation metric: no warm-up, no steps."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    if not isinstance(scheduler, ReduceLROnPlateau):
        return
    if warmup_epochs:
        raise ConfigError(
            "scheduler.warmup_epochs",
            warmup_epochs,
            "0 with plateau",
            problem="cannot precede a reduce-on-plateau schedule",
        )
    if interval == "step":
        raise ConfigError("scheduler.interval", interval, "epoch with plateau")


def check_device(device: str, precision: str, cuda_available: bool) -> None:
    """`device` as resolved from `trainer.device` (auto is cuda or cpu by now)."""
    if device.startswith("cuda") and not cuda_available:
        raise ConfigError("trainer.device", device, "cpu | auto (no CUDA device is visible)")
    if precision == "fp16" and not device.startswith("cuda"):
        raise ConfigError(
            "trainer.precision",
            precision,
            "32 | bf16 on a CPU",
            problem="needs a CUDA device (float16 autocast with gradient scaling)",
        )
