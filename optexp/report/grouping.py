"""Runs into groups (the seeds of one configuration), each metric over a group (`Stat`),
and the value of a swept key chosen on validation (`select_best`, `Choice`)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from optexp.report.runs import METRICS, Metric, Run
from optexp.rundir import Status


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None  # sample std (ddof=1); None below two values
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) > 1 else None
        return cls(mean, std, len(values))

    def show(self, fmt: str) -> str:
        if self.mean is None:
            return "-"
        spread = "" if self.std is None else f" ± {self.std:{fmt}}"
        return f"{self.mean:{fmt}}{spread} ({self.n})"


@dataclass
class Group:
    settings: dict[str, str]  # the overrides shared by its runs (seed and ignored keys left out)
    runs: list[Run]

    def stat(self, metric: str) -> Stat:
        return Stat.of([r.values[metric] for r in self.runs if metric in r.values])

    def statuses(self) -> str:
        counts = Counter(r.status for r in self.runs)
        return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def without_diverged_values(runs: Sequence[Run]) -> list[Run]:
    """A diverged run keeps the best values from before it blew up; for tuning and means
    it counts as a run without a value, which ranks its learning rate below every value
    whose runs all finished."""
    return [replace(r, values={}) if r.status == Status.DIVERGED else r for r in runs]


def group_runs(runs: Iterable[Run], ignore: Iterable[str] = ()) -> list[Group]:
    """Runs whose overrides agree except on `seed` and the `ignore` keys form one group."""
    dropped = {"seed", *ignore}
    groups: dict[tuple[tuple[str, str], ...], Group] = {}
    for run in runs:
        settings = {k: v for k, v in sorted(run.overrides.items()) if k not in dropped}
        key = tuple(settings.items())
        groups.setdefault(key, Group(settings, [])).runs.append(run)
    return list(groups.values())


def sort_groups(groups: list[Group], metric: str) -> list[Group]:
    """Best first by the mean of `metric`; groups without a value last."""
    return sorted(groups, key=lambda g: rank(g.stat(metric), METRICS[metric]))


def rank(stat: Stat, metric: Metric) -> tuple[bool, float]:
    """Sort key of a mean, best first in the metric's direction; no value last."""
    if stat.mean is None:
        return (True, 0.0)
    return (False, -stat.mean if metric.higher_is_better else stat.mean)


@dataclass
class Choice:
    """The value of `over` picked on validation for one setting of the other keys."""

    settings: dict[str, str]
    over: str
    candidates: dict[str, Group]  # value of `over` -> its group
    chosen: str

    @property
    def group(self) -> Group:
        return self.candidates[self.chosen]


def select_best(groups: list[Group], by: str, over: str) -> list[Choice]:
    """For each setting of the other keys, the value of `over` with the best mean `by`.

    A value some of whose runs have no `by` (diverged, unfinished) ranks below every
    value whose runs all have one: divergence on some seeds is a bad choice.
    """
    families: dict[tuple[tuple[str, str], ...], dict[str, Group]] = {}
    for group in groups:
        rest = {k: v for k, v in group.settings.items() if k != over}
        value = group.settings.get(over) or group.runs[0].config_value(over)
        families.setdefault(tuple(rest.items()), {})[value] = group
    choices = []
    for rest, candidates in families.items():
        chosen = min(candidates, key=lambda v: _selection_rank(candidates[v], by))
        choices.append(Choice(dict(rest), over, candidates, chosen))
    return choices


def _selection_rank(group: Group, by: str) -> tuple[int, bool, float]:
    stat = group.stat(by)
    return (len(group.runs) - stat.n, *rank(stat, METRICS[by]))


def varying_keys(settings: Sequence[dict[str, str]]) -> tuple[list[str], dict[str, str]]:
    """Keys whose value differs between groups, and the ones all groups share."""
    keys = sorted({k for s in settings for k in s})
    common = {
        k: settings[0][k]
        for k in keys
        if all(k in s for s in settings) and len({s[k] for s in settings}) == 1
    }
    return [k for k in keys if k not in common], common


def as_number(value: str) -> tuple[bool, float, str]:
    """Sort key of a value as written: numbers by value, then anything else by name."""
    try:
        return (False, float(value), value)
    except ValueError:
        return (True, 0.0, value)
