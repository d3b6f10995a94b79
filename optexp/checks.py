"""Every rule on values, in one place.

`check_config` runs on the composed config, before anything is built or written: each
knob's rule (kept beside its default in `optexp.config`) and each part's parameters
(PARAMETER_RULES); Hydra's own settings are `optexp.cli.settings`. The `check_*` functions below
compare parts with each other (the loss with the targets, the model and augmentation with
the input shape, the schedule with its warm-up, ...); `optexp.parts.build_parts` calls
them as the parts are built, so they too run once, before training and before the run
writes anything.

Importing this module costs no torch import: config errors answer fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from optexp.config import OptexpConfig, knob_rules
from optexp.errors import ConfigError
from optexp.rules import (
    BOOL,
    COUNT,
    COUNT0,
    FLOAT32_MAX,
    FRACTION,
    NON_NEGATIVE,
    OPEN_FRACTION,
    POSITIVE,
    PROBABILITY,
    SEED,
    Rule,
    in_range,
    int_at_least,
    list_of,
    one_of,
)

if TYPE_CHECKING:
    from optexp.data import Data

BETAS = Rule(
    lambda v: isinstance(v, list) and len(v) == 2 and all(FRACTION.accepts(b) for b in v),
    "two numbers in [0, 1), e.g. [0.9, 0.999]",
)
GAMMA = in_range(0, 1e3, "(]")
ADAM = {"betas": BETAS, "eps": POSITIVE, "amsgrad": BOOL}
SGD = {"momentum": FRACTION, "dampening": PROBABILITY, "nesterov": BOOL}
RMSPROP = {"alpha": FRACTION, "eps": POSITIVE, "momentum": FRACTION, "centered": BOOL}
DROPOUT_AND_NORM = {"dropout": FRACTION, "batch_norm": BOOL}
WIDTHS = list_of(COUNT, "a list of integers >= 1, e.g. [32, 64]")

# The parameters of the parts, keyed by what they check: a group's name for the keys
# every target of the group reads alike (any optimizer's lr, a user's own optimizer
# included), a target's import path for the keys whose meaning is that target's (SGD's
# momentum). tests/test_walk_inputs.py tries bad values on every knob of every option
# file, and fails for a knob that has no rule here. An absent key is not checked, nor
# null where the rule allows it; non-finite numbers are refused for every key.
PARAMETER_RULES: dict[str, dict[str, Rule]] = {
    "optimizer": {
        "lr": POSITIVE,
        "weight_decay": NON_NEGATIVE,
        "full_batch": BOOL,  # optexp's own keys (optexp.parts.OWN_KEYS)
        "regularize_bias_and_norm": BOOL,
    },
    "torch.optim.SGD": SGD,
    "torch.optim.Adam": ADAM,
    "torch.optim.AdamW": ADAM,
    "torch.optim.Adagrad": {
        "lr_decay": NON_NEGATIVE,
        "initial_accumulator_value": NON_NEGATIVE,
        "eps": POSITIVE,
    },
    "torch.optim.RMSprop": RMSPROP,
    "optexp.optim.textbook.Momentum": {"momentum": FRACTION},
    "optexp.optim.textbook.AdaGrad": {"eps": POSITIVE},
    "optexp.optim.textbook.RMSprop": RMSPROP,
    "optexp.optim.textbook.Adam": ADAM,
    "scheduler": {"interval": one_of("epoch", "step"), "warmup_epochs": NON_NEGATIVE},
    "torch.optim.lr_scheduler.ConstantLR": {"factor": in_range(0, 1, "(]"), "total_iters": COUNT0},
    "torch.optim.lr_scheduler.StepLR": {"step_size": COUNT, "gamma": GAMMA},
    "torch.optim.lr_scheduler.ExponentialLR": {"gamma": GAMMA},
    "torch.optim.lr_scheduler.CosineAnnealingWarmRestarts": {
        "T_0": COUNT,
        "T_mult": COUNT,
        "eta_min": NON_NEGATIVE,
    },
    "optexp.optim.schedules.cosine": {"eta_min": NON_NEGATIVE},
    "optexp.optim.schedules.CyclicSine": {"max_lr": POSITIVE, "step_size": COUNT},
    "torch.optim.lr_scheduler.CyclicLR": {
        "base_lr": POSITIVE,
        "max_lr": POSITIVE,
        "step_size_up": COUNT,
        "step_size_down": COUNT.or_null(),
        "gamma": GAMMA,
        "cycle_momentum": BOOL,
    },
    "torch.optim.lr_scheduler.OneCycleLR": {
        "max_lr": POSITIVE,
        "pct_start": OPEN_FRACTION,
        "anneal_strategy": one_of("cos", "linear"),
        "div_factor": POSITIVE,
        "final_div_factor": POSITIVE,
        "three_phase": BOOL,
        "cycle_momentum": BOOL,
    },
    "torch.optim.lr_scheduler.ReduceLROnPlateau": {
        "factor": in_range(0, 1, "()"),
        "patience": COUNT0,
        "threshold": NON_NEGATIVE,
        "threshold_mode": one_of("rel", "abs"),
        "cooldown": COUNT0,
        "min_lr": NON_NEGATIVE,
    },
    "torch.nn.CrossEntropyLoss": {"label_smoothing": PROBABILITY},
    "torch.nn.MultiMarginLoss": {"margin": POSITIVE, "p": one_of(1, 2)},
    "optexp.models.mlp": {
        "hidden": list_of(COUNT, "a list of integers >= 1, e.g. [128, 128]"),
        **DROPOUT_AND_NORM,
    },
    "optexp.models.cnn": {"channels": WIDTHS, **DROPOUT_AND_NORM},
    "optexp.models.cnn1d": {
        "channels": WIDTHS,
        "kernel_sizes": list_of(COUNT, "a list of integers >= 1, e.g. [5, 3, 3]"),
        "stride": COUNT,
        **DROPOUT_AND_NORM,
    },
    "optexp.models.gru": {"hidden": COUNT, "layers": COUNT, "bidirectional": BOOL},
    "optexp.models.quadratic": {"hessian_seed": SEED},
    "optexp.models.transformer": {
        "width": COUNT,
        "heads": COUNT,
        "depth": COUNT,
        "vocab_size": COUNT.or_null(),
    },
    "dataset": {"val_fraction": OPEN_FRACTION, "test_fraction": FRACTION, "seed": SEED},
    "optexp.data.datasets.torchvision_set": {"download": BOOL},
    "optexp.data.files.image_folder": {
        "image_size": COUNT,
        "workers": COUNT0.or_null("null, or an integer >= 0 (0: in-process)"),
    },
    "optexp.data.generated.synthetic": {
        "noise": NON_NEGATIVE,
        "n_samples": int_at_least(10),
        "num_classes": int_at_least(2),
    },
    "optexp.data.generated.mnist1d": {"num_samples": int_at_least(20), "generator_seed": SEED},
    "optexp.data.generated.mnist1d_autoencoder": {
        "num_samples": int_at_least(20),
        "generator_seed": SEED,
    },
    "optexp.data.generated.noisy_quadratic": {
        "dim": int_at_least(2),
        "n_samples": int_at_least(10),
        "noise": NON_NEGATIVE,
    },
    "optexp.data.generated.token_lookup": {
        "length": int_at_least(2),
        "vocab": int_at_least(2),
        "n_samples": int_at_least(10),
    },
    "optexp.data.augment.FlipRotateJitter": {
        "flip": PROBABILITY,
        "degrees": in_range(0, 180),
        "brightness": PROBABILITY,
        "contrast": PROBABILITY,
        "saturation": PROBABILITY,
    },
    "optexp.data.augment.CropFlip": {"padding": COUNT0, "flip": PROBABILITY},
    "regularizer": {"regularize_bias_and_norm": BOOL},
    "optexp.regularizers.NormPenalty": {"l1": NON_NEGATIVE, "l2": NON_NEGATIVE},
}

BETTER = {"val/loss": "min", "val/acc": "max"}  # the early-stopping mode each monitor needs
ABSENT = object()  # a key the config does not have

GROUPS_WITH_TARGET = ("dataset", "model", "loss", "optimizer")
OPTIONAL_GROUPS = ("augmentation", "scheduler", "regularizer")


def parameter_rules(group: str, target: str | None) -> dict[str, Rule]:
    """The rules on the parameters of `group`'s part when it builds `target`."""
    return PARAMETER_RULES.get(group, {}) | PARAMETER_RULES.get(target or "", {})


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError for a missing part, a non-finite number, or the first value
    outside its allowed range."""
    for group in GROUPS_WITH_TARGET:
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(group, node, f"a config with _target_, e.g. {group}=<option>")
    for group in OPTIONAL_GROUPS:
        if not isinstance(cfg.get(group), DictConfig | None):
            raise ConfigError(group, cfg.get(group), f"an option, {group}=<option>, or null")
    tree = OmegaConf.to_container(cfg, resolve=False)  # interpolations stay as text
    tree.pop("hydra", None)  # the callback sees Hydra's own node too
    check_known_keys(tree)
    for key, value in _numbers(tree):
        if not abs(value) <= FLOAT32_MAX:  # NaN and inf too; torch computes in float32
            raise ConfigError(key, value, f"a finite number, |x| <= {FLOAT32_MAX:.3g}")
    check_rules(cfg, knob_rules())
    check_parameters(cfg)
    monitor, mode = cfg.trainer.early_stopping.monitor, cfg.trainer.early_stopping.mode
    if BETTER.get(monitor, mode) != mode:
        raise ConfigError(
            "trainer.early_stopping.mode",
            mode,
            f"{BETTER[monitor]} for monitor={monitor}",
            problem=f"does not fit monitor={monitor}: the best epoch would be the worst",
        )


def check_rules(cfg: DictConfig, rules: dict[str, Rule], strict: bool = True) -> None:
    """An absent key is not checked, nor null where the rule allows it. `strict=False`
    (Hydra's settings): neither is null, nor a value that cannot be resolved yet (Hydra's
    job number before the job)."""
    for key, rule in rules.items():
        value = OmegaConf.select(cfg, key, default=ABSENT, throw_on_resolution_failure=strict)
        if value is ABSENT or (value is None and not strict):
            continue
        if isinstance(value, ListConfig):
            value = OmegaConf.to_container(value)
        if not rule.accepts(value):
            raise ConfigError(key, value, rule.allowed)


def check_parameters(cfg: DictConfig) -> None:
    """Each part's parameters against the rules of its group and of its target."""
    for group in (*GROUPS_WITH_TARGET, *OPTIONAL_GROUPS):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and node:
            target = node.get("_target_")
            rules = parameter_rules(group, target)
            check_rules(cfg, {f"{group}.{key}": rule for key, rule in rules.items()})


def check_known_keys(tree: dict[str, Any]) -> None:
    """Refuse a key nothing reads (added with `+`): one outside the schema, or one inside
    an optional part left empty (`+regularizer.l2=0.1` with regularizer=none). Keys of
    parts with a `_target_` are checked against its signature when built (`optexp.parts`)."""
    for key, value, known in _unknown_keys(tree, OptexpConfig):
        parent, _, name = key.rpartition(".")
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
        raise ConfigError(
            key, value, hint + f"the keys read here: {', '.join(known)}", "is not read by optexp"
        )
    for group in OPTIONAL_GROUPS:
        node = tree.get(group)
        if isinstance(node, dict) and node and "_target_" not in node:
            key = next(iter(node))
            raise ConfigError(
                f"{group}.{key}",
                node[key],
                f"an option of {group} that has it, {group}=<option> (optexp --help lists them)",
                problem=f"is not read: the chosen {group} option has no parameters",
            )


def _unknown_keys(
    tree: dict[str, Any], schema: type, prefix: str = ""
) -> Iterator[tuple[str, Any, list[str]]]:
    """(key, value, the schema's keys there) for each key of `tree` outside `schema`."""
    hints = typing.get_type_hints(schema)
    for key, value in tree.items():
        if key not in hints:
            yield f"{prefix}{key}", value, list(hints)
        elif dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            yield from _unknown_keys(value, hints[key], f"{prefix}{key}.")


def _numbers(tree: Any, key: str = "") -> Iterator[tuple[str, float]]:
    """(key, value) of every float in a plain config tree, lists included."""
    if isinstance(tree, float):
        yield key, tree
    elif isinstance(tree, dict | list):
        items = tree.items() if isinstance(tree, dict) else enumerate(tree)
        for name, sub in items:
            yield from _numbers(sub, f"{key}.{name}" if key else str(name))


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


def check_data(data: Data, node: DictConfig) -> None:
    """Splits a run can train and evaluate on: fractions that leave at least two training
    samples and one validation sample, and a classification set with two classes or more."""
    n_train, n_val = len(data.train), len(data.val)
    if n_train < 2 or n_val < 1:
        test = (
            f"(with dataset.test_fraction={node.test_fraction}) " if "test_fraction" in node else ""
        )
        raise ConfigError(
            "dataset.val_fraction",
            node.get("val_fraction"),
            "fractions that leave at least 2 training samples and 1 validation sample",
            problem=f"{test}leaves {n_train} training and {n_val} validation samples",
        )
    if data.num_classes is not None and data.num_classes < 2:
        key = "dataset.path" if node.get("path") else "dataset"
        value = node.get("path") or node.get("_target_")
        raise ConfigError(key, value, "a set of 2 classes or more", problem="has a single class")


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
