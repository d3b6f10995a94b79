"""What surrounds a sweep's jobs (issue 34): an in-process sweep of small runs, timed from
the outside, and where each job's time goes, phase by phase.

    python benchmarks/study.py [--jobs 10] [--epochs 5] [--reps 2] [OVERRIDE ...]
    python benchmarks/study.py --phases [--problems] [--jobs 10] [--epochs 5] [OVERRIDE ...]

The first prints, per repetition: the sweep's seconds; the seconds before its first job
starts (the command's start-up, Hydra validating the sweep); the runs' summed `wall_s`; the
time between jobs ((last end - first start - summed wall_s) / jobs); the same after the
first job (which imports torch and the training code, once a sweep): (last end - first
end - the later jobs' wall_s) / (jobs - 1); and the sweep's efficiency, the summed `wall_s`
over the time from the first job's start to the last one's end. Timestamps are the files a
job writes: `.hydra/config.yaml` as it starts, metrics.json as it ends.

`--phases` runs the sweep in a child process whose functions are wrapped with timers
(self time: a phase's time excludes the phases it calls), and prints seconds per job of
each phase; `--problems` does it for a few trials of each study problem instead of the
default experiment. One thread per run (OMP_NUM_THREADS=1), as the studies run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = os.environ | {"OMP_NUM_THREADS": "1"}
STUDY_PROBLEMS = ("digits_mlp", "mnist1d_autoencoder", "mnist1d_deep_mlp", "lookup_transformer")


def sweep_args(jobs: int, epochs: int, sweep: Path, extra: list[str]) -> list[str]:
    return [
        "-m",
        f"seed={','.join(map(str, range(jobs)))}",
        f"trainer.epochs={epochs}",
        f"hydra.sweep.dir={sweep}",
        *extra,
    ]


def problem_args(problem: str, jobs: int, sweep: Path, extra: list[str]) -> list[str]:
    """A few trials of one study problem, as the optimizer study runs them."""
    trials = ",".join(map(str, range(jobs)))
    return [
        "-m",
        "experiment=study_optimizers",
        f"+problem={problem}",
        "optimizer=nadamw",
        "study.index=0",
        f"study.trial={trials}",
        f"hydra.sweep.dir={sweep}",
        *extra,
    ]


def sweep_once(args: list[str], sweep: Path) -> dict[str, float]:
    started = time.time()
    subprocess.run(
        [sys.executable, "-m", "optexp", *args], check=True, capture_output=True, env=ENV
    )
    ended = time.time()
    runs = sorted(sweep.glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)
    starts = [(p.parent / ".hydra" / "config.yaml").stat().st_mtime for p in runs]
    ends = [p.stat().st_mtime for p in runs]
    walls = [json.loads(p.read_text())["wall_s"] for p in runs]
    span = ends[-1] - min(starts)
    return {
        "sweep_s": ended - started,
        "first_job_s": min(starts) - started,
        "summed_wall_s": sum(walls),
        "between_jobs_s": (span - sum(walls)) / len(runs),
        # the first job imports torch and the training code once: from its end on
        "after_first_s": (ends[-1] - ends[0] - sum(walls[1:])) / (len(runs) - 1),
        "efficiency": sum(walls) / span,
    }


# --- phases: the child process -------------------------------------------------------

VALIDATE = "hydra: validate the sweep"  # what it calls counts to it: composing every job
# (phase, module, attribute path): every call of the attribute counts to the phase.
PHASES = [
    (VALIDATE, "hydra.plugins.sweeper", "Sweeper.validate_batch_is_legal"),
    (
        "hydra: compose the job",
        "hydra._internal.config_loader_impl",
        "ConfigLoaderImpl.load_sweep_config",
    ),
    ("hydra: compose the job", "optexp.cli.compose", "ChoicesConfigLoader.load_sweep_config"),
    ("hydra: job dir, .hydra/, logging", "hydra.core.utils", "run_job"),
    ("optexp: checks, trial, lock", "optexp.cli.app", "prepare_job"),
    ("build parts and data", "optexp.train", "build_parts"),
    ("training steps", "optexp.train", "train_steps"),
    ("evaluation", "optexp.metrics", "interval_record"),
    ("TensorBoard: open, log", "optexp.tracking", "Tracker.__init__"),
    ("TensorBoard: open, log", "optexp.tracking", "Tracker.log_interval"),
    ("TensorBoard: open, log", "optexp.tracking", "Tracker.log_text"),
    ("checkpoints", "optexp.train", "save"),
    ("test and train evaluation", "optexp.train", "final_metrics"),
    ("run record (HParams, confusion image)", "optexp.metrics", "run_record"),
    ("TensorBoard: write results, close", "optexp.tracking", "Tracker.log_results"),
    ("TensorBoard: write results, close", "optexp.tracking", "Tracker.__exit__"),
    ("metrics.json, summary", "optexp.train", "conclude"),
    ("metrics.json, summary", "optexp.train", "print_summary"),
    ("sweep callbacks (progress)", "optexp.cli.progress", "SweepProgress.on_job_end"),
]


class SelfTimes:
    """Seconds spent in each phase, its callees' phases excluded."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.stack: list[list[Any]] = []  # [phase, started, seconds of callees]

    def wrap(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            within = self.stack[-1][0] if self.stack else None
            self.stack.append([within if within == VALIDATE else phase, time.perf_counter(), 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                counted, started, inner = self.stack.pop()
                spent = time.perf_counter() - started
                self.seconds[counted] += spent - inner
                if self.stack:
                    self.stack[-1][2] += spent

        return timed


def child(argv: list[str]) -> None:
    import importlib

    times = SelfTimes()
    for phase, module_name, path in PHASES:
        owner: Any = importlib.import_module(module_name)
        *owners, name = path.split(".")
        for part in owners:
            owner = getattr(owner, part)
        setattr(owner, name, times.wrap(phase, getattr(owner, name)))
    # The launcher holds its own reference to run_job: wrap it there too.
    import hydra._internal.core_plugins.basic_launcher as basic
    import hydra.core.utils as utils

    basic.run_job = utils.run_job
    sys.argv = ["optexp", *argv]
    from optexp.cli.main import main

    started = time.perf_counter()
    main()
    total = time.perf_counter() - started
    print("PHASES " + json.dumps({"total": total, **times.seconds}), flush=True)


def phases_once(args: list[str]) -> dict[str, float]:
    script = [sys.executable, __file__, "--child", "--", *args]
    out = subprocess.run(script, check=True, capture_output=True, text=True, env=ENV).stdout
    line = next(line for line in out.splitlines() if line.startswith("PHASES "))
    return json.loads(line[7:])


def print_phases(title: str, seconds: dict[str, float], jobs: int) -> None:
    total = seconds.pop("total")
    rest = total - sum(seconds.values())
    print(f"\n{title}: {total:.2f} s for {jobs} jobs")
    print(f"{'phase':40s} {'s per job':>9s} {'share':>6s}")
    order = dict.fromkeys(phase for phase, _, _ in PHASES)
    for phase in order:
        s = seconds.get(phase, 0.0)
        print(f"{phase:40s} {s / jobs:9.3f} {s / total:6.1%}")
    print(f"{'the rest (start-up, imports, Hydra)':40s} {rest / jobs:9.3f} {rest / total:6.1%}")


def main() -> None:
    if "--child" in sys.argv:
        child(sys.argv[sys.argv.index("--") + 1 :])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--phases", action="store_true", help="per-phase seconds per job")
    parser.add_argument("--problems", action="store_true", help="with --phases: study problems")
    parser.add_argument("overrides", nargs="*", help="more overrides for every job")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.phases:
            runs = [
                (
                    "default experiment",
                    sweep_args(args.jobs, args.epochs, Path(folder) / "d", args.overrides),
                )
            ]
            if args.problems:
                runs = [
                    (
                        f"+problem={p}, {args.jobs} trials",
                        problem_args(p, args.jobs, Path(folder) / p, args.overrides),
                    )
                    for p in STUDY_PROBLEMS
                ]
            for title, sweep in runs:
                print_phases(title, phases_once(sweep), args.jobs)
            return
        print(f"{args.jobs} jobs x {args.epochs} epochs, in-process (Hydra's basic launcher)")
        print("rep  sweep s  first job s  summed wall_s  between jobs s  after first  efficiency")
        for rep in range(args.reps):
            sweep = Path(folder) / str(rep)
            r = sweep_once(sweep_args(args.jobs, args.epochs, sweep, args.overrides), sweep)
            print(
                f"{rep:>3}  {r['sweep_s']:7.2f}  {r['first_job_s']:11.2f}"
                f"  {r['summed_wall_s']:13.2f}  {r['between_jobs_s']:14.3f}"
                f"  {r['after_first_s']:11.3f}  {r['efficiency']:10.2f}"
            )


if __name__ == "__main__":
    main()
