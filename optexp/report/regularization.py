"""The regularization study (`experiment=study_regularizers`), read from the trial study's
trials and cells (`optexp.report.trials`): each regularizer tuned over its own strength
(its `search_space`) on validation, with the last epoch's weights tested, compared with
`none` on the same seeds and data (paired).

Per problem and method, per seed: the test error at the tuned strength, the
generalization gap (test minus a clean pass over the training split, `train_eval`), the
share of the strength's range within `MARGIN` of the best validation error (the trials
are quasi-random, so a share of trials is a share of the range), and the epoch of the
best validation against the last. A method whose searched keys are the union of two
others' (weight decay with dropout; elastic net, L1 with L2) is a combination: its
interaction is its effect minus the sum of its parts' effects, all against `none`.

Intervals resample seeds within a problem, and problems then seeds for the mean over
problems, the same draw for every method; a difference is taken within each draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from optexp.report.bootstrap import Interval, interval
from optexp.report.settings import ReportSettings
from optexp.report.trial_scores import resamples
from optexp.report.trials import Cell, Trial, TrialStudy, median

REFERENCE = "none"  # what every regularizer is compared with
MARGIN = 0.2  # a strength is good when its validation error is within 20 % of the best
ALL = "all problems"  # the key of the mean over problems in an `Effect`

Effect = dict[str, Interval]  # problem (or ALL) -> a paired difference and its interval


def gap(t: Trial | None) -> float:
    """Test minus training error, both with the tested weights in evaluation mode."""
    return t.test - t.train if t is not None else math.nan


def best_epoch_share(t: Trial | None) -> float:
    """The best validation's epoch over the epochs trained: near 0, training went on long
    past the best (early stopping alone would have kept its weights)."""
    return t.best_epoch / t.epochs if t is not None and t.epochs else math.nan


def varied(trials: Sequence[Trial]) -> frozenset[str]:
    """The keys whose values differ between these trials: what was searched (a range or a
    choice such as early stopping's patience), not what a search space fixes."""
    keys = {k for t in trials for k in t.point}
    return frozenset(k for k in keys if len({repr(t.point.get(k)) for t in trials}) > 1)


def searched_keys(s: TrialStudy, method: str) -> frozenset[str]:
    return varied([t for t in s.trials if t.method == method and t.trial is not None])


def good_range(trials: Sequence[Trial], margin: float = MARGIN) -> float:
    """The share of a study's trials whose validation error is within `margin` (relative)
    of the best one's: how wide the good range of strength is; nan with nothing searched."""
    if not varied(trials):
        return math.nan
    best = min(t.val for t in trials)
    return sum(t.val <= best * (1 + margin) for t in trials) / len(trials)


def combinations(s: TrialStudy) -> dict[str, tuple[str, str]]:
    """Method -> the two methods it combines: those whose searched keys, each a part of
    its own, make up all of them together."""
    keys = {m: searched_keys(s, m) for m in s.methods()}
    found = {}
    for m, mine in keys.items():
        parts = sorted(o for o, k in keys.items() if o != m and k and k < mine)
        pairs = [(a, b) for i, a in enumerate(parts) for b in parts[i + 1 :]]
        whole = [(a, b) for a, b in pairs if keys[a] | keys[b] == mine]
        if whole:
            found[m] = whole[0]
    return found


# ---------------------------------------------------------------- paired effects


def per_study(
    s: TrialStudy, table: Mapping[tuple[str, str], Cell], measure: Callable[[Cell, int], float]
) -> dict[tuple[str, str], np.ndarray]:
    """(problem, method) -> the measure per study, in `TrialStudy.studies` order."""
    studies = range(len(s.studies()))
    return {key: np.array([measure(c, i) for i in studies]) for key, c in table.items()}


@dataclass(frozen=True)
class Contrast:
    """Per-study differences from one problem's per-method arrays, where `methods` ran."""

    methods: tuple[str, ...]
    of: Callable[[Mapping[str, np.ndarray]], np.ndarray]


def effects(
    values: Mapping[tuple[str, str], np.ndarray],
    contrasts: Mapping[str, Contrast],
    problems: Sequence[str],
    settings: ReportSettings,
) -> dict[str, Effect]:
    """For each named contrast, the median over studies per problem (where its methods
    ran) and the mean of those over problems, each with its bootstrap interval: per problem
    over its studies, over the problems by drawing problems and then studies (the same
    draws for every contrast)."""
    rows = {p: {m: v for (q, m), v in values.items() if q == p} for p in problems}
    out: dict[str, Effect] = {}
    for name, c in contrasts.items():
        where = [p for p in problems if set(c.methods) <= rows[p].keys()]
        per_problem = {p: c.of(rows[p]) for p in where}
        rng = np.random.default_rng(settings.bootstrap_seed)
        effect = {}
        for p, d in per_problem.items():
            draws = rng.integers(0, len(d), size=(settings.bootstrap, len(d)))
            effect[p] = interval(float(np.median(d)), np.median(d[draws], axis=1), settings.ci)
        if not where:
            continue
        studies = len(per_problem[where[0]])
        means = [
            np.mean([np.median(per_problem[p][drawn]) for p, drawn in draw])
            for draw in resamples(where, studies, settings)
        ]
        estimate = float(np.mean([effect[p].estimate for p in where]))
        effect[ALL] = interval(estimate, means, settings.ci)
        out[name] = effect
    return out


def versus(method: str) -> Contrast:
    """The method's value minus `none`'s."""
    return Contrast((method, REFERENCE), lambda v: v[method] - v[REFERENCE])


def interaction(a: str, b: str, both: str) -> Contrast:
    """The combination's effect minus the sum of its parts' (0: the effects add up)."""
    return Contrast(
        (a, b, both, REFERENCE),
        lambda v: (v[both] - v[REFERENCE]) - (v[a] - v[REFERENCE]) - (v[b] - v[REFERENCE]),
    )


@dataclass
class Findings:
    """What the page reports beside the scores."""

    test: dict[tuple[str, str], np.ndarray]  # per study: the tuned trial's test error
    gap: dict[tuple[str, str], np.ndarray]  # per study: its generalization gap
    good: dict[tuple[str, str], np.ndarray]  # per study: the good range's share
    best_epoch: dict[tuple[str, str], np.ndarray]  # per study: best epoch / epochs
    against_none: dict[str, Effect]  # method -> test error minus none's
    gap_against_none: dict[str, Effect]  # method -> gap minus none's
    pairs: dict[str, tuple[str, str]]  # combination -> its parts
    interactions: dict[str, Effect]  # combination -> its interaction


def findings(
    s: TrialStudy, table: Mapping[tuple[str, str], Cell], settings: ReportSettings
) -> Findings:
    problems = s.problems()
    test = per_study(s, table, lambda c, i: c.test[i])
    gaps = per_study(s, table, lambda c, i: gap(c.tuned[i]))
    good = {
        (p, m): np.array([good_range(s.searched(p, m, st)) for st in s.studies()]) for p, m in table
    }
    share = per_study(s, table, lambda c, i: best_epoch_share(c.tuned[i]))
    others = {m: versus(m) for m in s.methods() if m != REFERENCE}
    pairs = combinations(s)
    joint = {m: interaction(a, b, m) for m, (a, b) in pairs.items()}
    return Findings(
        test,
        gaps,
        good,
        share,
        effects(test, others, problems, settings),
        effects(gaps, others, problems, settings),
        pairs,
        effects(test, joint, problems, settings),
    )


def tuned_strength(cell: Cell, keys: frozenset[str]) -> dict[str, float]:
    """Each searched key's median tuned value over the studies."""
    found = [t for t in cell.tuned if t is not None]
    return {k: median([float(t.point[k]) for t in found if k in t.point]) for k in sorted(keys)}
