"""The scores of a trial study (`optexp.report.trials`): the performance profiles of the
time to target and of the final test cost, each score's interval from a paired bootstrap
over problems and, within each, studies, rank probabilities, P(above the reference), and
the scores with each problem left out."""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from optexp.report.bootstrap import Interval, interval, rank_probabilities
from optexp.report.measures import Profile, make_profile
from optexp.report.settings import ReportSettings
from optexp.report.trials import Cell, TrialStudy, cells


@dataclass
class Scores:
    profiles: list[Profile]  # time to target, then final test cost (of those scored)
    intervals: list[dict[str, Interval]]  # per profile: method -> its score's interval
    ranks: list[dict[str, list[float]]]  # per profile: method -> P(rank 1), P(rank 2), ...
    beats: list[dict[str, float]]  # per profile: method -> P(score above the reference's)
    # per profile: method -> its score minus the reference's, with the interval of that
    # difference over the same (paired) resamples
    versus: list[dict[str, Interval]]
    leave_one_out: list[dict[str, dict[str, float]]]  # per profile: problem left -> scores
    reference: str


PROFILES = ("epochs to target", "final test cost")


def profile_costs(table: Mapping[tuple[str, str], Cell], which: int) -> dict[str, dict[str, float]]:
    costs: dict[str, dict[str, float]] = {}
    for (problem, method), c in table.items():
        costs.setdefault(problem, {})[method] = c.median_time if which == 0 else c.median_test
    return costs


def score(
    s: TrialStudy, settings: ReportSettings, reference: str, names: tuple[str, ...] = PROFILES
) -> Scores:
    """The profiles `names` (of PROFILES: a study without targets has no time to score)."""
    table = cells(s)
    profiles, intervals, ranks, beats, versus, loo = [], [], [], [], [], []
    for name in names:
        which = PROFILES.index(name)
        costs = profile_costs(table, which)
        p = make_profile(name, costs, settings.tau_max, settings.score_scale)
        resampled = bootstrap_scores(s, table, which, settings)
        profiles.append(p)
        intervals.append(
            {m: interval(p.scores[m], [r[m] for r in resampled], settings.ci) for m in p.scores}
        )
        ranks.append(rank_probabilities(resampled))
        beats.append(
            {m: statistics.fmean(r[m] > r[reference] for r in resampled) for m in p.scores}
            if reference in p.scores
            else {}
        )
        versus.append(differences(p.scores, resampled, reference, settings.ci))
        loo.append(leave_one_out(costs, settings))
    return Scores(profiles, intervals, ranks, beats, versus, loo, reference)


def differences(
    scores: Mapping[str, float], resampled: list[dict[str, float]], reference: str, ci: float
) -> dict[str, Interval]:
    """Each method's score minus the reference's, its interval from the paired resamples:
    the methods share each resample's problems and studies, so the difference's interval
    is narrower than the two scores' intervals side by side suggest."""
    if reference not in scores:
        return {}
    return {
        m: interval(scores[m] - scores[reference], [r[m] - r[reference] for r in resampled], ci)
        for m in scores
        if m != reference
    }


def bootstrap_scores(
    s: TrialStudy, table: Mapping[tuple[str, str], Cell], which: int, settings: ReportSettings
) -> list[dict[str, float]]:
    """Scores of `settings.bootstrap` resamples: the problems drawn with replacement, and
    within each drawn problem its studies, the same draw for every method (paired)."""
    problems, methods, studies = s.problems(), s.methods(), len(s.studies())
    per_study = {
        (p, m): np.asarray(table[p, m].time if which == 0 else table[p, m].test, dtype=float)
        for p in problems
        for m in methods
    }
    out = []
    for draw in resamples(problems, studies, settings):
        costs = {
            f"{p}#{i}": {m: float(np.median(per_study[p, m][drawn])) for m in methods}
            for i, (p, drawn) in enumerate(draw)
        }
        out.append(make_profile("", costs, settings.tau_max, settings.score_scale).scores)
    return out


def resamples(
    problems: Sequence[str], studies: int, settings: ReportSettings
) -> Iterator[list[tuple[str, np.ndarray]]]:
    """`settings.bootstrap` resamples of a study: the problems drawn with replacement and,
    within each drawn problem, its studies (their indices): the same draws, from the same
    seed, wherever a study's numbers are resampled."""
    rng = np.random.default_rng(settings.bootstrap_seed)
    for _ in range(settings.bootstrap):
        drawn = rng.choice(len(problems), size=len(problems), replace=True)
        yield [(problems[i], rng.integers(0, studies, size=studies)) for i in drawn]


def leave_one_out(
    costs: Mapping[str, Mapping[str, float]], settings: ReportSettings
) -> dict[str, dict[str, float]]:
    """Problem left out -> each method's score on the others."""
    if len(costs) < 2:
        return {}
    return {
        left: make_profile(
            "",
            {p: c for p, c in costs.items() if p != left},
            settings.tau_max,
            settings.score_scale,
        ).scores
        for left in sorted(costs)
    }
