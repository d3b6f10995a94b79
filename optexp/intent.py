"""What the user asked for, as Hydra composed it: the option picked in each config group
(`loss=hinge`) and the keys set on the command line. A message names these, not what
optexp built from them (`torch.nn.MultiMarginLoss`, the first rule that failed).

Read from Hydra's runtime: the composed config's own `hydra` node (the callback that
checks a run before Hydra writes) or the running job's (`HydraConfig`). Outside Hydra
(`train.run` called directly) nothing is known, and messages name what was built.

Imports nothing heavy: config errors answer fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from optexp.errors import ConfigError, Option


def hydra_node(cfg: DictConfig | None = None) -> Any:
    """Hydra's settings of this run (`hydra.runtime`, `hydra.overrides`), or None."""
    if cfg is not None and "hydra" in cfg:
        return cfg.hydra
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def typed_keys(cfg: DictConfig | None = None) -> list[str]:
    """The keys set on the command line, in order: `loss=hinge` sets loss, `+trainer.x=1`
    and `~trainer.x` set trainer.x."""
    hydra = hydra_node(cfg)
    # As typed: `optimizer.lr=${oops}` is text here, not an interpolation to resolve.
    lines = [] if hydra is None else OmegaConf.to_container(hydra.overrides.task, resolve=False)
    return [str(line).split("=", 1)[0].lstrip("~+") for line in lines]


def chosen(group: str, cfg: DictConfig | None = None) -> str | None:
    """The option picked for `group` (`hinge`); None outside Hydra, or where the command
    line replaced the option's `_target_` (the option no longer says what was built)."""
    hydra = hydra_node(cfg)
    if hydra is None or f"{group}._target_" in typed_keys(cfg):
        return None
    option = hydra.runtime.choices.get(group)
    return None if option is None else str(option)


def option(group: str, built: str) -> Option:
    """`group`'s part as a message names it: the option picked, with what it built as a
    detail (`hinge (MultiMarginLoss)`); what was built alone where no option is known."""
    name = chosen(group)
    return Option(built if name in (None, built) else f"{name} ({built})")


def closest(errors: Sequence[ConfigError], cfg: DictConfig | None = None) -> ConfigError:
    """Of several values that break a rule, the one the user typed (`optimizer.lr=0`),
    else one inside a group they picked on the command line (`optimizer=mine`), else the
    first checked."""
    keys = typed_keys(cfg)
    for error in errors:
        if error.key in keys:
            return error
    for error in errors:
        if any(error.key.startswith(f"{key}.") for key in keys):
            return error
    return errors[0]
