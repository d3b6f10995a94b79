"""The study's figures read right: one colour per method in every figure, divergence
marks that do not hide each other, an lr where some seeds diverged drawn apart from the
line, the profile's tau axis on the score's scale, and the scores' intervals drawn.
Read from the matplotlib artists of the figures the page draws."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from matplotlib.colors import to_hex

from optexp.report import figures, main
from optexp.report.bootstrap import Interval
from optexp.report.measures import Point, make_profile
from optexp.report.settings import ReportSettings
from tests.test_study import two_problems  # noqa: F401 (a fixture)


@pytest.fixture
def drawn(monkeypatch) -> dict[str, Any]:
    """Every figure the report saves, by file name, instead of written."""
    saved: dict[str, Any] = {}

    def keep(figure: Any, path: Path, dpi: int = 110) -> None:
        saved[Path(path).name] = figure

    monkeypatch.setattr(figures, "save", keep)
    return saved


def method_of(label: str) -> str:
    """`adam`, from `adam`, `adam (score ...)` or `method=adam (n=2)`."""
    return label.split(" ")[0].removeprefix("method=")


def colours_by_method(figure: Any) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for ax in figure.axes:
        for line in ax.get_lines():
            if not line.get_label().startswith(("_", "target")):  # the target: black
                found.setdefault(method_of(line.get_label()), set()).add(to_hex(line.get_color()))
    return found


def test_every_figure_of_a_study_gives_a_method_the_same_colour(
    drawn,
    two_problems,  # noqa: F811
    tmp_path,
):
    tune = ["--select-best-by", "val/loss", "--over", "optimizer.lr", "--bootstrap", "20"]
    main([str(two_problems), *tune, "--target", "val/loss=0.4", "--study", str(tmp_path / "s")])
    names = {"curves_p1.png", "sensitivity_p2.png", "budget_p1.png", "profile_epochs_to_target.png"}
    assert names <= set(drawn)
    colours: dict[str, set[str]] = {}
    for figure in drawn.values():
        for method, found in colours_by_method(figure).items():
            colours.setdefault(method, set()).update(found)
    assert set(colours) == {"adam", "sgd"}
    assert all(len(c) == 1 for c in colours.values()), colours
    assert colours["adam"] != colours["sgd"]
    for name in ("sensitivity_p1.png", "budget_p2.png", "curves_p2.png"):  # and one shape each
        shapes = {
            method_of(x.get_label()): x.get_marker()
            for x in drawn[name].axes[-1].get_lines()
            if not x.get_label().startswith(("_", "target"))
        }
        assert shapes == {"adam": "o", "sgd": "s"}, name
    profile = drawn["profile_epochs_to_target.png"]
    assert profile.axes[0].get_xscale() == "linear"  # the axis the linear score integrates
    (target,) = [x for x in drawn["curves_p1.png"].axes[0].get_lines() if "target" in x.get_label()]
    assert list(target.get_ydata()) == [0.4, 0.4]  # the target the time is measured to


def test_divergence_marks_of_two_methods_at_one_lr_do_not_overlap():
    diverged = [Point(0.1, 0.5, 0.4, 0.6, 3, 0), Point(1.0, None, None, None, 0, 3)]
    series = {"adam": diverged, "sgd": diverged}
    figure = figures.sensitivity_figure(series, "t", "optimizer.lr", "val/loss")
    strip, plot = figure.axes  # the marks in a strip above the plot, one row per method
    marks = [line for line in strip.get_lines() if line.get_marker() == "x"]
    heights = {line.get_ydata()[0] for line in marks}
    assert len(marks) == 2 and heights == {0.0, 1.0}
    assert [t.get_text() for t in strip.get_yticklabels()] == ["adam", "sgd"]
    assert not [line for line in plot.get_lines() if line.get_marker() == "x"]


def test_an_lr_where_some_seeds_diverged_is_not_drawn_as_the_survivors_mean():
    points = [
        Point(0.01, 0.5, 0.4, 0.6, 3, 0),
        Point(0.1, 0.3, 0.2, 0.4, 2, 1),  # one of three seeds diverged
        Point(1.0, 0.9, 0.8, 1.0, 3, 0),
    ]
    whole, partial = figures.split_points(points)
    assert [p.x for p in whole] == [0.01, 1.0] and [p.x for p in partial] == [0.1]
    figure = figures.sensitivity_figure({"adam": points}, "t", "optimizer.lr", "val/loss")
    lines = figure.axes[1].get_lines()
    (mean,) = [line for line in lines if line.get_label() == "adam"]
    ys = list(mean.get_ydata())
    assert ys[0] == 0.5 and math.isnan(ys[1]) and ys[2] == 0.9  # the line breaks there
    (hollow,) = [line for line in lines if line.get_markerfacecolor() == "none"]
    assert list(hollow.get_xdata()) == [0.1, 0.1] and list(hollow.get_ydata()) == [0.2, 0.4]


@pytest.mark.parametrize("scale", ["linear", "log"])
def test_the_profile_axis_is_the_one_the_score_integrates_over(scale):
    p = make_profile("epochs", {"a": {"A": 1.0, "B": 2.0}, "b": {"A": 3.0, "B": 2.0}}, 4, scale)
    intervals = {"A": Interval(0.8, 0.6, 0.9), "B": Interval(0.5, 0.3, 0.7)}
    settings = ReportSettings(tau_max=4.0, score_scale=scale)
    figure = figures.profile_figure(p, settings, intervals=intervals)
    assert figure.axes[0].get_xscale() == scale
    assert figure.axes[0].get_xlim() == (1.0, 4.0)
    bars = figure.axes[1]  # each score with its interval as an error bar
    segments = [c.get_segments()[0] for c in bars.collections]
    spans = sorted((float(s[0][0]), float(s[1][0])) for s in segments)
    assert spans == [(0.3, 0.7), (0.6, 0.9)]
