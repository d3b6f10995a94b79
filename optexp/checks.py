"""Every rule on values, in one place.

`check_config` runs on the composed config, before anything is built or written: each
key's range (RULES). The `check_*` functions below it compare parts with each other
(the loss with the targets, the model and augmentation with the input shape, the
schedule with its warm-up, ...); `optexp.parts.build_parts` calls them as the parts are
built, so they too run once, before training and before the run writes anything.

Importing this module costs no torch import: config errors answer fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from optexp.config import ConfigError, OptexpConfig

if TYPE_CHECKING:
    from optexp.data import Data

PRECISIONS = ("32", "bf16", "fp16")
MONITORS = ("val/loss", "val/acc")
TEST_WEIGHTS = ("best", "last")


FLOAT32_MAX = 3.4028234663852886e38  # beyond it a value overflows when torch uses it
SEED_MAX = 2**32 - 1  # numpy's legacy seeding accepts [0, 2**32 - 1]
INT_MAX = 2**31 - 1  # far beyond any sensible count, and safe in torch's int64 arithmetic


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _positive(v: Any) -> bool:
    return _number(v) and v > 0


def _non_negative(v: Any) -> bool:
    return _number(v) and v >= 0


def _fraction(v: Any) -> bool:
    return _number(v) and 0 <= v < 1


def _unit(v: Any) -> bool:
    return _number(v) and 0 <= v <= 1


def _int_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= INT_MAX


def _seed(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= SEED_MAX


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _one_of(*allowed: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in allowed), " | ".join(allowed)


def _ints_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(_int_at_least(low)(n) for n in v)


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _device(v: Any) -> bool:
    kind, _, index = str(v).partition(":")
    return kind in ("auto", "cpu", "cuda", "mps") and (not index or index.isdigit())


COUNT = (_int_at_least(1), "an integer >= 1")
COUNT0 = (_int_at_least(0), "an integer >= 0")
POSITIVE = (_positive, "a number > 0")
NON_NEGATIVE = (_non_negative, "a number >= 0")
FRACTION = (_fraction, "a number in [0, 1)")
PROBABILITY = (_unit, "a number in [0, 1]")
BOOL = (_bool, "true | false")
SEED = (_seed, f"an integer in [0, {SEED_MAX}] (what numpy accepts)")

# key -> (test, what is allowed), for every knob of every option file under configs/ (and
# the schema's): tests/test_walk_inputs.py tries bad values on each. A key absent from the
# config is not checked, nor null where the allowed text says "null"; non-finite numbers
# are refused for every key.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": SEED,
    "data_seed": SEED,
    "trainer.epochs": COUNT,
    "trainer.batch_size": COUNT,
    "trainer.eval_batch_size": COUNT,
    "trainer.precision": _one_of(*PRECISIONS),
    "trainer.device": (_device, "auto | cpu | cuda | cuda:N | mps"),
    "trainer.grad_clip": (_positive, "null or a number > 0"),
    "trainer.divergence_threshold": (_positive, "null or a number > 0"),
    "trainer.early_stopping.monitor": _one_of(*MONITORS),
    "trainer.early_stopping.mode": _one_of("min", "max"),
    "trainer.early_stopping.patience": COUNT0,
    "trainer.early_stopping.min_delta": NON_NEGATIVE,
    "trainer.checkpoint.every": COUNT,
    "trainer.limit_batches": (_int_at_least(1), "null or an integer >= 1"),
    "trainer.test_weights": _one_of(*TEST_WEIGHTS),
    "trainer.histograms_every": COUNT0,
    "optimizer.lr": POSITIVE,
    "optimizer.weight_decay": NON_NEGATIVE,
    "optimizer.momentum": FRACTION,
    "optimizer.dampening": PROBABILITY,
    "optimizer.alpha": FRACTION,
    "optimizer.betas": (
        lambda v: isinstance(v, list) and len(v) == 2 and all(_fraction(b) for b in v),
        "two numbers in [0, 1), e.g. [0.9, 0.999]",
    ),
    "optimizer.eps": POSITIVE,
    "optimizer.lr_decay": NON_NEGATIVE,
    "optimizer.initial_accumulator_value": NON_NEGATIVE,
    "optimizer.nesterov": BOOL,
    "optimizer.centered": BOOL,
    "optimizer.amsgrad": BOOL,
    "optimizer.full_batch": BOOL,
    "optimizer.regularize_bias_and_norm": BOOL,
    "scheduler.interval": _one_of("epoch", "step"),
    "scheduler.warmup_epochs": NON_NEGATIVE,
    "scheduler.factor": (lambda v: _positive(v) and v <= 1, "a number in (0, 1]"),
    "scheduler.gamma": (lambda v: _positive(v) and v <= 1e3, "a number in (0, 1000]"),
    "scheduler.total_iters": COUNT0,
    "scheduler.step_size": COUNT,
    "scheduler.step_size_up": COUNT,
    "scheduler.step_size_down": (_int_at_least(1), "null or an integer >= 1"),
    "scheduler.T_0": COUNT,
    "scheduler.T_mult": COUNT,
    "scheduler.eta_min": NON_NEGATIVE,
    "scheduler.max_lr": POSITIVE,
    "scheduler.base_lr": POSITIVE,
    "scheduler.pct_start": (lambda v: _number(v) and 0 < v < 1, "a number in (0, 1)"),
    "scheduler.div_factor": POSITIVE,
    "scheduler.final_div_factor": POSITIVE,
    "scheduler.anneal_strategy": _one_of("cos", "linear"),
    "scheduler.three_phase": BOOL,
    "scheduler.cycle_momentum": BOOL,
    "scheduler.patience": COUNT0,
    "scheduler.threshold": NON_NEGATIVE,
    "scheduler.threshold_mode": _one_of("rel", "abs"),
    "scheduler.cooldown": COUNT0,
    "scheduler.min_lr": NON_NEGATIVE,
    "model.hidden": (_ints_at_least(1), "a list of integers >= 1, e.g. [128, 128]"),
    "model.channels": (_ints_at_least(1), "a list of integers >= 1, e.g. [32, 64]"),
    "model.kernel_sizes": (_ints_at_least(1), "a list of integers >= 1, e.g. [5, 3, 3]"),
    "model.stride": COUNT,
    "model.dropout": FRACTION,
    "model.batch_norm": BOOL,
    "regularizer.l1": NON_NEGATIVE,
    "regularizer.l2": NON_NEGATIVE,
    "regularizer.regularize_bias_and_norm": BOOL,
    "loss.label_smoothing": PROBABILITY,
    "loss.margin": POSITIVE,
    "loss.p": (lambda v: v in (1, 2) and not isinstance(v, bool), "1 | 2"),
    "dataset.val_fraction": (lambda v: _number(v) and 0 < v < 1, "a number in (0, 1)"),
    "dataset.test_fraction": FRACTION,
    "dataset.noise": NON_NEGATIVE,
    "dataset.n_samples": (_int_at_least(10), "an integer >= 10"),
    "dataset.num_samples": (_int_at_least(20), "an integer >= 20"),
    "dataset.num_classes": (_int_at_least(2), "an integer >= 2"),
    "dataset.image_size": COUNT,
    "dataset.workers": (_int_at_least(0), "null, or an integer >= 0 (0: in-process)"),
    "dataset.download": BOOL,
    "dataset.seed": SEED,
    "dataset.generator_seed": SEED,
    "augmentation.flip": (_unit, "a probability in [0, 1]"),
    "augmentation.degrees": (lambda v: _non_negative(v) and v <= 180, "a number in [0, 180]"),
    "augmentation.brightness": (_unit, "a number in [0, 1]"),
    "augmentation.contrast": (_unit, "a number in [0, 1]"),
    "augmentation.saturation": (_unit, "a number in [0, 1]"),
    "augmentation.padding": COUNT0,
}

# Hydra's knobs that optexp's presets set (its sweepers, launchers and folders): a bad
# value fails inside Hydra or a plugin, often with a traceback, after files are written.
HYDRA_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "hydra.run.dir": (lambda v: isinstance(v, str) and v.strip(), "a folder path"),
    "hydra.sweep.dir": (lambda v: isinstance(v, str) and v.strip(), "a folder path"),
    "hydra.sweep.subdir": (lambda v: isinstance(v, str) and v.strip(), "a folder name"),
    "hydra.job.chdir": (
        lambda v: v is False,
        "false (optexp resolves paths against the folder it is started in)",
    ),
    "hydra.sweeper.max_batch_size": (_int_at_least(1), "null or an integer >= 1"),
    "hydra.sweeper.n_trials": COUNT,
    "hydra.sweeper.n_jobs": COUNT,
    "hydra.sweeper.max_failure_rate": PROBABILITY,
    "hydra.sweeper.direction": (
        lambda v: all(  # a name, or the plugin's own Direction enum; one per objective
            getattr(d, "name", d) in ("minimize", "maximize") for d in _as_list(v)
        ),
        "minimize | maximize (lr_optuna: from trainer.early_stopping.mode, min | max)",
    ),
    "hydra.sweeper.storage": (
        lambda v: isinstance(v, str) and "://" in v,
        "null (in memory) or a database URL, e.g. sqlite:///study.db",
    ),
    "hydra.launcher.backend": (
        lambda v: v in ("loky", "threading", "multiprocessing"),
        "null | loky | threading | multiprocessing",
    ),
    "hydra.launcher.n_jobs": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v != 0,
        "an integer >= 1, or -N for all cores but N - 1",
    ),
    "hydra.launcher.timeout_min": COUNT,
    "hydra.launcher.cpus_per_task": COUNT,
    "hydra.launcher.tasks_per_node": COUNT,
    "hydra.launcher.nodes": COUNT,
    "hydra.launcher.array_parallelism": COUNT,
}
BETTER = {"val/loss": "min", "val/acc": "max"}  # the early-stopping mode each monitor needs
FINISHED = ("completed", "early_stopped", "diverged")  # a run's statuses that are results
ABSENT = object()  # a key the config does not have

GROUPS_WITH_TARGET = ("dataset", "model", "loss", "optimizer")
OPTIONAL_GROUPS = ("augmentation", "scheduler", "regularizer")


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
    check_rules(cfg, RULES)
    monitor, mode = cfg.trainer.early_stopping.monitor, cfg.trainer.early_stopping.mode
    if BETTER.get(monitor, mode) != mode:
        raise ConfigError(
            "trainer.early_stopping.mode",
            mode,
            f"{BETTER[monitor]} for monitor={monitor}",
            problem=f"does not fit monitor={monitor}: the best epoch would be the worst",
        )


def check_rules(
    cfg: DictConfig, rules: dict[str, tuple[Callable[[Any], bool], str]], strict: bool = True
) -> None:
    """An absent key is not checked, nor null where the rule allows it. `strict=False`
    (Hydra's settings): neither is null, nor a value that cannot be resolved yet (Hydra's
    job number before the job)."""
    for key, (test, allowed) in rules.items():
        value = OmegaConf.select(cfg, key, default=ABSENT, throw_on_resolution_failure=strict)
        if value is ABSENT or (value is None and (not strict or "null" in allowed)):
            continue
        if isinstance(value, ListConfig):
            value = OmegaConf.to_container(value)
        try:
            ok = test(value)
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(key, value, allowed)


def check_hydra(cfg: DictConfig, multirun: bool) -> None:
    """Hydra's own settings, before Hydra acts on them. A single run (no -m) must not ask
    for a sweep: without -m, Hydra would run the defaults once, silently."""
    monitoring = ("trainer.early_stopping.monitor", "trainer.early_stopping.mode")
    check_rules(cfg, {key: RULES[key] for key in monitoring})  # a sweeper's direction
    check_rules(cfg, HYDRA_RULES, strict=False)
    if cfg.hydra.output_subdir is None:
        allowed = "a folder name, e.g. .hydra (optexp-report reads each run's overrides there)"
        raise ConfigError("hydra.output_subdir", None, allowed)
    if multirun:
        return
    choices = cfg.hydra.runtime.choices
    params = OmegaConf.select(cfg, "hydra.sweeper.params")
    if params:
        preset = next(
            (f"{g}={choices[g]}" for g in ("hparams_search", "experiment") if choices.get(g)), None
        )
        raise ConfigError(
            "hydra.sweeper.params",
            params,
            f"optexp -m {preset or '...'} (a sweep runs with -m)",
            problem=f"defines a sweep{f' (set by {preset})' if preset else ''}",
        )
    for override in OmegaConf.to_container(cfg.hydra.overrides.task, resolve=False):
        group, _, value = override.partition("=")
        if group in (*GROUPS_WITH_TARGET, *OPTIONAL_GROUPS) and value.startswith("["):
            options = value.strip("[]")
            raise ConfigError(
                group,
                value,
                f"one option, or a sweep: optexp -m {group}={options}",
                problem="lists several options",
            )


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


def check_no_results(run_dir: Path) -> None:
    """A run that starts afresh (or from another run's checkpoint) in `run_dir` would
    replace the results of a finished run there that left no checkpoint to continue."""
    try:
        status = json.loads((run_dir / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return
    if status in FINISHED:
        raise ConfigError(
            "hydra.run.dir",
            str(run_dir),
            "a new folder, or one whose checkpoints/last.pt the run continues",
            problem=f"holds a finished run (status: {status}) that this run would replace",
        )


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
