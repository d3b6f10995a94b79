"""The tuning budget (`budget_curves` -> `Curve`, `budget_profiles`): how good a method is
when only k values of the swept key can be tried, drawn at random from the grid.

Per problem, method and seed, the k-th point of a curve is the expected best validation
value (the `--select-best-by` metric) of k values drawn with replacement from the grid
(`measures.expected_best`, Dodge et al. 2019); a value where the run diverged or did not
finish counts as the worst finished value on the problem. The curve shown is the mean
over seeds, with the min-max band; the profile at budget k scores the methods by that
mean, as the final-metric profile does (an accuracy as its error).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from optexp.report.measures import Profile, budget_curve, final_cost, make_profile
from optexp.report.runs import METRICS
from optexp.report.settings import ReportSettings
from optexp.report.study import Entry, Study, replicate

BUDGETS = (1, 2, 4)  # and the grid's size: the budgets the page scores


@dataclass
class Curve:
    """One method on one problem: E[best of k] for k = 1 .. grid size."""

    problem: str
    method: str
    per_seed: dict[str, list[float]]

    @property
    def ks(self) -> list[int]:
        return list(range(1, self.size + 1))

    @property
    def size(self) -> int:
        return min((len(c) for c in self.per_seed.values()), default=0)

    def mean(self) -> list[float]:
        return [statistics.fmean(c[k] for c in self.per_seed.values()) for k in range(self.size)]

    def low(self) -> list[float]:
        return [min(c[k] for c in self.per_seed.values()) for k in range(self.size)]

    def high(self) -> list[float]:
        return [max(c[k] for c in self.per_seed.values()) for k in range(self.size)]


def failure_value(entries: Sequence[Entry], by: str) -> float:
    """The worst finished value of `by` on a problem: what a failed trial counts as."""
    values = [
        r.values[by]
        for e in entries
        for g in e.choice.candidates.values()
        for r in g.runs
        if by in r.values
    ]
    if not values:
        return math.nan
    return min(values) if METRICS[by].higher_is_better else max(values)


def budget_curves(s: Study) -> list[Curve]:
    """Every method's curve on every problem, in (problem, method) order."""
    higher = METRICS[s.by].higher_is_better
    curves = []
    for problem in s.problems():
        entries = sorted((e for e in s.entries if e.problem == problem), key=lambda e: e.method)
        failed = failure_value(entries, s.by)
        if math.isnan(failed):
            continue
        for e in entries:
            trials = _trials(e, s.by, s.ignore, failed)
            per_seed = {seed: budget_curve(v, higher) for seed, v in trials.items()}
            curves.append(Curve(problem, e.method, per_seed))
    return curves


def _trials(e: Entry, by: str, ignore: Sequence[str], failed: float) -> dict[str, list[float]]:
    """seed -> the value of `by` at every value of the grid (`failed` where it has none)."""
    seeds = sorted({replicate(r, ignore) for g in e.choice.candidates.values() for r in g.runs})
    out = {}
    for seed in seeds:
        values = []
        for group in e.choice.candidates.values():
            runs = [r for r in group.runs if replicate(r, ignore) == seed]
            values.append(runs[0].values.get(by, failed) if runs else failed)
        out[seed] = values
    return out


def budgets_of(curves: Sequence[Curve]) -> list[int]:
    """The budgets scored: 1, 2, 4 and the grid's size (the smallest grid of any method)."""
    size = min((c.size for c in curves), default=0)
    return sorted({k for k in (*BUDGETS, size) if 1 <= k <= size})


def budget_profiles(
    curves: Sequence[Curve], by: str, settings: ReportSettings
) -> dict[int, Profile]:
    """Budget k -> the profile of the methods by their mean expected best `by` after k
    draws (a cost: loss as it is, accuracy as error), scored as the study's profiles."""
    higher = METRICS[by].higher_is_better
    out = {}
    for k in budgets_of(curves):
        costs: dict[str, dict[str, float]] = {}
        for c in curves:
            costs.setdefault(c.problem, {})[c.method] = final_cost(c.mean()[k - 1], higher)
        name = f"expected best {by} after {k} trials"
        out[k] = make_profile(name, costs, settings.tau_max, settings.score_scale)
    return out
