"""The config schema: the keys optexp reads and their types; for the trainer's knobs and
the top-level keys also their default, rule and one-line doc, each knob in one place.

Hydra validates names and types against these dataclasses while composing (a misspelt
trainer key or `trainer.epochs=abc` stops there); `optexp.checks` applies the rules.
optexp/configs/trainer/default.yaml is generated from `TrainerConfig`
(`python -m optexp.config`) and a test checks that the two agree. Group nodes that name a
`_target_` (dataset, model, optimizer, ...) are checked against their target when built
(`optexp.parts`).

Imports neither torch nor anything heavy: config errors answer fast.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from optexp.errors import ConfigError, UserError  # re-exported: a user's part raises them
from optexp.rules import (
    BOOL,
    COUNT,
    COUNT0,
    DEVICE,
    NON_NEGATIVE,
    PATH,
    POSITIVE,
    SEED,
    Rule,
    in_range,
    int_at_least,
    integer,
    one_of,
)

__all__ = ["ConfigError", "OptexpConfig", "TrainerConfig", "UserError"]

PRECISIONS = ("32", "bf16", "fp16")
MONITORS = ("val/loss", "val/acc")
TEST_WEIGHTS = ("best", "last")


def knob(default: Any, rule: Rule, doc: str) -> Any:
    """A schema field with its rule (`optexp.checks` applies it) and its one-line doc
    (the comment in trainer/default.yaml)."""
    return field(default=default, metadata={"rule": rule, "doc": doc})


@dataclass
class EarlyStoppingConfig:
    enabled: bool = knob(True, BOOL, "stop after `patience` epochs without improvement")
    monitor: str = knob("val/loss", one_of(*MONITORS), " | ".join(MONITORS))
    mode: str = knob("min", one_of("min", "max"), "min for val/loss, max for val/acc")
    patience: int = knob(10, COUNT0, "epochs without improvement before stopping")
    min_delta: float = knob(0.0, NON_NEGATIVE, "smallest change that counts as an improvement")


@dataclass
class CheckpointConfig:
    every: int = knob(1, COUNT, "write checkpoints/last.pt every N epochs (and at the end)")
    keep_best: bool = knob(True, BOOL, "write checkpoints/best.pt when the monitor improves")


@dataclass
class EmaConfig:
    enabled: bool = knob(False, BOOL, "keep an exponential moving average of the weights")
    decay: float = knob(0.999, in_range(0, 1, "()"), "avg = decay * avg + (1 - decay) * weights")
    start: int = knob(0, COUNT0, "optimizer steps before the average starts")
    every: int = knob(1, COUNT, "optimizer steps between two updates of the average")


@dataclass
class SwaConfig:
    enabled: bool = knob(
        False, BOOL, "stochastic weight averaging: the mean of the weights at each epoch end"
    )
    start_epoch: int = knob(1, COUNT, "averaging (and the SWA learning rate) start after it")
    lr: float | None = knob(
        None, POSITIVE.or_null(), "the SWA phase's learning rate (null: the schedule goes on)"
    )
    anneal_epochs: int = knob(1, COUNT, "epochs from the schedule's lr to the SWA lr")
    anneal_strategy: str = knob("cos", one_of("cos", "linear"), "cos | linear")


@dataclass
class TrainerConfig:
    epochs: int = knob(30, COUNT, "passes over the training set")
    batch_size: int = knob(64, COUNT, "samples per optimizer step")
    precision: str = knob(
        "32", one_of(*PRECISIONS), "32 | bf16 | fp16 (fp16 needs CUDA; bf16 also runs on CPU)"
    )
    device: str = knob("auto", DEVICE, "auto (cuda if available, else cpu) | cpu | cuda | cuda:N")
    grad_clip: float | None = knob(
        None, POSITIVE.or_null(), "max global gradient norm, or null for no clipping"
    )
    eval_batch_size: int = knob(1024, COUNT, "samples per batch in validation and test")
    divergence_threshold: float | None = knob(
        None, POSITIVE.or_null(), "stop as diverged when the training loss exceeds this"
    )
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    test_weights: str = knob(
        "best",
        one_of(*TEST_WEIGHTS),
        "best: test the best-validation weights | last: the final ones (as most papers report)",
    )
    resume: str | None = knob(
        None, PATH.or_null(), "a checkpoint file or a run directory to continue from"
    )
    tensorboard: bool = knob(True, BOOL, "write TensorBoard events into the run's tb/")
    histograms_every: int = knob(
        0, COUNT0, "TensorBoard histograms of weights and gradients every N epochs (0: none)"
    )
    compile: bool = knob(
        False, BOOL, "torch.compile the model: faster steps after a slow first few (compiling)"
    )
    channels_last: bool = knob(
        False, BOOL, "store 4-D image batches (N, C, H, W) channels-last: faster convolutions"
    )
    max_steps: int | None = knob(
        None, COUNT.or_null(), "end after this many optimizer steps (or trainer.epochs, if first)"
    )
    max_time: float | None = knob(
        None,
        POSITIVE.or_null(),
        "end after this many seconds of training (status time_limit; resumable with more)",
    )
    eval_every_steps: int | None = knob(
        None,
        COUNT.or_null(),
        "also validate (and log, stop early, keep the best) every N steps; x axis in steps",
    )
    accumulate_batches: int = knob(
        1, COUNT, "batches per optimizer step: K batches of B step as one batch of K x B"
    )
    devices: int = knob(
        1, COUNT, "processes on this node, one data-parallel run (1: no torch.distributed)"
    )
    num_nodes: int = knob(1, COUNT, "nodes of a data-parallel run (started by SLURM or torchrun)")
    sync_batchnorm: bool = knob(
        False, BOOL, "with devices > 1: batch norm statistics over the whole global batch"
    )
    distributed_backend: str = knob(
        "auto", one_of("auto", "gloo", "nccl"), "auto: nccl on CUDA, gloo on CPU"
    )
    distributed_timeout: float = knob(
        300.0, POSITIVE, "seconds a collective waits for every rank before the run fails"
    )
    ema: EmaConfig = field(default_factory=EmaConfig)
    swa: SwaConfig = field(default_factory=SwaConfig)
    evaluate_averaged: bool = knob(
        True, BOOL, "with ema or swa: validate, stop early and test the averaged weights"
    )
    limit_batches: int | None = knob(
        None,
        int_at_least(1).or_null(),
        "train, validate and test on the first N batches of each split only (debug)",
    )
    detect_anomaly: bool = knob(
        False, BOOL, "autograd names the operation behind a NaN gradient (slow; debug)"
    )


@dataclass
class LrRangeConfig:
    """`lr_range=default`: the run is an LR range test instead (optexp.lr_range)."""

    min_lr: float = knob(1e-6, POSITIVE, "the first step's learning rate")
    max_lr: float = knob(10.0, POSITIVE, "the last step's, reached exponentially")
    steps: int = knob(200, int_at_least(10), "optimizer steps from min_lr to max_lr")
    # fastai and Lightning smooth with 0.98 over 100 steps: a lag of ~50 steps, which moves
    # the steepest descent to larger learning rates; 0.9 lags ~10 steps.
    smoothing: float = knob(0.9, in_range(0, 1, "[)"), "the loss's exponential smoothing")
    diverge: float = knob(
        4.0, in_range(1, 1e3, "(]"), "stop once the smoothed loss exceeds this x its minimum"
    )


TRIAL = Rule(
    lambda v: v == "defaults" or (integer(v) and v >= 0),
    "null (not a trial), an integer >= 0 (a point of search_space), or defaults",
    nullable=True,
)


@dataclass
class TargetConfig:
    metric: str = knob("val/acc", one_of(*MONITORS), " | ".join(MONITORS))
    value: float | None = knob(
        None, NON_NEGATIVE.or_null(), "reached at or above (acc), at or below (loss) it"
    )
    chance: float | None = knob(
        None, NON_NEGATIVE.or_null(), "a constant predictor's metric: costs are capped there"
    )


@dataclass
class StudyConfig:
    """A run of an optimizer study (optexp.search_space, docs/report.md): which study and
    which trial, and the problem's target, set once in its problem file."""

    index: int = knob(
        0, COUNT0, "the study: it scrambles the trials (its presets seed runs with it)"
    )
    # an integer or "defaults": Any, as OmegaConf's structured configs have no Union
    trial: Any = knob(None, TRIAL, "a point of search_space, or defaults (its fixed values only)")  # noqa: RUF009
    target: TargetConfig = field(default_factory=TargetConfig)  # set in the problem file


@dataclass
class OptexpConfig:
    seed: int = knob(0, SEED, "model init, dropout, augmentation")
    data_seed: int = knob(0, SEED, "train/val/test split and batch order")
    data_dir: str = knob("data", PATH, "where downloadable datasets are stored")
    # Group nodes: `_target_` plus the target's own arguments (checked when built).
    dataset: Any = MISSING
    augmentation: Any = None
    model: Any = MISSING
    loss: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None
    regularizer: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    lr_range: LrRangeConfig | None = None
    study: StudyConfig = field(default_factory=StudyConfig)
    search_space: Any = None  # the optimizer's (search_space/<optimizer>.yaml), for study.trial


ConfigStore.instance().store(name="optexp_schema", node=OptexpConfig)


def knobs(schema: type = OptexpConfig, prefix: str = "") -> dict[str, dataclasses.Field[Any]]:
    """Every knob of `schema` by its full key ("trainer.early_stopping.patience")."""
    found = {}
    types = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        nested = [t for t in typing.get_args(types[f.name]) or [types[f.name]] if is_schema(t)]
        if "rule" in f.metadata:
            found[prefix + f.name] = f
        elif nested:  # a group of knobs, or an optional one (lr_range)
            found |= knobs(nested[0], f"{prefix}{f.name}.")
    return found


def is_schema(t: Any) -> bool:
    return isinstance(t, type) and dataclasses.is_dataclass(t)


def knob_rules() -> dict[str, Rule]:
    return {key: f.metadata["rule"] for key, f in knobs().items()}


def trainer_yaml(schema: type = TrainerConfig, indent: str = "") -> str:
    """trainer/default.yaml as generated from the schema: each knob, its default, its doc."""
    lines = [] if indent else [GENERATED]
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(f.default_factory):
            lines.append(f"{indent}{f.name}:")
            lines.append(trainer_yaml(f.default_factory, indent + "  ").rstrip("\n"))
            continue
        value = yaml.safe_dump(f.default, default_flow_style=True).removesuffix("...\n").strip()
        lines.append(f"{f'{indent}{f.name}: {value}':<28}# {f.metadata['doc']}")
    return "\n".join(lines) + "\n"


GENERATED = (
    "# The trainer's knobs with their defaults. Generated from optexp/config.py (TrainerConfig),\n"
    "# where each knob's default, rule and doc live: edit them there, then run\n"
    "# `python -m optexp.config > optexp/configs/trainer/default.yaml`."
)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, for plain nested dicts."""
    if isinstance(tree, dict) and tree:
        return {
            k: v for key, sub in tree.items() for k, v in flatten(sub, f"{prefix}{key}.").items()
        }
    return {prefix[:-1]: tree}


if __name__ == "__main__":
    print(trainer_yaml(), end="")
