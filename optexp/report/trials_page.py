"""The page of a trial study (`optexp.report.trials`): README.md, its figures, and the
numbers as csv and json, written by `optexp-report DIR --study PAGE`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from optexp.plotting import save
from optexp.report.figures import draw_profile, method_colours
from optexp.report.markdown import percent
from optexp.report.page import STUDY_MARKER, write_csv
from optexp.report.render import md_row
from optexp.report.settings import ReportSettings
from optexp.report.trial_figures import budget_figure, curves_figure
from optexp.report.trial_scores import Scores
from optexp.report.trials import (
    EDGE,
    Bound,
    Cell,
    TrialStudy,
    cells,
    median,
    rank_correlations,
    separation,
)

FIGURES = ("profile_time.png", "profile_quality.png", "budget.png", "curves.png")


def write_page(
    s: TrialStudy, scores: Scores, settings: ReportSettings, folder: Path, command: str
) -> None:
    table = cells(s)
    colours = method_colours(s.methods())
    for p, intervals, name in zip(scores.profiles, scores.intervals, FIGURES, strict=False):
        draw_profile(p, settings, folder / name, colours, intervals)
    save(budget_figure(s, colours), folder / "budget.png")
    save(curves_figure(s, table, colours), folder / "curves.png")
    write_csv(folder / "trials.csv", trial_rows(s))
    write_csv(folder / "cells.csv", cell_rows(s, table))
    (folder / "scores.json").write_text(json.dumps(scores_json(scores), indent=2) + "\n")
    (folder / "README.md").write_text(markdown(s, table, scores, settings, command))
    (folder / STUDY_MARKER).write_text("written by optexp-report --study\n")


# ---------------------------------------------------------------- the page's text


def markdown(
    s: TrialStudy,
    table: dict[tuple[str, str], Cell],
    scores: Scores,
    settings: ReportSettings,
    command: str,
) -> str:
    lines = ["# Optimizer study: equal tuning budgets, targets set once", ""]
    lines += protocol(s, settings)
    lines += verdict(scores, settings)
    lines += leave_one_out_section(scores)
    lines += per_problem(s, table)
    lines += problems_section(s, table)
    lines += [
        "## Figures",
        "",
        "Performance profiles (left: rho(tau), the share of problems on which a method is "
        "within a factor tau of the best; right: each score and its interval):",
        "",
        "![time](profile_time.png)",
        "",
        "![quality](profile_quality.png)",
        "",
        "Budget: the best validation cost among a study's first k trials (median over "
        "studies, band min-max), log scale:",
        "",
        "![budget](budget.png)",
        "",
        "The timed trials: per study, the trial that reached the target first (else the "
        "best on validation), its validation cost per epoch; the dashed line is the target:",
        "",
        "![curves](curves.png)",
        "",
        f"Written by `{command}`.",
        "",
    ]
    return "\n".join(lines)


def protocol(s: TrialStudy, settings: ReportSettings) -> list[str]:
    studies, problems = s.studies(), s.problems()
    trials = max(
        (len(s.searched(p, m, st)) for p in problems for m in s.methods() for st in studies),
        default=0,
    )
    wall = sum(t.wall_s for t in s.trials if math.isfinite(t.wall_s))
    targets = ", ".join(f"{p} {target_text(b)}" for p, b in sorted(s.bounds.items()))
    machine = "; ".join(s.machine.environments) or "not recorded (runs older than the field)"
    return [
        "## Protocol",
        "",
        f"- {len(s.methods())} methods x {len(problems)} problems x {len(studies)} studies "
        f"x {trials} quasi-random trials over each method's own search space "
        f"(`search_space/<optimizer>.yaml`); {s.runs} runs, their training {wall / 60:.1f} min "
        "summed (each run's `wall_s`).",
        f"- Where: {machine}. The runs spanned {s.machine.span_s / 60:.1f} min from the first "
        "start to the last end (sweeps run side by side overlap).",
        f"- Targets, set once in each problem's file (`study.target`): {targets}.",
        "- Time: per study, the fastest trial to reach the target, in epochs (steps = epochs "
        "x the problem's steps per epoch, the same for every method); per problem the median "
        "over studies (inf: more than half of the studies never reached it). Seconds (the "
        "training and validation time of the same trial until then) are shown beside it but "
        "not scored: on a shared 2-core machine they drift by 20-40 % between identical runs.",
        "- Quality: per study, the trial best on validation, its test cost (error, or loss "
        "capped at the problem's chance level; a diverged trial counts as chance).",
        f"- Scores: the area under each performance profile over tau in [1, {settings.tau_max:g}]"
        f" ({settings.score_scale}); intervals: {settings.bootstrap} paired bootstrap resamples "
        f"of the problems and, within each, of the studies, at level {settings.ci:g}.",
        f"- What {len(studies)} studies can show: a percentile interval over {len(studies)} "
        "studies per problem covers roughly their range; with few problems it is the "
        "problems' resampling that dominates, so an interval excluding the reference is "
        "evidence across these problems only, not across problems in general.",
        "",
    ]


def verdict(scores: Scores, settings: ReportSettings) -> list[str]:
    lines = ["## Verdict", ""]
    for p, intervals, ranks, beats, versus in zip(
        scores.profiles, scores.intervals, scores.ranks, scores.beats, scores.versus, strict=True
    ):
        ref = scores.reference
        lines += [
            f"### {p.name}",
            "",
            md_row(
                [
                    "method",
                    "score [interval]",
                    "P(rank 1)",
                    f"P(score > {ref})",
                    f"score - {ref}'s [paired interval]",
                    "verdict",
                ]
            ),
            md_row(["---"] * 6),
        ]
        for m in sorted(p.scores, key=lambda m: (-p.scores[m], m)):
            i = intervals[m]
            lines.append(
                md_row(
                    [
                        m,
                        i.show(".3f"),
                        percent(ranks[m][0]),
                        "-" if m == ref else percent(beats.get(m, math.nan)),
                        "-" if m == ref else versus[m].show("+.3f"),
                        "-" if m == ref else against(versus[m]),
                    ]
                )
            )
        lines.append("")
    return lines


def against(difference: Any) -> str:
    """Above or below the reference only where the paired interval of the difference
    excludes 0."""
    if difference.low > 0:
        return "above the reference"
    if difference.high < 0:
        return "below the reference"
    return "not resolved"


def leave_one_out_section(scores: Scores) -> list[str]:
    lines = ["## Leave one problem out", ""]
    for p, loo in zip(scores.profiles, scores.leave_one_out, strict=True):
        if not loo:
            continue
        left = sorted(loo)
        lines += [f"{p.name}: each method's score without the problem named.", ""]
        lines += [md_row(["method", "all", *left]), md_row(["---"] * (len(left) + 2))]
        for m in sorted(p.scores):
            lines.append(md_row([m, f"{p.scores[m]:.3f}", *(f"{loo[x][m]:.3f}" for x in left)]))
        lines.append("")
    return lines


def per_problem(s: TrialStudy, table: dict[tuple[str, str], Cell]) -> list[str]:
    lines = ["## Per problem", ""]
    for problem in s.problems():
        b = s.bounds[problem]
        lines += [
            f"### {problem}",
            "",
            f"Target {target_text(b)}; costs capped at {b.cap:g}.",
            "",
            md_row(
                [
                    "method",
                    "epochs to target (median; per study)",
                    "seconds (median)",
                    "test cost (median)",
                    "defaults: epochs; test cost",
                    "tuned value at an edge",
                ]
            ),
            md_row(["---"] * 6),
        ]
        for m in s.methods():
            c = table[problem, m]
            per = ", ".join(_epochs(t) for t in c.time)
            lines.append(
                md_row(
                    [
                        m,
                        f"{_epochs(c.median_time)} ({per})",
                        _seconds(median(c.seconds)),
                        f"{c.median_test:.4g}",
                        f"{_epochs(median(c.defaults_time))}; {_num(median(c.defaults_test))}",
                        ", ".join(c.edges) or "-",
                    ]
                )
            )
        lines.append("")
    lines += [
        f"An edge: in most studies the tuned trial's value lies in the outer {EDGE:.0%} of "
        "its range (on its scale): a better value may lie outside the search space.",
        "",
    ]
    return lines


def problems_section(s: TrialStudy, table: dict[tuple[str, str], Cell]) -> list[str]:
    problems = s.problems()
    lines = [
        "## The problems",
        "",
        "Does each problem tell the methods apart? The range of the methods' median tuned "
        "validation cost against twice the paired spread between studies (the median over "
        "method pairs of the std over studies of their difference):",
        "",
        md_row(["problem", "range", "2 x paired spread", "separates"]),
        md_row(["---"] * 4),
    ]
    for p in problems:
        sep = separation(s, table, p)
        lines.append(
            md_row([p, f"{sep.spread:.4g}", _num(2 * sep.noise), "yes" if sep.separates else "no"])
        )
    if len(problems) > 1:
        rho = rank_correlations(s, table)
        lines += [
            "",
            "Spearman's rank correlation of the methods' median tuned validation costs "
            "between problems (near 1: two problems order the methods alike):",
            "",
            md_row(["", *problems]),
            md_row(["---"] * (len(problems) + 1)),
        ]
        lines += [md_row([a, *(_num(rho[a][b], ".2f") for b in problems)]) for a in problems]
    lines.append("")
    return lines


def target_text(b: Bound) -> str:
    if b.target.auto:  # no value in the problem's file
        return f"{b.target.metric} not set (no trial reaches it)"
    return f"{b.target.metric} {b.target.value:g}"


def _seconds(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"


def _epochs(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:g}"


def _num(x: float, fmt: str = ".4g") -> str:
    return "-" if math.isnan(x) else f"{x:{fmt}}"


# ---------------------------------------------------------------- csv and json


def trial_rows(s: TrialStudy) -> list[dict[str, Any]]:
    return [
        {
            "problem": t.problem,
            "method": t.method,
            "study": t.study,
            "trial": "defaults" if t.trial is None else t.trial,
            "status": t.status,
            "val_cost": t.val,
            "test_cost": t.test,
            "train_cost": t.train,
            "epochs_to_target": "" if t.hit is None else t.hit.epoch,
            "wall_s": t.wall_s,
            **{f"point.{k}": v for k, v in t.point.items()},
        }
        for t in s.trials
    ]


def cell_rows(s: TrialStudy, table: dict[tuple[str, str], Cell]) -> list[dict[str, Any]]:
    rows = []
    for (problem, method), c in sorted(table.items()):
        for i, study in enumerate(s.studies()):
            rows.append(
                {
                    "problem": problem,
                    "method": method,
                    "study": study,
                    "epochs_to_target": c.time[i],
                    "tuned_val_cost": c.val[i],
                    "tuned_test_cost": c.test[i],
                    "tuned_trial": _trial_number(c.tuned[i]),
                    "timed_trial": _trial_number(c.timed[i]),
                }
            )
    return rows


def _trial_number(t: Any) -> Any:
    return "" if t is None else t.trial


def scores_json(scores: Scores) -> dict[str, Any]:
    return {
        "reference": scores.reference,
        "profiles": [
            {
                "name": p.name,
                "scores": {m: [i.estimate, i.low, i.high] for m, i in intervals.items()},
                "rank_probabilities": ranks,
                "p_above_reference": beats,
                "minus_reference": {m: [i.estimate, i.low, i.high] for m, i in versus.items()},
                "leave_one_out": loo,
            }
            for p, intervals, ranks, beats, versus, loo in zip(
                scores.profiles,
                scores.intervals,
                scores.ranks,
                scores.beats,
                scores.versus,
                scores.leave_one_out,
                strict=True,
            )
        ],
    }
