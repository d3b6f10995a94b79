"""The page of a regularization study (`optexp.report.regularization`): README.md, its
figures, and the numbers as csv and json, written by `optexp-report DIR --study PAGE`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from optexp.plotting import save
from optexp.report.figures import draw_profile, method_colours
from optexp.report.page import STUDY_MARKER, write_csv
from optexp.report.regularization import (
    ALL,
    MARGIN,
    REFERENCE,
    Findings,
    findings,
    searched_keys,
    tuned_strength,
)
from optexp.report.regularization_figures import gap_figure, pairs_figure
from optexp.report.render import md_row
from optexp.report.settings import ReportSettings
from optexp.report.trial_scores import Scores
from optexp.report.trials import EDGE, Cell, TrialStudy, cells, median
from optexp.report.trials_page import scores_json, trial_rows, verdict


def write_page(
    s: TrialStudy, scores: Scores, settings: ReportSettings, folder: Path, command: str
) -> None:
    table = cells(s)
    found = findings(s, table, settings)
    colours = method_colours(s.methods())
    draw_profile(
        scores.profiles[0], settings, folder / "profile_quality.png", colours, scores.intervals[0]
    )
    for problem in s.problems():
        save(gap_figure(s, table, problem, colours), folder / f"gap_{problem}.png")
    if found.pairs:
        save(pairs_figure(s, found), folder / "pairs.png")
    write_csv(folder / "trials.csv", trial_rows(s))
    write_csv(folder / "cells.csv", cell_rows(s, table, found))
    numbers = scores_json(scores) | effects_json(found)
    (folder / "scores.json").write_text(json.dumps(numbers, indent=2) + "\n")
    (folder / "README.md").write_text(markdown(s, table, found, scores, settings, command))
    (folder / STUDY_MARKER).write_text("written by optexp-report --study\n")


def markdown(
    s: TrialStudy,
    table: dict[tuple[str, str], Cell],
    found: Findings,
    scores: Scores,
    settings: ReportSettings,
    command: str,
) -> str:
    lines = ["# Regularization study: each regularizer at its tuned strength", ""]
    lines += protocol(s, settings)
    for problem in s.problems():
        lines += per_problem(s, table, found, problem)
    lines += pairs_section(s, found)
    lines += overall(s, found, scores, settings)
    lines += ["## Figures", ""]
    lines += [f"![{p}](gap_{p}.png)" + "\n" for p in s.problems()]
    lines += [
        "Per problem, one panel per regularizer with a searched strength: each trial's test "
        "error (filled) and training error (hollow, a clean pass) against its strength, the "
        "gap between them; a star marks each seed's tuned trial, the dashed line `none`'s "
        "median test error.",
        "",
    ]
    if found.pairs:
        lines += [
            "![pairs](pairs.png)",
            "",
            "Each combination against its parts: the test error minus `none`'s of each part, "
            "their sum (what adding up would give) and the combination's, median over seeds "
            "with its interval.",
            "",
        ]
    lines += [
        "![quality](profile_quality.png)",
        "",
        "The performance profile of the test error at the tuned strength.",
        "",
        f"Written by `{command}`.",
        "",
    ]
    return "\n".join(lines)


def protocol(s: TrialStudy, settings: ReportSettings) -> list[str]:
    studies, problems, methods = s.studies(), s.problems(), s.methods()
    trials = max(
        (len(s.searched(p, m, st)) for p in problems for m in methods for st in studies),
        default=0,
    )
    wall = sum(t.wall_s for t in s.trials if math.isfinite(t.wall_s))
    machine = "; ".join(s.machine.environments) or "not recorded"
    return [
        "## Protocol",
        "",
        f"- {len(methods)} methods x {len(problems)} problems x {len(studies)} seeds x "
        f"{trials} quasi-random trials over each method's own strength (its `search_space` "
        f"in `regularization/<method>.yaml`); {s.runs} runs, {wall / 60:.1f} min of training "
        f"summed, spanning {s.machine.span_s / 60:.1f} min. Where: {machine}.",
        "- Each seed is its own data split, initialization and quasi-random scramble, the "
        "same for every method (paired). Per seed, the tuned trial is the one best on "
        "validation with the weights that are tested, the last epoch's "
        "(`trainer.test_weights=last`: with the best epoch's, every method would get early "
        "stopping for free); early stopping is a method of its own.",
        "- Errors are 1 - accuracy. The gap is test error minus training error, the training "
        "split evaluated once at the end with the same weights in evaluation mode "
        "(metrics.json `train_eval`), not the running average taken with dropout or mixup on.",
        f"- Good range: the share of a seed's trials within {MARGIN:.0%} (relative) of its best "
        "validation error; the trials are quasi-random over the range, so it is the share "
        "of the range (on its scale).",
        f"- Intervals ({settings.ci:g}, {settings.bootstrap} paired bootstrap resamples): per "
        "problem over its seeds; over all problems, the mean of the problems' medians, "
        f"resampling problems and then seeds. With {len(studies)} seeds a problem's "
        "interval is about the seeds' range, and with "
        f"{len(problems)} problems the overall one speaks for these problems only.",
        "",
    ]


PER_PROBLEM = [
    "method",
    "tuned strength (median)",
    "test error (median; per seed)",
    "minus none's [interval]",
    "at its default strength",
    "gap (median)",
    "gap minus none's [interval]",
    "good range",
    "best epoch / epochs",
    "at an edge",
]


def per_problem(
    s: TrialStudy, table: dict[tuple[str, str], Cell], found: Findings, problem: str
) -> list[str]:
    none = (problem, REFERENCE)
    lines = [f"## {problem}", ""]
    if none in table:
        lines += [
            f"`none`: test error {median(found.test[none]):.4g}, gap {median(found.gap[none]):.4g},"
            f" best validation at {median(found.best_epoch[none]):.0%} of the epochs "
            "(median over seeds).",
            "",
        ]
    lines += [strength_against_choice(s, found, problem), ""]
    lines += [md_row(PER_PROBLEM), md_row(["---"] * len(PER_PROBLEM))]
    order = sorted(s.methods_on(problem), key=lambda m: (median(found.test[problem, m]), m))
    lines += [md_row(method_row(s, table, found, problem, m)) for m in order]
    lines += [
        "",
        f"At an edge: in most seeds the tuned strength lies in the outer {EDGE:.0%} of its "
        "range: a better one may lie outside it.",
        "",
    ]
    return lines


def strength_against_choice(s: TrialStudy, found: Findings, problem: str) -> str:
    """Which matters more here: the choice of regularizer (the spread of the methods' tuned
    test errors) or its strength (the spread of a method's test errors over its trials)."""
    methods = [m for m in s.methods_on(problem) if searched_keys(s, m)]
    tuned = [median(found.test[problem, m]) for m in s.methods_on(problem)]
    within = [
        median([np.ptp([t.test for t in s.searched(problem, m, st)]) for st in s.studies()])
        for m in methods
    ]
    return (
        f"Choice against strength: the methods' tuned test errors span {np.ptp(tuned):.4f}; "
        f"a method's over its strengths span {median(within):.4f} (median over methods of "
        f"each seed's range; widest {max(within):.4f}, {methods[int(np.argmax(within))]})."
        if within
        else ""
    )


def method_row(
    s: TrialStudy, table: dict[tuple[str, str], Cell], found: Findings, problem: str, m: str
) -> list[str]:
    key = (problem, m)
    against = found.against_none.get(m, {}).get(problem)
    gap_against = found.gap_against_none.get(m, {}).get(problem)
    tuned = tuned_strength(table[key], searched_keys(s, m))
    return [
        m,
        ", ".join(f"{k} {v:.3g}" for k, v in tuned.items()) or "-",
        f"{median(found.test[key]):.4f} ({_each(found.test[key])})",
        against.show("+.4f") if against else "-",
        _num(median(table[key].defaults_test)),
        f"{median(found.gap[key]):.4f}",
        gap_against.show("+.4f") if gap_against else "-",
        _share(found.good[key]),
        _share(found.best_epoch[key]),
        ", ".join(table[key].edges) or "-",
    ]


def pairs_section(s: TrialStudy, found: Findings) -> list[str]:
    if not found.pairs:
        return []
    lines = [
        "## Do effects add up?",
        "",
        "A combination's test error minus `none`'s against the sum of its parts' (each the "
        "median over seeds); the interaction is the combination's effect minus its parts', "
        "taken within each seed, its median over seeds and paired interval (negative: "
        "together they do better than their effects added; so a median of differences, "
        "it need not equal the difference of the columns' medians).",
        "",
        md_row(["problem", "combination", "part A", "part B", "A + B", "together", "interaction"]),
        md_row(["---"] * 7),
    ]
    for problem in [*s.problems(), ALL]:
        for both, (a, b) in sorted(found.pairs.items()):
            if problem not in found.interactions.get(both, {}):
                continue  # not run on this problem
            ea, eb, eab = (found.against_none[m][problem] for m in (a, b, both))
            inter = found.interactions[both][problem]
            lines.append(
                md_row(
                    [
                        problem,
                        both,
                        f"{a} {ea.estimate:+.4f}",
                        f"{b} {eb.estimate:+.4f}",
                        f"{ea.estimate + eb.estimate:+.4f}",
                        f"{eab.estimate:+.4f}",
                        f"{inter.show('+.4f')} {_verdict(inter, 'adds less', 'adds more')}",
                    ]
                )
            )
    return [*lines, ""]


def overall(s: TrialStudy, found: Findings, scores: Scores, settings: ReportSettings) -> list[str]:
    problems = s.problems()
    left = sorted(set(s.methods()) - set(scores.profiles[0].scores))
    lines = [
        "## Over the problems",
        "",
        "Test error minus `none`'s: per problem (median over seeds) and the mean over "
        "the problems it ran on, with its interval; a method helps where the interval "
        "lies below 0.",
        "",
        md_row(["method", *problems, ALL, "helps on"]),
        md_row(["---"] * (len(problems) + 3)),
    ]
    helps_everywhere = []
    for m in sorted(found.against_none, key=lambda m: found.against_none[m][ALL].estimate):
        e = found.against_none[m]
        ran = [p for p in problems if p in e]
        helped = [p for p in ran if e[p].high < 0]
        if len(helped) == len(problems):
            helps_everywhere.append(m)
        lines.append(
            md_row(
                [
                    m,
                    *(f"{e[p].estimate:+.4f}" if p in e else "not run" for p in problems),
                    f"{e[ALL].show('+.4f')} {_verdict(e[ALL], 'hurts', 'helps')}",
                    f"{len(helped)} of {len(ran)}",
                ]
            )
        )
    lines += [
        "",
        "Helps on every problem: "
        + (", ".join(helps_everywhere) if helps_everywhere else "no regularizer")
        + f" (its per-problem interval below 0 on all {len(problems)}).",
        "",
        "The profile's scores (area under the performance profile of the tuned test error, "
        f"tau in [1, {settings.tau_max:g}]) against `none`, of the methods run on every "
        "problem" + (f" (not {', '.join(left)})" if left else "") + ":",
        "",
    ]
    return lines + verdict(scores, settings)[2:]


def _verdict(i: Any, above: str, below: str) -> str:
    if i.low > 0:
        return f"({above})"
    if i.high < 0:
        return f"({below})"
    return "(not resolved)"


def _num(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.4f}"


def _each(values: np.ndarray) -> str:
    return ", ".join(f"{x:.4f}" for x in values)


def _share(values: np.ndarray) -> str:
    return "-" if np.all(np.isnan(values)) else f"{np.nanmedian(values):.0%}"


# ---------------------------------------------------------------- csv and json


def cell_rows(
    s: TrialStudy, table: dict[tuple[str, str], Cell], found: Findings
) -> list[dict[str, Any]]:
    rows = []
    for (problem, method), c in table.items():
        for i, study in enumerate(s.studies()):
            tuned = c.tuned[i]
            rows.append(
                {
                    "problem": problem,
                    "method": method,
                    "study": study,
                    "tuned_trial": "" if tuned is None else tuned.trial,
                    "val_error": c.val[i],
                    "test_error": c.test[i],
                    "train_error": "" if tuned is None else tuned.train,
                    "gap": found.gap[problem, method][i],
                    "good_range": found.good[problem, method][i],
                    "best_epoch_share": found.best_epoch[problem, method][i],
                }
            )
    return rows


def effects_json(found: Findings) -> dict[str, Any]:
    def table(effects: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {
            m: {p: [i.estimate, i.low, i.high] for p, i in e.items()} for m, e in effects.items()
        }

    return {
        "test_error_minus_none": table(found.against_none),
        "gap_minus_none": table(found.gap_against_none),
        "interactions": table(found.interactions),
        "combinations": {m: list(parts) for m, parts in found.pairs.items()},
    }
