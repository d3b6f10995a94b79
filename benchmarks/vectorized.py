"""Seeds as one vectorized group (optexp.vector) against separate runs, side by side in
one run on this machine:

    python benchmarks/vectorized.py [--reps 3] [--seeds 10] [--parts step,default,study]

default: the default experiment (digits MLP) as `optexp` runs it (TensorBoard and a
checkpoint every epoch), and its training alone (neither): one seed's run, `--seeds`
separate runs one after another in this process, and the same seeds as one group.
step: one training step of the default MLP (batch 64, fused Adam): one member on its
own, and `--seeds` members stacked, as batched matrix products (what optexp runs for an
MLP) and through vmap over functional_call (what it runs for other models).
study: every problem of the study preset (experiment=study_optimizers, so data_seed
follows the seed) with Adam at lr 1e-3 and `--study-seeds` seeds, cut to `--study-epochs`
epochs: the separate runs against the group (a model vmap cannot run trains one by one),
with the largest relative difference of a member's test loss from its separate run.
trials: the default experiment's 5 learning rates (3e-4 to 3e-3, log-spaced) x 2 seeds as
separate runs and as one group with a stacked step per member (issue 34's case).
sweeps: the optimizer study's sweeps as a user runs them (`optexp -m`, one thread), each
`--sweeps` preset three ways: Hydra's basic launcher (separate runs), the vectorized
launcher over seeds only (`hydra.launcher.trials=false`) and over seeds and trials; the
sweep's seconds once each, and how far the vectorized runs' final test losses are from the
separate ones: how many are equal bit for bit, and the largest relative difference among
the runs that ended alike (a diverged run's loss is noise; their statuses are compared).
Wall times are medians over `--reps` after one warm-up of each side, the sides alternating.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from optexp import train  # noqa: E402
from optexp.cli import CONFIG_DIR  # noqa: E402
from optexp.vector.group import NotVectorizable, RunSpec, run_group  # noqa: E402
from optexp.vector.stack import Stack  # noqa: E402

TRAINING_ONLY = ("trainer.tensorboard=false", "trainer.checkpoint.every=100000")
PROBLEMS = (
    "mnist1d_cnn",
    "mnist1d_gru",
    "mnist1d_deep_mlp",
    "mnist1d_autoencoder",
    "quadratic_deep",
    "lookup_transformer",
)


def configs(seeds: range, *overrides: str) -> list:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return [compose("config", overrides=[*overrides, f"seed={s}"]) for s in seeds]


def timed(work: Callable[[Path], object]) -> tuple[float, object]:
    folder = Path(tempfile.mkdtemp(prefix="optexp-bench-"))
    try:
        started = time.perf_counter()
        result = work(folder)
        return time.perf_counter() - started, result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def separate(cfgs: list) -> Callable[[Path], list[dict]]:
    return lambda folder: [train.run(c, folder / f"run{k}") for k, c in enumerate(cfgs)]


def together(cfgs: list) -> Callable[[Path], list[dict]]:
    def work(folder: Path) -> list[dict]:
        members = [RunSpec(c, folder / f"member{k}", {}) for k, c in enumerate(cfgs)]
        try:
            return run_group(members)
        except NotVectorizable:  # as the launcher does: one by one
            return separate(cfgs)(folder)

    return work


def median_times(sides: dict[str, Callable[[Path], object]], reps: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in sides}
    for work in sides.values():  # warm-up: generated datasets cached, kernels loaded
        timed(work)
    for _ in range(reps):
        for name, work in sides.items():
            times[name].append(timed(work)[0])
    return {name: statistics.median(t) for name, t in times.items()}


def default_part(reps: int, seeds: int) -> None:
    for label, extra in (("as optexp runs it", ()), ("training only", TRAINING_ONLY)):
        cfgs = configs(range(seeds), *extra)
        sides = {
            "1 seed": separate(cfgs[:1]),
            f"{seeds} separate": separate(cfgs),
            f"{seeds} vectorized": together(cfgs),
        }
        times = median_times(sides, reps)
        one = times["1 seed"]
        cells = "  ".join(f"{name} {t:.2f} s ({t / one:.2f}x)" for name, t in times.items())
        print(f"default experiment, {label}: {cells}", flush=True)


def step_part(reps: int, seeds: int, steps: int = 100) -> None:
    import torch

    from optexp.parts import build_parts

    cfgs = configs(range(seeds), "trainer.tensorboard=false")
    members = [build_parts(c) for c in cfgs]
    x, y = next(iter(members[0].data.train.batches(64)))
    one = members[0].model
    alone = torch.optim.Adam(one.parameters(), fused=True)
    stack = Stack([copy.deepcopy(p.model) for p in members])
    stacked = torch.optim.Adam(stack.params, fused=True)
    loss_fn = members[0].loss_fn

    def step_one() -> None:
        alone.zero_grad()
        loss_fn(one(x), y).backward()
        alone.step()

    def step_stack() -> None:
        stacked.zero_grad()
        out = stack.forward(x, True)
        torch.stack([loss_fn(o, y) for o in out]).sum().backward()
        stacked.step()

    # On a GPU the steps only queue kernels: wait for them before reading the clock.
    finish = torch.cuda.synchronize if x.is_cuda else lambda: None
    layers = stack.layers
    sides = {
        "1 member": (None, step_one),
        f"{seeds} members, batched matrix products": (layers, step_stack),
        f"{seeds} members, vmap": (None, step_stack),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    for rep in range(reps + 1):  # the first round warms up
        for name, (setup, work) in sides.items():
            stack.layers = setup
            finish()
            started = time.perf_counter()
            for _ in range(steps):
                work()
            finish()
            if rep:
                times[name].append((time.perf_counter() - started) / steps * 1e3)
    for name, ms in times.items():
        threads = torch.get_num_threads()
        print(f"step, {name}: {statistics.median(ms):.3f} ms (torch threads {threads})", flush=True)


def study_part(reps: int, epochs: int, seeds: int) -> None:
    total = {"separate": 0.0, "vectorized": 0.0}
    for problem in PROBLEMS:
        overrides = ("experiment=study_optimizers", f"+problem={problem}", "optimizer=adam")
        cfgs = configs(range(seeds), *overrides, "optimizer.lr=1e-3", f"trainer.epochs={epochs}")
        times = median_times({"separate": separate(cfgs), "vectorized": together(cfgs)}, reps)
        _, apart = timed(separate(cfgs))
        _, grouped = timed(together(cfgs))
        gap = max(
            abs(g["test"]["loss"] - a["test"]["loss"]) / abs(a["test"]["loss"])
            for g, a in zip(grouped, apart, strict=True)  # type: ignore[arg-type]
        )
        for side, t in times.items():
            total[side] += t
        ratio = times["separate"] / times["vectorized"]
        print(
            f"study {problem}: {seeds} separate {times['separate']:.2f} s, vectorized "
            f"{times['vectorized']:.2f} s ({ratio:.2f}x faster), test loss gap {gap:.1e}",
            flush=True,
        )
    ratio = total["separate"] / total["vectorized"]
    print(f"study, all problems: {total['separate']:.1f} s -> {total['vectorized']:.1f} s "
          f"({ratio:.2f}x faster)")  # fmt: skip


def trials_part(reps: int) -> None:
    lrs = [3e-4 * 10 ** (k / 4) for k in range(5)]
    cfgs = [cfg for lr in lrs for cfg in configs(range(2), f"optimizer.lr={lr:.3g}")]
    sides = {"1 run": separate(cfgs[:1]), "5 lr x 2 seeds separate": separate(cfgs)}
    sides["5 lr x 2 seeds vectorized"] = together(cfgs)
    times = median_times(sides, reps)
    one = times["1 run"]
    cells = "  ".join(f"{name} {t:.2f} s ({t / one:.2f}x)" for name, t in times.items())
    print(f"default experiment, trials: {cells}", flush=True)


# The study's sweeps the `sweeps` part times: the small preset and one full problem.
SWEEPS = {
    "small": ("experiment=study_optimizers_small",),
    "digits": ("experiment=study_optimizers", "+problem=digits_mlp"),
}
LAUNCHERS = {
    "separate": (),
    "vectorized, seeds": ("hydra/launcher=vectorized", "hydra.launcher.trials=false"),
    "vectorized, seeds and trials": ("hydra/launcher=vectorized",),
}


def sweeps_part(names: list[str]) -> None:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    for name in names:
        ends: dict[str, dict[str, tuple[str, float]]] = {}
        for launcher, chosen in LAUNCHERS.items():
            folder = Path(tempfile.mkdtemp(prefix="optexp-bench-"))
            command = [sys.executable, "-m", "optexp", "-m", *SWEEPS[name], *chosen]
            started = time.perf_counter()
            subprocess.run([*command, f"hydra.sweep.dir={folder}"], check=True, env=env,
                           capture_output=True)  # fmt: skip
            seconds = time.perf_counter() - started
            ends[launcher] = run_ends(folder)
            shutil.rmtree(folder, ignore_errors=True)
            pairs = [(ends["separate"][job], end) for job, end in ends[launcher].items()]
            alike = [(a, b) for (s, a), (t, b) in pairs if s == t != "diverged"]
            equal = sum(a == b for a, b in alike)
            gap = max((abs(b - a) / abs(a) for a, b in alike), default=0.0)
            print(
                f"sweep {name} ({len(pairs)} runs), {launcher}: {seconds:.1f} s; statuses as "
                f"separate: {sum(s == t for (s, _), (t, _) in pairs)}; test loss equal: {equal} "
                f"of {len(alike)} not diverged, largest relative difference {gap:.1e}",
                flush=True,
            )


def run_ends(sweep: Path) -> dict[str, tuple[str, float]]:
    """Each job's status and final test loss, by its folder's name."""
    ends = {}
    for path in sweep.glob("*/metrics.json"):
        summary = json.loads(path.read_text())
        loss = (summary.get("test") or {}).get("loss")
        ends[path.parent.name] = (summary["status"], loss if isinstance(loss, float) else 0.0)
    return ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--study-epochs", type=int, default=3)
    parser.add_argument("--study-seeds", type=int, default=3, help="the preset has 3")
    parser.add_argument("--parts", default="step,default,study", help="or trials, sweeps")
    parser.add_argument("--sweeps", default="small", help=f"of {','.join(SWEEPS)}")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    parts = args.parts.split(",")
    if "step" in parts:
        step_part(args.reps * 3, args.seeds)
    if "default" in parts:
        default_part(args.reps, args.seeds)
    if "study" in parts:
        study_part(args.reps, args.study_epochs, args.study_seeds)
    if "trials" in parts:
        trials_part(args.reps)
    if "sweeps" in parts:
        sweeps_part(args.sweeps.split(","))


if __name__ == "__main__":
    main()
