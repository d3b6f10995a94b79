"""How sure the study is: the bootstrap over seeds (`bootstrap_study` -> `Uncertainty`).

Each resample draws, for every problem and method independently, as many seeds as it
has, with replacement; tunes the swept key again on the drawn seeds (the rule of
`--select-best-by`); and recomputes from them the test metrics at the chosen value, the
time to target and both profiles' scores. The interval of a number is the percentile
interval of its resampled values; the rank probabilities count how often each method
takes each rank of a profile's score. Seeded: the same runs give the same page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from optexp.report.bootstrap import (
    Grid,
    Interval,
    choose,
    draws,
    fastest_time,
    interval,
    mean_at,
    rank_probabilities,
    tuned_time,
)
from optexp.report.measures import Profile, final_cost, ratios, score
from optexp.report.runs import METRICS
from optexp.report.settings import ReportSettings
from optexp.report.study import Entry, Study, problems_without, replicate

TUNED_METRICS = ("test/acc", "test/loss")
TIME = "time to target"


@dataclass
class Uncertainty:
    # (problem, method) -> test/acc, test/loss, time to target -> its interval
    tuned: dict[tuple[str, str], dict[str, Interval]] = field(default_factory=dict)
    # (problem, method) -> value of the swept key -> share of resamples that chose it
    chosen: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    scores: list[dict[str, Interval]] = field(default_factory=list)  # per profile
    ranks: list[dict[str, list[float]]] = field(default_factory=list)  # per profile


def grid_of(
    e: Entry, by: str, unit: str, ignore: Sequence[str], names: Sequence[str] = TUNED_METRICS
) -> Grid:
    """One method on one problem as arrays: a row per tried value (in the selection's
    order), a column per seed; a seed missing at a value has no value there."""
    values = list(e.choice.candidates)
    seeds = e.seeds or sorted(
        {replicate(r, ignore) for g in e.choice.candidates.values() for r in g.runs}
    )
    shape = (len(values), len(seeds))
    select = np.full(shape, np.nan)
    metrics = {m: np.full(shape, np.nan) for m in names}
    time = np.full(shape, math.inf)
    for i, value in enumerate(values):
        for run in e.choice.candidates[value].runs:
            j = seeds.index(replicate(run, ignore))
            select[i, j] = run.values.get(by, np.nan)
            for m in names:
                metrics[m][i, j] = run.values.get(m, np.nan)
            hit = e.hits.get(value, {}).get(seeds[j])
            if hit is not None:
                time[i, j] = hit.epoch if unit == "epochs" else hit.seconds
    return Grid(select, METRICS[by].higher_is_better, metrics, time)


def bootstrap_study(s: Study, profiles: Sequence[Profile], settings: ReportSettings) -> Uncertainty:
    """Intervals of every entry's tuned metrics and time, and of every profile's scores,
    with the rank probabilities; `profiles` are the point estimates (time first, when
    there are targets, then the final metric), as `study.profiles` makes them."""
    rng = np.random.default_rng(settings.bootstrap_seed)
    out = Uncertainty()
    resampled: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    names = tuple(dict.fromkeys((*TUNED_METRICS, settings.profile_metric)))
    for e in sorted(s.entries, key=lambda e: (e.problem, e.method)):
        grid = grid_of(e, s.by, settings.time_unit, s.ignore, names)
        index = draws(rng, grid.select.shape[1], settings.bootstrap)
        rows = choose(grid.select, index, grid.higher_is_better)
        values = {m: mean_at(grid.metrics[m], rows, index) for m in names}
        if e.target is not None:
            timed = fastest_time if settings.time_to_target == "fastest" else None
            values[TIME] = timed(grid, index) if timed else tuned_time(grid, rows, index)
        resampled[(e.problem, e.method)] = values
        out.tuned[(e.problem, e.method)] = _intervals(e, values, settings)
        tried = list(e.choice.candidates)
        shares = np.bincount(rows, minlength=len(tried)) / settings.bootstrap
        out.chosen[(e.problem, e.method)] = dict(zip(tried, shares.tolist(), strict=True))
    for profile, costs in zip(profiles, _resampled_costs(s, resampled, settings), strict=True):
        scores = [
            {m: score(r, settings.tau_max, settings.score_scale) for m, r in ratios(c).items()}
            for c in costs
        ]
        out.scores.append(
            {
                m: interval(profile.scores[m], [sc[m] for sc in scores], settings.ci)
                for m in profile.scores
            }
        )
        out.ranks.append(rank_probabilities(scores))
    return out


def _intervals(
    e: Entry, values: dict[str, np.ndarray], settings: ReportSettings
) -> dict[str, Interval]:
    """Each resampled quantity's interval about its point estimate (nan: no value)."""
    out = {}
    for name, samples in values.items():
        if name == TIME:
            reach = e.time(settings)
            estimate = reach.cost(settings.time_unit) if reach else math.nan
        else:
            estimate = e.choice.group.stat(name).mean
            estimate = math.nan if estimate is None else estimate
        finite = samples[~np.isnan(samples)]
        if len(finite) and not math.isnan(estimate):
            out[name] = interval(estimate, finite, settings.ci)
    return out


def _resampled_costs(
    s: Study, resampled: dict[tuple[str, str], dict[str, np.ndarray]], settings: ReportSettings
) -> list[list[dict[str, dict[str, float]]]]:
    """Per profile (time first when there are targets, then the final metric), per
    resample: costs[problem][method], as `study.ttt_costs` and `study.final_costs`."""
    timed = any(TIME in v for v in resampled.values())
    metric = settings.profile_metric
    higher = METRICS[metric].higher_is_better
    lacking = set(problems_without(s, metric))
    out = []
    for b in range(settings.bootstrap):
        final: dict[str, dict[str, float]] = {}
        time: dict[str, dict[str, float]] = {}
        for (problem, method), values in resampled.items():
            if TIME in values:
                time.setdefault(problem, {})[method] = float(values[TIME][b])
            if problem not in lacking:
                value = float(values[metric][b])
                cost = final_cost(value, higher) if math.isfinite(value) else math.inf
                final.setdefault(problem, {})[method] = cost
        out.append([time, final] if timed else [final])
    return [list(per_profile) for per_profile in zip(*out, strict=True)]
