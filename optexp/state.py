"""What a checkpoint holds, named in one place: every stateful part of a run under the key
its state is saved by (`PARTS`), where the run is (`RunState`), the random state and the
config. `snapshot` writes it, `resume` reads it back; adding a stateful part to `Parts`
is one line in `PARTS`."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from optexp import checkpoint, rundir

if TYPE_CHECKING:
    from optexp.parts import Parts

# Checkpoint key -> the `Parts` field whose state_dict() it holds.
PARTS = {
    "model": "model",
    "optimizer": "optimizer",
    "scheduler": "schedule",
    "scaler": "scaler",
    "early_stopping": "early_stopping",
    "average": "weights",
}
KEYS = (*PARTS, "progress", "rng", "config")
# What checkpoints written before this registry lack: no "average" without EMA or SWA.
OLDER = {"average": {}}


@dataclass
class RunState:
    """Where a run is: what its checkpoint holds besides the parts' own state."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    batches_done: int = 0  # batches of the current epoch already taken
    sums: list[float] = field(default_factory=list)  # `IntervalSums` since the last evaluation
    metrics: dict[str, float] = field(default_factory=dict)  # of the last evaluation
    best_model: dict[str, torch.Tensor] | None = None  # the weights evaluated at the best
    seconds: float = 0.0  # spent training so far, resumed runs included (trainer.max_time)

    @property
    def fresh(self) -> bool:
        """Nothing trained yet: not resumed, or resumed from a checkpoint at the start."""
        return self.epoch == self.batches_done == 0


def snapshot(
    parts: Parts,
    state: RunState,
    config_json: str,
    rng: list[dict[str, Any]],
    sums: list[list[float]],
) -> dict[str, Any]:
    """Everything needed to continue exactly where the run is now: plain state only. `rng`
    and `sums`: every rank's random state and training sums since the last evaluation, by
    rank (the progress holds rank 0's)."""
    saved = {key: getattr(parts, name).state_dict() for key, name in PARTS.items()}
    position = vars(state).copy()  # not asdict: that deep-copies the best weights
    best_now = parts.early_stopping.best_step == state.step
    if best_now and state.best_model is not None and parts.weights.evaluated_model() is parts.model:
        position["best_model"] = saved["model"]  # torch.save stores tensors it meets twice once
    ranks = {"rng_ranks": rng, "sums_ranks": sums} if len(rng) > 1 else {}
    return saved | {"progress": position, "rng": rng[0], "config": config_json} | ranks


def resume(parts: Parts, run_dir: Path, config: dict[str, Any]) -> RunState:
    """A fresh `RunState`, or the one of the checkpoint to continue from, with every part's
    state restored."""
    path = checkpoint.resume_path(run_dir, parts.trainer.resume)
    if path != rundir.checkpoint_file(run_dir, "last"):  # a fresh start, or another run's
        rundir.check_no_results(run_dir)
    if path is None:
        return RunState()
    saved = OLDER | checkpoint.load(path, tuple(k for k in KEYS if k not in OLDER))
    checkpoint.check_compatible(saved["config"], config, path)
    for key, name in PARTS.items():
        getattr(parts, name).load_state_dict(saved[key])
    checkpoint.set_rng_state(saved.get("rng_ranks", [saved["rng"]])[parts.world.rank])
    state = RunState(**saved["progress"])
    if "sums_ranks" in saved:  # several ranks: each its own (older files: rank 0's for all)
        state.sums = saved["sums_ranks"][parts.world.rank]
    if state.best_model is not None:
        state.best_model = {k: v.to(parts.device) for k, v in state.best_model.items()}
    return state


def seed_everything(seed: int | None) -> None:
    """Python's, numpy's and torch's generators from `seed` (None: left as they are)."""
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
