"""The study's README.md, as a person reads it (`markdown_page` of `Findings`): the
verdict the numbers support, where the spread comes from, the targets, per problem the
tuned value with its test metrics and time to target (each with its interval), the
profiles with their scores' intervals and rank probabilities, and the tuning budget."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from optexp.report.bootstrap import Interval
from optexp.report.budget import Curve
from optexp.report.measures import Profile
from optexp.report.render import md_row
from optexp.report.settings import ReportSettings
from optexp.report.study import Study
from optexp.report.uncertainty import TIME, Uncertainty


@dataclass
class Findings:
    """Everything the page shows, computed once."""

    study: Study
    profiles: list[Profile]  # time to target first (when there are targets), final metric
    uncertainty: Uncertainty
    curves: list[Curve]
    budgets: dict[int, Profile]  # budget k -> profile of the expected best after k trials
    settings: ReportSettings  # what they were computed with


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def percent(p: float) -> str:
    return f"{100 * p:.0f} %"


# ---------------------------------------------------------------- the verdict


def chain(scores: dict[str, Interval]) -> str:
    """The methods in score order, each pair of neighbours joined by `>` when the second's
    interval lies wholly below the first's (told apart) and by `~` when they overlap."""
    order = sorted(scores, key=lambda m: (-scores[m].estimate, m))
    out = order[0]
    for before, after in itertools.pairwise(order):
        out += (" > " if scores[after].high < scores[before].low else " ~ ") + after
    return out


def verdict(profile: Profile, scores: dict[str, Interval], ranks: dict[str, list[float]]) -> str:
    """A sentence or two on a profile that follow from its intervals: who leads and how
    often, and which neighbours in the ranking the intervals tell apart."""
    leader = sorted(scores, key=lambda m: (-scores[m].estimate, m))[0]
    above = [m for m in sorted(scores) if m != leader and scores[m].high < scores[leader].low]
    clear = (
        f"its interval lies above those of {', '.join(above)}"
        if above
        else ("its interval overlaps every other method's")
    )
    return (
        f"**By {profile.name}**: {leader} leads ({scores[leader].show('.2f')}, first in "
        f"{percent(ranks[leader][0])} of the resamples); {clear}. In score order: "
        f"{chain(scores)} (>: the next interval lies wholly below; ~: they overlap)."
    )


def verdict_section(f: Findings) -> list[str]:
    u = f.uncertainty
    lines = ["## Verdict", ""]
    for profile, scores, ranks in zip(f.profiles, u.scores, u.ranks, strict=True):
        if scores:  # a profile of no problem (none has its metric) has nothing to say
            lines += [verdict(profile, scores, ranks), ""]
    lines += [separation_sentence(f), ""]
    return lines


def separation(f: Findings, problem: str, metric: str) -> tuple[int, int] | None:
    """(pairs of methods whose intervals of the tuned `metric` are disjoint, pairs)."""
    tuned = f.uncertainty.tuned
    shown = {m: tuned[(p, m)][metric] for p, m in tuned if p == problem and metric in tuned[(p, m)]}
    if len(shown) < 2:
        return None
    methods = sorted(shown)
    pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1 :]]
    return sum(not shown[a].overlaps(shown[b]) for a, b in pairs), len(pairs)


def separation_sentence(f: Findings) -> str:
    metric = f.settings.profile_metric
    counts = {p: separation(f, p, metric) for p in f.study.problems()}
    parts = [f"{p} {c[0]} of {c[1]}" for p, c in counts.items() if c is not None]
    return (
        f"Pairs of methods whose tuned {metric} intervals are disjoint, per problem: "
        + "; ".join(parts)
        + "."
    )


# ---------------------------------------------------------------- what the spread includes


def variance_section(s: Study) -> list[str]:
    """Which sources of variation the spread over seeds includes, read from the runs."""
    varied = fixed = 0
    for e in s.entries:
        for group in e.choice.candidates.values():
            seeds = {r.value_of("seed") for r in group.runs}
            data = {r.value_of("data_seed") for r in group.runs}
            if len(seeds) > 1:
                varied += len(data) > 1
                fixed += len(data) == 1
    if fixed == varied == 0:
        data = "each setting ran one seed, so there is no spread to measure"
    elif fixed == 0:
        data = (
            "`data_seed` varied with `seed` in every setting, so it also includes the data "
            "split and the batch order (and, for sets generated from `data_seed`, the "
            "samples themselves)"
        )
    elif varied == 0:
        data = (
            "`data_seed` was the same for every seed, so it leaves out the data split and "
            "the batch order"
        )
    else:
        data = f"`data_seed` varied with `seed` in {varied} of {varied + fixed} settings"
    seeds = min((len(e.seeds) or len(e.choice.group.runs) for e in s.entries), default=0)
    few = (
        f" With {seeds} seeds the percentile intervals are coarse and cover less than their "
        "level (for a normal mean and 3 seeds, a 95 % interval covers about 75 %): read "
        "them as the spread a rerun could show."
        if seeds < 10
        else ""
    )
    return [
        "## What the spread includes",
        "",
        f"The spread over seeds includes model initialization, dropout and augmentation "
        f"(`seed`); {data}. Seeds are resampled independently per problem and method, "
        f"which ignores that methods share a seed's split (conservative for differences).{few}",
        "",
    ]


# ---------------------------------------------------------------- targets


def targets_section(f: Findings) -> list[str]:
    s = f.study
    lines = ["## Targets", ""]
    if s.derived:
        tolerance = percent(f.settings.target_tolerance)
        lines += [
            f"`--target auto`: per problem, the best method's median over seeds of the final "
            f"validation metric at its tuned value, loosened by {tolerance} "
            "(a loss times 1 + tolerance, an error rate likewise).",
            "",
        ]
    header = ["problem", "target", "set from", "its median", "loosened by"]
    lines += [md_row(header), md_row(["---"] * len(header))]
    for problem in s.problems():
        target = next((e.target for e in s.entries if e.problem == problem and e.target), None)
        d = s.derived.get(problem)
        if d is not None:
            loosened = percent(d.tolerance) if d.target.value != d.median else "- (no error)"
            row = [problem, str(d.target), d.method, f"{d.median:.4g}", loosened]
        else:
            row = [problem, str(target) if target else "-", "given", "-", "-"]
        lines.append(md_row(row))
    return [*lines, ""]


# ---------------------------------------------------------------- per problem


def _show(intervals: dict[str, Interval], name: str, fmt: str) -> str:
    return intervals[name].show(fmt) if name in intervals else "-"


def tuned_table(f: Findings, problem: str) -> list[str]:
    s, u = f.study, f.uncertainty
    unit = f.settings.time_unit
    header = ["method", f"{s.over} (chosen in)", "test acc", "test loss", "reached"]
    header += [f"{unit} to target", f"{s.over} fastest per seed"]
    lines = [md_row(header), md_row(["---"] * len(header))]
    for e in sorted((e for e in s.entries if e.problem == problem), key=lambda e: e.method):
        i = u.tuned[(problem, e.method)]
        share = u.chosen[(problem, e.method)].get(e.choice.chosen, math.nan)
        chosen = f"{e.choice.chosen} ({percent(share)})" + (" edge" if e.edge else "")
        reach = e.time(f.settings)
        fastest = " ".join(v or "-" for v in e.fastest_values(unit)) if e.target else "-"
        row = [e.method, chosen, _show(i, "test/acc", ".4f"), _show(i, "test/loss", ".4g")]
        row += [reach.show() if reach else "-", _show(i, TIME, ".3g"), fastest]
        lines.append(md_row(row))
    return lines


def tuned_section(f: Findings, figures: dict[str, list[str]]) -> list[str]:
    st = f.settings
    level = percent(st.ci)
    mode = (
        "per seed the fastest value of the grid to reach the target (AlgoPerf), then the "
        "median over seeds"
        if st.time_to_target == "fastest"
        else "the median over seeds at the tuned value"
    )
    seconds = (
        " Seconds are the summed `time/epoch_s`: they depend on the machine and its load."
        if st.time_unit == "seconds"
        else ""
    )
    lines = [
        "## Per problem",
        "",
        f"Test metrics at the tuned value, mean over seeds, with the {level} bootstrap "
        f"interval (the value re-tuned in every resample; `chosen in`: the share of "
        f"resamples that chose it). Time to target: {mode}, a seed that never reached it "
        f"counting as infinite (inf: more than half missed); the profile below uses the "
        f"same number.{seconds}",
        "",
    ]
    for problem in f.study.problems():
        lines += [f"### {problem}", "", *tuned_table(f, problem), ""]
        lines += [f"![{name.removesuffix('.png')}]({name})" for name in figures[problem]]
        lines.append("")
    return lines


# ---------------------------------------------------------------- profiles and budget


def profiles_section(f: Findings) -> list[str]:
    u, st = f.uncertainty, f.settings
    axis = "log tau" if st.score_scale == "log" else "tau"
    lines = [
        "## Performance profiles",
        "",
        f"Per problem, each method's cost over the best method's (r >= 1); rho(tau) is the "
        f"fraction of problems with r <= tau and the score the area under rho over "
        f"[1, {st.tau_max:g}] on the {axis} axis, normalized (1: best everywhere; 0: never "
        f"within {st.tau_max:g}x). The figures draw tau on that same axis. Intervals: "
        f"{percent(st.ci)} bootstrap over seeds ({st.bootstrap} resamples, seed "
        f"{st.bootstrap_seed}); P(rank r): the share of resamples in which the method ranks r-th "
        "(ties share the better rank).",
        "",
    ]
    for p, scores, ranks in zip(f.profiles, u.scores, u.ranks, strict=True):
        covered = {q for per in p.ratios.values() for q in per}
        left = [q for q in f.study.problems() if q not in covered]
        out = f"Left out (no target, or no run has the metric): {', '.join(left)}." if left else ""
        lines += [f"### {p.name}", "", *([out, ""] if out else []), *score_table(scores, ranks), ""]
        lines += [f"![performance profile: {p.name}](profile_{slug(p.name)}.png)", ""]
    return lines


def score_table(scores: dict[str, Interval], ranks: dict[str, list[float]]) -> list[str]:
    order = sorted(scores, key=lambda m: (-scores[m].estimate, m))
    header = ["method", "score", *(f"P(rank {r + 1})" for r in range(len(order)))]
    lines = [md_row(header), md_row(["---"] * len(header))]
    for m in order:
        lines.append(md_row([m, scores[m].show(".3f"), *(percent(p) for p in ranks[m])]))
    return lines


def budget_section(f: Findings) -> list[str]:
    if not f.budgets:
        return []
    ks = sorted(f.budgets)
    by = f.study.by
    lines = [
        "## Tuning budget",
        "",
        f"The expected best {by} after k values of the grid drawn at random with replacement"
        " (Dodge et al. 2019, exact), per seed, then the mean over seeds; a diverged trial "
        "counts as the worst finished value on its problem. It is an expectation of the "
        "loss itself, so at small k a few blown-up values of the grid weigh heavily; k = "
        "grid size draws with replacement, so values repeat and it is not the whole grid. "
        "Profile scores of that mean at a few budgets (the figures per problem are above, "
        "`budget_PROBLEM.png`):",
        "",
    ]
    methods = sorted({m for p in f.budgets.values() for m in p.scores})
    header = ["method", *(f"k = {k}" for k in ks)]
    lines += [md_row(header), md_row(["---"] * len(header))]
    for m in sorted(methods, key=lambda m: -f.budgets[ks[-1]].scores.get(m, 0.0)):
        lines.append(md_row([m, *(f"{f.budgets[k].scores.get(m, 0.0):.3f}" for k in ks)]))
    return [*lines, ""]


def markdown_page(f: Findings, figures: dict[str, list[str]], command: str) -> str:
    s = f.study
    lines = [
        "# Optimizer study",
        "",
        f"{s.runs} runs; problems are the values of `{s.problem_key}`, methods the settings "
        f"of the other keys. `{s.over}` is tuned per method and problem by the best mean "
        f"`{s.by}` over seeds (a value where a seed diverged ranks below every value where "
        "all finished); test metrics are those of the tuned value.",
        "",
        "```bash",
        command,
        "```",
        "",
        *verdict_section(f),
        *variance_section(s),
        *targets_section(f),
        *tuned_section(f, figures),
        *profiles_section(f),
        *budget_section(f),
        "Data: `tuned.csv` (the tables above, with the intervals), `time_to_target.csv` "
        "(every run at every value), `sensitivity_PROBLEM.csv`, `budget.csv` (every curve, "
        "per seed), `scores.csv` (scores, intervals, rank probabilities, budget scores), "
        "`profile_*.csv` (rho at each tau), `study.json` (all of it, with the ratios).",
    ]
    return "\n".join(lines) + "\n"


def problem_figures(problem: str) -> list[str]:
    return [f"{kind}_{problem}.png" for kind in ("curves", "sensitivity", "budget")]
