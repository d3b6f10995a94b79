"""Build everything a run needs from the config, once, before the loop starts.

Each group node names its class or function by `_target_`; `build` calls it with the
node's keys as arguments, plus whatever of the run's context (input shape, number of
outputs, total steps, ...) the target's signature asks for. Keys that the target does
not accept are refused here, with the closest name suggested.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from optexp import checks, intent
from optexp.averaging import OptimizerWeights, WeightAverage, keeps_evaluation_weights
from optexp.config import TrainerConfig
from optexp.data import Data
from optexp.data.augment import for_batches
from optexp.errors import ConfigError, Option, UserError
from optexp.joints import EvaluationWeights
from optexp.optim import param_groups
from optexp.optim.groups import exempt_bias_and_norm, rule_groups
from optexp.optim.schedules import Schedule, swa_phase, with_warmup
from optexp.stopping import EarlyStopping
from optexp.world import World

# optexp's own keys inside a group node: read here, not passed to the target.
OWN_KEYS = {
    "optimizer": ("regularize_bias_and_norm", "full_batch", "bn_batches", "groups"),
    "scheduler": ("interval", "warmup_epochs"),
}
# Training batches that recompute batch norm's statistics at an optimizer's own evaluation
# weights, unless its node sets `bn_batches` (the schedulefree README: a few dozen).
BN_BATCHES = 50
# Devices where torch's Adam, AdamW, SGD and Adagrad have fused kernels.
FUSED_DEVICES = ("cpu", "cuda")


@dataclass
class Parts:
    """Everything a run needs, built from the config once; the loop reads nothing else."""

    trainer: TrainerConfig
    device: torch.device
    data: Data
    data_seed: int  # the batch order of every epoch follows it
    model: nn.Module
    forward: nn.Module  # the model for training steps: DistributedDataParallel across ranks
    world: World  # this process's rank among the run's processes (one: rank 0 of 1)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    closure: bool  # the optimizer evaluates the loss itself (L-BFGS, SAM): step(closure)
    schedule: Schedule
    penalty: Callable[[], torch.Tensor] | None
    # (x, y) -> (x, targets): per image, or mixing images and their labels (mixup, cutmix)
    augment: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None
    weights: EvaluationWeights  # what evaluation uses: the trained, or trainer.ema / swa's
    autocast: Callable[[], AbstractContextManager[Any]]  # mixed precision, or nothing
    scaler: torch.amp.GradScaler  # fp16's gradient scaling; a no-op otherwise
    early_stopping: EarlyStopping
    batch_size: int
    batches_per_epoch: int
    steps_per_epoch: int  # optimizer steps: batches / trainer.accumulate_batches


def build_parts(cfg: DictConfig, world: World | None = None) -> Parts:
    """Build every part, each checked against those it works with (`optexp.checks`), for
    this process's rank of the run (`world`; default: the only one)."""
    # A plain dataclass from here on: a DictConfig lookup costs as much as a small tensor op.
    trainer: TrainerConfig = OmegaConf.to_object(cfg.trainer)
    world = world or World()
    device = resolve_device(trainer.device, trainer.precision, world)
    data, model = build_data_and_model(cfg, trainer, device, world)
    loss_fn = build("loss", cfg.loss)
    checks.check_loss(loss_fn, data)
    optimizer = build_optimizer(cfg.optimizer, model, device)
    closure = needs_closure(optimizer)
    checks.check_closure(closure, cfg.optimizer._target_, trainer, world.size)
    batch_size = len(data.train) if cfg.optimizer.get("full_batch") else trainer.batch_size
    batches = -(-len(data.train) // batch_size)
    steps_per_epoch = -(-batches // trainer.accumulate_batches)
    augment = build_augmentation(cfg.augmentation, data, loss_fn)
    autocast, scaler = mixed_precision(trainer.precision, device)
    return Parts(
        trainer=trainer,
        device=device,
        data=data,
        data_seed=cfg.data_seed,
        model=model,
        forward=data_parallel(model, device, world),
        world=world,
        loss_fn=loss_fn,
        optimizer=optimizer,
        closure=closure,
        schedule=build_schedule(cfg.scheduler, optimizer, trainer, steps_per_epoch),
        penalty=build_optional("regularizer", cfg.regularizer, model=model),
        augment=augment,
        weights=evaluation_weights(cfg, model, optimizer, trainer, data),
        autocast=autocast,
        scaler=scaler,
        early_stopping=EarlyStopping(**vars(trainer.early_stopping)),
        batch_size=batch_size,
        batches_per_epoch=batches,
        steps_per_epoch=steps_per_epoch,
    )


def build_data_and_model(
    cfg: DictConfig, trainer: TrainerConfig, device: torch.device, world: World
) -> tuple[Data, nn.Module]:
    """The dataset (checked, cut to `limit_batches`) and the model shaped for it, both on
    `device` (with SyncBatchNorm across ranks if asked)."""
    data = build("dataset", cfg.dataset, data_dir=cfg.data_dir)
    checks.check_data(data, cfg.dataset)
    if trainer.limit_batches:
        data = data.head(trainer.limit_batches * trainer.batch_size)
    checks.check_monitor(trainer.early_stopping.monitor, trainer.early_stopping.mode, data)
    model = build("model", cfg.model, input_shape=data.input_shape, num_outputs=data.num_outputs)
    layout = None
    if trainer.channels_last and len(data.input_shape) == 3:  # images: (C, H, W)
        layout = torch.channels_last  # 4-D weights and image batches; the rest is unchanged
    data, model = data.to(device, layout), model.to(device, memory_format=layout)
    if trainer.sync_batchnorm and world.size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if trainer.compile:
        model.compile()  # in place: state_dict keys, hence checkpoints, stay the same
    return data, model


def build_augmentation(node: DictConfig | None, data: Data, loss_fn: object) -> Any:
    """The augmentation as the loop calls it, (x, y) -> (x, training targets): per image,
    or mixing images and labels (mixup, cutmix: checked against the loss)."""
    augment = build_optional(
        "augmentation",
        node,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        mean=data.mean,
        std=data.std,
    )
    checks.check_mixing(augment, loss_fn)
    return for_batches(augment)


def evaluation_weights(
    cfg: DictConfig, model: nn.Module, optimizer: Any, trainer: TrainerConfig, data: Data
) -> EvaluationWeights:
    """The weights evaluation uses: those an optimizer keeps (Schedule-Free's x), EMA's or
    SWA's, or the trained ones; refused where they would silently be the wrong ones."""
    checks.check_sam_base(keeps_evaluation_weights(getattr(optimizer, "base", None)), cfg.optimizer)
    if not keeps_evaluation_weights(optimizer):
        return WeightAverage.of(model, trainer)
    checks.check_optimizer_weights(cfg.optimizer._target_, trainer, cfg.scheduler)
    batches = partial(data.train.batches, trainer.eval_batch_size)
    return OptimizerWeights(model, optimizer, batches, cfg.optimizer.get("bn_batches", BN_BATCHES))


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """L-BFGS, and an optimizer class that says so (`requires_closure = True`, as
    `optexp.optim.sam.SAM` does), evaluate the loss themselves: step(closure)."""
    return isinstance(optimizer, torch.optim.LBFGS) or getattr(optimizer, "requires_closure", False)


def build_optimizer(
    node: DictConfig, model: nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    """The optimizer over the model's parameter groups (`optimizer_groups`)."""
    return build(
        "optimizer", node, params=optimizer_groups(node, model), **fused_kernel(node, device)
    )


def optimizer_groups(node: DictConfig, model: nn.Module) -> list[dict[str, Any]]:
    """The parameter groups by the node's rules (`optimizer.groups`), else timm's: biases
    and normalization weights get no weight decay unless `regularize_bias_and_norm`."""
    decay, regularize_all = (
        node.get("weight_decay", 0.0),
        node.get("regularize_bias_and_norm", False),
    )
    if node.get("groups") is None:
        return param_groups(model, decay, regularize_all)
    rules = OmegaConf.to_container(node.groups, resolve=True)
    groups = rule_groups(model, rules, intent.option("model", type(model).__name__))
    return groups if regularize_all else exempt_bias_and_norm(groups, decay)


def fused_kernel(node: DictConfig, device: torch.device) -> dict[str, bool]:
    """`fused=True` (one kernel updates every parameter) for an optimizer that takes a
    `fused` argument, unless the node picks an implementation itself. Torch's own default
    is a loop over tensors on CPU and `foreach` on CUDA."""
    chosen = node.get("fused") is not None or node.get("foreach") is not None
    if chosen or node.get("differentiable") or device.type not in FUSED_DEVICES:
        return {}
    accepted = _accepted_arguments(_resolve_target("optimizer", node._target_)) or []
    return {"fused": True} if "fused" in accepted else {}


def build_schedule(
    node: DictConfig | None,
    optimizer: torch.optim.Optimizer,
    trainer: TrainerConfig,
    steps_per_epoch: int,
) -> Schedule:
    """The schedule over the run's length in its intervals: epochs, or optimizer steps (the
    step budget if it ends the run first), up to an SWA phase if there is one."""
    node = node if node is not None and "_target_" in node else _constant_schedule()
    interval = node.get("interval", "epoch")
    epochs = trainer.swa.start_epoch if trainer.swa.enabled else trainer.epochs
    length = epochs * steps_per_epoch if interval == "step" else epochs
    if trainer.max_steps:
        per_epoch = steps_per_epoch if interval == "epoch" else 1
        length = min(length, -(-trainer.max_steps // per_epoch))
    per_interval = steps_per_epoch if interval == "step" else 1
    warmup = int(node.get("warmup_epochs", 0) * per_interval)
    scheduler = build(
        "scheduler",
        node,
        optimizer=optimizer,
        total_steps=max(length - warmup, 1),  # what is left after the warm-up
        epochs=epochs,
        steps_per_epoch=per_interval,
    )
    checks.check_schedule(scheduler, interval, node.get("warmup_epochs", 0))
    main = with_warmup(optimizer, scheduler, warmup)
    return Schedule(main, interval, **swa_phase(optimizer, trainer))


def _constant_schedule() -> DictConfig:
    return OmegaConf.create(
        {"_target_": "torch.optim.lr_scheduler.ConstantLR", "factor": 1.0, "total_iters": 0}
    )


def build_optional(group: str, node: DictConfig | None, **context: Any) -> Any:
    """An optional part: an empty node (the `none` option) builds nothing."""
    if node is None or "_target_" not in node:
        return None
    return build(group, node, **context)


def build(group: str, node: DictConfig, **context: Any) -> Any:
    """Instantiate `node`, passing the `context` arguments its target accepts."""
    target = _resolve_target(group, node._target_)
    accepted = _accepted_arguments(target)
    own = OWN_KEYS.get(group, ())
    user_keys = [k for k in node if k != "_target_" and k not in own]
    if accepted is not None:
        for key in user_keys:
            if key not in accepted:
                close = difflib.get_close_matches(key, [*accepted, *own], n=1)
                hint = f"did you mean {group}.{close[0]}? " if close else ""
                known = ", ".join(sorted(accepted)) + "".join(f"; optexp's {k}" for k in own)
                raise ConfigError(
                    f"{group}.{key}",
                    node[key],
                    hint + f"parameters of {node._target_}: {known}",
                    problem=f"is not a parameter of {group}={intent.option(group, node._target_)}",
                )
    passed = {
        k: v
        for k, v in context.items()
        if (accepted is None or k in accepted) and k not in user_keys
    }
    values = OmegaConf.to_container(node, resolve=True)
    arguments = {k: _instantiate_nested(values[k]) for k in user_keys}
    try:
        return target(**arguments, **passed)
    except UserError:  # already says what to fix
        raise
    except OSError as cause:  # the file system: name the path setting behind the file
        raise unusable_path(group, arguments, passed, cause) from None
    except Exception as cause:
        given = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        raise ConfigError(
            group,
            Option(intent.chosen(group) or node._target_),
            f"arguments {node._target_} accepts",
            problem=f"was refused by {node._target_} ({given or 'no arguments'}): {cause}",
        ) from None


def unusable_path(
    group: str, arguments: dict[str, Any], passed: dict[str, Any], cause: OSError
) -> ConfigError:
    """A file a part could not read or write, named by the setting that led to it (e.g.
    dataset.path or data_dir) when one is the file or a folder above it."""
    file = Path(cause.filename).absolute() if cause.filename else None
    settings = {f"{group}.{k}": v for k, v in arguments.items()} | passed
    paths = [(k, v) for k, v in settings.items() if isinstance(v, str | Path) and str(v)]
    key, value = next(
        ((k, v) for k, v in paths if file and file.is_relative_to(Path(v).absolute())),
        (group, arguments),
    )
    problem = f"cannot be used: {cause.strerror or cause}" + (f" ({file})" if file else "")
    return ConfigError(key, value, "a path optexp can read (and, for data_dir, write)", problem)


def _instantiate_nested(value: Any) -> Any:
    """A value holding `_target_` nodes (a module inside a model, ...) gets them built by
    Hydra; plain values pass as they are. The node itself is called directly: Hydra's
    `instantiate` would deep-copy it and merge the context (parameters, tensors) into it,
    which costs milliseconds per part (a run's start-up, a sweep's every job)."""
    return instantiate(value, _convert_="all") if _has_target(value) else value


def _has_target(value: Any) -> bool:
    if isinstance(value, dict):
        return "_target_" in value or any(_has_target(v) for v in value.values())
    return isinstance(value, list) and any(_has_target(v) for v in value)


def _resolve_target(group: str, path: str) -> Callable[..., Any]:
    hydra_log = logging.getLogger("hydra.utils")  # logs the failure: the error below says it
    was_disabled, hydra_log.disabled = hydra_log.disabled, True
    try:
        return get_object(path)
    except Exception:
        option = intent.chosen(group)  # None where the command line set the _target_
        raise ConfigError(
            f"{group}._target_",
            path,
            "an importable class or function path",
            problem=(f"(of {group}={option}) " if option else "") + "cannot be imported",
        ) from None
    finally:
        hydra_log.disabled = was_disabled


def _accepted_arguments(target: Callable[..., Any]) -> list[str] | None:
    """Parameter names of `target`, or None when it takes **kwargs (anything goes)."""
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind is not p.VAR_POSITIONAL]


def resolve_device(device: str, precision: str, world: World) -> torch.device:
    """`trainer.device`, auto being cuda when there is one; with several ranks on a node,
    each rank's own GPU (its local rank)."""
    cuda = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    checks.check_device(device, precision, cuda)
    if device == "cuda" and world.size > 1:
        device = f"cuda:{world.local_rank}"
    return torch.device(device)


def data_parallel(model: nn.Module, device: torch.device, world: World) -> nn.Module:
    """The model itself on one process; across ranks, DistributedDataParallel, whose
    backward averages the gradients of the ranks (its construction broadcasts rank 0's
    weights)."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def mixed_precision(
    precision: str, device: torch.device
) -> tuple[Callable[[], AbstractContextManager[Any]], torch.amp.GradScaler]:
    """autocast context and gradient scaler: bf16 needs no scaling, fp16 does."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = nullcontext if dtype is None else partial(torch.autocast, device.type, dtype=dtype)
    return autocast, torch.amp.GradScaler(device.type, enabled=precision == "fp16")
