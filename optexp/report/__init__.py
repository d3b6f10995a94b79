"""The `optexp-report` command: compare the runs below a directory.

A run is a directory with metrics.json (written when a run ends) or Hydra's .hydra/
(written when it starts). Runs are grouped by their command-line overrides minus `seed`,
so a group's runs are the seeds of one configuration; each metric is shown as
mean ± sample std (n) over them. `--select-best-by val/loss --over optimizer.lr` tunes
KEY on validation for each setting of the other keys and reports test metrics of that
choice. tensorboard and matplotlib are imported only for `--plot`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import shutil
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from optexp.errors import USER_ERROR, UserError, debug_requested, exit_with_error
from optexp.plotting import import_matplotlib, new_figure

if TYPE_CHECKING:
    from optexp.study import Target

INCOMPLETE = "running/incomplete"


@dataclass(frozen=True)
class Metric:
    label: str
    where: tuple[str, ...]  # path into metrics.json
    higher_is_better: bool
    fmt: str


METRICS = {
    "test/acc": Metric("test acc", ("test", "acc"), True, ".4f"),
    "test/loss": Metric("test loss", ("test", "loss"), False, ".4f"),
    "val/acc": Metric("best val acc", ("best", "val/acc"), True, ".4f"),
    "val/loss": Metric("best val loss", ("best", "val/loss"), False, ".4f"),
    "epochs": Metric("epochs", ("epochs_completed",), False, ".1f"),
    "wall_s": Metric("wall s", ("wall_s",), False, ".1f"),
}
FORMATS = ("table", "csv", "markdown", "json")


class ReportError(UserError):
    """Bad input to the report: printed as one line, exit 2."""


@dataclass
class Run:
    path: Path
    overrides: dict[str, str]  # key -> value as written on the command line
    status: str
    values: dict[str, float]  # finite metric values only
    config: dict[str, Any] = field(default_factory=dict)
    error: str = ""  # why a failed run failed


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None  # sample std (ddof=1); None below two values
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) > 1 else None
        return cls(mean, std, len(values))

    def show(self, fmt: str) -> str:
        if self.mean is None:
            return "-"
        spread = "" if self.std is None else f" ± {self.std:{fmt}}"
        return f"{self.mean:{fmt}}{spread} ({self.n})"


@dataclass
class Group:
    settings: dict[str, str]  # the overrides shared by its runs (seed and ignored keys left out)
    runs: list[Run]

    def stat(self, metric: str) -> Stat:
        return Stat.of([r.values[metric] for r in self.runs if metric in r.values])

    def statuses(self) -> str:
        counts = Counter(r.status for r in self.runs)
        return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


# ---------------------------------------------------------------- reading runs


def find_runs(root: Path) -> list[Run]:
    if not root.exists():
        raise ReportError(f"{root} does not exist")
    if not root.is_dir():
        raise ReportError(
            f"{root} is a file, not a folder: name the folder holding the runs "
            "(a sweep, outputs/, or one run's folder)"
        )
    # rglob also looks in root itself: PATH may be a single run
    dirs = {p.parent for p in root.rglob("metrics.json")}
    dirs |= {p.parent for p in root.rglob(".hydra") if p.is_dir()}
    if not dirs:
        raise ReportError(f"no runs found under {root} (no metrics.json or .hydra/ below it)")
    runs = []
    for folder in sorted(dirs):
        try:
            runs.append(read_run(folder))
        except ReportError as error:  # one broken run does not hide the others
            print(f"optexp-report: unreadable run {folder}: {error}", file=sys.stderr)
    if not runs:
        raise ReportError(f"no readable runs under {root}")
    for run in runs:
        if run.status == "failed":
            print(f"optexp-report: failed run {run.path}: {run.error}", file=sys.stderr)
    return runs


def read_run(path: Path) -> Run:
    hydra_dir = path / ".hydra"
    overrides_file = hydra_dir / "overrides.yaml"
    lines = _load_yaml(overrides_file)
    if lines is None:
        lines = []
    if not isinstance(lines, list):
        what = "a mapping" if isinstance(lines, dict) else f"{type(lines).__name__} {lines!r}"
        raise ReportError(f"cannot read {overrides_file}: {what}, not a list of overrides")
    for line in lines:
        if not isinstance(line, str):
            raise ReportError(
                f"cannot read {overrides_file}: {line!r} ({type(line).__name__}) is not an "
                "override such as optimizer.lr=0.1"
            )
    overrides = parse_overrides(lines)
    config = _load_yaml(hydra_dir / "config.yaml") or {}
    metrics_file = path / "metrics.json"
    if not metrics_file.exists():
        return Run(path, overrides, INCOMPLETE, {}, config)
    try:
        metrics = json.loads(metrics_file.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"cannot read {metrics_file}: {error}") from None
    if not isinstance(metrics, dict):
        raise ReportError(f"cannot read {metrics_file}: not a JSON object")
    status = str(metrics.get("status", "unknown"))
    error = str(metrics.get("error") or "")
    return Run(path, overrides, status, metric_values(metrics), config, error)


def _load_yaml(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return OmegaConf.to_container(OmegaConf.load(path))
    except (OSError, OmegaConfBaseException, ValueError, yaml.YAMLError) as error:
        detail = " ".join(str(error).split())  # one line
        raise ReportError(f"cannot read {path}: {detail}") from None


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """Hydra's own override grammar: `+key=v`, `key=v` and `~key` all name `key`."""
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except HydraException as error:
        detail = " ".join(str(error).split())  # one line
        raise ReportError(f"cannot parse overrides {lines}: {detail}") from None
    return {
        o.key_or_group: "(deleted)" if o.is_delete() else o.get_value_element_as_str()
        for o in parsed
    }


def metric_values(metrics: dict[str, Any]) -> dict[str, float]:
    values = {}
    for name, metric in METRICS.items():
        value: Any = metrics
        for part in metric.where:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, int | float) and math.isfinite(value):
            values[name] = float(value)
    return values


# ---------------------------------------------------------------- grouping and selection


def group_runs(runs: Iterable[Run], ignore: Iterable[str] = ()) -> list[Group]:
    """Runs whose overrides agree except on `seed` and the `ignore` keys form one group."""
    dropped = {"seed", *ignore}
    groups: dict[tuple[tuple[str, str], ...], Group] = {}
    for run in runs:
        settings = {k: v for k, v in sorted(run.overrides.items()) if k not in dropped}
        key = tuple(settings.items())
        groups.setdefault(key, Group(settings, [])).runs.append(run)
    return list(groups.values())


def sort_groups(groups: list[Group], metric: str) -> list[Group]:
    """Best first by the mean of `metric`; groups without a value last."""
    return sorted(groups, key=lambda g: _rank(g.stat(metric), METRICS[metric]))


def _rank(stat: Stat, metric: Metric) -> tuple[bool, float]:
    if stat.mean is None:
        return (True, 0.0)
    return (False, -stat.mean if metric.higher_is_better else stat.mean)


@dataclass
class Choice:
    """The value of `over` picked on validation for one setting of the other keys."""

    settings: dict[str, str]
    over: str
    candidates: dict[str, Group]  # value of `over` -> its group
    chosen: str

    @property
    def group(self) -> Group:
        return self.candidates[self.chosen]


def select_best(groups: list[Group], by: str, over: str) -> list[Choice]:
    """For each setting of the other keys, the value of `over` with the best mean `by`.

    A value some of whose runs have no `by` (diverged, unfinished) ranks below every
    value whose runs all have one: divergence on some seeds is a bad choice.
    """
    families: dict[tuple[tuple[str, str], ...], dict[str, Group]] = {}
    for group in groups:
        rest = {k: v for k, v in group.settings.items() if k != over}
        value = group.settings.get(over) or _config_value(group, over)
        families.setdefault(tuple(rest.items()), {})[value] = group
    choices = []
    for rest, candidates in families.items():
        chosen = min(candidates, key=lambda v: _selection_rank(candidates[v], by))
        choices.append(Choice(dict(rest), over, candidates, chosen))
    return choices


def _selection_rank(group: Group, by: str) -> tuple[int, bool, float]:
    stat = group.stat(by)
    return (len(group.runs) - stat.n, *_rank(stat, METRICS[by]))


def _config_value(group: Group, key: str) -> str:
    """`key`'s value in the saved config when the runs did not override it."""
    value = OmegaConf.select(OmegaConf.create(group.runs[0].config), key, default=None)
    return "(default)" if value is None else str(value)


# ---------------------------------------------------------------- output


def varying_keys(settings: Sequence[dict[str, str]]) -> tuple[list[str], dict[str, str]]:
    """Keys whose value differs between groups, and the ones all groups share."""
    keys = sorted({k for s in settings for k in s})
    common = {
        k: settings[0][k]
        for k in keys
        if all(k in s for s in settings) and len({s[k] for s in settings}) == 1
    }
    return [k for k in keys if k not in common], common


@dataclass
class Row:
    settings: dict[str, str]  # value of each shown key
    info: dict[str, str]  # plain columns: status counts (and the values tried)
    stats: dict[str, Stat]
    dirs: list[str]


@dataclass
class Report:
    title: str
    keys: list[str]  # the override keys that differ between rows
    common: dict[str, str]  # the overrides every row shares
    metrics: list[str]
    rows: list[Row]


def group_report(groups: list[Group], title: str) -> Report:
    keys, common = varying_keys([g.settings for g in groups])
    rows = [
        Row(
            {k: g.settings.get(k, "") for k in keys},
            {"status": g.statuses()},
            {m: g.stat(m) for m in METRICS},
            [str(r.path) for r in g.runs],
        )
        for g in groups
    ]
    return Report(title, keys, common, list(METRICS), rows)


def choice_report(choices: list[Choice], by: str, title: str) -> Report:
    over = choices[0].over
    keys, common = varying_keys([c.settings for c in choices])
    metrics = [by, "test/acc", "test/loss"]
    rows = [
        Row(
            {k: c.settings.get(k, "") for k in keys} | {over: c.chosen},
            {
                "tried": ", ".join(sorted(c.candidates, key=_as_number)),
                "status": c.group.statuses(),
            },
            {m: c.group.stat(m) for m in metrics},
            [str(r.path) for r in c.group.runs],
        )
        for c in choices
    ]
    return Report(title, [*keys, over], common, metrics, rows)


def add_time_to_target(report: Report, targets: Sequence[Target]) -> Report:
    """Per row: how many of its runs reached each target ("k of n"), and the epochs and
    wall seconds it took them, mean ± std over the runs that reached it only."""
    from optexp import study

    for row in report.rows:
        curves = [study.read_scalars(Path(d)) for d in row.dirs]
        for target in targets:
            reach = study.Reach(tuple(study.time_to_target(c, target) for c in curves))
            row.info[f"reached {target}"] = reach.show()
            row.stats[f"epochs to {target}"] = Stat.of(reach.epochs())
            row.stats[f"s to {target}"] = Stat.of(reach.seconds())
    extra = [f"{unit} to {t}" for t in targets for unit in ("epochs", "s")]
    return replace(report, metrics=[*report.metrics, *extra])


def _as_number(value: str) -> tuple[bool, float, str]:
    """Sort key: numbers by value, then anything else by name."""
    try:
        return (False, float(value), value)
    except ValueError:
        return (True, 0.0, value)


def render(report: Report, fmt: str) -> str:
    return {"json": to_json, "csv": to_csv, "markdown": to_markdown, "table": to_table}[fmt](report)


def to_json(report: Report) -> str:
    rows = [
        {"settings": r.settings, **r.info}
        | {"metrics": {m: vars(s) for m, s in r.stats.items()}, "dirs": r.dirs}
        for r in report.rows
    ]
    return json.dumps({"title": report.title, "common": report.common, "rows": rows}, indent=2)


def to_csv(report: Report) -> str:
    """One column per mean, std and n, empty where there is no value."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    info = list(report.rows[0].info) if report.rows else []
    stats = [f"{m} {part}" for m in report.metrics for part in ("mean", "std", "n")]
    writer.writerow([*report.keys, *info, *stats])
    for r in report.rows:
        numbers = [
            "" if v is None else v for m in report.metrics for v in vars(r.stats[m]).values()
        ]
        writer.writerow([*r.settings.values(), *r.info.values(), *numbers])
    return buffer.getvalue().rstrip("\n")


def _cells(report: Report) -> tuple[list[str], list[list[str]], str]:
    info = list(report.rows[0].info) if report.rows else []
    header = [*report.keys, *info, *(_label(m) for m in report.metrics)]
    cells = [
        [*r.settings.values(), *map(str, r.info.values())]
        + [r.stats[m].show(METRICS[m].fmt if m in METRICS else ".2f") for m in report.metrics]
        for r in report.rows
    ]
    caption = " ".join(f"{k}={v}" for k, v in report.common.items())
    return header, cells, caption and f"common: {caption}"


def _label(metric: str) -> str:
    """A metric's column name; a time-to-target column is named by itself."""
    return METRICS[metric].label if metric in METRICS else metric


def to_markdown(report: Report) -> str:
    header, cells, caption = _cells(report)
    lines = [f"**{report.title}**", "", _md_row(header), _md_row(["---"] * len(header))]
    lines += [_md_row(c) for c in cells]
    return "\n".join(lines + ([f"\n{caption}"] if caption else []))


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def to_table(report: Report) -> str:
    from rich.console import Console
    from rich.table import Table

    header, cells, caption = _cells(report)
    table = Table(title=report.title, caption=caption or None)
    first_number = len(header) - len(report.metrics)
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i >= first_number else "left")
    for row in cells:
        table.add_row(*row)
    # The terminal's width; off a terminal (a file, a pipe) wide enough not to wrap numbers.
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 200
    console = Console(file=io.StringIO(), width=width, highlight=False)
    console.print(table)
    return console.file.getvalue().rstrip("\n")


# ---------------------------------------------------------------- plot


def plot_curves(groups: list[Group], tag: str, band: str, path: Path) -> None:
    """Mean `tag` per epoch for each group, with a min-max or ±std band over its runs."""
    import numpy as np

    import_matplotlib()  # before the first matplotlib import: a junk MPLBACKEND raises
    from matplotlib.ticker import MaxNLocator

    keys, common = varying_keys([g.settings for g in groups])
    fig = new_figure(figsize=(8, 5))
    ax = fig.subplots()
    drawn = 0
    for group in groups:
        curves = [c for r in group.runs if (c := read_curve(r.path, tag))]
        if not curves:
            continue
        steps = sorted({s for c in curves for s in c})
        table = np.array([[c.get(s, np.nan) for s in steps] for c in curves])
        mean = np.nanmean(table, axis=0)  # runs that stopped early count until they stop
        if band == "std":
            count = np.sum(~np.isnan(table), axis=0)
            squares = np.nansum((table - mean) ** 2, axis=0)
            spread = np.sqrt(squares / np.maximum(count - 1, 1))  # 0 where one run remains
            low, high = mean - spread, mean + spread
        else:
            low, high = np.nanmin(table, axis=0), np.nanmax(table, axis=0)
        label = ", ".join(f"{k}={group.settings.get(k, '-')}" for k in keys) or "all runs"
        (line,) = ax.plot(steps, mean, marker="o", markersize=3, label=f"{label} (n={len(curves)})")
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
        drawn += 1
    if not drawn:
        raise ReportError(f"no run below has TensorBoard scalars tagged {tag!r} (in its tb/ dir)")
    spread_name = "min-max" if band == "minmax" else "±1 std"
    subtitle = " ".join(f"{k}={v}" for k, v in common.items())
    ax.set_title(
        f"{tag}: mean over seeds, band {spread_name}" + (f"\n{subtitle}" if subtitle else "")
    )
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(tag)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    try:
        fig.savefig(path, dpi=120)
    except (OSError, ValueError) as error:  # a missing folder, an unknown image type
        raise ReportError(f"cannot write the plot to {path}: {error}") from None


def read_curve(run_dir: Path, tag: str) -> dict[int, float]:
    """{epoch: value} of one scalar from a run's TensorBoard events (non-finite left out)."""
    tb_dir = run_dir / "tb"
    if not tb_dir.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return {}
    return {e.step: e.value for e in events.Scalars(tag) if math.isfinite(e.value)}


# ---------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # A type= helper's message names the flag and value itself: no "argument --x: " twice
        message = re.sub(r"^argument [^:]+: (?=--)", "", message)
        self.exit(USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


TAU_MAX_LIMIT = 1000.0


def number_in(flag: str, low: float, high: float) -> Callable[[str], float]:
    """argparse `type=`: a finite number with low < x <= high, else one line naming the
    flag, the value and the range. Every numeric flag goes through it."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low < value <= high):
            raise argparse.ArgumentTypeError(
                f"{flag} {text!r} is not allowed. Allowed: a number > {low:g} and <= {high:g}"
            )
        return value

    return parse


def target_arg(text: str) -> Target:
    """argparse `type=` of --target: [PROBLEM:]METRIC=VALUE with a finite VALUE."""
    from optexp.study import parse_target

    try:
        target = parse_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not target.metric:
        raise argparse.ArgumentTypeError(
            f"--target {text!r} is not METRIC=VALUE (e.g. val/acc=0.9)"
        )
    if not math.isfinite(target.value):
        raise argparse.ArgumentTypeError(
            f"--target {text!r}: {target.value:g} is not allowed. Allowed: a finite number"
        )
    return target


FIGURE_TYPES = (".png", ".pdf", ".svg")


def figure_path(flag: str) -> Callable[[str], Path]:
    """argparse `type=` of --plot, --sensitivity, --profile: a file name with an image
    suffix (matplotlib would silently add .png, or write FOLDER.png for a folder)."""

    def parse(text: str) -> Path:
        path = Path(text)
        allowed = f"Allowed: a file name ending in {', '.join(FIGURE_TYPES)}"
        if text.strip() and path.is_dir():
            raise argparse.ArgumentTypeError(f"{flag} {text!r} is a folder. {allowed}")
        if not text.strip() or path.suffix.lower() not in FIGURE_TYPES:
            raise argparse.ArgumentTypeError(f"{flag} {text!r} is not allowed. {allowed}")
        return path

    return parse


def folder_path(text: str) -> Path:
    """argparse `type=` of --study: not empty (Path('') is the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"--study {text!r} is not allowed. Allowed: a folder path (a new folder, an "
            "empty one, or an earlier study's)"
        )
    return Path(text)


STUDY_MARKER = ".optexp-study"  # in every folder --study wrote: it may be rewritten

# Options that only shape an output, and the flags that make that output; their defaults
# are filled in by check_flags (None means "not given").
NEEDS = {
    "tau_max": ("--tau-max", ("profile", "study"), 4.0),
    "time_unit": ("--time-unit", ("profile", "study"), "epochs"),
    "score_scale": ("--score-scale", ("profile", "study"), "linear"),
    "profile_metric": ("--profile-metric", ("profile", "study"), "test/loss"),
    "problem": ("--problem", ("profile", "study"), None),
    "curve": ("--curve", ("plot", "study"), "val/loss"),
    "band": ("--band", ("plot", "sensitivity", "study"), "minmax"),
}


def check_flags(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The rules between flags, all in one place: a flag whose output is not asked for is
    refused rather than silently ignored. Then the defaults of the shaping options."""

    def flags(dests: Iterable[str]) -> str:
        names = [f"--{d.replace('_', '-')}" for d in dests]
        return " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]

    if (args.select_best_by is None) != (args.over is None):
        p.error("--select-best-by and --over go together")
    for dest in ("sensitivity", "profile", "study"):
        if getattr(args, dest) is not None and args.over is None:
            p.error(f"--{dest} needs --select-best-by and --over")
    for dest, (flag, partners, default) in NEEDS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
        elif not any(getattr(args, partner) is not None for partner in partners):
            p.error(f"{flag} needs {flags(partners)} (it only shapes what they write)")
    for target in args.target:
        if target.problem is not None and args.study is None and args.profile is None:
            p.error(
                f"--target {target} names problem {target.problem!r}, which needs --study or "
                f"--profile (the table's rows are not problems; for every row: "
                f"--target {target.metric}={target.value:g})"
            )
    if args.study is not None:
        check_study_folder(p, args.study)


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


def _help_formatter() -> type[argparse.HelpFormatter]:
    try:
        from rich_argparse import RawDescriptionRichHelpFormatter
    except ImportError:  # optional: plain argparse help without it
        return argparse.RawDescriptionHelpFormatter
    return RawDescriptionRichHelpFormatter


def parser() -> argparse.ArgumentParser:
    metrics = ", ".join(METRICS)
    p = _Parser(
        prog="optexp-report",
        description=(
            "Compare the runs below PATH (a sweep directory, outputs/, or one run). Runs are\n"
            "grouped by their overrides minus `seed`; each metric is mean ± sample std (n)\n"
            "over the group's runs. Every run is listed with its status (completed,\n"
            "early_stopped, diverged, interrupted, failed, running/incomplete); unreadable\n"
            "runs and the reasons of failed ones are listed on stderr."
        ),
        epilog=(
            "metrics: test/acc, test/loss (best weights); val/acc, val/loss (at the best\n"
            "epoch); epochs; wall_s.\n\n"
            "examples:\n"
            "  optexp-report outputs/multirun/2026-01-01/10-00-00\n"
            "  optexp-report outputs/multirun --sort test/acc --format markdown\n"
            "  optexp-report outputs/multirun --select-best-by val/loss --over optimizer.lr\n"
            "  optexp-report outputs/multirun --plot curves.png --curve val/acc --band std\n"
            "  optexp-report outputs/multirun --target val/acc=0.9\n"
            "  optexp-report SWEEP --select-best-by val/loss --over optimizer.lr \\\n"
            "      --target val/loss=0.3 --target sine_mlp:val/loss=0.02 --study study/\n\n"
            "study measures (see README, 'Comparing optimizers fairly'):\n"
            "  time-to-target: the first epoch whose METRIC reaches VALUE (acc: >=, else <=)\n"
            "    and the summed time/epoch_s up to it; mean ± std over the runs that reached\n"
            "    it, with 'k of n reached'. A run that never reaches it is not averaged in.\n"
            "  problems: the values of --problem (default: problem, else dataset); methods:\n"
            "    the settings of the other keys, each at its --over value tuned per problem.\n"
            "  performance profile: r = cost / best cost on the problem (inf: not reached);\n"
            "    rho(tau) = fraction of problems with r <= tau. Cost: the median epochs to\n"
            "    target over seeds (--time-unit), and the final --profile-metric (acc as\n"
            "    error 1 - acc). score = area under rho over [1, tau_max] / (tau_max - 1),\n"
            "    exact for the step function; --score-scale log integrates over log tau.\n\n"
            "rules (each refused in one line, exit 2, before anything is written):\n"
            "  --curve needs --plot or --study; --band needs --plot, --sensitivity or --study;\n"
            "  --tau-max (> 1, <= 1000), --time-unit, --score-scale, --profile-metric and\n"
            "  --problem need --profile or --study; PROBLEM:METRIC=VALUE targets need --study\n"
            "  or --profile; target values are finite; figures end in .png, .pdf or .svg;\n"
            "  --sensitivity and --study need a numeric --over key; --study DIR is new, empty\n"
            f"  or an earlier study's ({STUDY_MARKER} in it). OPTEXP_DEBUG=1: tracebacks."
        ),
        formatter_class=_help_formatter(),
    )
    p.add_argument("path", type=Path, metavar="PATH", help="directory holding the runs")
    p.add_argument(
        "--sort",
        default="val/loss",
        choices=METRICS,
        metavar="METRIC",
        help=f"order groups by this metric, best first (default: val/loss; one of {metrics})",
    )
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KEY",
        help="also merge runs that differ only in KEY (repeatable), as for seed",
    )
    p.add_argument(
        "--select-best-by",
        choices=[m for m in METRICS if m.startswith("val/")],
        metavar="METRIC",
        help="with --over: per setting of the other keys, pick KEY's value by the best mean "
        "of this validation metric (val/loss or val/acc) and report its test metrics; a value "
        "where some runs diverged or are unfinished ranks below those where all finished",
    )
    p.add_argument("--over", metavar="KEY", help="the key to tune, e.g. optimizer.lr")
    p.add_argument(
        "--format", default="table", choices=FORMATS, help="output format (default: table)"
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
        help="with --plot or --study: TensorBoard scalar to plot (default: val/loss; e.g. "
        "val/acc, train/loss)",
    )
    p.add_argument(
        "--band",
        choices=("minmax", "std"),
        help="with --plot, --sensitivity or --study: shaded band over a group's runs: "
        "min-max (default) or ±1 sample std",
    )
    study = p.add_argument_group("study: time-to-target, tuneability, performance profiles")
    study.add_argument(
        "--target",
        action="append",
        default=[],
        type=target_arg,
        metavar="[PROBLEM:]METRIC=VALUE",
        help="per-epoch TensorBoard metric and the (finite) value to reach, e.g. val/acc=0.9, "
        "or sine_mlp:val/loss=0.02 for one problem only, with --study or --profile "
        "(repeatable); adds time-to-target columns",
    )
    study.add_argument(
        "--problem",
        metavar="KEY",
        help="with --profile or --study: the key whose values are the problems (default: "
        "problem, else dataset)",
    )
    study.add_argument(
        "--sensitivity",
        type=figure_path("--sensitivity"),
        metavar="FILE.png",
        help="with --select-best-by/--over: that metric against KEY (log x), one line per "
        "setting of the other keys, mean and min-max band over seeds, x where a run diverged",
    )
    study.add_argument(
        "--profile",
        type=figure_path("--profile"),
        metavar="FILE.png",
        help="with --select-best-by/--over: the performance profile across problems, by "
        "time-to-target if --target is given, else by the final --profile-metric",
    )
    study.add_argument(
        "--study",
        type=folder_path,
        metavar="DIR",
        help="with --select-best-by/--over: write DIR/README.md (tuned values, test metrics, "
        "time-to-target, profile scores), its figures, and the numbers as csv and json; DIR "
        f"is new, empty, or an earlier study's (marked by its {STUDY_MARKER} file)",
    )
    study.add_argument(
        "--profile-metric",
        choices=METRICS,
        metavar="METRIC",
        help="with --profile or --study: final metric of the second profile (default: "
        "test/loss; accuracies as errors)",
    )
    study.add_argument(
        "--time-unit",
        choices=("epochs", "seconds"),
        help="with --profile or --study: time-to-target cost of the profile (default: "
        "epochs, which do not depend on the machine's load; seconds: summed time/epoch_s)",
    )
    study.add_argument(
        "--tau-max",
        type=number_in("--tau-max", 1.0, TAU_MAX_LIMIT),
        metavar="TAU",
        help="with --profile or --study: upper end of the profile and its score, a number > 1 "
        f"and <= {TAU_MAX_LIMIT:g} (default: 4, as AlgoPerf)",
    )
    study.add_argument(
        "--score-scale",
        choices=("linear", "log"),
        help="with --profile or --study: integrate rho over tau (default, AlgoPerf's "
        "formula) or over log tau",
    )
    return p


def targets(args: argparse.Namespace) -> list[Target]:
    return list(args.target)  # parsed and checked by target_arg


def study_outputs(args: argparse.Namespace, runs: list[Run]) -> list[str]:
    """--sensitivity, --profile and --study; returns what was written, one line each."""
    from optexp import study_report

    if not (args.study or args.profile or args.sensitivity):
        return []
    written = []
    if args.sensitivity:
        study_report.check_varies(runs, args.over, "nothing to plot against")
        series = study_report.sensitivity_of_groups(
            study_report.without_diverged_values(runs), args.select_best_by, args.over, args.band
        )
        title = f"{args.select_best_by} against {args.over}"
        study_report.draw_sensitivity(
            series, title, args.over, args.select_best_by, args.sensitivity
        )
        written.append(f"wrote {args.sensitivity}")
    if not (args.study or args.profile):
        return written
    s = study_report.build(
        runs, args.over, args.select_best_by, targets(args), args.problem, args.ignore
    )
    profiles = study_report.profiles(s, args)
    if args.profile:
        study_report.draw_profile(profiles[0], args.tau_max, args.profile)
        written.append(f"wrote {args.profile}")
    if args.study:
        command = "optexp-report " + " ".join(sys.argv[1:]) if sys.argv[1:] else "optexp-report"
        with study_report.staged(args.study) as folder:  # marked as the study's (STUDY_MARKER)
            study_report.write_study(
                s, folder, profiles, args.tau_max, args.curve, args.band, command
            )
        written.append(f"wrote {args.study / 'README.md'} and its figures, csv and json")
    return written


def without_diverged_values(runs: Sequence[Run]) -> list[Run]:
    """A diverged run keeps the best values from before it blew up; for tuning and means
    it counts as a run without a value, which ranks its learning rate below every value
    whose runs all finished."""
    return [replace(r, values={}) if r.status == "diverged" else r for r in runs]


def report(args: argparse.Namespace) -> str:
    runs = find_runs(args.path)
    known = {k for r in runs for k in r.overrides}
    for key in [*args.ignore, *([args.over] if args.over else [])]:
        if key not in known:
            raise ReportError(
                f"unknown key {key!r}: the runs override {sorted(known) or 'nothing'}"
            )
    wanted = targets(args)
    if args.sensitivity or args.study:  # before anything is written
        from optexp.study_report import check_numeric

        check_numeric(runs, args.over, "--sensitivity" if args.sensitivity else "--study")
    groups = sort_groups(group_runs(without_diverged_values(runs), args.ignore), args.sort)
    written = []
    if args.plot:
        plot_curves(groups, args.curve, args.band, args.plot)
        written.append(f"wrote {args.plot}")
    written += study_outputs(args, runs)
    if args.over:
        choices = select_best(groups, args.select_best_by, args.over)
        order = {id(g): i for i, g in enumerate(groups)}
        choices.sort(key=lambda c: order[id(c.group)])
        title = f"{args.over} chosen by best mean {args.select_best_by}; test over seeds"
        table = choice_report(choices, args.select_best_by, title)
    else:
        title = f"{len(runs)} runs in {len(groups)} groups, sorted by {args.sort}"
        table = group_report(groups, title)
    if wanted:
        _check_targets_logged(wanted, table)
        # A problem's own target is the study's (check_flags asks for --study or --profile)
        general = [t for t in wanted if t.problem is None]
        if general:
            table = add_time_to_target(table, general)
    out = render(table, args.format)
    # The table stays the only thing on stdout (csv and json pipe into other tools).
    for line in written:
        print(line, file=sys.stderr)
    return out


def _check_targets_logged(wanted: list[Target], table: Report) -> None:
    from optexp.study import read_scalars

    logged = {tag for row in table.rows for d in row.dirs for tag in read_scalars(Path(d))}
    for target in wanted:
        if target.metric not in logged:
            shown = ", ".join(sorted(t for t in logged if "/" in t)) or "nothing (no tb/ events)"
            raise ReportError(f"--target {target}: no run logs {target.metric!r} (logged: {shown})")


def main(argv: Sequence[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    check_flags(p, args)
    try:
        print(report(args))
    except UserError as error:
        fail(error)


def fail(error: Exception) -> NoReturn:
    if debug_requested():
        raise error
    exit_with_error("optexp-report", str(error))


if __name__ == "__main__":
    main()
