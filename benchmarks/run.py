"""optexp against a hand-written loop on the reference workload "digits-mlp", in one run.

    python benchmarks/run.py                       # every part, 5 repetitions
    python benchmarks/run.py --parts train,startup --reps 7
    python benchmarks/run.py --parts sweep --jobs 10

Parts (each prints its figures as a ratio, with the absolute numbers beside it):
  train    in-process: `optexp.train.run(cfg)` vs `handwritten.train()`, alternating: the
           whole call (data, model, loop, checkpoints, TensorBoard, metrics.json), and
           the loop alone (the sum of each epoch's steps + validation, `time/epoch_s`)
  process  `python -m optexp experiment=digits_mlp_bench` vs `python handwritten.py`, as
           subprocesses, alternating; also their peak memory (max RSS), and the time
           against `handwritten.py --digits-csv`, which loads the digits as optexp does
  startup  `--help`, `--cfg job` and two config errors, against the 0.5 s budget, and
           whether torch / torchvision / tensorboard were imported on those paths
  sweep    one `-m` sweep of N seeds vs N separate invocations
  review   what TensorBoard's review costs: optexp as it is against optexp with the
           per-layer statistics, the run's text and the first batch's images patched
           out, alternating in one process (the whole call and the loop alone)
  cnn      a CIFAR-10-shaped CNN with crop/flip augmentation on the GPU if there is one
           (--device): training images/s of optexp vs a hand-written loop
           (handwritten_cnn.py), and the speed-up of bf16 and fp16 autocast and of
           channels-last over fp32

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
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


def alternate(reps: int, *sides: Callable[[], T]) -> tuple[list[T], ...]:
    """Run the sides in turn, `reps` times each, so load changes hit them alike."""
    samples: tuple[list[T], ...] = tuple([] for _ in sides)
    for _ in range(reps):
        for side, taken in zip(sides, samples, strict=True):
            taken.append(side())
    return samples


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
            with quiet_run_dir() as run_dir:
                wall, cpu = time.perf_counter(), time.process_time()
                train(run_dir)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                return Sample(wall, cpu, loop_s=epoch_seconds(run_dir / "tb"))

        return once

    ours = timed(lambda d: run(cfg, d))
    theirs = timed(lambda d: handwritten.train(d, epochs=args.epochs))
    alternate(1, ours, theirs)  # warm-up: lazy imports, allocator, first-call paths
    a, b = alternate(args.reps, ours, theirs)
    report(f"training part, wall (median of {args.reps})", a, b, 1.05)
    report(f"training part, CPU (median of {args.reps})", a, b, 1.05, "cpu_s")
    report(f"training loop only, wall (median of {args.reps})", a, b, 1.05, "loop_s")


def review_part(args: argparse.Namespace) -> None:
    """The defaults that TensorBoard's review added (diagnostics.py) against none of them."""
    from unittest import mock

    import torch
    from hydra import compose, initialize_config_dir

    sys.path[:0] = [str(REPO)]
    from optexp import diagnostics
    from optexp.cli import CONFIG_DIR
    from optexp.tracking import Tracker
    from optexp.train import run

    torch.set_num_threads(args.threads)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[WORKLOAD, f"trainer.epochs={args.epochs}"])

    def once(plain: bool) -> Sample:
        with contextlib.ExitStack() as patches, quiet_run_dir() as run_dir:
            if plain:  # no start weights: no per-layer statistics; no text, no images
                patches.enter_context(
                    mock.patch.object(diagnostics, "weights_now", lambda *a: None)
                )
                patches.enter_context(mock.patch.object(Tracker, "log_text"))
                patches.enter_context(mock.patch.object(diagnostics, "is_image", lambda *a: False))
            wall, cpu = time.perf_counter(), time.process_time()
            run(cfg, run_dir)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            return Sample(wall, cpu, loop_s=epoch_seconds(run_dir / "tb"))

    full, plain = (lambda: once(False)), (lambda: once(True))
    alternate(1, full, plain)  # warm-up
    # Half the pairs in each order: which side runs first moved the ratio by about one
    # percent in scratch runs, as much as the difference to be measured.
    a, b = alternate(args.reps - args.reps // 2, full, plain)
    b2, a2 = alternate(args.reps // 2, plain, full)
    a, b = a + a2, b + b2
    print("  (reference: optexp without the review's per-layer statistics, text and images)")
    report(f"training part, wall (median of {args.reps})", a, b, 1.02)
    report(f"training part, CPU (median of {args.reps})", a, b, 1.02, "cpu_s")
    report(f"training loop only, wall (median of {args.reps})", a, b, 1.02, "loop_s")


@contextlib.contextmanager
def quiet_run_dir() -> Iterator[Path]:
    """A temporary run directory; what the run prints is discarded."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
    ):
        yield Path(tmp)


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

        def theirs(*options: str) -> Callable[[], Sample]:
            cmd = [sys.executable, str(HANDWRITTEN), f"--run-dir={tmp}/h", *options]
            cmd += [f"--epochs={args.epochs}", f"--threads={args.threads}"]
            return lambda: run_child(cmd, args.threads)

        a, b, c = alternate(args.reps, ours, theirs(), theirs("--digits-csv"))
    report(f"whole process, wall (median of {args.reps})", a, b, 1.10)
    report(f"whole process, CPU (median of {args.reps})", a, b, 1.10, "cpu_s")
    report(f"peak memory, max RSS (median of {args.reps})", a, b, 1.10, "max_rss_mb")
    # optexp skips sklearn.datasets' imports (~1.2 s) when it loads the digits; against a
    # reference that does too, what is left is the runner's own cost (Hydra, mostly).
    report("whole process, vs digits loaded as optexp", a, c, 1.10)


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


def cnn_part(args: argparse.Namespace) -> None:
    """A CIFAR-10-shaped CNN with crop/flip augmentation on this machine's device (a GPU
    if there is one): training images/s of optexp and of a hand-written loop, and the
    speed-up of bf16 and fp16 autocast (fp16 needs CUDA) and of channels-last over fp32."""
    import numpy as np
    import torch
    from hydra import compose, initialize_config_dir

    sys.path[:0] = [str(REPO), str(HANDWRITTEN.parent)]
    import handwritten_cnn

    from optexp.cli import CONFIG_DIR
    from optexp.train import run

    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("benchmarks/run.py: --device cuda, but torch sees no CUDA device")
    n_train = args.cnn_images or (50_000 if cuda else 2048)  # CIFAR-10's size on a GPU
    n_val = n_train // 8
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_train + n_val, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n_train + n_val)
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"  {name}: {n_train} images 3x32x32 (random), batch 128, the second epoch timed")
    with tempfile.TemporaryDirectory() as tmp:
        arrays = Path(tmp) / "cifar_shaped.npz"
        train, held_out = slice(0, n_train), slice(n_train, None)
        np.savez(
            arrays,
            **{f"x_{s}": images[held_out] for s in ("val", "test")},
            **{f"y_{s}": labels[held_out] for s in ("val", "test")},
            x_train=images[train],
            y_train=labels[train],
        )
        x = torch.as_tensor(images).to(device).float().div_(255)
        y = torch.as_tensor(labels).to(device)

        def ours(*options: str) -> Callable[[], float]:
            overrides = [
                "dataset=arrays", f"dataset.path={arrays}", "model=cnn",
                "augmentation=crop_flip", "trainer.batch_size=128", "trainer.epochs=2",
                "trainer.early_stopping.enabled=false", "trainer.tensorboard=false",
                "trainer.checkpoint.every=2", f"trainer.device={device.type}", *options,
            ]  # fmt: skip
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                cfg = compose("config", overrides=overrides)

            def once() -> float:
                with quiet_run_dir() as run_dir:
                    return run(cfg, run_dir)["final"]["throughput/samples_per_s"]

            return once

        def theirs() -> float:
            return handwritten_cnn.train(x[train], y[train], x[held_out], y[held_out])

        mine, hand = alternate(args.reps, ours(), theirs)
        a, b = statistics.median(mine), statistics.median(hand)
        verdict = "ok" if b / a <= 1.05 else "MISSED"
        print(
            f"  {f'CNN images/s, fp32 (median of {args.reps})':<44} optexp {a:8.0f}  "
            f"reference {b:8.0f}  time ratio {b / a:5.3f}  target <= 1.05  {verdict}",
            flush=True,
        )
        variants = ["trainer.precision=bf16", "trainer.channels_last=true"]
        variants += ["trainer.precision=fp16"] if cuda else []
        for option in variants:
            fast = statistics.median(ours(option)() for _ in range(args.reps))
            print(f"  optexp {option}: {fast:8.0f} images/s, {fast / a:.2f}x fp32", flush=True)


PARTS = {
    "train": train_part,
    "process": process_part,
    "startup": startup_part,
    "sweep": sweep_part,
    "review": review_part,
    "cnn": cnn_part,
}


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
    parser.add_argument(
        "--cnn-images",
        type=int,
        default=None,
        help="training images of the cnn part (default: 50000 on a GPU, 2048 on a CPU)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="the cnn part's device, both sides (auto: cuda when torch sees one)",
    )
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
