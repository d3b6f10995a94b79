"""The report's table (`Table`: one row per group or per choice) and its formats: a rich
table, csv, markdown and json; `md_row` is the one markdown row of the package."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from optexp.report.grouping import Choice, Group, Stat, as_number, varying_keys
from optexp.report.measures import Reach, Target, time_to_target
from optexp.report.runs import METRICS, Scalars

FORMATS = ("table", "csv", "markdown", "json")


@dataclass
class Row:
    settings: dict[str, str]  # value of each shown key
    info: dict[str, str]  # plain columns: status counts (and the values tried)
    stats: dict[str, Stat]
    dirs: list[str]


@dataclass
class Table:
    title: str
    keys: list[str]  # the override keys that differ between rows
    common: dict[str, str]  # the overrides every row shares
    metrics: list[str]
    rows: list[Row]


def group_table(groups: list[Group], title: str) -> Table:
    """One row per group, every metric."""
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
    return Table(title, keys, common, list(METRICS), rows)


def choice_table(choices: list[Choice], by: str, title: str) -> Table:
    """One row per setting of the other keys: the chosen value, the values tried, and the
    selection metric and test metrics of the chosen group."""
    over = choices[0].over
    keys, common = varying_keys([c.settings for c in choices])
    metrics = [by, "test/acc", "test/loss"]
    rows = [
        Row(
            {k: c.settings.get(k, "") for k in keys} | {over: c.chosen},
            {
                "tried": ", ".join(sorted(c.candidates, key=as_number)),
                "status": c.group.statuses(),
            },
            {m: c.group.stat(m) for m in metrics},
            [str(r.path) for r in c.group.runs],
        )
        for c in choices
    ]
    return Table(title, [*keys, over], common, metrics, rows)


def with_time_to_target(
    table: Table, targets: Sequence[Target], scalars: Callable[[Path], Scalars]
) -> Table:
    """Per row: how many of its runs reached each target ("k of n"), and the epochs and
    wall seconds it took them, mean ± std over the runs that reached it only.
    `scalars(run_dir)` gives a run's TensorBoard scalars."""
    for row in table.rows:
        curves = [scalars(Path(d)) for d in row.dirs]
        for target in targets:
            reach = Reach(tuple(time_to_target(c, target) for c in curves))
            row.info[f"reached {target}"] = reach.show()
            row.stats[f"epochs to {target}"] = Stat.of(reach.epochs())
            row.stats[f"s to {target}"] = Stat.of(reach.seconds())
    extra = [f"{unit} to {t}" for t in targets for unit in ("epochs", "s")]
    return replace(table, metrics=[*table.metrics, *extra])


def render(table: Table, fmt: str) -> str:
    return {"json": to_json, "csv": to_csv, "markdown": to_markdown, "table": to_rich}[fmt](table)


def to_json(table: Table) -> str:
    rows = [
        {"settings": r.settings, **r.info}
        | {"metrics": {m: vars(s) for m, s in r.stats.items()}, "dirs": r.dirs}
        for r in table.rows
    ]
    return json.dumps({"title": table.title, "common": table.common, "rows": rows}, indent=2)


def to_csv(table: Table) -> str:
    """One column per mean, std and n, empty where there is no value."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    info = list(table.rows[0].info) if table.rows else []
    stats = [f"{m} {part}" for m in table.metrics for part in ("mean", "std", "n")]
    writer.writerow([*table.keys, *info, *stats])
    for r in table.rows:
        numbers = ["" if v is None else v for m in table.metrics for v in vars(r.stats[m]).values()]
        writer.writerow([*r.settings.values(), *r.info.values(), *numbers])
    return buffer.getvalue().rstrip("\n")


def _cells(table: Table) -> tuple[list[str], list[list[str]], str]:
    info = list(table.rows[0].info) if table.rows else []
    header = [*table.keys, *info, *(_label(m) for m in table.metrics)]
    cells = [
        [*r.settings.values(), *map(str, r.info.values())]
        + [r.stats[m].show(METRICS[m].fmt if m in METRICS else ".2f") for m in table.metrics]
        for r in table.rows
    ]
    caption = " ".join(f"{k}={v}" for k, v in table.common.items())
    return header, cells, caption and f"common: {caption}"


def _label(metric: str) -> str:
    """A metric's column name; a time-to-target column is named by itself."""
    return METRICS[metric].label if metric in METRICS else metric


def to_markdown(table: Table) -> str:
    header, cells, caption = _cells(table)
    lines = [f"**{table.title}**", "", md_row(header), md_row(["---"] * len(header))]
    lines += [md_row(c) for c in cells]
    return "\n".join(lines + ([f"\n{caption}"] if caption else []))


def md_row(cells: Sequence[str]) -> str:
    """One row of a markdown table, a `|` in a cell escaped."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def to_rich(table: Table) -> str:
    """A rich table as text, as wide as the terminal (200 columns off one)."""
    from rich.console import Console
    from rich.table import Table as RichTable

    header, cells, caption = _cells(table)
    shown = RichTable(title=table.title, caption=caption or None)
    first_number = len(header) - len(table.metrics)
    for i, name in enumerate(header):
        shown.add_column(name, justify="right" if i >= first_number else "left")
    for row in cells:
        shown.add_row(*row)
    # The terminal's width; off a terminal (a file, a pipe) wide enough not to wrap numbers.
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 200
    console = Console(file=io.StringIO(), width=width, highlight=False)
    console.print(shown)
    return console.file.getvalue().rstrip("\n")
