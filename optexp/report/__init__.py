"""optexp-report: compare the runs below a folder.

A run is a folder with the summary a run writes when it ends, or Hydra's .hydra/ (written
when it starts). Runs are grouped by their command-line overrides minus `seed`, so a
group's runs are the seeds of one configuration; each metric is shown as mean ± sample
std (n) over them. `--select-best-by val/loss --over optimizer.lr` tunes KEY on
validation for each setting of the other keys and reports test metrics of that choice;
`--study DIR` compares methods across problems (time-to-target, performance profiles,
bootstrap intervals and rank probabilities, tuning-budget curves). tensorboard and
matplotlib are imported only when a figure or a target needs them.

The modules, each importing only those after it:
flags, flag_values (the command line) -> command (what it does) -> page (the study's
folder) -> markdown (its README) -> uncertainty (the bootstrap of a study), budget (the
tuning budget) -> study (across problems) -> figures, render -> grouping -> runs
(reading), measures, bootstrap (pure), settings (`ReportSettings`, what shapes the study
and the figures: each default written there once, built from the flags in `main`). A
study of trials (`--study` alone): trials_page -> trial_figures, trial_scores -> trials
(reading and costing the trials); `--set-targets`: targets -> runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from optexp.errors import UserError, debug_requested, exit_with_error
from optexp.report.command import report
from optexp.report.flags import check_flags, parser
from optexp.report.settings import ReportSettings


def main(argv: Sequence[str] | None = None) -> None:
    """The console entry point: the table on stdout, a user error in one line, exit 2."""
    p = parser()
    args = p.parse_args(argv)
    check_flags(p, args)
    settings = ReportSettings.from_args(args)  # after check_flags: the flags are valid
    try:
        print(report(args, settings))
    except UserError as error:
        fail(error)


def fail(error: Exception) -> NoReturn:
    if debug_requested():
        raise error
    exit_with_error("optexp-report", str(error))
