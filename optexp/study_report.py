"""The study across problems: tune the swept key per method and problem, then compare
methods by time-to-target, final metric and performance profiles (optexp/study.py), and
write it all as a folder a person reads (README.md and its figures) plus csv/json.

A problem is a value of the problem key (`problem`, else `dataset`); a method is a
setting of the other keys (e.g. `optimizer=adam`); the swept key (e.g. `optimizer.lr`)
is tuned on validation per method and problem, as `--select-best-by` does.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optexp import study
from optexp.report import (
    METRICS,
    STUDY_MARKER,
    Choice,
    Group,
    ReportError,
    Run,
    Stat,
    _as_number,
    _config_value,
    group_runs,
    new_figure,
    select_best,
    varying_keys,
    without_diverged_values,
)

PROBLEM_KEYS = ("problem", "dataset")


@dataclass
class Entry:
    """One method on one problem, at its tuned value of the swept key."""

    problem: str
    method: str
    choice: Choice
    target: study.Target | None
    reach: study.Reach | None
    curves: list[dict[str, dict[int, float]]] = field(default_factory=list)

    @property
    def edge(self) -> bool:
        return study.at_edge(self.choice.chosen, self.choice.candidates)


@dataclass
class Study:
    problem_key: str
    over: str
    by: str
    entries: list[Entry]
    runs: int

    def problems(self) -> list[str]:
        return sorted({e.problem for e in self.entries})

    def methods(self) -> list[str]:
        return sorted({e.method for e in self.entries})


# ---------------------------------------------------------------- building


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
    values = sorted({_value_of(r, key) for r in runs}, key=_as_number)
    if any(_as_number(v)[0] for v in values):
        raise ReportError(
            f"{flag} needs a numeric --over key (its values are the x axis); {key} has "
            f"values {', '.join(values)}"
        )


def _value_of(run: Run, key: str) -> str:
    return run.overrides.get(key) or _config_value(Group({}, [run]), key)


def check_varies(runs: Sequence[Run], key: str, what: str) -> None:
    values = {r.overrides.get(key) for r in runs}
    if len(values) < 2:
        raise ReportError(f"{key} does not vary ({what}): every run has {key}={values.pop()}")


def targets_by_problem(
    targets: Sequence[study.Target], problems: Sequence[str]
) -> dict[str, study.Target | None]:
    """The target of each problem: its own (PROBLEM:METRIC=VALUE), else the general one."""
    unknown = [t.problem for t in targets if t.problem and t.problem not in problems]
    if unknown:
        raise ReportError(f"--target names problem {unknown[0]!r}; the problems are {problems}")
    general = [t for t in targets if t.problem is None]
    own = {t.problem: t for t in targets if t.problem}
    return {p: own.get(p, general[-1] if general else None) for p in problems}


def build(
    runs: Sequence[Run],
    over: str,
    by: str,
    targets: Sequence[study.Target],
    named_problem: str | None,
    ignore: Sequence[str] = (),
) -> Study:
    key = problem_key(runs, named_problem)
    check_varies(runs, key, "a profile compares methods across two or more problems")
    check_varies(runs, over, "nothing to tune")
    runs = without_diverged_values(runs)
    choices = select_best(group_runs(runs, ignore), by, over)
    problems = sorted({c.settings.get(key, "") for c in choices})
    target_of = targets_by_problem(targets, problems)
    names = method_names([c.settings for c in choices], key)
    entries = []
    for choice, name in zip(choices, names, strict=True):
        problem = choice.settings.get(key, "")
        target = target_of[problem]
        curves = [study.read_scalars(r.path) for r in choice.group.runs]
        reach = None
        if target is not None:
            reach = study.Reach(tuple(study.time_to_target(c, target) for c in curves))
        entries.append(Entry(problem, name, choice, target, reach, curves))
    for problem, target in target_of.items():
        if target is not None:
            _check_logged(target, problem, [e for e in entries if e.problem == problem])
    return Study(key, over, by, entries, len(runs))


def method_names(settings: Sequence[dict[str, str]], key: str) -> list[str]:
    """Each setting without the problem key, as its differing values: `adam`, or
    `optimizer=adam, model.dropout=0.3` when several keys differ."""
    rest = [{k: v for k, v in s.items() if k != key} for s in settings]
    keys, _ = varying_keys(rest)
    if len(keys) == 1:
        return [s.get(keys[0], "-") for s in rest]
    return [", ".join(f"{k}={s.get(k, '-')}" for k in keys) or "all" for s in rest]


def _check_logged(target: study.Target, problem: str, entries: Sequence[Entry]) -> None:
    logged = {tag for e in entries for c in e.curves for tag in c}
    if target.metric not in logged:
        shown = ", ".join(sorted(t for t in logged if "/" in t)) or "nothing (no tb/ events)"
        raise ReportError(
            f"--target {target}: the runs of problem {problem} do not log "
            f"{target.metric!r} (they log {shown})"
        )


# ---------------------------------------------------------------- the measures


def ttt_costs(s: Study, unit: str) -> dict[str, dict[str, float]]:
    """costs[problem][method]: the median time-to-target over seeds (inf: not reached)."""
    costs: dict[str, dict[str, float]] = {}
    for e in s.entries:
        if e.reach is not None:
            costs.setdefault(e.problem, {})[e.method] = e.reach.cost(unit)
    return costs


def final_costs(s: Study, metric: str) -> dict[str, dict[str, float]]:
    """costs[problem][method]: the mean final `metric` as a cost (error for accuracy)."""
    costs: dict[str, dict[str, float]] = {}
    for e in s.entries:
        stat = e.choice.group.stat(metric)
        finite = stat.mean is not None and math.isfinite(stat.mean)
        value = study.final_cost(stat.mean, METRICS[metric].higher_is_better) if finite else None
        costs.setdefault(e.problem, {})[e.method] = math.inf if value is None else value
    return costs


@dataclass
class Profile:
    name: str  # what the cost is
    ratios: dict[str, dict[str, float]]  # method -> problem -> ratio
    taus: list[float]
    rho: dict[str, list[float]]
    scores: dict[str, float]


def make_profile(
    name: str, costs: dict[str, dict[str, float]], tau_max: float, scale: str
) -> Profile:
    all_ratios = study.ratios(costs)
    taus = profile_taus(all_ratios, tau_max)
    scores = {m: study.score(r, tau_max, scale) for m, r in all_ratios.items()}
    return Profile(name, all_ratios, taus, study.profile(all_ratios, taus), scores)


def profile_taus(all_ratios: dict[str, dict[str, float]], tau_max: float) -> list[float]:
    """1, every finite ratio up to tau_max (where rho steps), and tau_max."""
    steps = {r for per in all_ratios.values() for r in per.values() if 1 <= r <= tau_max}
    return sorted({1.0, tau_max, *steps})


def profiles(s: Study, args: Any) -> list[Profile]:
    """The time-to-target profile (when there are targets), then the final-metric one."""
    out = []
    if any(e.reach is not None for e in s.entries):
        name = f"{args.time_unit} to target"
        out.append(make_profile(name, ttt_costs(s, args.time_unit), args.tau_max, args.score_scale))
    costs = final_costs(s, args.profile_metric)
    out.append(make_profile(f"final {args.profile_metric}", costs, args.tau_max, args.score_scale))
    return out


# ---------------------------------------------------------------- figures


def draw_profile(p: Profile, tau_max: float, path: Path) -> None:
    fig = new_figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for method, values in sorted(p.rho.items(), key=lambda mv: -p.scores[mv[0]]):
        ax.step(p.taus, values, where="post", label=f"{method} (score {p.scores[method]:.3f})")
    ax.set_xscale("log")
    ax.set_xlim(1, tau_max)
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ticks = [t for t in (1, 1.25, 1.5, 2, 3, 4, 6, 10, 20, 50, 100) if t <= tau_max]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tau: within this factor of the best method on a problem")
    ax.set_ylabel("rho(tau): fraction of problems")
    ax.set_title(f"Performance profile: {p.name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    _save(fig, path)


def sensitivity_series(s: Study, problem: str, metric: str, band: str) -> dict[str, list[Any]]:
    """method -> Points of `metric` over the swept key on `problem`: what the plot draws."""
    series = {}
    for e in s.entries:
        if e.problem != problem:
            continue
        runs = [
            (float(x), r.status, r.values.get(metric))
            for x, group in e.choice.candidates.items()
            for r in group.runs
        ]
        series[e.method] = study.sensitivity(runs, band)
    return series


def sensitivity_of_groups(
    runs: Sequence[Run], metric: str, over: str, band: str
) -> dict[str, list[study.Point]]:
    """Like sensitivity_series, for runs that are not split into problems."""
    choices = select_best(group_runs(runs), metric, over)
    names = method_names([c.settings for c in choices], "")
    return {
        name: study.sensitivity(
            [
                (float(x), r.status, r.values.get(metric))
                for x, g in c.candidates.items()
                for r in g.runs
            ],
            band,
        )
        for c, name in zip(choices, names, strict=True)
    }


def draw_sensitivity(
    series: dict[str, list[study.Point]], title: str, over: str, metric: str, path: Path
) -> None:
    fig = new_figure(figsize=(7, 4.5))
    ax = fig.subplots()
    top = ax.get_xaxis_transform()  # x in data, y in axes: markers along the top edge
    for method, points in sorted(series.items()):
        shown = [p for p in points if p.mean is not None]
        (line,) = ax.plot([p.x for p in shown], [p.mean for p in shown], marker="o", label=method)
        ax.fill_between(
            [p.x for p in shown],
            [p.low for p in shown],
            [p.high for p in shown],
            color=line.get_color(),
            alpha=0.2,
        )
        failed = [p.x for p in points if p.diverged]
        if failed:
            ax.plot(failed, [0.97] * len(failed), "x", color=line.get_color(), transform=top)
    ax.set_xscale("log")
    ax.set_xlabel(f"{over} (x at the top: a seed diverged there)")
    ax.set_ylabel(f"{metric}: mean over seeds, band min-max")
    if not METRICS[metric].higher_is_better:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    try:
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as error:
        raise ReportError(f"cannot write {path}: {error}") from None


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
    from optexp.report import plot_curves

    figures: dict[str, list[str]] = {}
    for problem in s.problems():
        entries = [e for e in s.entries if e.problem == problem]
        tag = entries[0].target.metric if entries[0].target else curve_tag
        groups = [_named(e) for e in entries]
        plot_curves(groups, tag, band, folder / f"curves_{problem}.png")
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


def _named(e: Entry) -> Group:
    """The chosen group, its settings reduced to the method name for the curve labels."""
    return Group({"problem": e.problem, "method": e.method}, e.choice.group.runs)


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
            "tried": " ".join(sorted(e.choice.candidates, key=_as_number)),
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


def _sensitivity_rows(series: dict[str, list[study.Point]], over: str) -> list[dict[str, Any]]:
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
    lines = [_md(header), _md(["---"] * len(header))]
    for e in sorted(s.entries, key=lambda e: (e.problem, e.method)):
        group = e.choice.group
        chosen = e.choice.chosen + (" (grid edge)" if e.edge else "")
        reach = e.reach
        lines.append(
            _md(
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
    lines = [_md(["method", *(f"score: {p.name}" for p in profiles)])]
    lines.append(_md(["---"] * (len(profiles) + 1)))
    for m in methods:
        lines.append(_md([m, *(f"{p.scores.get(m, 0.0):.3f}" for p in profiles)]))
    return lines


def _md(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
