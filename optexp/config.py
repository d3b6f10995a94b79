"""The config schema: which keys exist and their types, and the errors users can fix.

Hydra validates names and types against the dataclasses below (a misspelt trainer key
or `trainer.epochs=abc` is refused while composing). Group nodes that name a
`_target_` (dataset, model, optimizer, ...) are checked against the signature of their
target when they are built (see `optexp.parts`); allowed values and combinations are
`optexp.checks`.

This module imports neither torch nor anything heavy: config errors answer fast.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

USER_ERROR = 2  # the exit status of every optexp command for an error the user can fix
DEBUG_HINT = "(set OPTEXP_DEBUG=1 for the traceback)"


class UserError(Exception):
    """An error the user can fix (config, paths, files): reported in one line, exit 2."""


def debug_requested() -> bool:
    """OPTEXP_DEBUG (or Hydra's HYDRA_FULL_ERROR) set to anything but 0, false, no, off
    or nothing: user errors show their traceback."""
    off = ("", "0", "false", "no", "off")
    names = ("OPTEXP_DEBUG", "HYDRA_FULL_ERROR")
    return any(os.environ.get(name, "").strip().lower() not in off for name in names)


def exit_with_error(program: str, message: str) -> NoReturn:
    """How every optexp command reports a user error: one line, the hint, exit 2."""
    print(f"{program}: error: {message}", file=sys.stderr)
    print(DEBUG_HINT, file=sys.stderr)
    raise SystemExit(USER_ERROR)


class ConfigError(UserError, ValueError):
    """A user error in the configuration: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str, problem: str = "is not allowed"):
        self.key, self.value, self.allowed, self.problem = key, value, allowed, problem
        super().__init__(f"{key}={_show(value)} {problem}. Allowed: {allowed}.")

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # Pickled with its own arguments: a cluster launcher (submitit) sends a job's
        # error back to the sweep's process as a pickle.
        return type(self), (self.key, self.value, self.allowed, self.problem)


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
    limit_batches: int | None = None
    detect_anomaly: bool = False
    histograms_every: int = 0


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


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, for plain nested dicts."""
    if isinstance(tree, dict) and tree:
        return {
            k: v for key, sub in tree.items() for k, v in flatten(sub, f"{prefix}{key}.").items()
        }
    return {prefix[:-1]: tree}
