"""What optexp-report does with its checked flags and the settings built from them: read
the runs, group them, draw the figures asked for, write the study folder, and render the
table (`report`)."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from optexp.report import page, regularization_page, trials_page
from optexp.report.budget import budget_curves, budget_profiles
from optexp.report.figures import (
    Line,
    draw_profile,
    draw_sensitivity,
    method_colours,
    plot_curves,
)
from optexp.report.grouping import (
    Group,
    group_runs,
    select_best,
    sort_groups,
    without_diverged_values,
)
from optexp.report.markdown import Findings
from optexp.report.measures import Target
from optexp.report.render import Table, choice_table, group_table, render, with_time_to_target
from optexp.report.runs import ReportError, Run, Scalars, find_runs, logged_tags, read_scalars
from optexp.report.settings import ReportSettings
from optexp.report.study import (
    Study,
    build,
    check_numeric,
    check_varies,
    profiles,
    sensitivity_of_groups,
)
from optexp.report.targets import set_targets
from optexp.report.trial_scores import PROFILES, score
from optexp.report.trials import collect, is_trial_study
from optexp.report.uncertainty import bootstrap_study

# What a trial study compares every method against, by the group its methods are options of
REFERENCES = {"optimizer": "nadamw", "regularization": "none"}


def report(args: argparse.Namespace, settings: ReportSettings) -> str:
    """The table on stdout's text; the files written are named on stderr, one line each.
    `args` says what to read and write, `settings` how the figures and the study measure."""
    runs = find_runs(args.path)
    if args.set_targets:
        return "\n".join(set_targets(runs))
    if args.study and args.over is None:
        return trial_study(args, settings, runs)
    check_keys(runs, [*args.ignore, *([args.over] if args.over else [])])
    if args.sensitivity or args.study:  # before anything is written
        check_numeric(runs, args.over, "--sensitivity" if args.sensitivity else "--study")
    scalars = functools.cache(read_scalars)  # each run's events read once
    groups = sort_groups(group_runs(without_diverged_values(runs), args.ignore), args.sort)
    written = []
    if args.plot:
        tag = settings.curve
        plot_curves(curve_lines(groups, tag, scalars), tag, settings.band, args.plot)
        written.append(f"wrote {args.plot}")
    written += study_outputs(args, settings, runs, scalars)
    table = table_of(groups, args, len(runs))
    if args.target:
        # A problem's own target and an auto one are the study's (check_flags asks for
        # --study or --profile)
        given = [t for t in args.target if not t.auto]
        check_targets_logged(given, table, scalars)
        general = [t for t in given if t.problem is None]
        if general:
            table = with_time_to_target(table, general, scalars)
    out = render(table, args.format)
    # The table stays the only thing on stdout (csv and json pipe into other tools).
    for line in written:
        print(line, file=sys.stderr)
    return out


def trial_study(args: argparse.Namespace, settings: ReportSettings, runs: list[Run]) -> str:
    """--study alone: the page of a study's trials (experiment=study_optimizers, or
    study_regularizers: its methods are regularizations, scored on the final test cost)."""
    if not is_trial_study(runs):
        raise ReportError(
            f"--study without --over reads a study's trials (runs with study.trial), and "
            f"{args.path} holds none: name the key a grid tunes with --select-best-by and --over"
        )
    s = collect(runs, functools.cache(read_scalars))
    reference = REFERENCES[s.method_key]
    reference = reference if reference in s.methods() else s.methods()[0]
    regularization = s.method_key == "regularization"
    if regularization:  # a profile compares the methods run on every problem
        scores = score(s.on_every_problem(), settings, reference, PROFILES[1:])
    else:
        scores = score(s, settings, reference)
    writer = regularization_page if regularization else trials_page
    with page.staged(args.study) as folder:
        writer.write_page(s, scores, settings, folder, command_line())
    return f"wrote {args.study / 'README.md'} and its figures, csv and json"


def check_keys(runs: Sequence[Run], keys: Iterable[str]) -> None:
    """Each key named by --ignore and --over is one the runs override."""
    known = {k for r in runs for k in r.overrides}
    for key in keys:
        if key not in known:
            raise ReportError(
                f"unknown key {key!r}: the runs override {sorted(known) or 'nothing'}"
            )


def table_of(groups: list[Group], args: argparse.Namespace, runs: int) -> Table:
    """One row per group, or with --over one per choice, in the groups' order."""
    if not args.over:
        title = f"{runs} runs in {len(groups)} groups, sorted by {args.sort}"
        return group_table(groups, title)
    choices = select_best(groups, args.select_best_by, args.over)
    order = {id(g): i for i, g in enumerate(groups)}
    choices.sort(key=lambda c: order[id(c.group)])
    title = f"{args.over} chosen by best mean {args.select_best_by}; test over seeds"
    return choice_table(choices, args.select_best_by, title)


def curve_lines(
    groups: Sequence[Group], tag: str, scalars: Callable[[Path], Scalars]
) -> list[Line]:
    """Each group's curves of `tag`, one per run."""
    return [Line(g.settings, [scalars(r.path).get(tag, {}) for r in g.runs]) for g in groups]


def check_targets_logged(
    wanted: Sequence[Target], table: Table, scalars: Callable[[Path], Scalars]
) -> None:
    logged = [scalars(Path(d)) for row in table.rows for d in row.dirs]
    for target in wanted:
        if not any(target.metric in s for s in logged):
            raise ReportError(
                f"--target {target}: no run logs {target.metric!r} (logged: {logged_tags(logged)})"
            )


def study_outputs(
    args: argparse.Namespace,
    settings: ReportSettings,
    runs: list[Run],
    scalars: Callable[[Path], Scalars],
) -> list[str]:
    """--sensitivity, --profile and --study; returns what was written, one line each."""
    written = []
    if args.sensitivity:
        check_varies(runs, args.over, "nothing to plot against")
        metric, band = args.select_best_by, settings.band
        series = sensitivity_of_groups(without_diverged_values(runs), metric, args.over, band)
        title = f"{metric} against {args.over}"
        draw_sensitivity(series, title, args.over, metric, args.sensitivity)
        written.append(f"wrote {args.sensitivity}")
    if not (args.study or args.profile):
        return written
    s = build(runs, args.over, args.select_best_by, args.target, settings, args.ignore, scalars)
    f = findings(s, settings)
    if args.profile:
        colours = method_colours(s.methods())
        shown, intervals = f.profiles[0], f.uncertainty.scores[0]
        draw_profile(shown, settings, args.profile, colours, intervals)
        written.append(f"wrote {args.profile}")
    if args.study:
        with page.staged(args.study) as folder:  # marked as the study's (STUDY_MARKER)
            page.write_study(f, folder, command_line())
        written.append(f"wrote {args.study / 'README.md'} and its figures, csv and json")
    return written


def findings(s: Study, settings: ReportSettings) -> Findings:
    """The study's profiles, their bootstrap and the tuning budget."""
    shown = profiles(s, settings)
    curves = budget_curves(s)
    budgets = budget_profiles(curves, s.by, settings)
    uncertainty = bootstrap_study(s, shown, settings)
    return Findings(s, shown, uncertainty, curves, budgets, settings)


def command_line() -> str:
    """The command as typed, for the study's page."""
    return "optexp-report " + " ".join(sys.argv[1:]) if sys.argv[1:] else "optexp-report"
