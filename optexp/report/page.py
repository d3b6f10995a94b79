"""The study's folder: README.md (`markdown`) with its figures, the numbers as csv and
json, written into a staged folder moved into place only when all of it is written."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optexp.report.bootstrap import Interval
from optexp.report.budget import Curve
from optexp.report.figures import (
    Line,
    draw_budget,
    draw_profile,
    draw_sensitivity,
    marker_of,
    method_colours,
    plot_curves,
    width_of,
)
from optexp.report.grouping import as_number
from optexp.report.markdown import Findings, markdown_page, problem_figures, slug
from optexp.report.measures import Point, Profile
from optexp.report.runs import ReportError
from optexp.report.study import Entry, Study, replicate, sensitivity_series
from optexp.report.uncertainty import TIME

STUDY_MARKER = ".optexp-study"  # in every folder --study wrote: it may be rewritten


# ---------------------------------------------------------------- the folder


@contextlib.contextmanager
def staged(folder: Path) -> Iterator[Path]:
    """A hidden folder beside `folder` to write into; its files are moved into `folder`
    when the block ends without an error, so a study refused half-way leaves nothing."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as error:
        raise ReportError(f"cannot create {folder}: {error}") from None
    try:
        yield work
        folder.mkdir(exist_ok=True)
        for path in sorted(work.iterdir()):
            os.replace(path, folder / path.name)
    except OSError as error:
        raise ReportError(f"cannot write {folder}: {error}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_study(f: Findings, folder: Path, command: str) -> None:
    """Every file of the study into `folder`: per problem the curves, the sensitivity and
    the tuning budget (figure and csv), each profile (figure and csv), tuned.csv,
    time_to_target.csv, scores.csv, budget.csv, study.json, README.md, and the marker that
    lets a later --study replace them."""
    s = f.study
    colours = method_colours(s.methods())
    figures: dict[str, list[str]] = {}
    for problem in s.problems():
        write_problem_figures(f, problem, folder, colours)
        figures[problem] = problem_figures(problem)
    for p, intervals in zip(f.profiles, f.uncertainty.scores, strict=True):
        name = f"profile_{slug(p.name)}"
        draw_profile(p, f.settings, folder / f"{name}.png", colours, intervals)
        write_csv(folder / f"{name}.csv", _profile_rows(p))
    write_csv(folder / "tuned.csv", tuned_rows(f))
    write_csv(folder / "time_to_target.csv", run_rows(s))
    write_csv(folder / "scores.csv", score_rows(f))
    write_csv(folder / "budget.csv", budget_rows(f.curves))
    (folder / "study.json").write_text(json.dumps(study_json(f), indent=2))
    (folder / "README.md").write_text(markdown_page(f, figures, command))
    (folder / STUDY_MARKER).write_text(
        "Written by optexp-report --study: a later --study into this folder replaces it.\n"
    )


def write_problem_figures(f: Findings, problem: str, folder: Path, colours: dict[str, str]) -> None:
    """The curves at the tuned values, the sensitivity and the tuning budget of a problem."""
    s, band = f.study, f.settings.band
    entries = sorted((e for e in s.entries if e.problem == problem), key=lambda e: e.method)
    target = entries[0].target
    tag = target.metric if target else f.settings.curve
    lines = [_line(e, tag, colours) for e in entries]
    plot_curves(lines, tag, band, folder / f"curves_{problem}.png", target and target.value)
    series = sensitivity_series(s, problem, s.by, band)
    title = f"{problem}: {s.by} against {s.over}"
    draw_sensitivity(series, title, s.over, s.by, folder / f"sensitivity_{problem}.png", colours)
    write_csv(folder / f"sensitivity_{problem}.csv", _sensitivity_rows(series, s.over))
    curves = [c for c in f.curves if c.problem == problem]
    title = f"{problem}: expected best {s.by} after k random trials of the grid"
    draw_budget(curves, title, s.by, folder / f"budget_{problem}.png", colours)


def _line(e: Entry, tag: str, colours: dict[str, str]) -> Line:
    """The chosen group's curves of `tag`, labelled by the method (the problem shared)."""
    curves = [c.get(tag, {}) for c in e.curves]
    style = {"colour": colours[e.method], "marker": marker_of(e.method, colours)}
    style["width"] = width_of(e.method, colours)
    return Line({"problem": e.problem, "method": e.method}, curves, **style)


def _interval_columns(name: str, i: Interval | None) -> dict[str, Any]:
    if i is None:
        return {name: None, f"{name} low": None, f"{name} high": None}
    return {name: i.estimate, f"{name} low": i.low, f"{name} high": i.high}


def tuned_rows(f: Findings) -> list[dict[str, Any]]:
    """One row per problem and method: the tuned value (and how often the resamples chose
    it), its test metrics and time to target with their intervals."""
    s, u = f.study, f.uncertainty
    rows = []
    for e in sorted(s.entries, key=lambda e: (e.problem, e.method)):
        intervals = u.tuned[(e.problem, e.method)]
        row: dict[str, Any] = {
            "problem": e.problem,
            "method": e.method,
            s.over: e.choice.chosen,
            "chosen share": u.chosen[(e.problem, e.method)].get(e.choice.chosen),
            "at_grid_edge": e.edge,
            "tried": " ".join(sorted(e.choice.candidates, key=as_number)),
            "status": e.choice.group.statuses(),
            f"{s.by} mean": e.choice.group.stat(s.by).mean,
        }
        for metric in ("test/acc", "test/loss"):
            row |= _interval_columns(metric, intervals.get(metric))
        row["target"] = str(e.target) if e.target else ""
        reach, unit = e.time(f.settings), f.settings.time_unit
        row["reached"] = reach.show() if reach else ""
        row |= _interval_columns(f"{unit} to target", intervals.get(TIME))
        # by epochs whatever --time-unit, unlike the README's table (kept as it was)
        fastest = e.fastest_values("epochs") if e.target else []
        row["fastest per seed"] = " ".join(v or "-" for v in fastest)
        rows.append(row)
    return rows


def run_rows(s: Study) -> list[dict[str, Any]]:
    """Time-to-target of every run, at every value of the swept key."""
    rows = []
    for e in s.entries:
        if e.target is None:
            continue
        for value, group in e.choice.candidates.items():
            for run in group.runs:
                hit = e.hits[value].get(replicate(run, s.ignore))
                rows.append(
                    {
                        "problem": e.problem,
                        "method": e.method,
                        s.over: value,
                        "tuned": value == e.choice.chosen,
                        "target": str(e.target),
                        "status": run.status,
                        "reached": hit is not None,
                        "epoch": hit.epoch if hit else None,
                        "seconds": hit.seconds if hit else None,
                        "dir": str(run.path),
                    }
                )
    return rows


def score_rows(f: Findings) -> list[dict[str, Any]]:
    """Per profile and method: the score, its interval and P(rank r); then the budget
    profiles' scores."""
    rows = []
    for p, scores, ranks in zip(f.profiles, f.uncertainty.scores, f.uncertainty.ranks, strict=True):
        for m in sorted(scores):
            i = scores[m]
            row = {"profile": p.name, "method": m, "score": i.estimate, "low": i.low}
            row |= {"high": i.high} | {f"P(rank {r + 1})": v for r, v in enumerate(ranks[m])}
            rows.append(row)
    for _, p in sorted(f.budgets.items()):
        rows += [{"profile": p.name, "method": m, "score": v} for m, v in sorted(p.scores.items())]
    return rows


def budget_rows(curves: list[Curve]) -> list[dict[str, Any]]:
    """Every tuning-budget curve: per problem, method and k, the mean, min and max over
    seeds and each seed's value."""
    rows = []
    for c in curves:
        mean, low, high = c.mean(), c.low(), c.high()
        for k in c.ks:
            row = {"problem": c.problem, "method": c.method, "k": k, "mean": mean[k - 1]}
            row |= {"low": low[k - 1], "high": high[k - 1]}
            row |= {f"seed {seed}": v[k - 1] for seed, v in c.per_seed.items()}
            rows.append(row)
    return rows


def _sensitivity_rows(series: dict[str, list[Point]], over: str) -> list[dict[str, Any]]:
    return [
        {"method": m, over: p.x} | {k: v for k, v in vars(p).items() if k != "x"}
        for m, points in sorted(series.items())
        for p in points
    ]


def _profile_rows(p: Profile) -> list[dict[str, Any]]:
    return [{"tau": tau} | {m: p.rho[m][i] for m in sorted(p.rho)} for i, tau in enumerate(p.taus)]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    header = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None  # JSON has no inf: null


def study_json(f: Findings) -> dict[str, Any]:
    s, u, st = f.study, f.uncertainty, f.settings
    return {
        "problem_key": s.problem_key,
        "over": s.over,
        "selected_by": s.by,
        "runs": s.runs,
        "bootstrap": {"resamples": st.bootstrap, "level": st.ci, "seed": st.bootstrap_seed},
        "time_to_target": {"mode": st.time_to_target, "unit": st.time_unit},
        "targets": {
            p: {"target": str(d.target), "method": d.method, "median": d.median}
            | {"tolerance": d.tolerance}
            for p, d in s.derived.items()
        },
        "tuned": [
            {k: _finite(v) if isinstance(v, float) else v for k, v in r.items()}
            for r in tuned_rows(f)
        ],
        "profiles": [
            {
                "cost": p.name,
                "tau_max": st.tau_max,
                "scores": p.scores,
                "intervals": {m: [_finite(i.low), _finite(i.high)] for m, i in scores.items()},
                "rank_probabilities": ranks,
                "ratios": {
                    m: {q: _finite(r) for q, r in per.items()} for m, per in p.ratios.items()
                },
            }
            for p, scores, ranks in zip(f.profiles, u.scores, u.ranks, strict=True)
        ],
        "budget_scores": {k: p.scores for k, p in sorted(f.budgets.items())},
    }
