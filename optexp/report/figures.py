"""The report's figures, drawn from data already read: learning curves per group
(`plot_curves`), a performance profile (`draw_profile`) and a metric against the swept key
(`draw_sensitivity`). matplotlib is imported only when one is drawn."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optexp.plotting import import_matplotlib, new_figure, save
from optexp.report.grouping import varying_keys
from optexp.report.measures import Point, Profile
from optexp.report.runs import METRICS, ReportError
from optexp.rundir import TB_DIR


@dataclass
class Line:
    """One line of a curve plot: a group's settings and one curve {step: value} per run."""

    settings: dict[str, str]
    curves: list[dict[int, float]]


def plot_curves(lines: Sequence[Line], tag: str, band: str, path: Path) -> None:
    """Mean `tag` per epoch for each line, with a min-max or ±std band over its runs;
    non-finite values are left out, and a run without any value is not drawn."""
    import_matplotlib()  # before the first matplotlib import: a junk MPLBACKEND raises
    from matplotlib.ticker import MaxNLocator

    keys, common = varying_keys([line.settings for line in lines])
    fig = new_figure(figsize=(8, 5))
    ax = fig.subplots()
    drawn = 0
    for line in lines:
        finite = [{s: v for s, v in c.items() if math.isfinite(v)} for c in line.curves]
        curves = [c for c in finite if c]
        if not curves:
            continue
        label = ", ".join(f"{k}={line.settings.get(k, '-')}" for k in keys) or "all runs"
        _draw_mean_and_band(ax, curves, band, f"{label} (n={len(curves)})")
        drawn += 1
    if not drawn:
        raise ReportError(
            f"no run below has TensorBoard scalars tagged {tag!r} (in its {TB_DIR}/ dir)"
        )
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
    save(fig, path, dpi=120)


def _draw_mean_and_band(ax: Any, curves: list[dict[int, float]], band: str, label: str) -> None:
    import numpy as np

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
    (drawn,) = ax.plot(steps, mean, marker="o", markersize=3, label=label)
    ax.fill_between(steps, low, high, color=drawn.get_color(), alpha=0.2)


def draw_profile(p: Profile, tau_max: float, path: Path) -> None:
    """rho(tau) of each method as a step function, best score first in the legend."""
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
    save(fig, path)


def draw_sensitivity(
    series: dict[str, list[Point]], title: str, over: str, metric: str, path: Path
) -> None:
    """`metric` against `over` (log x), one line and band per method, an x along the top
    where a seed diverged."""
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
    save(fig, path)
