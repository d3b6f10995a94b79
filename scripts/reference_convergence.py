"""Does the targets' budget let the reference converge? For a reference sweep
(`experiment=study_targets`), per problem, baseline and study: the best trial by the final
value of the problem's target metric, its value at half the epochs (where the target is
read), at three quarters and at the end, and the share of its improvement since the first
evaluation that came in the last quarter (near 0: converged within the budget).

    python scripts/reference_convergence.py outputs/study_targets
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from optexp.report.runs import Run, find_runs, read_scalars
from optexp.report.targets import file_target, problem_file, problem_of
from optexp.rundir import Status


def best_curve(runs: list[Run], metric: str) -> dict[int, float] | None:
    """The curve of the trial best at its last evaluation."""
    sign = -1.0 if metric.endswith("acc") else 1.0
    curves = [c for r in runs if (c := read_scalars(r.path).get(metric))]
    curves = [c for c in curves if math.isfinite(c[max(c)])]
    return min(curves, key=lambda c: sign * c[max(c)], default=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="the reference sweep's folder")
    args = parser.parse_args()
    groups: dict[tuple[str, str, int], list[Run]] = {}
    for r in find_runs(args.sweep):
        if r.status == Status.COMPLETED and "study.trial" in r.overrides:
            key = (problem_of(r), r.value_of("optimizer"), int(r.config["study"]["index"]))
            groups.setdefault(key, []).append(r)
    print("problem  baseline  study  metric: half, 3/4, end  last quarter's share")
    for (problem, method, study), runs in sorted(groups.items()):
        metric = file_target(problem_file(runs[0], problem)).get("metric", "val/acc")
        curve = best_curve(runs, metric)
        if curve is None:
            continue
        end = max(curve)
        first, q3, last = curve[min(curve)], curve[math.ceil(0.75 * end)], curve[end]
        share = (q3 - last) / (first - last) if first != last else math.nan
        print(
            f"{problem} {method} {study}  {metric}: {curve[math.ceil(end / 2)]:.4g}, "
            f"{q3:.4g}, {last:.4g}  {share:.3f}"
        )


if __name__ == "__main__":
    main()
