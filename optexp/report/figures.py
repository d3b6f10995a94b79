"""The report's figures, drawn from data already read: learning curves per group
(`plot_curves`), a performance profile with its scores' intervals (`draw_profile`), a
metric against the swept key (`draw_sensitivity`) and the tuning-budget curves
(`draw_budget`). Each `*_figure` builds the Figure (the tests read its artists) and the
`draw_*` saves it. A study gives every method one colour in all of them
(`method_colours`). matplotlib is imported only when one is drawn."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optexp.plotting import import_matplotlib, new_figure, save
from optexp.report.bootstrap import Interval
from optexp.report.grouping import varying_keys
from optexp.report.measures import Point, Profile
from optexp.report.runs import METRICS, ReportError
from optexp.report.settings import ReportSettings
from optexp.rundir import TB_DIR

# matplotlib's tab10, by hand: a method keeps its colour in every figure of a study; then
# six dark colours of tab20b and black, so a study of up to 16 methods repeats none
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#000000",
)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method, by its place in name order (the palette repeats past 16)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(set(methods)))}


def marker_of(method: str, colours: dict[str, str]) -> str:
    """One marker shape per method, in the colours' order: two methods whose lines
    coincide (both at chance) still show both shapes."""
    return MARKERS[sorted(colours).index(method) % len(MARKERS)]


def width_of(method: str, colours: dict[str, str]) -> float:
    """Line widths that narrow in the colours' (and drawing) order: a line drawn over
    another that it coincides with leaves the one below showing at its edges."""
    return max(3.2 - 0.5 * sorted(colours).index(method), 1.0)


@dataclass
class Line:
    """One line of a curve plot: a group's settings and one curve {step: value} per run."""

    settings: dict[str, str]
    curves: list[dict[int, float]]
    colour: str | None = None  # None: the next of matplotlib's cycle
    marker: str = "o"
    width: float = 1.5


def plot_curves(
    lines: Sequence[Line], tag: str, band: str, path: Path, target: float | None = None
) -> None:
    """Mean `tag` per epoch for each line, with a min-max or ±std band over its runs;
    non-finite values are left out, and a run without any value is not drawn. A
    `target` value is drawn as a dashed line."""
    save(curves_figure(lines, tag, band, target), path, dpi=120)


def curves_figure(lines: Sequence[Line], tag: str, band: str, target: float | None = None) -> Any:
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
        _draw_mean_and_band(ax, curves, band, f"{label} (n={len(curves)})", line)
        drawn += 1
    if not drawn:
        raise ReportError(
            f"no run below has TensorBoard scalars tagged {tag!r} (in its {TB_DIR}/ dir)"
        )
    if target is not None:
        ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {target:g}")
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
    return fig


def _draw_mean_and_band(
    ax: Any, curves: list[dict[int, float]], band: str, label: str, line: Line
) -> None:
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
    (drawn,) = ax.plot(
        steps, mean, marker=line.marker, ms=4, lw=line.width, label=label, color=line.colour
    )
    ax.fill_between(steps, low, high, color=drawn.get_color(), alpha=0.2)


def draw_profile(
    p: Profile,
    settings: ReportSettings,
    path: Path,
    colours: dict[str, str] | None = None,
    intervals: dict[str, Interval] | None = None,
) -> None:
    save(profile_figure(p, settings, colours, intervals), path)


def profile_figure(
    p: Profile,
    settings: ReportSettings,
    colours: dict[str, str] | None = None,
    intervals: dict[str, Interval] | None = None,
) -> Any:
    """Left: rho(tau) of each method as a step function up to `settings.tau_max`, tau on
    the axis the score integrates over (`settings.score_scale`), so the score is the area
    under each line. Right, with `intervals`: each score with its bootstrap interval as
    error bars."""
    colours = colours or method_colours(list(p.rho))
    fig = new_figure(figsize=(10, 4.5) if intervals else (7, 4.5))
    ax, bars = fig.subplots(1, 2, width_ratios=(2, 1)) if intervals else (fig.subplots(), None)
    order = sorted(p.rho, key=lambda m: (-p.scores[m], m))
    for method in order:
        label = f"{method} ({_score_text(method, p, intervals)})"
        ax.step(p.taus, p.rho[method], where="post", color=colours[method], label=label, lw=2)
    _tau_axis(ax, settings.tau_max, settings.score_scale)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("rho(tau): fraction of problems")
    ax.set_title(f"Performance profile: {p.name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    if bars is not None and intervals:
        _score_bars(bars, order, intervals, colours)
    return fig


def _score_text(method: str, p: Profile, intervals: dict[str, Interval] | None) -> str:
    if intervals and method in intervals:
        return "score " + intervals[method].show(".2f")
    return f"score {p.scores[method]:.3f}"


def _tau_axis(ax: Any, tau_max: float, scale: str) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    if scale == "log":
        ax.set_xscale("log")
        ticks = [t for t in (1, 1.25, 1.5, 2, 3, 4, 6, 10, 20, 50, 100) if t <= tau_max]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(1, tau_max)
    axis = "log tau" if scale == "log" else "tau"
    ax.set_xlabel(f"tau: within this factor of the best method ({axis} axis: the score's)")


def _score_bars(
    ax: Any, order: Sequence[str], intervals: dict[str, Interval], colours: dict[str, str]
) -> None:
    """Each method's score and its interval, best at the top."""
    for y, method in enumerate(reversed(order)):
        i = intervals[method]
        ax.errorbar(
            i.estimate,
            y,
            xerr=[[i.estimate - i.low], [i.high - i.estimate]],
            fmt="o",
            color=colours[method],
            capsize=4,
            label=method,
        )
    ax.set_yticks(range(len(order)), list(reversed(order)))
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("score, bootstrap interval")
    ax.grid(alpha=0.3, axis="x")


def draw_sensitivity(
    series: dict[str, list[Point]],
    title: str,
    over: str,
    metric: str,
    path: Path,
    colours: dict[str, str] | None = None,
) -> None:
    save(sensitivity_figure(series, title, over, metric, colours), path)


def sensitivity_figure(
    series: dict[str, list[Point]],
    title: str,
    over: str,
    metric: str,
    colours: dict[str, str] | None = None,
) -> Any:
    """`metric` against `over` (log x), one line and band per method over the values where
    every seed finished; where some seeds diverged, the survivors' range as a hollow
    dotted bar, apart from the line. Above it, a strip with one row per method: an x
    where a seed diverged, so marks at the same value never hide each other."""
    colours = colours or method_colours(list(series))
    methods = sorted(series)
    fig = new_figure(figsize=(7, 5.2))
    strip, ax = fig.subplots(2, 1, sharex=True, height_ratios=(1, 5))
    for row, method in enumerate(methods):
        points, colour = series[method], colours[method]
        whole, partial = split_points(points)
        ys = [p.mean if p in whole else math.nan for p in points]  # nan breaks the line
        marker, width = marker_of(method, colours), width_of(method, colours)
        ax.plot([p.x for p in points], ys, marker=marker, lw=width, color=colour, label=method)
        ax.fill_between(
            [p.x for p in points],
            [p.low if p in whole else math.nan for p in points],
            [p.high if p in whole else math.nan for p in points],
            color=colour,
            alpha=0.2,
        )
        for p in partial:
            ax.plot([p.x, p.x], [p.low, p.high], ":", marker=marker, mfc="none", color=colour)
        failed = [p.x for p in points if p.diverged]
        if failed:
            strip.plot(failed, [mark_height(row)] * len(failed), "x", color=colour, ms=7)
    _divergence_strip(strip, methods)
    ax.set_xscale("log")
    ax.set_xlabel(f"{over} (hollow, dotted: the seeds that did not diverge there)")
    ax.set_ylabel(f"{metric}: mean over seeds, band min-max")
    if not METRICS[metric].higher_is_better:
        ax.set_yscale("log")
    strip.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _divergence_strip(strip: Any, methods: Sequence[str]) -> None:
    strip.set_ylim(-0.7, len(methods) - 0.3)
    strip.set_yticks([mark_height(r) for r in range(len(methods))], methods, fontsize=6)
    strip.set_ylabel("diverged", fontsize="small")
    strip.grid(alpha=0.3, axis="x")


def split_points(points: Sequence[Point]) -> tuple[list[Point], list[Point]]:
    """(values where every run has a value, values where some diverged and some did not)."""
    whole = [p for p in points if p.mean is not None and not p.diverged]
    partial = [p for p in points if p.mean is not None and p.diverged]
    return whole, partial


def mark_height(row: int) -> float:
    """The height, in the divergence strip, of the row-th method's marks: one row each."""
    return float(row)


def draw_budget(
    curves: Sequence[Any], title: str, metric: str, path: Path, colours: dict[str, str]
) -> None:
    save(budget_figure(curves, title, metric, colours), path)


def budget_figure(curves: Sequence[Any], title: str, metric: str, colours: dict[str, str]) -> Any:
    """The expected best `metric` after k random trials of the grid (`budget.Curve`s of
    one problem), mean over seeds with the min-max band, one line per method."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for c in sorted(curves, key=lambda c: c.method):
        ks, marker, width = c.ks, marker_of(c.method, colours), width_of(c.method, colours)
        ax.plot(ks, c.mean(), marker=marker, lw=width, color=colours[c.method], label=c.method)
        ax.fill_between(ks, c.low(), c.high(), color=colours[c.method], alpha=0.15)
    ax.set_xlabel("k: values of the grid tried, drawn at random with replacement")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"expected best {metric} (mean over seeds, band min-max)")
    if not METRICS[metric].higher_is_better:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig
