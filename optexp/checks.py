"""Every rule on values, applied in one place.

`check_config` runs on the composed config, before anything is built or written: each
knob's rule (kept beside its default in `optexp.config`), each part's parameters (the
table `optexp.rules.PARAMETER_RULES`) and the knobs that cannot work together; Hydra's
own settings are `optexp.cli.settings`. The `check_*` functions below compare parts with
each other (the loss with the targets, the model and augmentation with
the input shape, the schedule with its warm-up, ...); `optexp.parts.build_parts` calls
them as the parts are built, so they too run once, before training and before the run
writes anything.

Importing this module costs no torch import: config errors answer fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from optexp import intent
from optexp.config import OptexpConfig, knob_rules
from optexp.errors import Advice, ConfigError, Option
from optexp.rules import FLOAT32_MAX, Rule, parameter_rules

if TYPE_CHECKING:
    from optexp.config import TrainerConfig
    from optexp.data import Data

BETTER = {"val/loss": "min", "val/acc": "max"}  # the early-stopping mode each monitor needs
CLASSIFICATION_ONLY = ("val/acc",)  # monitors a regression run does not measure
ABSENT = object()  # a key the config does not have

GROUPS_WITH_TARGET = ("dataset", "model", "loss", "optimizer")
OPTIONAL_GROUPS = ("augmentation", "scheduler", "regularizer")


# Optimizers that estimate their own step size: lr multiplies the estimate (1 is the
# method); the knob that scales the step instead.
LEARNING_RATE_FREE = {"prodigyopt.Prodigy": "optimizer.d_coef"}


def advise_learning_rate_free(node: DictConfig) -> None:
    """A warning (`Advice`) for a learning-rate-free optimizer's lr far from 1."""
    lr, target = node.get("lr"), node.get("_target_")
    if target not in LEARNING_RATE_FREE or not isinstance(lr, int | float) or 0.1 <= lr <= 10:
        return
    warnings.warn(
        f"optimizer.lr={lr:g} with {intent.option('optimizer', target)}: it is learning-rate"
        f" free and estimates its step size d itself; lr multiplies that estimate, so every"
        f" step is {lr:g} times the estimated one. Leave lr=1; to scale the step, set"
        f" {LEARNING_RATE_FREE[target]} (the authors: 0.1 to 10).",
        Advice,
        stacklevel=2,
    )


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError for a missing part, or for a value outside its allowed range (a
    non-finite number, a key nothing reads): of several, the one the user typed
    (`optexp.intent.closest`), not the first checked."""
    for group in GROUPS_WITH_TARGET:
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(group, node, f"a config with _target_, e.g. {group}=<option>")
    for group in OPTIONAL_GROUPS:
        if not isinstance(cfg.get(group), DictConfig | None):
            raise ConfigError(group, cfg.get(group), f"an option, {group}=<option>, or null")
    tree = OmegaConf.to_container(cfg, resolve=False)  # interpolations stay as text
    tree.pop("hydra", None)  # the callback sees Hydra's own node too
    errors = list(known_key_errors(tree))
    errors += [
        ConfigError(key, value, f"a finite number, |x| <= {FLOAT32_MAX:.3g}")
        for key, value in _numbers(tree)
        if not abs(value) <= FLOAT32_MAX  # NaN and inf too; torch computes in float32
    ]
    errors += rule_errors(cfg, knob_rules())
    for group in (*GROUPS_WITH_TARGET, *OPTIONAL_GROUPS):  # each part's parameters
        node = cfg.get(group)
        if isinstance(node, DictConfig) and node:
            rules = parameter_rules(group, node.get("_target_"))
            errors += rule_errors(cfg, {f"{group}.{key}": rule for key, rule in rules.items()})
    if errors:
        raise intent.closest(errors, cfg)
    check_trainer(cfg)
    check_regularization_order(cfg)
    advise_learning_rate_free(cfg.optimizer)


def check_regularization_order(cfg: DictConfig) -> None:
    """`+regularization` typed after `+problem`: the later one wins, and a problem's base
    (no weight decay, no early stopping, the last weights tested) would undo the method."""
    typed = intent.typed_keys(cfg)
    both = "problem" in typed and "regularization" in typed
    if both and typed.index("regularization") < typed.index("problem"):
        raise ConfigError(
            "regularization",
            Option(intent.chosen("regularization", cfg) or "?"),
            "+regularization=METHOD after +problem=NAME",
            problem="comes before +problem on the command line, whose base would undo it",
        )


def check_trainer(cfg: DictConfig) -> None:
    """The trainer's knobs that cannot work together (the monitor and its mode are
    `check_monitor`'s, once the task is known)."""
    trainer = cfg.trainer
    if trainer.ema.enabled and trainer.swa.enabled:
        raise ConfigError(
            "trainer.swa.enabled", True, "false with trainer.ema.enabled=true (one average)"
        )
    if trainer.swa.enabled and trainer.swa.start_epoch >= trainer.epochs:
        raise ConfigError(
            "trainer.swa.start_epoch",
            trainer.swa.start_epoch,
            f"an epoch before the last (trainer.epochs={trainer.epochs})",
            problem="leaves no epoch to average",
        )
    lr_range = cfg.get("lr_range")
    if lr_range is not None and lr_range.min_lr >= lr_range.max_lr:
        raise ConfigError(
            "lr_range.max_lr",
            lr_range.max_lr,
            f"a learning rate above lr_range.min_lr={lr_range.min_lr}",
        )
    ranks = trainer.devices * trainer.num_nodes
    if ranks > 1 and trainer.batch_size % ranks and not cfg.optimizer.get("full_batch"):
        raise ConfigError(
            "trainer.batch_size",
            trainer.batch_size,
            f"a multiple of devices x num_nodes = {ranks} (each rank takes an equal part)",
        )
    if trainer.accumulate_batches > 1 and cfg.optimizer.get("full_batch"):
        raise ConfigError(
            "trainer.accumulate_batches",
            trainer.accumulate_batches,
            "1 with a full-batch optimizer (one batch is the whole training set)",
        )


def check_rules(cfg: DictConfig, rules: dict[str, Rule], strict: bool = True) -> None:
    """Raise the first of `rule_errors`."""
    for error in rule_errors(cfg, rules, strict):
        raise error


def rule_errors(
    cfg: DictConfig, rules: dict[str, Rule], strict: bool = True
) -> Iterator[ConfigError]:
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
            yield ConfigError(key, value, rule.allowed)


def known_key_errors(tree: dict[str, Any]) -> Iterator[ConfigError]:
    """A key nothing reads (added with `+`): one outside the schema, or one inside an
    optional part left empty (`+regularizer.l2=0.1` with regularizer=none). Keys of parts
    with a `_target_` are checked against its signature when built (`optexp.parts`)."""
    for key, value, known in _unknown_keys(tree, OptexpConfig):
        parent, _, name = key.rpartition(".")
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
        yield ConfigError(
            key, value, hint + f"the keys read here: {', '.join(known)}", "is not read by optexp"
        )
    for group in OPTIONAL_GROUPS:
        node = tree.get(group)
        if isinstance(node, dict) and node and "_target_" not in node:
            key = next(iter(node))
            yield ConfigError(
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
    """A part that takes samples shaped `dims` (e.g. "C, H, W") refuses other inputs.
    `option`: the built-in option's name, where the user's own option is not known."""
    if len(input_shape) != len(dims.split(",")):
        raise ConfigError(
            group,
            Option(intent.chosen(group) or option),
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
            intent.option("loss", type(loss_fn).__name__),
            "loss=mse for a regression dataset",
            problem="needs class labels, but the dataset has real-valued targets",
        )


def check_closure(closure: bool, target: str, trainer: TrainerConfig, ranks: int = 1) -> None:
    """An optimizer that evaluates the loss itself (L-BFGS, SAM) takes one batch per step,
    on one process (each rank would see its own loss), and no fp16 gradient scaling:
    GradScaler's step cannot take a closure."""
    if not closure:
        return
    if ranks > 1:
        raise ConfigError(
            "trainer.devices",
            trainer.devices,
            "1",
            problem=f"cannot split {target}'s steps, which evaluate the loss themselves",
        )
    if trainer.precision == "fp16":
        raise ConfigError(
            "trainer.precision",
            "fp16",
            "32 | bf16",
            problem=f"cannot scale the gradients of {target}, which steps with a closure",
        )
    if trainer.accumulate_batches > 1:
        raise ConfigError(
            "trainer.accumulate_batches",
            trainer.accumulate_batches,
            "1",
            problem=f"cannot accumulate for {target}, which evaluates each batch itself",
        )


def check_optimizer_weights(
    target: str, trainer: TrainerConfig, scheduler: DictConfig | None
) -> None:
    """An optimizer that keeps the weights it is evaluated at (Schedule-Free) is itself the
    average and the schedule: EMA or SWA on its training weights, or a schedule of
    optexp's on its lr, is refused."""
    option = intent.option("optimizer", target)
    for name in ("ema", "swa"):
        if getattr(trainer, name).enabled:
            raise ConfigError(
                f"trainer.{name}.enabled",
                True,
                f"false with optimizer={option}",
                problem=f"would average {option}'s training weights, not those it evaluates at",
            )
    scheduler = scheduler or DictConfig({})  # none: a constant lr
    constant = scheduler.get("_target_") in (None, "torch.optim.lr_scheduler.ConstantLR")
    if not constant or scheduler.get("factor", 1.0) != 1.0 or scheduler.get("warmup_epochs"):
        raise ConfigError(
            "scheduler",
            Option(intent.chosen("scheduler") or scheduler.get("_target_")),
            "constant (the optimizer's own warm-up: optimizer.warmup_steps)",
            problem=f"would change the lr of optimizer={option}, which replaces a schedule",
        )


def check_sam_base(base_keeps_weights: bool, node: DictConfig) -> None:
    """SAM steps its base optimizer: one that keeps evaluation weights (Schedule-Free)
    would be evaluated at its training weights, silently."""
    if base_keeps_weights:
        raise ConfigError(
            "optimizer.base",
            node.get("base"),
            "an optimizer without train() / eval() (not a Schedule-Free one)",
            problem="keeps evaluation weights that SAM's steps do not switch to",
        )


def check_mixing(augment: object, loss_fn: object) -> None:
    """Mixup and cutmix mix class labels (the augmentation refuses a regression set): the
    loss must take class probabilities, as cross-entropy does; hinge and mse cannot."""
    from torch import nn

    if getattr(augment, "mixes_labels", False) and not isinstance(loss_fn, nn.CrossEntropyLoss):
        raise ConfigError(
            "loss",
            type(loss_fn).__name__,
            "cross_entropy with mixup or cutmix",
            problem="cannot take the mixed (soft) labels of mixup or cutmix",
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
        value = node.get("path") or intent.option("dataset", node.get("_target_"))
        raise ConfigError(key, value, "a set of 2 classes or more", problem="has a single class")


def check_monitor(monitor: str, mode: str, data: Data) -> None:
    """The early-stopping monitor must be measured by the run, and its mode must fit it;
    a mismatch is named by the key the user typed (`optexp.intent`)."""
    key = "trainer.early_stopping"
    if monitor in CLASSIFICATION_ONLY and not data.is_classification:
        measured = [name for name in BETTER if name not in CLASSIFICATION_ONLY]
        raise ConfigError(
            f"{key}.monitor",
            monitor,
            " | ".join(measured),
            problem="is not measured by a regression run (the dataset has real-valued targets)",
        )
    better = BETTER.get(monitor, mode)
    if better == mode:
        return
    typed = intent.typed_keys()
    if f"{key}.monitor" in typed and f"{key}.mode" not in typed:  # the mode is the default
        raise ConfigError(
            f"{key}.monitor",
            monitor,
            f"{monitor} with {key}.mode={better}",
            problem=f"needs {key}.mode={better}, but the mode is {mode}",
        )
    raise ConfigError(
        f"{key}.mode",
        mode,
        f"{better} for monitor={monitor}",
        problem=f"does not fit monitor={monitor}: the best epoch would be the worst",
    )


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
