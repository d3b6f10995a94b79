"""optexp against a hand-written loop on the reference workload "digits-mlp", in one run.

    python benchmarks/run.py                       # every part, 5 repetitions
    python benchmarks/run.py --parts train,startup --reps 7
    python benchmarks/run.py --parts sweep --jobs 10

Parts (each prints its figures as a ratio, with the absolute numbers beside it):
  train    in-process: `optexp.train.run(cfg)` vs `handwritten.train()`, alternating: the
           whole call (data, model, loop, checkpoints, TensorBoard, metrics.json), and
           the loop alone (the sum of each epoch's steps + validation, `time/epoch_s`)
  process  `python -m optexp experiment=digits_mlp_bench` vs `python handwritten.py`, as
           subprocesses, alternating; also their peak memory (max RSS)
  startup  `--help`, `--cfg job` and two config errors, against the 0.5 s budget, and
           whether torch / torchvision / tensorboard were imported on those paths
  sweep    one `-m` sweep of N seeds vs N separate invocations

Timings are medians. Wall time is the target; CPU time (user + system of the process)
is printed beside it because it is less disturbed by other work on a shared machine.
Both sides run with the same number of torch threads (--threads).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HANDWRITTEN = REPO / "benchmarks" / "handwritten.py"
WORKLOAD = "experiment=digits_mlp_bench"
STARTUP_BUDGET_S = 0.5
HEAVY_MODULES = ("torch", "torchvision", "tensorboard")
STARTUP_COMMANDS = {
    "--help": ["--help"],
    "--cfg job": ["--cfg", "job"],
    "config error (optimizer.lr=-1)": ["optimizer.lr=-1"],
    "config error (optimizer=adamm)": ["optimizer=adamm"],
}


@dataclass
class Sample:
    wall_s: float
    cpu_s: float
    max_rss_mb: float = 0.0
    loop_s: float = 0.0  # sum of the epochs' `time/epoch_s`: training steps + validation


def median(samples: list[Sample], field: str) -> float:
    return statistics.median(getattr(s, field) for s in samples)


def report(
    figure: str, ours: list[Sample], theirs: list[Sample], target: float, field: str = "wall_s"
) -> None:
    """One line: optexp's median, the reference's median, their ratio and the target."""
    unit = "MB" if field == "max_rss_mb" else "s "
    a, b = median(ours, field), median(theirs, field)
    verdict = "ok" if a / b <= target else "MISSED"
    print(
        f"  {figure:<44} optexp {a:8.3f} {unit}  reference {b:8.3f} {unit}  "
        f"ratio {a / b:5.3f}  target <= {target:.2f}  {verdict}",
        flush=True,
    )


def alternate(
    reps: int, ours: Callable[[], Sample], theirs: Callable[[], Sample]
) -> tuple[list[Sample], list[Sample]]:
    """Run the two sides in turn, `reps` times each, so load changes hit both alike."""
    a, b = [], []
    for _ in range(reps):
        a.append(ours())
        b.append(theirs())
    return a, b


def child_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPTEXP_DEBUG", "HYDRA_FULL_ERROR")}
    env |= {
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    return env


def run_child(cmd: list[str], threads: int, expect: int = 0) -> Sample:
    """Run `cmd`, output to a file; wall time, CPU time and max RSS of that child alone."""
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=REPO, env=child_env(threads))
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != expect:
            log.seek(0)
            sys.exit(f"{shlex.join(cmd)} exited {child.returncode}:\n{log.read().decode()[-3000:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def optexp_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "optexp", *args]


def train_part(args: argparse.Namespace) -> None:
    """The training part in one process: everything after the config is composed."""
    import torch
    from hydra import compose, initialize_config_dir

    sys.path[:0] = [str(REPO), str(HANDWRITTEN.parent)]  # this checkout's optexp, not an install
    import handwritten

    from optexp.cli import CONFIG_DIR
    from optexp.train import run

    torch.set_num_threads(args.threads)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[WORKLOAD, f"trainer.epochs={args.epochs}"])

    def timed(train: Callable[[Path], object]) -> Callable[[], Sample]:
        def once() -> Sample:
            with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as sink:
                wall, cpu = time.perf_counter(), time.process_time()
                with contextlib.redirect_stdout(sink):
                    train(Path(tmp))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                return Sample(wall, cpu, loop_s=epoch_seconds(Path(tmp) / "tb"))

        return once

    ours = timed(lambda d: run(cfg, d))
    theirs = timed(lambda d: handwritten.train(d, epochs=args.epochs))
    alternate(1, ours, theirs)  # warm-up: lazy imports, allocator, first-call paths
    a, b = alternate(args.reps, ours, theirs)
    report(f"training part, wall (median of {args.reps})", a, b, 1.05)
    report(f"training part, CPU (median of {args.reps})", a, b, 1.05, "cpu_s")
    report(f"training loop only, wall (median of {args.reps})", a, b, 1.05, "loop_s")


def epoch_seconds(tensorboard_dir: Path) -> float:
    """Sum of the `time/epoch_s` scalars both sides log: each epoch's steps and validation,
    without its checkpoint, TensorBoard and console output."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    events.Reload()
    return sum(event.value for event in events.Scalars("time/epoch_s"))


def process_part(args: argparse.Namespace) -> None:
    """The whole process as a user starts it, and its peak memory."""
    with tempfile.TemporaryDirectory() as tmp:

        def ours() -> Sample:
            cmd = optexp_cmd(WORKLOAD, f"trainer.epochs={args.epochs}", f"hydra.run.dir={tmp}/o")
            return run_child(cmd, args.threads)

        def theirs() -> Sample:
            cmd = [sys.executable, str(HANDWRITTEN), f"--run-dir={tmp}/h"]
            cmd += [f"--epochs={args.epochs}", f"--threads={args.threads}"]
            return run_child(cmd, args.threads)

        a, b = alternate(args.reps, ours, theirs)
    report(f"whole process, wall (median of {args.reps})", a, b, 1.10)
    report(f"whole process, CPU (median of {args.reps})", a, b, 1.10, "cpu_s")
    report(f"peak memory, max RSS (median of {args.reps})", a, b, 1.10, "max_rss_mb")


def startup_part(args: argparse.Namespace) -> None:
    """Answers that must not wait for torch: help, config printing, config errors."""
    python = [run_child([sys.executable, "-c", "pass"], args.threads) for _ in range(args.reps)]
    print(f"  {'python -c pass (interpreter alone)':<44} {median(python, 'wall_s'):8.3f} s")
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in STARTUP_COMMANDS.items():
            cmd = optexp_cmd(*argv, f"hydra.run.dir={tmp}/run")
            expect = 0 if argv[0].startswith("--") else 2
            samples = [run_child(cmd, args.threads, expect) for _ in range(args.reps)]
            wall = median(samples, "wall_s")
            heavy = heavy_imports(cmd, args.threads)
            verdict = "ok" if wall < STARTUP_BUDGET_S and not heavy else "MISSED"
            print(
                f"  {name:<44} {wall:8.3f} s  (CPU {median(samples, 'cpu_s'):.3f} s)  "
                f"budget < {STARTUP_BUDGET_S} s  heavy imports: {', '.join(heavy) or 'none'}  "
                f"{verdict}",
                flush=True,
            )


def heavy_imports(cmd: list[str], threads: int) -> list[str]:
    """Top-level packages among HEAVY_MODULES that `cmd` imported (python -X importtime)."""
    out = subprocess.run(
        [cmd[0], "-X", "importtime", *cmd[1:]],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=child_env(threads),
        check=False,
    )
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in out.stderr.splitlines()
        if line.startswith("import time:")
    }
    return [name for name in HEAVY_MODULES if name in imported]


def sweep_part(args: argparse.Namespace) -> None:
    """N jobs in one `-m` process (Hydra's basic launcher) vs N separate processes."""
    seeds = ",".join(str(k) for k in range(args.jobs))
    with tempfile.TemporaryDirectory() as tmp:

        def separate() -> Sample:
            runs = [
                run_child(
                    optexp_cmd(
                        WORKLOAD,
                        f"seed={k}",
                        f"trainer.epochs={args.epochs}",
                        f"hydra.run.dir={tmp}/single/{k}",
                    ),
                    args.threads,
                )
                for k in range(args.jobs)
            ]
            return Sample(sum(r.wall_s for r in runs), sum(r.cpu_s for r in runs))

        def sweep() -> Sample:
            return run_child(
                optexp_cmd(
                    "-m",
                    WORKLOAD,
                    f"seed={seeds}",
                    f"trainer.epochs={args.epochs}",
                    f"hydra.sweep.dir={tmp}/sweep",
                ),
                args.threads,
            )

        a, b = alternate(args.sweep_reps, sweep, separate)
    figure = f"{args.jobs}-job sweep vs {args.jobs} runs ({args.sweep_reps} rep)"
    report(f"{figure}, wall", a, b, 0.60)
    report(f"{figure}, CPU", a, b, 0.60, "cpu_s")


PARTS = {"train": train_part, "process": process_part, "startup": startup_part, "sweep": sweep_part}


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    import torch

    return (
        f"{cpu}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS)
    )
    parser.add_argument(
        "--reps", type=int, default=5, help="repetitions per side (train, process, startup)"
    )
    parser.add_argument("--sweep-reps", type=int, default=1, help="repetitions of the sweep part")
    parser.add_argument("--jobs", type=int, default=10, help="jobs in the sweep part")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--epochs", type=int, default=20, help="epochs (the workload has 20)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if unknown := set(parts) - PARTS.keys():
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    print(f"$ python {shlex.join(sys.argv)}")
    print(f"machine: {machine()}; torch threads {args.threads}", flush=True)
    for name in parts:
        print(f"[{name}]", flush=True)
        PARTS[name](args)


if __name__ == "__main__":
    main()
