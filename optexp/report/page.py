"""The study's folder, as a person reads it: README.md with its figures, the numbers as
csv and json, written into a staged folder moved into place only when all of it is written."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from optexp.report.figures import Line, draw_profile, draw_sensitivity, plot_curves
from optexp.report.grouping import Stat, as_number
from optexp.report.measures import Point, Profile
from optexp.report.render import md_row
from optexp.report.runs import ReportError
from optexp.report.study import Entry, Study, sensitivity_series

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


def write_study(
    s: Study,
    folder: Path,
    profiles: Sequence[Profile],
    tau_max: float,
    curve_tag: str,
    band: str,
    command: str,
) -> None:
    """Every file of the study into `folder`: per problem the curves and the sensitivity
    (figure and csv), each profile (figure and csv), tuned.csv, time_to_target.csv,
    study.json, README.md, and the marker that lets a later --study replace them."""
    figures: dict[str, list[str]] = {}
    for problem in s.problems():
        entries = [e for e in s.entries if e.problem == problem]
        tag = entries[0].target.metric if entries[0].target else curve_tag
        lines = [_line(e, tag) for e in entries]
        plot_curves(lines, tag, band, folder / f"curves_{problem}.png")
        series = sensitivity_series(s, problem, s.by, band)
        title = f"{problem}: {s.by} against {s.over}"
        draw_sensitivity(series, title, s.over, s.by, folder / f"sensitivity_{problem}.png")
        _write_csv(folder / f"sensitivity_{problem}.csv", _sensitivity_rows(series, s.over))
        figures[problem] = [f"curves_{problem}.png", f"sensitivity_{problem}.png"]
    for p in profiles:
        draw_profile(p, tau_max, folder / f"profile_{_slug(p.name)}.png")
        _write_csv(folder / f"profile_{_slug(p.name)}.csv", _profile_rows(p))
    _write_csv(folder / "tuned.csv", tuned_rows(s))
    _write_csv(folder / "time_to_target.csv", run_rows(s))
    (folder / "study.json").write_text(json.dumps(study_json(s, profiles, tau_max), indent=2))
    page = markdown_page(s, profiles, tau_max, figures, command)
    (folder / "README.md").write_text(page)
    (folder / STUDY_MARKER).write_text(
        "Written by optexp-report --study: a later --study into this folder replaces it.\n"
    )


def _line(e: Entry, tag: str) -> Line:
    """The chosen group's curves of `tag`, labelled by the method (the problem shared)."""
    return Line({"problem": e.problem, "method": e.method}, [c.get(tag, {}) for c in e.curves])


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def tuned_rows(s: Study) -> list[dict[str, Any]]:
    """One row per problem and method: the tuned value, its validation and test metrics,
    and its time-to-target."""
    rows = []
    for e in sorted(s.entries, key=lambda e: (e.problem, e.method)):
        group = e.choice.group
        row: dict[str, Any] = {
            "problem": e.problem,
            "method": e.method,
            s.over: e.choice.chosen,
            "at_grid_edge": e.edge,
            "tried": " ".join(sorted(e.choice.candidates, key=as_number)),
            "status": group.statuses(),
        }
        for metric in (s.by, "test/acc", "test/loss"):
            row |= _stat_columns(metric, group.stat(metric))
        row["target"] = str(e.target) if e.target else ""
        if e.reach is not None:
            row["reached"] = e.reach.show()
            row |= _stat_columns("epochs_to_target", Stat.of(e.reach.epochs()))
            row |= _stat_columns("seconds_to_target", Stat.of(e.reach.seconds()))
        rows.append(row)
    return rows


def _stat_columns(name: str, stat: Stat) -> dict[str, Any]:
    return {f"{name} mean": stat.mean, f"{name} std": stat.std, f"{name} n": stat.n}


def run_rows(s: Study) -> list[dict[str, Any]]:
    """Time-to-target of every run at its method's tuned value."""
    rows = []
    for e in s.entries:
        if e.reach is None:
            continue
        for run, hit in zip(e.choice.group.runs, e.reach.hits, strict=True):
            rows.append(
                {
                    "problem": e.problem,
                    "method": e.method,
                    s.over: e.choice.chosen,
                    "target": str(e.target),
                    "status": run.status,
                    "reached": hit is not None,
                    "epoch": hit.epoch if hit else None,
                    "seconds": hit.seconds if hit else None,
                    "dir": str(run.path),
                }
            )
    return rows


def _sensitivity_rows(series: dict[str, list[Point]], over: str) -> list[dict[str, Any]]:
    return [
        {"method": m, over: p.x} | {k: v for k, v in vars(p).items() if k != "x"}
        for m, points in sorted(series.items())
        for p in points
    ]


def _profile_rows(p: Profile) -> list[dict[str, Any]]:
    return [{"tau": tau} | {m: p.rho[m][i] for m in sorted(p.rho)} for i, tau in enumerate(p.taus)]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    header = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)


def study_json(s: Study, profiles: Sequence[Profile], tau_max: float) -> dict[str, Any]:
    def finite(x: float) -> float | None:
        return x if math.isfinite(x) else None  # JSON has no inf: null is "never reached"

    return {
        "problem_key": s.problem_key,
        "over": s.over,
        "selected_by": s.by,
        "runs": s.runs,
        "tuned": tuned_rows(s),
        "profiles": [
            {
                "cost": p.name,
                "tau_max": tau_max,
                "scores": p.scores,
                "ratios": {
                    m: {q: finite(r) for q, r in per.items()} for m, per in p.ratios.items()
                },
            }
            for p in profiles
        ],
    }


# ---------------------------------------------------------------- the page


def markdown_page(
    s: Study,
    profiles: Sequence[Profile],
    tau_max: float,
    figures: dict[str, list[str]],
    command: str,
) -> str:
    lines = [
        "# Optimizer study",
        "",
        f"{s.runs} runs; problems are the values of `{s.problem_key}`, methods the settings of"
        f" the other keys. `{s.over}` is tuned per method and problem by the best mean"
        f" `{s.by}` over seeds (a value where a seed diverged ranks below every value where"
        " all finished); test metrics are those of the tuned value, mean ± sample std (n).",
        "",
        "```bash",
        command,
        "```",
        "",
        "## Tuned value, test metrics and time-to-target",
        "",
    ]
    lines += _tuned_table(s)
    lines += ["", "## Performance profiles", ""]
    lines += [
        f"Per problem, each method's cost over the best method's cost (ratio r >= 1); rho(tau)"
        f" is the fraction of problems with r <= tau, and the score is the area under rho over"
        f" [1, {tau_max:g}] divided by {tau_max:g} - 1 (1: best on every problem; 0: never"
        f" within {tau_max:g}x). A method that never reached the target has r = inf.",
        "",
    ]
    lines += _score_table(profiles)
    for p in profiles:
        lines += ["", f"![performance profile: {p.name}](profile_{_slug(p.name)}.png)"]
    for problem, files in figures.items():
        lines += ["", f"## {problem}", ""]
        lines += [f"![{f.removesuffix('.png')}]({f})" for f in files]
    lines += [
        "",
        "Data: `tuned.csv` (the table above), `time_to_target.csv` (every run at its tuned"
        " value), `sensitivity_PROBLEM.csv` (the points of each sensitivity plot),"
        " `profile_*.csv` (rho at each tau), `study.json` (all of it, with the ratios).",
    ]
    return "\n".join(lines) + "\n"


def _tuned_table(s: Study) -> list[str]:
    header = ["problem", "method", s.over, "test acc", "test loss", "target", "reached"]
    header += ["epochs to target", "seconds to target"]
    lines = [md_row(header), md_row(["---"] * len(header))]
    for e in sorted(s.entries, key=lambda e: (e.problem, e.method)):
        group = e.choice.group
        chosen = e.choice.chosen + (" (grid edge)" if e.edge else "")
        reach = e.reach
        lines.append(
            md_row(
                [
                    e.problem,
                    e.method,
                    chosen,
                    group.stat("test/acc").show(".4f"),
                    group.stat("test/loss").show(".4f"),
                    str(e.target) if e.target else "-",
                    reach.show() if reach else "-",
                    Stat.of(reach.epochs()).show(".1f") if reach else "-",
                    Stat.of(reach.seconds()).show(".2f") if reach else "-",
                ]
            )
        )
    return lines


def _score_table(profiles: Sequence[Profile]) -> list[str]:
    methods = sorted({m for p in profiles for m in p.scores}, key=lambda m: -profiles[0].scores[m])
    lines = [md_row(["method", *(f"score: {p.name}" for p in profiles)])]
    lines.append(md_row(["---"] * (len(profiles) + 1)))
    for m in methods:
        lines.append(md_row([m, *(f"{p.scores.get(m, 0.0):.3f}" for p in profiles)]))
    return lines
