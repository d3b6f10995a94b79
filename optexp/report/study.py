"""The study across problems (`build` -> `Study`): the swept key tuned per method and
problem, the time-to-target of every run (at the tuned value, and the fastest value per
seed as AlgoPerf counts it), targets derived from the runs (`--target auto`), and the
performance profiles comparing the methods. Takes runs, plain values and the report's
settings; the measures are `optexp.report.measures`.

A problem is a value of the problem key (`problem`, else `dataset`); a method is a
setting of the other keys (e.g. `optimizer=adam`); the swept key (e.g. `optimizer.lr`)
is tuned on validation per method and problem, as `--select-best-by` does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from optexp.report.grouping import (
    Choice,
    as_number,
    group_runs,
    select_best,
    varying_keys,
    without_diverged_values,
)
from optexp.report.measures import (
    INF,
    DerivedTarget,
    Hit,
    Point,
    Profile,
    Reach,
    Target,
    at_edge,
    derive_target,
    fastest,
    final_cost,
    make_profile,
    sensitivity,
    time_to_target,
)
from optexp.report.runs import METRICS, ReportError, Run, Scalars, logged_tags, read_scalars
from optexp.report.settings import ReportSettings

PROBLEM_KEYS = ("problem", "dataset")


@dataclass
class Entry:
    """One method on one problem, at its tuned value of the swept key."""

    problem: str
    method: str
    choice: Choice
    target: Target | None = None
    reach: Reach | None = None  # at the tuned value, one hit per run of the chosen group
    curves: list[Scalars] = field(default_factory=list)  # of the chosen group's runs
    seeds: list[str] = field(default_factory=list)  # the replicates, in order
    # value of the swept key -> seed -> the run's hit (None: not reached; absent: no run)
    hits: dict[str, dict[str, Hit | None]] = field(default_factory=dict)

    @property
    def edge(self) -> bool:
        return at_edge(self.choice.chosen, self.choice.candidates)

    def fastest(self, unit: str) -> Reach | None:
        """AlgoPerf's time-to-target: per seed, the fastest value of the swept key to reach
        the target (a study of AlgoPerf's is a seed here, its trials the grid)."""
        if self.target is None:
            return None
        hits = self.hits.values()
        return Reach(tuple(fastest((h.get(seed) for h in hits), unit) for seed in self.seeds))

    def fastest_values(self, unit: str) -> list[str | None]:
        """Per seed, the value of the swept key that reached the target first."""
        out = []
        for seed in self.seeds:
            hit = fastest((h.get(seed) for h in self.hits.values()), unit)
            out.append(next((v for v, h in self.hits.items() if hit and h.get(seed) is hit), None))
        return out

    def time(self, settings: ReportSettings) -> Reach | None:
        """The time to target the study reports: `--time-to-target`'s, in `--time-unit`."""
        if settings.time_to_target == "fastest":
            return self.fastest(settings.time_unit)
        return self.reach


@dataclass
class Study:
    problem_key: str
    over: str
    by: str
    entries: list[Entry]
    runs: int
    derived: dict[str, DerivedTarget] = field(default_factory=dict)  # problem -> auto target
    ignore: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        return sorted({e.problem for e in self.entries})

    def methods(self) -> list[str]:
        return sorted({e.method for e in self.entries})


# ---------------------------------------------------------------- checks


def problem_key(runs: Sequence[Run], named: str | None) -> str:
    """The key whose values are the problems: the one named, else `problem` or `dataset`."""
    known = {k for r in runs for k in r.overrides}
    if named is not None:
        if named not in known:
            raise ReportError(f"unknown problem key {named!r}: the runs override {sorted(known)}")
        return named
    for key in PROBLEM_KEYS:
        if key in known:
            return key
    raise ReportError(
        "no problem key: the runs override neither problem nor dataset (name one with --problem)"
    )


def check_numeric(runs: Sequence[Run], key: str, flag: str) -> None:
    """The sensitivity plot puts KEY on a log x axis: its values must be numbers."""
    values = sorted({r.value_of(key) for r in runs}, key=as_number)
    if any(as_number(v)[0] for v in values):
        raise ReportError(
            f"{flag} needs a numeric --over key (its values are the x axis); {key} has "
            f"values {', '.join(values)}"
        )


def check_varies(runs: Sequence[Run], key: str, what: str) -> None:
    values = {r.overrides.get(key) for r in runs}
    if len(values) < 2:
        raise ReportError(f"{key} does not vary ({what}): every run has {key}={values.pop()}")


def targets_by_problem(
    targets: Sequence[Target], problems: Sequence[str]
) -> dict[str, Target | None]:
    """The target of each problem: its own (PROBLEM:METRIC=VALUE), else the general one."""
    unknown = [t.problem for t in targets if t.problem and t.problem not in problems]
    if unknown:
        raise ReportError(f"--target names problem {unknown[0]!r}; the problems are {problems}")
    general = [t for t in targets if t.problem is None]
    own = {t.problem: t for t in targets if t.problem}
    return {p: own.get(p, general[-1] if general else None) for p in problems}


def _check_logged(target: Target, problem: str, entries: Sequence[Entry]) -> None:
    curves = [c for e in entries for c in e.curves]
    if not any(target.metric in c for c in curves):
        raise ReportError(
            f"--target {target}: the runs of problem {problem} do not log "
            f"{target.metric!r} (they log {logged_tags(curves)})"
        )


# ---------------------------------------------------------------- building


def build(
    runs: Sequence[Run],
    over: str,
    by: str,
    targets: Sequence[Target],
    settings: ReportSettings,
    ignore: Sequence[str] = (),
    scalars: Callable[[Path], Scalars] = read_scalars,
) -> Study:
    """The study of `runs`: `over` tuned by the best mean `by` per method and problem, the
    problems the values of `settings.problem`. `scalars(run_dir)` gives a run's TensorBoard
    scalars (the curves the targets read); an `auto` target is derived from the runs,
    loosened by `settings.target_tolerance`."""
    key = problem_key(runs, settings.problem)
    check_varies(runs, key, "a profile compares methods across two or more problems")
    check_varies(runs, over, "nothing to tune")
    runs = without_diverged_values(runs)
    choices = select_best(group_runs(runs, ignore), by, over)
    problems = sorted({c.settings.get(key, "") for c in choices})
    target_of = targets_by_problem(targets, problems)
    names = method_names([c.settings for c in choices], key)
    entries = [
        Entry(c.settings.get(key, ""), name, c, curves=[scalars(r.path) for r in c.group.runs])
        for c, name in zip(choices, names, strict=True)
    ]
    s = Study(key, over, by, entries, len(runs), ignore=tuple(ignore))
    for problem, target in target_of.items():
        mine = [e for e in entries if e.problem == problem]
        if target is not None and target.auto:
            target = _derived(s, problem, target, mine, settings.target_tolerance)
        if target is not None:
            _check_logged(target, problem, mine)
            for e in mine:
                _time_to_target(e, target, ignore, scalars)
    return s


def replicate(run: Run, ignore: Sequence[str] = ()) -> str:
    """What tells the repeats of one setting apart: the seed (and the ignored keys)."""
    return ",".join(run.value_of(k) for k in ("seed", *ignore))


def _time_to_target(
    e: Entry, target: Target, ignore: Sequence[str], scalars: Callable[[Path], Scalars]
) -> None:
    """Every run's hit, at every value of the swept key; the tuned value's as `reach`."""
    e.target = target
    e.reach = Reach(tuple(time_to_target(c, target) for c in e.curves))
    for value, group in e.choice.candidates.items():
        e.hits[value] = {
            replicate(r, ignore): time_to_target(scalars(r.path), target) for r in group.runs
        }
    e.seeds = sorted({seed for h in e.hits.values() for seed in h}, key=as_number)


def _derived(
    s: Study, problem: str, auto: Target, entries: Sequence[Entry], tolerance: float
) -> Target | None:
    """The target of `--target auto` on one problem: the best method's median (over its
    seeds, at its tuned value) of the final validation metric, loosened by `tolerance`.
    The metric: the one named, else val/acc where the runs log it, else val/loss."""
    curves = [c for e in entries for c in e.curves]
    metric = auto.metric or ("val/acc" if any("val/acc" in c for c in curves) else "val/loss")
    _check_logged(Target(metric, 0.0), problem, entries)
    higher = Target(metric, 0.0).higher_is_better
    medians = {e.method: _median_final(e.curves, metric, higher) for e in entries}
    derived = derive_target(medians, metric, tolerance, problem)
    if derived is None:
        return None
    s.derived[problem] = derived
    return derived.target


def _median_final(curves: Sequence[Scalars], metric: str, higher: bool) -> float:
    """The median over runs of the last epoch's value; a run without a finite one (it
    diverged) counts as the worst."""
    worst = -INF if higher else INF
    finals = []
    for c in curves:
        curve = c.get(metric, {})
        last = curve[max(curve)] if curve else math.nan
        finals.append(last if math.isfinite(last) else worst)
    return statistics.median(finals) if finals else math.nan


def method_names(settings: Sequence[dict[str, str]], key: str) -> list[str]:
    """Each setting without the problem key, as its differing values: `adam`, or
    `optimizer=adam, model.dropout=0.3` when several keys differ."""
    rest = [{k: v for k, v in s.items() if k != key} for s in settings]
    keys, _ = varying_keys(rest)
    if len(keys) == 1:
        return [s.get(keys[0], "-") for s in rest]
    return [", ".join(f"{k}={s.get(k, '-')}" for k in keys) or "all" for s in rest]


# ---------------------------------------------------------------- profiles


def ttt_costs(s: Study, settings: ReportSettings) -> dict[str, dict[str, float]]:
    """costs[problem][method]: the median over seeds of the time to target (inf: not
    reached), of the fastest value per seed (`fastest`) or of the tuned value (`tuned`)."""
    costs: dict[str, dict[str, float]] = {}
    for e in s.entries:
        if (reach := e.time(settings)) is not None:
            costs.setdefault(e.problem, {})[e.method] = reach.cost(settings.time_unit)
    return costs


def final_costs(s: Study, metric: str) -> dict[str, dict[str, float]]:
    """costs[problem][method]: the mean final `metric` as a cost (error for accuracy). A
    problem on which no run has the metric (test/acc of a regression) is left out; a
    method without it where others have it (every seed diverged) costs inf."""
    costs: dict[str, dict[str, float]] = {}
    for e in s.entries:
        stat = e.choice.group.stat(metric)
        finite = stat.mean is not None and math.isfinite(stat.mean)
        value = final_cost(stat.mean, METRICS[metric].higher_is_better) if finite else None
        costs.setdefault(e.problem, {})[e.method] = math.inf if value is None else value
    lacking = set(problems_without(s, metric))
    return {p: per for p, per in costs.items() if p not in lacking}


def problems_without(s: Study, metric: str) -> list[str]:
    """The problems none of whose finished runs has `metric`, at any value of the swept key
    (a diverged run's values are dropped: it cannot tell)."""
    return [
        p
        for p in s.problems()
        if not any(
            metric in r.values
            for e in s.entries
            if e.problem == p
            for g in e.choice.candidates.values()
            for r in g.runs
        )
    ]


def profiles(s: Study, settings: ReportSettings) -> list[Profile]:
    """The time-to-target profile (when there are targets), then the final-metric one."""
    named = []
    if any(e.reach is not None for e in s.entries):
        named.append((f"{settings.time_unit} to target", ttt_costs(s, settings)))
    metric = settings.profile_metric
    named.append((f"final {metric}", final_costs(s, metric)))
    return [
        make_profile(name, costs, settings.tau_max, settings.score_scale) for name, costs in named
    ]


# ---------------------------------------------------------------- sensitivity


def sensitivity_series(s: Study, problem: str, metric: str, band: str) -> dict[str, list[Point]]:
    """method -> Points of `metric` over the swept key on `problem`: what the plot draws."""
    return {e.method: _points(e.choice, metric, band) for e in s.entries if e.problem == problem}


def sensitivity_of_groups(
    runs: Sequence[Run], metric: str, over: str, band: str
) -> dict[str, list[Point]]:
    """Like sensitivity_series, for runs that are not split into problems."""
    choices = select_best(group_runs(runs), metric, over)
    names = method_names([c.settings for c in choices], "")
    return {name: _points(c, metric, band) for c, name in zip(choices, names, strict=True)}


def _points(choice: Choice, metric: str, band: str) -> list[Point]:
    """`metric` over every value of the swept key tried for this choice, over its seeds."""
    runs = [
        (float(x), r.status, r.values.get(metric))
        for x, group in choice.candidates.items()
        for r in group.runs
    ]
    return sensitivity(runs, band)
