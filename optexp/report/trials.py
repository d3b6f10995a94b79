"""The optimizer study as AlgoPerf's external-tuning ruleset scores it, from runs of
`experiment=study_optimizers` (`collect` -> `TrialStudy`, `score` -> `Scores`).

A run is trial `study.trial` of study `study.index` of a method (the `regularization`
choice where the sweep sets one, else the `optimizer`) on a problem (`+problem`);
`study.trial=defaults` is the method at its own defaults (the self-tuning column). Every
problem's target is its file's `study.target`, set once, so no method moves another's
score. Per study, a method's time is its fastest trial to
reach the target (evaluations per epoch; inf if none did) and its quality the test cost
of its best trial on validation; per problem, the median over studies.

Costs are bounded: an error (1 - acc), or a loss, capped at the problem's chance level
(`study.target.chance`), and a diverged or failed trial counts as chance, so how a
diverged trial is imputed cannot move a ranking. The bootstrap resamples problems and,
within each, studies, the same draw for every method (paired).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optexp.report.measures import INF, Hit, Target, time_to_target
from optexp.report.runs import ReportError, Run, Scalars
from optexp.rundir import FINISHED, HYDRA_DIR, METRICS_FILE, Status, load_summary
from optexp.search_space import Spec, specs, trial_values

EDGE = 0.05  # a tuned value this close to an end of its range (on its scale) is flagged


@dataclass(frozen=True)
class Bound:
    """A problem's target and the chance level its costs are capped at."""

    target: Target
    chance: float  # the metric of a constant predictor (accuracy, or loss)

    def cost(self, value: float | None) -> float:
        """Lower is better, in [0, cap]: error or loss; None (no value) is the cap."""
        cap = self.cap
        if value is None or not math.isfinite(value):
            return cap
        return min(1.0 - value if self.target.higher_is_better else value, cap)

    @property
    def cap(self) -> float:
        return 1.0 - self.chance if self.target.higher_is_better else self.chance


@dataclass
class Trial:
    problem: str
    method: str
    study: int
    trial: int | None  # None: the method's defaults
    status: str
    val: float  # validation cost of the weights tested (`trainer.test_weights`)
    test: float  # test cost
    hit: Hit | None  # the first evaluation at the target
    curve: dict[int, float]  # validation cost per epoch
    wall_s: float
    positions: dict[str, float] = field(default_factory=dict)  # searched key -> [0, 1]
    point: dict[str, Any] = field(default_factory=dict)
    train: float = math.nan  # the training split's cost, same weights (train_eval)
    best_epoch: int = 0  # the epoch of the best validation
    epochs: int = 0  # epochs trained


@dataclass
class Machine:
    """Where the trials ran and for how long: what the numbers depend on."""

    environments: list[str] = field(default_factory=list)  # distinct, as metrics.json says
    span_s: float = math.nan  # the first run's start to the last one's end


@dataclass
class TrialStudy:
    trials: list[Trial]
    bounds: dict[str, Bound]  # problem -> its target and chance level
    runs: int
    machine: Machine = field(default_factory=lambda: Machine())
    method_key: str = "optimizer"  # the config group whose options are the methods

    def problems(self) -> list[str]:
        return sorted({t.problem for t in self.trials})

    def methods(self) -> list[str]:
        return sorted({t.method for t in self.trials})

    def studies(self) -> list[int]:
        return sorted({t.study for t in self.trials})

    def methods_on(self, problem: str) -> list[str]:
        """The methods run on `problem` (a regularization that needs images is not run on
        signals)."""
        return sorted({t.method for t in self.trials if t.problem == problem})

    def on_every_problem(self) -> TrialStudy:
        """The study of the methods run on every problem: what a profile compares."""
        common = set.intersection(*(set(self.methods_on(p)) for p in self.problems()))
        kept = [t for t in self.trials if t.method in common]
        return TrialStudy(kept, self.bounds, self.runs, self.machine, self.method_key)

    def searched(self, problem: str, method: str, study: int) -> list[Trial]:
        """The trials of one study, in trial order."""
        found = [
            t
            for t in self.trials
            if (t.problem, t.method, t.study) == (problem, method, study) and t.trial is not None
        ]
        return sorted(found, key=lambda t: t.trial or 0)

    def defaults(self, problem: str, method: str, study: int) -> Trial | None:
        return next(
            (
                t
                for t in self.trials
                if (t.problem, t.method, t.study, t.trial) == (problem, method, study, None)
            ),
            None,
        )


# ---------------------------------------------------------------- reading


def is_trial_study(runs: Sequence[Run]) -> bool:
    """Whether these runs are trials of a study (`study.trial` set on the command line)."""
    return any("study.trial" in r.overrides for r in runs)


METHOD_GROUPS = ("regularization", "optimizer")  # the first a sweep sets names the methods


def method_key(runs: Sequence[Run]) -> str:
    """The group whose options the sweep compares: `regularization` where a run sets it."""
    set_ = {k.lstrip("+") for r in runs for k in r.overrides}
    return next((g for g in METHOD_GROUPS if g in set_), METHOD_GROUPS[-1])


def collect(runs: Sequence[Run], scalars: Callable[[Any], Scalars]) -> TrialStudy:
    """Every finished or diverged trial of the runs, costed against its problem's target
    (a regularization study has none: it compares final test costs only)."""
    key = method_key(runs)
    bounds: dict[str, Bound] = {}
    trials = []
    for run in runs:
        if run.status not in (*FINISHED, Status.FAILED):
            continue
        problem = (
            run.value_of("+problem") if "+problem" in run.overrides else run.value_of("problem")
        )
        bound = bounds.setdefault(problem, bound_of(run, problem, key == "optimizer"))
        trials.append(trial_of(run, problem, bound, scalars, key))
    if not trials:
        raise ReportError("no finished trial in these runs (a study's runs set study.trial)")
    return TrialStudy(trials, bounds, len(runs), machine_of(runs), key)


def machine_of(runs: Sequence[Run]) -> Machine:
    """The runs' environments (torch threads, processor, ...) and the time they spanned,
    from their files: Hydra's config is written as a run starts, metrics.json as it ends."""
    environments, starts, ends = set(), [], []
    for run in runs:
        summary = load_summary(run.path) or {}
        if env := summary.get("environment"):
            environments.add(", ".join(f"{k} {v}" for k, v in sorted(env.items())))
        with contextlib.suppress(OSError):
            starts.append((run.path / HYDRA_DIR / "config.yaml").stat().st_mtime)
            ends.append((run.path / METRICS_FILE).stat().st_mtime)
    span = max(ends) - min(starts) if starts and ends else math.nan
    return Machine(sorted(environments), span)


def bound_of(run: Run, problem: str, timed: bool = True) -> Bound:
    """The problem's target as the run's config saved it; without one, no trial reaches
    it (a pilot's problems may have none yet), and stderr says how to set it where the
    study is `timed`."""
    node = (run.config.get("study") or {}).get("target") or {}
    metric = str(node.get("metric") or "val/acc")
    value = node.get("value")
    if value is None and timed:
        print(
            f"optexp-report: problem {problem} has no study.target value, so no trial reaches "
            "it: set it once with optexp-report REFERENCE_RUNS --set-targets (docs/report.md)",
            file=sys.stderr,
        )
    chance = node.get("chance")
    if chance is None:
        chance = 0.0 if metric.endswith("acc") else INF
    return Bound(Target(metric, math.nan if value is None else float(value)), float(chance))


def trial_of(
    run: Run,
    problem: str,
    bound: Bound,
    scalars: Callable[[Any], Scalars],
    method_key: str = "optimizer",
) -> Trial:
    study = run.config.get("study") or {}
    index, number = int(study.get("index", 0)), study.get("trial")
    number = None if number == "defaults" else number
    metric = bound.target.metric
    # tested: every epoch trained, or stopped early (early stopping is a regularization
    # method) or by trainer.max_time; a diverged or failed trial counts as chance
    finished = run.status in (Status.COMPLETED, Status.EARLY_STOPPED, Status.TIME_LIMIT)
    summary = (load_summary(run.path) or {}) if finished else {}
    curves = scalars(run.path) if run.status != Status.FAILED else {}
    name = metric.split("/")[1]
    point, positions = trial_point(run.config, index, number)
    return Trial(
        problem=problem,
        method=run.value_of(method_key),
        study=index,
        trial=None if number is None else int(number),
        status=run.status,
        val=bound.cost(tested_validation(summary, metric)),
        test=bound.cost((summary.get("test") or {}).get(name)),
        train=bound.cost((summary.get("train_eval") or {}).get(name)),
        hit=time_to_target(curves, bound.target) if run.status != Status.FAILED else None,
        curve={e: bound.cost(v) for e, v in curves.get(metric, {}).items()},
        wall_s=run.values.get("wall_s", math.nan),
        positions=positions,
        point=point,
        best_epoch=int(summary.get("best_epoch") or 0),
        epochs=int(summary.get("epochs_completed") or 0),
    )


def tested_validation(summary: Mapping[str, Any], metric: str) -> float | None:
    """The validation metric of the weights the test used: the best epoch's, or with
    `test_weights=last` the last epoch's (tuning on the best epoch would then pick a
    strength by weights it never tests)."""
    which = "final" if summary.get("test_weights") == "last" else "best"
    return (summary.get(which) or {}).get(metric)


def trial_point(config: Mapping[str, Any], study: int, trial: Any) -> tuple[dict, dict]:
    """The trial's values (recomputed from its search space, as the run drew them) and
    where each searched one lies in its range."""
    space = config.get("search_space")
    if trial is None or not space:
        return {}, {}
    values = trial_values(space, study, int(trial))
    searched: list[Spec] = [s for s in specs(space) if s.searched and not s.values]
    return values, {s.key: s.position(values[s.key]) for s in searched}


# ---------------------------------------------------------------- per study and problem


@dataclass
class Cell:
    """One method on one problem: per study (in `TrialStudy.studies` order)."""

    time: list[float]  # epochs of the fastest trial to reach the target (inf: none)
    seconds: list[float]  # the same trial's training and validation seconds until then
    val: list[float]  # the tuned trial's validation cost
    test: list[float]  # the tuned trial's test cost
    tuned: list[Trial | None]  # the best trial on validation
    timed: list[Trial | None]  # the fastest trial to the target
    defaults_time: list[float]
    defaults_test: list[float]
    edges: list[str]  # searched keys whose tuned value is at an end in most studies

    @property
    def median_time(self) -> float:
        return median(self.time)

    @property
    def median_test(self) -> float:
        return median(self.test)


def median(values: Sequence[float]) -> float:
    """inf counts as the largest: finite when more than half are finite."""
    return float(np.median(values)) if len(values) else math.nan


def cell_of(s: TrialStudy, problem: str, method: str) -> Cell:
    time, seconds, val, test, tuned, timed, d_time, d_test = [], [], [], [], [], [], [], []
    for study in s.studies():
        trials = s.searched(problem, method, study)
        best = min(trials, key=lambda t: t.val, default=None)  # ties: the first trial
        hits = [t for t in trials if t.hit is not None]
        first = min(hits, key=lambda t: (t.hit.epoch, t.hit.seconds), default=None)  # type: ignore[union-attr]
        time.append(float(first.hit.epoch) if first and first.hit else INF)
        seconds.append(first.hit.seconds if first and first.hit else INF)
        val.append(best.val if best else s.bounds[problem].cap)
        test.append(best.test if best else s.bounds[problem].cap)
        tuned.append(best)
        timed.append(first)
        default = s.defaults(problem, method, study)
        d_time.append(float(default.hit.epoch) if default and default.hit else INF)
        d_test.append(default.test if default else math.nan)
    return Cell(time, seconds, val, test, tuned, timed, d_time, d_test, edges_of(tuned))


def edges_of(tuned: Sequence[Trial | None]) -> list[str]:
    found = [t for t in tuned if t is not None]
    keys = sorted({k for t in found for k in t.positions})
    return [
        k
        for k in keys
        if sum(not EDGE <= t.positions.get(k, 0.5) <= 1 - EDGE for t in found) * 2 > len(found)
    ]


def cells(s: TrialStudy) -> dict[tuple[str, str], Cell]:
    """Each method on each problem it was run on."""
    return {(p, m): cell_of(s, p, m) for p in s.problems() for m in s.methods_on(p)}


# ---------------------------------------------------------------- the problems


@dataclass
class Separation:
    """Whether a problem tells the methods apart: the range of the methods' median tuned
    validation costs against twice the paired spread between studies."""

    spread: float  # max - min over methods of the median tuned validation cost
    noise: float  # median over method pairs of the std over studies of their difference

    @property
    def separates(self) -> bool:
        return self.spread > 2 * self.noise


def separation(s: TrialStudy, table: Mapping[tuple[str, str], Cell], problem: str) -> Separation:
    methods = s.methods()
    medians = [median(table[problem, m].val) for m in methods]
    stds = [
        float(np.std(np.subtract(table[problem, a].val, table[problem, b].val), ddof=1))
        for i, a in enumerate(methods)
        for b in methods[i + 1 :]
        if len(s.studies()) > 1
    ]
    return Separation(max(medians) - min(medians), statistics.median(stds) if stds else math.nan)


def rank_correlations(
    s: TrialStudy, table: Mapping[tuple[str, str], Cell]
) -> dict[str, dict[str, float]]:
    """Spearman's correlation between problems of the methods' median tuned validation
    costs: 1 means two problems order the methods alike (one of them adds little)."""
    from scipy.stats import spearmanr

    problems, methods = s.problems(), s.methods()
    rows = {p: [median(table[p, m].val) for m in methods] for p in problems}
    out: dict[str, dict[str, float]] = {}
    for a in problems:
        for b in problems:
            rho = 1.0 if a == b else spearmanr(rows[a], rows[b]).statistic
            out.setdefault(a, {})[b] = float(rho) if np.isfinite(rho) else math.nan
    return out


def budget_curve(trials: Sequence[Trial]) -> list[float]:
    """The best validation cost among the first k trials, k = 1 .. N: the quasi-random
    trials come in order, so the first k of them are a study with budget k."""
    best, out = INF, []
    for t in trials:
        best = min(best, t.val)
        out.append(best)
    return out


def budget_curves(s: TrialStudy, problem: str, method: str) -> list[list[float]]:
    """One curve per study."""
    return [budget_curve(s.searched(problem, method, study)) for study in s.studies()]
