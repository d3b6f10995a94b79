"""What surrounds a sweep's jobs (issue 34): an in-process sweep of small runs, timed from
the outside, its runs' own `wall_s` against the time the sweep took.

    python benchmarks/study.py [--jobs 10] [--epochs 5] [--reps 2] [OVERRIDE ...]

Prints, per repetition: the sweep's seconds; the seconds before its first job starts (the
command's start-up, Hydra composing every job once to validate the sweep); the runs'
summed `wall_s`; the time between jobs ((last end - first start - summed wall_s) / jobs);
and the sweep's efficiency, the summed `wall_s` over the time from the first job's start
to the last one's end. Timestamps are the files a job writes: `.hydra/config.yaml` as it
starts, metrics.json as it ends. One thread per run (OMP_NUM_THREADS=1), as the studies.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep_once(jobs: int, epochs: int, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        sweep = Path(folder) / "sweep"
        command = [
            sys.executable,
            "-m",
            "optexp",
            "-m",
            f"seed={','.join(map(str, range(jobs)))}",
            f"trainer.epochs={epochs}",
            f"hydra.sweep.dir={sweep}",
            *extra,
        ]
        env = os.environ | {"OMP_NUM_THREADS": "1"}
        started = time.time()
        subprocess.run(command, check=True, capture_output=True, env=env)
        ended = time.time()
        runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
        starts = [(r / ".hydra" / "config.yaml").stat().st_mtime for r in runs]
        ends = [(r / "metrics.json").stat().st_mtime for r in runs]
        wall = sum(json.loads((r / "metrics.json").read_text())["wall_s"] for r in runs)
    span = max(ends) - min(starts)
    return {
        "sweep_s": ended - started,
        "first_job_s": min(starts) - started,
        "summed_wall_s": wall,
        "between_jobs_s": (span - wall) / len(runs),
        "efficiency": wall / span,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="more overrides for every job")
    args = parser.parse_args()
    print(f"{args.jobs} jobs x {args.epochs} epochs, in-process (Hydra's basic launcher)")
    print("rep  sweep s  first job s  summed wall_s  between jobs s  efficiency")
    for rep in range(args.reps):
        r = sweep_once(args.jobs, args.epochs, args.overrides)
        print(
            f"{rep:>3}  {r['sweep_s']:7.2f}  {r['first_job_s']:11.2f}  {r['summed_wall_s']:13.2f}"
            f"  {r['between_jobs_s']:14.3f}  {r['efficiency']:10.2f}"
        )


if __name__ == "__main__":
    main()
