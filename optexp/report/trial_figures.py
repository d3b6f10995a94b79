"""The figures of a trial study's page (`optexp.report.trials`): one panel per problem,
every method in the same colour in each, the y axis on a log scale where a floor would
hide the differences the tables report."""

from __future__ import annotations

import math
import statistics
from typing import Any

from optexp.plotting import import_matplotlib, new_figure
from optexp.report.trials import Bound, Cell, TrialStudy, budget_curves


def panels(count: int) -> tuple[Any, list[Any]]:
    import_matplotlib()
    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig = new_figure(figsize=(4.5 * cols, 3.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def cost_label(b: Bound) -> str:
    if b.target.higher_is_better:
        return f"validation error (1 - {b.target.metric})"
    return f"{b.target.metric} (capped at chance, {b.chance:g})"


def budget_figure(s: TrialStudy, colours: dict[str, str]) -> Any:
    from matplotlib.ticker import MaxNLocator

    fig, axes = panels(len(s.problems()))
    for ax, problem in zip(axes, s.problems(), strict=True):
        for m in s.methods():
            curves = [c for c in budget_curves(s, problem, m) if c]
            size = min((len(c) for c in curves), default=0)
            if not size:
                continue
            ks = list(range(1, size + 1))
            mid = [statistics.median(c[k] for c in curves) for k in range(size)]
            ax.plot(ks, mid, color=colours[m], lw=1.5, label=m)
            low = [min(c[k] for c in curves) for k in range(size)]
            high = [max(c[k] for c in curves) for k in range(size)]
            ax.fill_between(ks, low, high, color=colours[m], alpha=0.12)
        ax.set_yscale("log")
        ax.set_title(problem, fontsize="medium")
        ax.set_xlabel("k: the study's first k trials")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"best {cost_label(s.bounds[problem])}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="x-small")
    return fig


def curves_figure(
    s: TrialStudy, table: dict[tuple[str, str], Cell], colours: dict[str, str]
) -> Any:
    from matplotlib.ticker import MaxNLocator

    fig, axes = panels(len(s.problems()))
    for ax, problem in zip(axes, s.problems(), strict=True):
        for m in s.methods():
            c = table[problem, m]
            shown = [timed or tuned for timed, tuned in zip(c.timed, c.tuned, strict=True)]
            for i, t in enumerate(x for x in shown if x is not None and x.curve):
                epochs = sorted(t.curve)
                ax.plot(
                    epochs,
                    [t.curve[e] for e in epochs],
                    color=colours[m],
                    lw=1.2,
                    alpha=0.8,
                    label=m if i == 0 else None,
                )
        b = s.bounds[problem]
        ax.axhline(b.cost(b.target.value), color="black", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_title(problem, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(cost_label(b))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="x-small")
    return fig
