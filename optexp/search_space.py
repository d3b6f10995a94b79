"""A study's trials (AlgoPerf's external tuning): trial `study.trial` of study
`study.index` is a point of the config's `search_space`: the optimizer's
(optexp/configs/search_space/<optimizer>.yaml, which Hydra selects with the optimizer),
or a regularization method's (its own file's, optexp/configs/regularization/<method>.yaml).

The points are a Halton sequence scrambled with the study's index (scipy's `qmc`): the
first N of them cover every range evenly for any N, each study is an independent
scramble, and every method of a study gets the same scramble (paired). A search space
mirrors the config, one spec per searched key:

    optimizer:
      lr: {low: 1.0e-4, high: 1.0e-2, scale: log}
      betas:
        - {low: 0.5, high: 0.98, scale: one_minus_log}   # 1 - beta1, log-uniform
        - {values: [0.999]}                               # a choice (one value: fixed)
    scheduler:
      warmup_epochs: {values: [0.05], times: trainer.epochs}   # 5 % of the run

Scales: `log`, `linear`, `one_minus_log`; `values` is a choice; `times: KEY` multiplies
the drawn value by KEY's. Only ranges and choices of several values take a dimension.
`study.trial=defaults` sets the fixed values only (the self-tuning column).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from optexp.errors import ConfigError

SCALES = ("log", "linear", "one_minus_log")
SPEC_KEYS = {"low", "high", "scale", "values", "times"}


@dataclass(frozen=True)
class Spec:
    """How one key is searched."""

    key: str
    low: float = math.nan
    high: float = math.nan
    scale: str = ""
    values: tuple[Any, ...] = ()
    times: str | None = None

    @property
    def searched(self) -> bool:
        """Whether it takes a dimension of the sequence."""
        return not self.values or len(self.values) > 1

    def at(self, u: float) -> Any:
        """The value at `u` in [0, 1) of its dimension (any `u` for a fixed value)."""
        if self.values:
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        if self.scale == "linear":
            return self.low + u * (self.high - self.low)
        if self.scale == "log":
            return math.exp(math.log(self.low) + u * math.log(self.high / self.low))
        low, high = 1.0 - self.high, 1.0 - self.low  # one_minus_log: 1 - x is log-uniform
        return 1.0 - math.exp(math.log(low) + (1.0 - u) * math.log(high / low))

    def position(self, value: float) -> float:
        """Where `value` lies in the range, 0 at `low` and 1 at `high` on its scale: a
        tuned value near 0 or 1 may be better outside the range."""
        if self.scale == "linear":
            return (value - self.low) / (self.high - self.low)
        if self.scale == "log":
            return math.log(value / self.low) / math.log(self.high / self.low)
        return math.log((1 - self.low) / (1 - value)) / math.log((1 - self.low) / (1 - self.high))


def specs(space: Any, prefix: str = "") -> Iterator[Spec]:
    """Every spec of a search space, in the file's order (raises ConfigError if one is
    malformed)."""
    if isinstance(space, DictConfig | dict) and set(space) & {"low", "values"}:
        yield spec_of(prefix.rstrip("."), space)
    elif isinstance(space, DictConfig | dict):
        for name, node in space.items():
            yield from specs(node, f"{prefix}{name}.")
    elif isinstance(space, ListConfig | list):
        for i, node in enumerate(space):
            yield from specs(node, f"{prefix}{i}.")
    else:
        where = f"search_space.{prefix.rstrip('.')}"
        raise ConfigError(where, space, "{low, high, scale} or {values: [...]}")


def spec_of(key: str, node: Any) -> Spec:
    where = f"search_space.{key}"
    node = OmegaConf.to_container(node) if isinstance(node, DictConfig) else dict(node)
    if unknown := set(node) - SPEC_KEYS:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}", "?", ", ".join(sorted(SPEC_KEYS)))
    times = node.get("times")
    if "values" in node:
        values = node["values"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.values", values, "a non-empty list")
        return Spec(key, values=tuple(values), times=times)
    scale = node.get("scale", "log")
    if scale not in SCALES:
        raise ConfigError(f"{where}.scale", scale, " | ".join(SCALES))
    low, high = node.get("low"), node.get("high")
    if not (_number(low) and _number(high) and low < high):
        raise ConfigError(f"{where}.high", high, f"a number above low ({low})")
    if scale == "log" and low <= 0:
        raise ConfigError(f"{where}.low", low, "a number > 0 (a log scale)")
    if scale == "one_minus_log" and not 0 <= low < high < 1:
        raise ConfigError(f"{where}.high", high, "low < high < 1 (1 - x on a log scale)")
    return Spec(key, float(low), float(high), scale, times=times)


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def points(dimensions: int, study: int, count: int) -> list[list[float]]:
    """The first `count` points of study `study`'s scrambled Halton sequence in
    [0, 1)^dimensions."""
    if dimensions == 0:
        return [[] for _ in range(count)]
    from scipy.stats import qmc  # scipy is heavy: imported when a trial is drawn

    return qmc.Halton(d=dimensions, scramble=True, seed=study).random(count).tolist()


def trial_values(space: Any, study: int, trial: int) -> dict[str, Any]:
    """The values of trial `trial` of study `study`: key -> value, before `times`."""
    all_specs = list(specs(space))
    searched = [s for s in all_specs if s.searched]
    u = iter(points(len(searched), study, trial + 1)[trial])
    return {s.key: s.at(next(u) if s.searched else 0.0) for s in all_specs}


def with_trial(cfg: DictConfig) -> DictConfig:
    """`cfg` with its trial's values written in (a copy), or `cfg` itself when it is not a
    trial (`study.trial` null). `study.trial=defaults` writes only the fixed values (a
    schedule, a warm-up): the method at its own defaults, AlgoPerf's self-tuning column."""
    study = cfg.get("study")
    if study is None or study.get("trial") is None:
        return cfg
    space = cfg.get("search_space")
    if not space:
        raise ConfigError(
            "study.trial",
            study.trial,
            "null, or a search space for the optimizer: search_space/<optimizer>.yaml in a "
            "config folder",
            problem="draws a point of the optimizer's search space, and it has none",
        )
    defaults = study.trial == "defaults"  # the method as configured, in the study's setting
    values = trial_values(space, study.index, 0 if defaults else study.trial)
    out = copy.deepcopy(cfg)
    for s in specs(space):
        if defaults and s.searched:
            continue
        value = values[s.key]
        if s.times is not None:
            value = value * OmegaConf.select(cfg, s.times, throw_on_missing=True)
        OmegaConf.update(out, s.key, value, merge=False, force_add=False)
    return out


def describe(cfg: DictConfig) -> str | None:
    """`study 1, trial 3: optimizer.lr=0.0043 ...`: the searched values of a trial's
    config (after `with_trial`), for the run's first line; None if it is not a trial."""
    study = cfg.get("study")
    if study is None or study.get("trial") is None:
        return None
    searched = [s for s in specs(cfg.search_space) if s.searched] if cfg.search_space else []
    shown = " ".join(
        f"{s.key}={OmegaConf.select(cfg, s.key):.4g}" for s in searched if not s.values
    )
    return f"study {study.index}, trial {study.trial}: {shown or 'fixed values only'}"
