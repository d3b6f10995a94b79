"""Data-parallel training samples/s on this machine's CPU (gloo), in one run:

    python benchmarks/distributed.py [--reps 3]

The same compute-bound run (a wide MLP, 2 x 2048 hidden units, batch 256) as one process
with 1 torch thread, one process with 2 threads, and `trainer.devices=2` (two processes,
one thread each), alternating; the figure is the last epoch's `throughput/samples_per_s`
from metrics.json (training and validation of that epoch, after start-up), the median
over the repetitions, and the ratio of two processes to one process with as many threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN = (
    "dataset=synthetic",
    "dataset.n_samples=6000",
    "model.hidden=[2048,2048]",
    "trainer.batch_size=256",
    "trainer.epochs=3",
    "trainer.tensorboard=false",
    "trainer.checkpoint.keep_best=false",
    "trainer.early_stopping.enabled=false",
)
SIDES = {
    "1 process, 1 thread": ((), 1),
    "1 process, 2 threads": ((), 2),
    "2 processes, 1 thread each": (("trainer.devices=2",), 1),
}


def samples_per_s(extra: tuple[str, ...], threads: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", "optexp", *RUN, *extra, f"hydra.run.dir={folder}/run"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        summary = json.loads((Path(folder) / "run" / "metrics.json").read_text())
        return summary["final"]["throughput/samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    reps = parser.parse_args().reps
    load = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {load:.2f}")  # fmt: skip
    figures: dict[str, list[float]] = {name: [] for name in SIDES}
    for _ in range(reps):
        for name, (extra, threads) in SIDES.items():
            figures[name].append(samples_per_s(extra, threads))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, value in medians.items():
        print(f"  {name:<28} {value:10.0f} samples/s   (median of {reps})")
    ratio = medians["2 processes, 1 thread each"] / medians["1 process, 2 threads"]
    print(f"  2 processes / 1 process with 2 threads: {ratio:.3f}")


if __name__ == "__main__":
    main()
