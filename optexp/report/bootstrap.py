"""The bootstrap over seeds, as pure functions of arrays: no run is read here.

A method on a problem is a `Grid`: per value of the swept key (rows) and per seed
(columns), the selection metric, the reported metrics and the epochs to target. A
resample draws the seeds with replacement (`draws`); inside it the swept value is chosen
again (`choose`: the same rule as `grouping.select_best`), so the interval of a tuned
metric includes the chance of tuning to another value. `interval` is the percentile
interval of the resampled values; `rank_probabilities` counts how often each method
takes each rank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

INF = math.inf


@dataclass(frozen=True)
class Interval:
    """A number and its bootstrap interval."""

    estimate: float
    low: float
    high: float

    def show(self, fmt: str) -> str:
        """`0.970 [0.910, 1.000]`; inf shown as `inf` (never reached)."""
        return f"{_num(self.estimate, fmt)} [{_num(self.low, fmt)}, {_num(self.high, fmt)}]"

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high


def _num(x: float, fmt: str) -> str:
    return f"{x:{fmt}}" if math.isfinite(x) else ("inf" if x > 0 else "-inf")


@dataclass
class Grid:
    """One method on one problem. Rows: the values of the swept key, in the order the
    selection sees them; columns: the seeds. nan: no value (diverged, unfinished,
    missing); epochs inf: the target not reached."""

    select: np.ndarray  # (L, S) the selection metric
    higher_is_better: bool  # of the selection metric
    metrics: dict[str, np.ndarray]  # name -> (L, S)
    time: np.ndarray  # (L, S) epochs (or seconds) to target (inf: not reached)


def draws(rng: np.random.Generator, seeds: int, count: int) -> np.ndarray:
    """`count` resamples of `seeds` seed indices, with replacement: (count, seeds)."""
    return rng.integers(0, seeds, size=(count, seeds))


def choose(select: np.ndarray, index: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """The row chosen in each resample: fewest drawn seeds without a value first, then the
    best mean over the drawn seeds; ties go to the first row. (L, S) and (B, S) -> (B,)."""
    values = select[:, index]  # (L, B, S)
    missing = np.isnan(values).sum(axis=2)
    count = values.shape[2] - missing
    total = np.where(np.isnan(values), 0.0, values).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    key = -mean if higher_is_better else mean
    key = np.where(np.isnan(key), INF, key)
    return np.lexsort((key, missing), axis=0)[0]


def mean_at(values: np.ndarray, rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The mean over the drawn seeds of `values` at each resample's row, nan left out
    (nan where none has a value): (L, S), (B,), (B, S) -> (B,)."""
    picked = values[rows[:, None], index]
    count = (~np.isnan(picked)).sum(axis=1)
    total = np.where(np.isnan(picked), 0.0, picked).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def median_of(values: np.ndarray) -> np.ndarray:
    """Median over the last axis, inf counting as the largest value: finite when more
    than half are finite, as `measures.Reach.cost`."""
    return np.median(values, axis=-1)


def tuned_time(grid: Grid, rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Median time to target at each resample's chosen row: (B,)."""
    return median_of(grid.time[rows[:, None], index])


def fastest_time(grid: Grid, index: np.ndarray) -> np.ndarray:
    """AlgoPerf's time: per drawn seed the fastest row to reach the target, then the
    median over the drawn seeds: (B,)."""
    return median_of(grid.time.min(axis=0)[index])


def interval(estimate: float, samples: Sequence[float] | np.ndarray, level: float) -> Interval:
    """The percentile interval of the resampled values: the order statistics at
    (1 - level) / 2 and (1 + level) / 2, no interpolation (inf stays inf)."""
    ordered = np.sort(np.asarray(samples, dtype=float))
    n = len(ordered)
    tail = (1.0 - level) / 2.0
    low = ordered[math.floor(tail * (n - 1))]
    high = ordered[math.ceil((1.0 - tail) * (n - 1))]
    return Interval(estimate, float(low), float(high))


def ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """1 + the number of methods scoring strictly higher: tied methods share the better rank."""
    return {m: 1 + sum(other > s for other in scores.values()) for m, s in scores.items()}


def rank_probabilities(resampled: Sequence[Mapping[str, float]]) -> dict[str, list[float]]:
    """method -> [P(rank 1), P(rank 2), ...] over the resampled scores."""
    methods = sorted({m for scores in resampled for m in scores})
    counts = {m: [0] * len(methods) for m in methods}
    for scores in resampled:
        for m, r in ranks(scores).items():
            counts[m][r - 1] += 1
    total = max(len(resampled), 1)
    return {m: [c / total for c in row] for m, row in counts.items()}
