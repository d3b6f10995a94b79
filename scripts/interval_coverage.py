"""How often the trial study's bootstrap interval covers the score it estimates, on
simulated studies with a planted difference: 4 problems x 3 studies, three methods whose
epochs to target are lognormal around known medians (method `fast` twice as fast as
`slow` on every problem, `twin` equal to `slow`). The score the intervals estimate is the
score of those medians on these problems; a percentile interval at level 0.95 covers it
in the share printed.

    python scripts/interval_coverage.py [--reps 200] [--studies 3] [--spread 0.3]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from optexp.report.measures import Hit, make_profile
from optexp.report.settings import ReportSettings
from optexp.report.trial_scores import score
from optexp.report.trials import Bound, Target, Trial, TrialStudy

PROBLEMS = {"p1": 4.0, "p2": 6.0, "p3": 8.0, "p4": 12.0}  # slow's median epochs
METHODS = {"fast": 0.5, "slow": 1.0, "twin": 1.0}  # factor on the problem's median


def simulate(rng: np.random.Generator, studies: int, spread: float) -> TrialStudy:
    found = []
    for problem, epochs in PROBLEMS.items():
        for study in range(studies):
            for method, factor in METHODS.items():
                e = max(1, round(epochs * factor * math.exp(rng.normal(0, spread))))
                found.append(
                    Trial(problem, method, study, 0, "completed", 0.1, 0.1, Hit(e, e), {}, 1.0)
                )
    bound = Bound(Target("val/acc", 0.9), 0.1)
    return TrialStudy(found, dict.fromkeys(PROBLEMS, bound), len(found))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--studies", type=int, default=3)
    p.add_argument("--spread", type=float, default=0.3, help="sigma of log epochs")
    args = p.parse_args()
    settings = ReportSettings(bootstrap=300)
    truth_costs = {pr: {m: round(e * f) for m, f in METHODS.items()} for pr, e in PROBLEMS.items()}
    truth = make_profile("", truth_costs, settings.tau_max, settings.score_scale).scores
    rng = np.random.default_rng(0)
    covered = dict.fromkeys(METHODS, 0)
    for _ in range(args.reps):
        intervals = score(simulate(rng, args.studies, args.spread), settings, "slow").intervals[0]
        for m in METHODS:
            covered[m] += intervals[m].low <= truth[m] <= intervals[m].high
    for m in METHODS:
        print(f"{m}: true score {truth[m]:.3f}, covered in {covered[m] / args.reps:.0%}")


if __name__ == "__main__":
    main()
