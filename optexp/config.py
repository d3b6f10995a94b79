"""The config schema and the checks that run before any training starts.

Hydra validates names and types against the dataclasses below (a misspelt trainer key
or `trainer.epochs=abc` is refused while composing). Group nodes that name a
`_target_` (dataset, model, optimizer, ...) are checked against the signature of their
target when they are built (see `optexp.parts`); value ranges are checked here.

This module imports neither torch nor anything heavy: config errors answer fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf


class UserError(Exception):
    """An error the user can fix (config, paths, files): reported in one line, exit 2."""


class ConfigError(UserError, ValueError):
    """A user error in the configuration: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str, problem: str = "is not allowed"):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={_show(value)} {problem}. Allowed: {allowed}.")


def _show(value: Any) -> str:
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    return repr(value) if isinstance(value, str) else str(value)


@dataclass
class EarlyStoppingConfig:
    enabled: bool = True
    monitor: str = "val/loss"
    mode: str = "min"
    patience: int = 10
    min_delta: float = 0.0


@dataclass
class CheckpointConfig:
    every: int = 1
    keep_best: bool = True


@dataclass
class TrainerConfig:
    epochs: int = 30
    batch_size: int = 64
    precision: str = "32"
    device: str = "auto"
    grad_clip: float | None = None
    eval_batch_size: int = 1024
    divergence_threshold: float | None = None
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    resume: str | None = None
    tensorboard: bool = True
    compile: bool = False
    channels_last: bool = False
    test_weights: str = "best"


@dataclass
class OptexpConfig:
    seed: int = 0
    data_seed: int = 0
    data_dir: str = "data"
    # Group nodes: `_target_` plus the target's own arguments (checked when built).
    dataset: Any = MISSING
    augmentation: Any = None
    model: Any = MISSING
    loss: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None
    regularizer: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


ConfigStore.instance().store(name="optexp_schema", node=OptexpConfig)

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
    "trainer.test_weights": (lambda v: v in TEST_WEIGHTS, " | ".join(TEST_WEIGHTS)),
    "optimizer.lr": (_positive, "a number > 0"),
    "optimizer.weight_decay": (_non_negative, "a number >= 0"),
    "optimizer.momentum": (_fraction, "a number in [0, 1)"),
    "optimizer.alpha": (_fraction, "a number in [0, 1)"),
    "optimizer.betas": (
        lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
        "two numbers in [0, 1), e.g. [0.9, 0.999]",
    ),
    "optimizer.eps": (_positive, "a number > 0"),
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


def check(cfg: DictConfig) -> None:
    """Raise ConfigError for the first value outside its allowed range."""
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


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, for plain nested dicts."""
    if isinstance(tree, dict) and tree:
        return {
            k: v for key, sub in tree.items() for k, v in flatten(sub, f"{prefix}{key}.").items()
        }
    return {prefix[:-1]: tree}
