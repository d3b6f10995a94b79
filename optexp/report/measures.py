"""The measures of an optimizer study, as pure functions of plain data: no file is read here.

- Time-to-target: the first epoch (and the wall seconds, summed from `time/epoch_s`) at
  which a run's per-epoch metric reaches a target; a run that never does has none.
- Tuneability: a metric against the swept learning rate, per method, over seeds.
- Performance profiles (Dolan & Moré 2002) across problems: per problem, each method's
  cost over the best method's; rho(tau) is the fraction of problems within a factor tau
  of the best, and the score is the normalized area under rho over [1, tau_max].
- Tuning budget (Dodge et al. 2019): the expected best validation value after k trials
  drawn at random, with replacement, from the swept grid.
- Targets derived from the runs: the best method's median, loosened by a tolerance.

`optexp.report.runs` reads the runs and `optexp.report.figures` draws; everything here
takes and returns plain data, so the tests can check each number by hand.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from optexp.rundir import Status

INF = math.inf


# ---------------------------------------------------------------- time-to-target


@dataclass(frozen=True)
class Target:
    metric: str  # a per-epoch TensorBoard tag, e.g. val/acc; "" with auto: chosen per problem
    value: float  # nan: auto, derived from the runs (see derive_target)
    problem: str | None = None  # None: every problem

    @property
    def auto(self) -> bool:
        return math.isnan(self.value)

    @property
    def higher_is_better(self) -> bool:
        return self.metric.endswith("acc")  # accuracies rise to a target; losses fall to one

    def reached(self, value: float) -> bool:
        return value >= self.value if self.higher_is_better else value <= self.value

    def __str__(self) -> str:
        where = f"{self.problem}:" if self.problem else ""
        if self.auto:
            return f"{where}{self.metric}=auto" if self.metric else f"{where}auto"
        return f"{where}{self.metric}={self.value:g}"


def parse_target(text: str) -> Target:
    """`METRIC=VALUE` or `PROBLEM:METRIC=VALUE`, VALUE a number or `auto`; `auto` or
    `PROBLEM:auto` alone leave the metric to the problem (raises ValueError with the reason)."""
    if text.rpartition(":")[2] == "auto":
        problem = text.rpartition(":")[0]
        return Target("", math.nan, problem or None)
    head, sep, number = text.rpartition("=")
    if not sep or not head:
        raise ValueError(f"--target {text!r} is not METRIC=VALUE (e.g. val/acc=0.9)")
    if number == "auto":
        value = math.nan
    else:
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"--target {text!r}: {number!r} is not a number or auto") from None
        if math.isnan(value):  # nan stands for auto inside: refused as target_arg words it
            raise ValueError(
                f"--target {text!r}: nan is not allowed. Allowed: a finite number or auto"
            )
    problem, _, metric = head.rpartition(":")
    return Target(metric, value, problem or None)


@dataclass(frozen=True)
class Hit:
    epoch: int
    seconds: float  # training and validation time up to the end of that epoch


def time_to_target(curves: Mapping[str, Mapping[int, float]], target: Target) -> Hit | None:
    """The first epoch whose `target.metric` reaches the target, or None if none does.
    `curves` maps a tag to {epoch: value}; seconds sum `time/epoch_s` up to that epoch."""
    curve = curves.get(target.metric, {})
    epoch_s = curves.get("time/epoch_s", {})
    for epoch in sorted(curve):
        if target.reached(curve[epoch]):
            return Hit(epoch, sum(s for e, s in epoch_s.items() if e <= epoch))
    return None


def fastest(hits: Iterable[Hit | None], unit: str) -> Hit | None:
    """The earliest of these hits in `unit` (epochs, ties by seconds; or seconds); None if
    none hit: AlgoPerf's time of a study, the fastest of its trials."""
    found = [h for h in hits if h is not None]
    if unit == "seconds":
        return min(found, key=lambda h: (h.seconds, h.epoch), default=None)
    return min(found, key=lambda h: (h.epoch, h.seconds), default=None)


@dataclass(frozen=True)
class Reach:
    """Time-to-target of a group of runs (the seeds of one setting)."""

    hits: tuple[Hit | None, ...]

    @property
    def reached(self) -> int:
        return sum(h is not None for h in self.hits)

    def show(self) -> str:
        return f"{self.reached} of {len(self.hits)}"

    def epochs(self) -> list[float]:
        """Over the runs that reached it: the others are not averaged in."""
        return [float(h.epoch) for h in self.hits if h is not None]

    def seconds(self) -> list[float]:
        return [h.seconds for h in self.hits if h is not None]

    def cost(self, unit: str) -> float:
        """Median over all runs, a run that never reached counting as infinite: finite when
        more than half of them reached the target."""
        if not self.hits:
            return INF
        return statistics.median(
            INF if h is None else float(h.epoch if unit == "epochs" else h.seconds)
            for h in self.hits
        )


# ---------------------------------------------------------------- performance profiles


def ratios(costs: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """costs[problem][method] (lower is better; inf: failed) -> ratio[method][problem],
    the cost over the problem's best cost. A method without a cost on a problem, or
    failing on it, gets inf; a problem every method failed gives inf to all.

    A cost of 0 (no test error) has no ratio to it: the reference is then the smallest
    cost above 0, and a cost of 0 counts as 1, so a method one mistake behind a perfect
    one is not infinitely worse."""
    methods = sorted({m for per_problem in costs.values() for m in per_problem})
    out: dict[str, dict[str, float]] = {m: {} for m in methods}
    for problem, per_method in costs.items():
        finite = [c for c in per_method.values() if math.isfinite(c)]
        best = min((c for c in finite if c > 0), default=INF if not finite else 0.0)
        for m in methods:
            cost = per_method.get(m, INF)
            out[m][problem] = _ratio(cost, best)
    return out


def _ratio(cost: float, best: float) -> float:
    if not math.isfinite(cost) or not math.isfinite(best):
        return INF
    if best == 0 or cost <= best:  # every finite cost is 0, or this one is
        return 1.0
    return cost / best


def rho(method_ratios: Mapping[str, float], tau: float) -> float:
    """Fraction of problems on which the method is within a factor tau of the best."""
    values = list(method_ratios.values())
    return sum(r <= tau for r in values) / len(values) if values else 0.0


def profile(
    all_ratios: Mapping[str, Mapping[str, float]], taus: Sequence[float]
) -> dict[str, list[float]]:
    """rho(tau) of every method at each tau: what the profile plot draws."""
    return {m: [rho(r, tau) for tau in taus] for m, r in all_ratios.items()}


def score(method_ratios: Mapping[str, float], tau_max: float, scale: str) -> float:
    """Normalized area under rho over [1, tau_max], exact for the step function rho.

    linear: (1 / (tau_max - 1)) * integral of rho(tau) dtau, the AlgoPerf benchmark score's
    formula; each problem with ratio r <= tau_max adds (tau_max - r) / (tau_max - 1) / P.
    log: the same area over log(tau), so factors count alike (2x matters as much near 1
    as near tau_max); each problem adds log(tau_max / r) / log(tau_max) / P.
    """
    values = list(method_ratios.values())
    if not values or tau_max <= 1:
        return 0.0
    if scale == "log":
        area = sum(math.log(tau_max / r) for r in values if r <= tau_max)
        return area / math.log(tau_max) / len(values)
    area = sum(tau_max - r for r in values if r <= tau_max)
    return area / (tau_max - 1) / len(values)


def final_cost(value: float, higher_is_better: bool) -> float:
    """A final metric as a cost, lower is better: losses as they are, accuracies as error
    rates (1 - acc), so ratios compare errors: 0.02 error is twice as good as 0.04."""
    return 1.0 - value if higher_is_better else value


@dataclass
class Profile:
    """A performance profile: the ratios, rho at each tau where it steps, and the scores."""

    name: str  # what the cost is
    ratios: dict[str, dict[str, float]]  # method -> problem -> ratio
    taus: list[float]
    rho: dict[str, list[float]]
    scores: dict[str, float]


def make_profile(
    name: str, costs: Mapping[str, Mapping[str, float]], tau_max: float, scale: str
) -> Profile:
    """The profile of costs[problem][method] up to tau_max, scored on `scale`."""
    all_ratios = ratios(costs)
    taus = profile_taus(all_ratios, tau_max)
    scores = {m: score(r, tau_max, scale) for m, r in all_ratios.items()}
    return Profile(name, all_ratios, taus, profile(all_ratios, taus), scores)


def profile_taus(all_ratios: Mapping[str, Mapping[str, float]], tau_max: float) -> list[float]:
    """1, every finite ratio up to tau_max (where rho steps), and tau_max."""
    steps = {r for per in all_ratios.values() for r in per.values() if 1 <= r <= tau_max}
    return sorted({1.0, tau_max, *steps})


# ---------------------------------------------------------------- tuning budget and targets


def expected_best(values: Sequence[float], k: int, higher_is_better: bool) -> float:
    """The expected best of k values drawn at random, with replacement, from `values`
    (Dodge et al. 2019, "Show your work"): with v_(1) <= ... <= v_(n) sorted worst first,
    E[best of k] = sum_i v_(i) ((i / n)^k - ((i - 1) / n)^k), the probability that the
    i-th worst is the best of the k draws. Exact, no simulation."""
    n = len(values)
    if n == 0 or k < 1:
        raise ValueError("expected_best needs values and k >= 1")
    worst_first = sorted(values, reverse=not higher_is_better)
    return math.fsum(
        v * ((i / n) ** k - ((i - 1) / n) ** k) for i, v in enumerate(worst_first, start=1)
    )


def budget_curve(values: Sequence[float], higher_is_better: bool) -> list[float]:
    """expected_best for k = 1 .. len(values): the tuning-budget curve of one grid."""
    return [expected_best(values, k, higher_is_better) for k in range(1, len(values) + 1)]


def loosen(value: float, tolerance: float, higher_is_better: bool) -> float:
    """A target `tolerance` (relative) easier than `value`: a loss times (1 + tolerance);
    an accuracy through its error, 1 - (1 - acc)(1 + tolerance)."""
    if higher_is_better:
        return 1.0 - (1.0 - value) * (1.0 + tolerance)
    return value * (1.0 + tolerance)


@dataclass(frozen=True)
class DerivedTarget:
    """A target set from the runs: the best method's median, loosened."""

    target: Target
    method: str  # whose median set it
    median: float  # that method's median (over seeds) of the final metric
    tolerance: float


def derive_target(
    medians: Mapping[str, float], metric: str, tolerance: float, problem: str | None = None
) -> DerivedTarget | None:
    """From each method's median final value of `metric` (nan: none), the best one's,
    loosened by `tolerance`; None if no method has a value."""
    higher = Target(metric, 0.0).higher_is_better
    known = {m: v for m, v in medians.items() if math.isfinite(v)}
    if not known:
        return None
    method = (max if higher else min)(sorted(known), key=lambda m: known[m])
    value = loosen(known[method], tolerance, higher)
    return DerivedTarget(Target(metric, value, problem), method, known[method], tolerance)


# ---------------------------------------------------------------- tuneability


@dataclass
class Point:
    """One value of the swept key for one method: the metric over its seeds."""

    x: float
    mean: float | None  # over the runs that finished with a value
    low: float | None
    high: float | None
    n: int  # runs with a value
    diverged: int  # runs that diverged here


def sensitivity(runs: Iterable[tuple[float, str, float | None]], band: str) -> list[Point]:
    """(swept value, status, metric or None) per run -> one Point per swept value, in
    increasing order. Diverged runs are counted apart and never averaged in."""
    by_x: dict[float, list[tuple[str, float | None]]] = {}
    for x, status, value in runs:
        by_x.setdefault(x, []).append((status, value))
    points = []
    for x in sorted(by_x):
        values = [v for s, v in by_x[x] if s != Status.DIVERGED and v is not None]
        diverged = sum(s == Status.DIVERGED for s, _ in by_x[x])
        points.append(Point(x, *_spread(values, band), len(values), diverged))
    return points


def _spread(values: list[float], band: str) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    mean = statistics.fmean(values)
    if band == "std":
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return mean, mean - std, mean + std
    return mean, min(values), max(values)


def at_edge(chosen: str, tried: Iterable[str]) -> bool:
    """Whether the chosen value is the smallest or largest tried: the grid may be too
    narrow, and the best value may lie outside it."""
    try:
        numbers, value = sorted(float(v) for v in tried), float(chosen)
    except ValueError:  # not numbers: no order, no edge
        return False
    return len(numbers) > 2 and value in (numbers[0], numbers[-1])
