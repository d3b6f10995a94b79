"""optexp-report's command line: its arguments one group at a time and `check_flags`, the
rules between flags; the `type=` helpers that check a value alone are `flag_values`."""

from __future__ import annotations

import argparse
import re
import textwrap
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

from optexp.errors import USER_ERROR
from optexp.report.flag_values import (
    figure_path,
    folder_path,
    integer_in,
    number_in,
    target_arg,
)
from optexp.report.page import STUDY_MARKER
from optexp.report.render import FORMATS
from optexp.report.runs import INCOMPLETE, METRICS
from optexp.report.settings import (
    BANDS,
    DEFAULTS,
    SCORE_SCALES,
    TIME_TO_TARGET,
    TIME_UNITS,
    ReportSettings,
)
from optexp.rundir import Status

TAU_MAX_LIMIT = 1000.0
RESAMPLES_LIMIT = 100_000

# Each setting only shapes an output: the flags (dests) that make one. Built from the
# fields, so a new setting is refused without --profile or --study unless listed here.
NEEDS = {f.name: ("profile", "study") for f in fields(ReportSettings)} | {
    "curve": ("plot", "study"),
    "band": ("plot", "sensitivity", "study"),
}

# ---------------------------------------------------------------- the help's text

STATUSES = ", ".join([*(s.value for s in Status), INCOMPLETE])
DESCRIPTION = textwrap.fill(
    "Compare the runs below PATH (a sweep directory, outputs/, or one run). Runs are grouped "
    "by their overrides minus `seed`; each metric is mean ± sample std (n) over the group's "
    f"runs. Every run is listed with its status ({STATUSES}); unreadable runs and the reasons "
    "of failed ones are listed on stderr.",
    width=80,
)
METRICS_HELP = """\
metrics: test/acc, test/loss (best weights); train_eval/acc, train_eval/loss (the
training split, same weights, evaluation mode); val/acc, val/loss (at the best
epoch); epochs; wall_s."""
EXAMPLES = """\
examples:
  optexp-report outputs/multirun/2026-01-01/10-00-00
  optexp-report outputs/multirun --sort test/acc --format markdown
  optexp-report outputs/multirun --select-best-by val/loss --over optimizer.lr
  optexp-report outputs/multirun --plot curves.png --curve val/acc --band std
  optexp-report outputs/multirun --target val/acc=0.9
  optexp-report SWEEP --select-best-by val/loss --over optimizer.lr \\
      --target val/loss=0.3 --target sine_mlp:val/loss=0.02 --study study/
  optexp-report SWEEP --select-best-by val/loss --over optimizer.lr \\
      --target auto --study study/ --bootstrap 2000 --ci 0.9"""
MEASURES = """\
study measures (see docs/report.md, 'Comparing optimizers fairly'):
  time-to-target: the first epoch whose METRIC reaches VALUE (acc: >=, else <=)
    and the summed time/epoch_s up to it. In the table without --study: mean ±
    std over the runs that reached it, with 'k of n reached'. In a study: per
    seed the fastest --over value to reach it (AlgoPerf; --time-to-target tuned:
    the tuned value), then the median over seeds, a miss counting as infinite.
  --target auto: per problem, the best method's median final validation metric
    (val/acc where logged, else val/loss; or METRIC=auto), loosened by
    --target-tolerance (relative: a loss x (1 + t), an error rate likewise).
  problems: the values of --problem (default: problem, else dataset); methods:
    the settings of the other keys, each at its --over value tuned per problem.
  performance profile: r = cost / best cost on the problem (inf: not reached);
    rho(tau) = fraction of problems with r <= tau. Cost: the time to target
    (--time-unit), and the final --profile-metric (acc as error 1 - acc; a
    problem without it is left out). score = area under rho over [1, tau_max]
    / (tau_max - 1), exact for the step function; --score-scale log integrates
    over log tau.
  intervals: a bootstrap over seeds (--bootstrap resamples, --ci level,
    --bootstrap-seed), the --over value re-tuned inside every resample."""
RULES = f"""\
rules (each refused in one line, exit 2, before anything is written):
  --curve needs --plot or --study; --band needs --plot, --sensitivity or --study;
  --tau-max (> 1, <= {TAU_MAX_LIMIT:g}), --time-unit, --score-scale, --profile-metric,
  --problem, --time-to-target, --target-tolerance (>= 0, <= 1), --bootstrap (1 to
  {RESAMPLES_LIMIT}), --ci (> 0, < 1) and --bootstrap-seed (>= 0) need --profile or
  --study; PROBLEM:METRIC=VALUE and auto targets need --study or --profile; target
  values are finite or auto; figures end in .png, .pdf or .svg;
  --sensitivity and --study need a numeric --over key; --study DIR is new, empty
  or an earlier study's ({STUDY_MARKER} in it). OPTEXP_DEBUG=1: tracebacks."""


# ---------------------------------------------------------------- the parser


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, exit 2, as every optexp error."""

    def error(self, message: str) -> NoReturn:
        # A type= helper's message names the flag and value itself: no "argument --x: " twice
        message = re.sub(r"^argument [^:]+: (?=--)", "", message)
        self.exit(USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optexp-report",
        description=DESCRIPTION,
        epilog="\n\n".join([METRICS_HELP, EXAMPLES, MEASURES, RULES]),
        formatter_class=help_formatter(),
    )
    add_runs(p)
    add_selection(p)
    add_outputs(p)
    study = p.add_argument_group("study: time-to-target, tuneability, performance profiles")
    add_study_outputs(study)
    add_profile_options(study)
    add_bootstrap_options(study)
    return p


def help_formatter() -> type[argparse.HelpFormatter]:
    try:
        from rich_argparse import RawDescriptionRichHelpFormatter
    except ImportError:  # optional: plain argparse help without it
        return argparse.RawDescriptionHelpFormatter
    return RawDescriptionRichHelpFormatter


def add_runs(p: argparse.ArgumentParser) -> None:
    """Which runs, and how they are grouped and ordered."""
    p.add_argument("path", type=Path, metavar="PATH", help="directory holding the runs")
    p.add_argument(
        "--sort",
        default="val/loss",
        choices=METRICS,
        metavar="METRIC",
        help="order groups by this metric, best first (default: %(default)s; one of "
        f"{', '.join(METRICS)})",
    )
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KEY",
        help="also merge runs that differ only in KEY (repeatable), as for seed",
    )


def add_selection(p: argparse.ArgumentParser) -> None:
    """Tuning one key on validation."""
    p.add_argument(
        "--select-best-by",
        choices=[m for m in METRICS if m.startswith("val/")],
        metavar="METRIC",
        help="with --over: per setting of the other keys, pick KEY's value by the best mean "
        "of this validation metric (val/loss or val/acc) and report its test metrics; a value "
        "where some runs diverged or are unfinished ranks below those where all finished",
    )
    p.add_argument("--over", metavar="KEY", help="the key to tune, e.g. optimizer.lr")


def add_outputs(p: argparse.ArgumentParser) -> None:
    """The table's format and the curve plot."""
    p.add_argument(
        "--format", default="table", choices=FORMATS, help="output format (default: %(default)s)"
    )
    p.add_argument(
        "--plot",
        type=figure_path("--plot"),
        metavar="FILE.png",
        help="also draw curves per group into this PNG (or .pdf, .svg)",
    )
    p.add_argument(
        "--curve",
        metavar="TAG",
        help=f"with --plot or --study: TensorBoard scalar to plot (default: {DEFAULTS.curve}; "
        "e.g. val/acc, train/loss)",
    )
    p.add_argument(
        "--band",
        choices=BANDS,
        help="with --plot, --sensitivity or --study: shaded band over a group's runs: "
        f"minmax (min-max) or std (±1 sample std) (default: {DEFAULTS.band})",
    )


def add_study_outputs(g: argparse._ArgumentGroup) -> None:
    """Targets, problems, and the study's figures and folder."""
    g.add_argument(
        "--target",
        action="append",
        default=[],
        type=target_arg,
        metavar="[PROBLEM:]METRIC=VALUE",
        help="per-epoch TensorBoard metric and the (finite) value to reach, e.g. val/acc=0.9, "
        "or sine_mlp:val/loss=0.02 for one problem only, with --study or --profile "
        "(repeatable); adds time-to-target columns. VALUE auto (or --target auto, "
        "PROBLEM:auto), with --study or --profile: derived from the runs (see below)",
    )
    g.add_argument(
        "--problem",
        metavar="KEY",
        help="with --profile or --study: the key whose values are the problems (default: "
        "problem, else dataset)",
    )
    g.add_argument(
        "--sensitivity",
        type=figure_path("--sensitivity"),
        metavar="FILE.png",
        help="with --select-best-by/--over: that metric against KEY (log x), one line per "
        "setting of the other keys, mean and min-max band over seeds, x where a run diverged",
    )
    g.add_argument(
        "--profile",
        type=figure_path("--profile"),
        metavar="FILE.png",
        help="with --select-best-by/--over: the performance profile across problems, by "
        "time-to-target if --target is given, else by the final --profile-metric",
    )
    g.add_argument(
        "--study",
        type=folder_path,
        metavar="DIR",
        help="write DIR/README.md, its figures, and the numbers as csv and json: of a "
        "study's trials (experiment=study_optimizers or study_regularizers: no other flag "
        "needed; a sweep of +regularization is read as a regularization study), or with "
        "--select-best-by/--over of a grid of one key; DIR is new, empty, or an earlier "
        f"study's (marked by its {STUDY_MARKER} file)",
    )
    g.add_argument(
        "--set-targets",
        action="store_true",
        help="read a reference sweep (experiment=study_targets) and write each problem's "
        "validation target into its problem file (study.target), for the study to read",
    )


def add_profile_options(g: argparse._ArgumentGroup) -> None:
    """What the performance profiles measure and how they are scored."""
    g.add_argument(
        "--profile-metric",
        choices=METRICS,
        metavar="METRIC",
        help="with --profile or --study: final metric of the second profile (default: "
        f"{DEFAULTS.profile_metric}; accuracies as errors)",
    )
    g.add_argument(
        "--time-unit",
        choices=TIME_UNITS,
        help="with --profile or --study: time-to-target cost of the profile: epochs, which "
        "do not depend on the machine's load, or seconds, summed time/epoch_s (default: "
        f"{DEFAULTS.time_unit})",
    )
    g.add_argument(
        "--tau-max",
        type=number_in("--tau-max", 1.0, TAU_MAX_LIMIT),
        metavar="TAU",
        help="with --profile or --study: upper end of the profile and its score, a number > 1 "
        f"and <= {TAU_MAX_LIMIT:g} (default: {DEFAULTS.tau_max:g}, as AlgoPerf)",
    )
    g.add_argument(
        "--score-scale",
        choices=SCORE_SCALES,
        help="with --profile or --study: integrate rho over tau (linear, AlgoPerf's "
        "formula) or over log tau (log); the profile's tau axis follows (default: "
        f"{DEFAULTS.score_scale})",
    )
    g.add_argument(
        "--time-to-target",
        choices=TIME_TO_TARGET,
        help="with --profile or --study: fastest: per seed the fastest --over value to reach "
        "the target, then the median over seeds (AlgoPerf's); tuned: the median at the "
        f"value tuned by --select-best-by (default: {DEFAULTS.time_to_target})",
    )
    g.add_argument(
        "--target-tolerance",
        type=number_in("--target-tolerance", 0.0, 1.0, closed="[]"),
        metavar="T",
        help="with --profile or --study: how much --target auto loosens the best method's "
        f"median, relative, a number in [0, 1] (default: {DEFAULTS.target_tolerance:g})",
    )


def add_bootstrap_options(g: argparse._ArgumentGroup) -> None:
    """The bootstrap over seeds behind every interval of a study."""
    g.add_argument(
        "--bootstrap",
        type=integer_in("--bootstrap", 1, RESAMPLES_LIMIT),
        metavar="N",
        help="with --profile or --study: resamples of the seeds, each re-tuning --over "
        f"(default: {DEFAULTS.bootstrap}; 1 to {RESAMPLES_LIMIT})",
    )
    g.add_argument(
        "--ci",
        type=number_in("--ci", 0.0, 1.0, closed="()"),
        metavar="LEVEL",
        help="with --profile or --study: the level of the percentile intervals, a number "
        f"in (0, 1) (default: {DEFAULTS.ci:g})",
    )
    g.add_argument(
        "--bootstrap-seed",
        type=integer_in("--bootstrap-seed", 0, 2**32 - 1),
        metavar="SEED",
        help="with --profile or --study: seeds the resampling, so a page is reproduced "
        f"exactly (default: {DEFAULTS.bootstrap_seed})",
    )


# ---------------------------------------------------------------- the rules between flags


def check_flags(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The rules between flags, all in one place: a flag whose output is not asked for is
    refused rather than silently ignored. The defaults are `ReportSettings.from_args`'s."""
    if (args.select_best_by is None) != (args.over is None):
        p.error("--select-best-by and --over go together")
    for dest in ("sensitivity", "profile"):
        if getattr(args, dest) is not None and args.over is None:
            p.error(f"--{dest} needs --select-best-by and --over")
    for dest, partners in NEEDS.items():
        given = getattr(args, dest) is not None
        if given and not any(getattr(args, partner) is not None for partner in partners):
            p.error(f"{_flags([dest])} needs {_flags(partners)} (it only shapes what they write)")
    for target in args.target:
        if target.auto and args.study is None and args.profile is None:
            p.error(
                f"--target {target} derives the target from the methods of each problem, "
                "which needs --study or --profile"
            )
        if target.problem is not None and args.study is None and args.profile is None:
            p.error(
                f"--target {target} names problem {target.problem!r}, which needs --study or "
                f"--profile (the table's rows are not problems; for every row: "
                f"--target {target.metric}={target.value:g})"
            )
    if args.study is not None:
        check_study_folder(p, args.study)


def _flags(dests: Iterable[str]) -> str:
    """`--a or --b`, `--a, --b or --c`: the flags of these argparse dests, for a message."""
    names = [f"--{d.replace('_', '-')}" for d in dests]
    return " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]


def check_study_folder(p: argparse.ArgumentParser, folder: Path) -> None:
    """--study writes README.md and more: never into a file, nor over a folder of the user's."""
    allowed = "Allowed: a new folder, an empty one, or one an earlier --study wrote"
    if folder.exists() and not folder.is_dir():
        p.error(f"--study {str(folder)!r} is a file. {allowed}")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / STUDY_MARKER).exists():
        p.error(
            f"--study {str(folder)!r} already holds files and no {STUDY_MARKER} (it is not a "
            f"folder --study wrote, and they would be overwritten). {allowed}"
        )
