"""The figures of a regularization study's page (`optexp.report.regularization`): per
problem, the test and training error against each regularizer's strength; and each
combination against the sum of its parts."""

from __future__ import annotations

from typing import Any

import numpy as np

from optexp.report.regularization import ALL, REFERENCE, Findings, searched_keys
from optexp.report.trial_figures import panels
from optexp.report.trials import Cell, TrialStudy, median


def gap_figure(
    s: TrialStudy, table: dict[tuple[str, str], Cell], problem: str, colours: dict[str, str]
) -> Any:
    """One panel per method with one searched key: each trial's test error (filled) and
    training error (hollow) at its strength, joined by the gap; the seeds' tuned trials
    starred; `none`'s median test error dashed."""
    methods = [m for m in s.methods_on(problem) if len(searched_keys(s, m)) == 1]
    fig, axes = panels(max(len(methods), 1))
    none = table.get((problem, REFERENCE))
    for ax, m in zip(axes, methods, strict=False):
        (key,) = searched_keys(s, m)
        trials = [t for st in s.studies() for t in s.searched(problem, m, st) if key in t.point]
        xs = [float(t.point[key]) for t in trials]
        for x, t in zip(xs, trials, strict=True):
            ax.plot([x, x], [t.train, t.test], color=colours[m], lw=0.8, alpha=0.5)
        ax.scatter(xs, [t.test for t in trials], color=colours[m], s=14, label="test")
        ax.scatter(
            xs,
            [t.train for t in trials],
            facecolors="none",
            edgecolors=colours[m],
            s=14,
            label="train (clean pass)",
        )
        tuned = [t for t in table[problem, m].tuned if t is not None and key in t.point]
        ax.scatter(
            [float(t.point[key]) for t in tuned],
            [t.test for t in tuned],
            marker="*",
            s=90,
            color="black",
            zorder=3,
            label="tuned (per seed)",
        )
        if none is not None:
            ax.axhline(median(none.test), color="grey", ls="--", lw=1, label="none: test")
        if on_log_scale(trials, key):
            ax.set_xscale("log")
        ax.set_title(m, fontsize="medium")
        ax.set_xlabel(key)
        ax.set_ylabel("error")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="x-small")
    fig.suptitle(problem)
    return fig


def on_log_scale(trials: list[Any], key: str) -> bool:
    """Whether the key was searched on a log scale: its trials' positions in the range (on
    the search space's scale) are linear in log(value), not in the value."""
    found = [(float(t.point[key]), t.positions[key]) for t in trials if key in t.positions]
    x, where = np.array([v for v, _ in found]), np.array([p for _, p in found])
    if len(found) < 3 or x.min() <= 0 or np.ptp(x) == 0:
        return False
    residual = [np.polyfit(u, where, 1, full=True)[1] for u in (x, np.log(x))]
    return float(np.sum(residual[1])) < float(np.sum(residual[0]))


SUM = "the parts' effects added"


def pairs_figure(s: TrialStudy, found: Findings) -> Any:
    """Per combination, one panel: for each problem and over all, each part's effect on
    the test error (against `none`), their sum and the combination's, with intervals."""
    pairs = sorted(found.pairs.items())
    fig, axes = panels(len(pairs))
    for ax, (both, (a, b)) in zip(axes, pairs, strict=True):
        where = [p for p in (*s.problems(), ALL) if p in found.interactions[both]]
        for j, (name, offset) in enumerate(((a, -0.27), (b, -0.09), (SUM, 0.09), (both, 0.27))):
            for i, p in enumerate(where):
                if name == SUM:
                    y = found.against_none[a][p].estimate + found.against_none[b][p].estimate
                    ax.plot(i + offset, y, "D", color="grey", label=name if i == 0 else None)
                    continue
                e = found.against_none[name][p]
                ax.errorbar(
                    i + offset,
                    e.estimate,
                    yerr=[[e.estimate - e.low], [e.high - e.estimate]],
                    fmt="o",
                    color=f"C{j}",
                    capsize=3,
                    label=name if i == 0 else None,
                )
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(where)), where, rotation=20, fontsize="x-small")
        ax.set_ylabel("test error minus none's")
        ax.set_title(both, fontsize="medium")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    return fig
