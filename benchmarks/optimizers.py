"""Time per optimizer step of every optimizer option against AdamW's, on the reference
workload (digits-mlp: 64-128-128-10, batches of 64), in one process:

    python benchmarks/optimizers.py                 # every option, 5 rounds
    python benchmarks/optimizers.py --options adamw,muon,soap --rounds 7

A step is what the loop does for one batch: `optexp.steps.optimizer_step` (forward,
backward, the optimizer's update; a closure optimizer's evaluations included). The
options take turns in every round, so a change of load hits them alike; each figure is
the median over rounds of the mean step time of `--steps` steps, and the ratio is to
AdamW's median from the same rounds. `gd` and `lbfgs` are left out by default: they step
on the whole training set, which is other work than a batch's step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
WORKLOAD = "experiment=digits_mlp_bench"
REFERENCE = "adamw"


def stepper(option: str, steps: int) -> Callable[[], float]:
    """A function timing `steps` optimizer steps of `option` (seconds per step); the parts
    are built once, the batches cycle over the training set."""
    import itertools

    from hydra import compose, initialize_config_dir

    from optexp.cli import CONFIG_DIR
    from optexp.parts import build_parts
    from optexp.steps import optimizer_step

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[WORKLOAD, f"optimizer={option}"])
    parts = build_parts(cfg)
    batches = itertools.cycle(list(parts.data.train.batches(parts.batch_size)))

    def timed() -> float:
        started = time.perf_counter()
        for _ in range(steps):
            optimizer_step(parts, [next(batches)], measure=False)
        return (time.perf_counter() - started) / steps

    timed()  # warm-up: first-call paths, lazily built state
    return timed


def main() -> None:
    import torch

    from tests.groups import CONFIG_DIR, options

    every = [o for o in options(CONFIG_DIR / "optimizer") if o not in ("gd", "lbfgs")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--options", default=",".join(every), help="comma-separated options")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, every option in each")
    parser.add_argument("--steps", type=int, default=50, help="steps timed per round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = list(dict.fromkeys([REFERENCE, *args.options.split(",")]))
    timers = {option: stepper(option, args.steps) for option in chosen}
    samples: dict[str, list[float]] = {option: [] for option in chosen}
    for _ in range(args.rounds):
        for option, timed in timers.items():
            samples[option].append(timed())
    reference = statistics.median(samples[REFERENCE])
    print(f"| option | ms per step (median of {args.rounds}) | ratio to {REFERENCE} |")
    print("|---|---:|---:|")
    for option, taken in samples.items():
        median = statistics.median(taken)
        print(f"| `{option}` | {median * 1e3:.3f} | {median / reference:.2f} |")


if __name__ == "__main__":
    main()
