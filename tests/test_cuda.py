"""The CUDA paths, which the CPU suite cannot reach: fp16 autocast with its gradient scaler,
bf16 without one, a vectorized group on the GPU equal to its separate runs, a one-GPU run
under torchrun, and the collectives a data-parallel run makes on an nccl process group.

Marked `cuda` and skipped without a CUDA device; on a GPU:
`python -m pytest -m cuda tests/test_cuda.py` (benchmarks/gpu.sh runs it first)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from optexp import checkpoint, distributed, train
from optexp.parts import build_parts
from optexp.vector.group import RunSpec, run_group
from optexp.world import World
from tests.conftest import REPO
from tests.test_vectorized import MNIST1D, SMALL, TRIALS, members, same_run

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CUDA = "trainer.device=cuda"
# The default experiment (the digits MLP), cut to 2 epochs.
SHORT = (CUDA, "trainer.epochs=2", "trainer.tensorboard=false")
UNIFORM_LOSS = math.log(10)  # cross-entropy of a uniform guess over the digits' 10 classes
INIT_SCALE = 2.0**16  # torch.amp.GradScaler's default init_scale


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def last_checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def trained(result: dict) -> None:
    """A run that completed on the GPU and learned: finite losses, below a uniform guess."""
    assert result["status"] == "completed", result
    assert result["device"].startswith("cuda"), result["device"]
    assert result["global_step"] > 0
    final, test = result["final"], result["test"]
    for loss in (final["train/loss"], final["val/loss"], test["loss"]):
        assert loss is not None and math.isfinite(loss), result
        assert loss < UNIFORM_LOSS, result


@pytest.mark.parametrize(
    ("precision", "dtype", "scaled"),
    [("32", torch.float32, False), ("bf16", torch.bfloat16, False), ("fp16", torch.float16, True)],
)
def test_each_precision_builds_its_autocast_and_scaler(make_cfg, precision, dtype, scaled):
    parts = build_parts(make_cfg(CUDA, f"trainer.precision={precision}"))
    assert parts.device.type == "cuda"
    assert parts.scaler.is_enabled() is scaled
    x, _ = next(iter(parts.data.train.batches(64)))
    assert x.is_cuda
    with parts.autocast():
        out = parts.model(x)
    assert out.dtype == dtype


def test_fp16_trains_with_its_gradient_scaler(optexp_cli, tmp_path):
    run_dir = tmp_path / "fp16"
    result = optexp_cli(*SHORT, "trainer.precision=fp16", run_dir=run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    done = summary(run_dir)
    trained(done)
    scaler = last_checkpoint(run_dir)["scaler"]  # GradScaler.state_dict(): empty when disabled
    assert math.isfinite(scaler["scale"]) and scaler["scale"] > 0, scaler
    # update() ran after the steps: each step without inf/NaN counts in the growth tracker,
    # one with them halves the scale; a scaler never updated keeps both at their start.
    assert scaler["scale"] != INIT_SCALE or scaler["_growth_tracker"] > 0, scaler
    if scaler["scale"] == INIT_SCALE:  # no step was skipped: every step was counted
        assert scaler["_growth_tracker"] == done["global_step"], (scaler, done["global_step"])


def test_bf16_trains_without_a_scaler(optexp_cli, tmp_path):
    run_dir = tmp_path / "bf16"
    result = optexp_cli(*SHORT, "trainer.precision=bf16", run_dir=run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    trained(summary(run_dir))
    assert last_checkpoint(run_dir)["scaler"] == {}  # a disabled GradScaler saves nothing


def test_a_vectorized_mlp_on_the_gpu_trains_as_its_separate_runs(make_cfg, tmp_path):
    """The MLP path: the members' layers as batched matrix products."""
    group = members(make_cfg, tmp_path, "optimizer=adam", "optimizer.lr=0.05", CUDA)
    results = run_group(group)
    for k in (0, 2):
        separate = train.run(group[k].cfg, tmp_path / f"separate{k}")
        assert results[k]["device"].startswith("cuda") and separate["device"].startswith("cuda")
        same_run(results[k], separate)
    assert results[0]["final"]["train/loss"] != results[2]["final"]["train/loss"]  # seeds differ


def test_a_vectorized_cnn_on_the_gpu_trains_as_its_separate_runs(make_cfg, tmp_path):
    """The vmap path (cnn1d on MNIST-1D, each member its own data), tolerance as on CPU."""
    cnn = ("model=cnn1d", "model.channels=[8,8]", "model.kernel_sizes=[5,3]", "data_seed=${seed}")
    group = members(make_cfg, tmp_path, *cnn, "trainer.epochs=2", CUDA, seeds=(0, 1), base=MNIST1D)
    results = run_group(group)
    for k in (0, 1):
        separate = train.run(group[k].cfg, tmp_path / f"separate{k}")
        assert results[k]["device"].startswith("cuda")
        same_run(results[k], separate, rel=1e-4)


@pytest.mark.parametrize("optimizer", ["adamw", "nadamw"])
def test_trials_stacked_on_the_gpu_train_as_their_separate_runs(make_cfg, tmp_path, optimizer):
    """The stacked step with hyperparameters per member, its (K,) tensors on the GPU."""
    group = [
        RunSpec(
            make_cfg(
                *SMALL, f"optimizer={optimizer}", "scheduler=cosine", *trial, CUDA, f"seed={k}"
            ),
            tmp_path / f"member{k}",
            {},
        )
        for k, trial in enumerate(TRIALS[optimizer])
    ]
    results = run_group(group)
    for k, result in enumerate(results):
        separate = train.run(group[k].cfg, tmp_path / f"separate{k}")
        assert result["device"].startswith("cuda")
        same_run(result, separate, rel=1e-4)


def test_the_vectorized_launcher_stacks_seeds_on_the_gpu(optexp_cli, tmp_path):
    sweep = tmp_path / "sweep"
    args = ("-m", "hydra/launcher=vectorized", *SMALL, CUDA, "seed=0,1,2")
    result = optexp_cli(*args, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not vectorized" not in result.stderr, result.stderr[-3000:]
    runs = sorted(sweep.glob("*/metrics.json"))
    assert len(runs) == 3
    for path in runs:
        done = json.loads(path.read_text())
        assert done["status"] == "completed" and done["device"].startswith("cuda"), done


def test_one_gpu_under_torchrun_is_a_plain_run(tmp_path):
    """torchrun with one process: RANK/WORLD_SIZE/LOCAL_RANK set, a world of one, so no
    process group is opened (distributed.process_group) and the run is the one-process
    run on cuda, with one set of files."""
    run_dir = tmp_path / "torchrun"
    environ = os.environ | {"PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=1", "-m", "optexp",
        *SHORT, "trainer.devices=1", "trainer.distributed_backend=nccl", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    result = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, env=environ, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trained(summary(run_dir))
    assert result.stdout.count("optexp: completed") == 1
    assert len(list((run_dir / "checkpoints").glob("*.pt"))) >= 1


@pytest.fixture
def nccl() -> Iterator[torch.device]:
    """A real nccl process group of one rank (two ranks would need two GPUs), opened as
    distributed.process_group opens it, and the rank's GPU."""
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    torch.distributed.init_process_group(
        "nccl",
        init_method=f"tcp://127.0.0.1:{distributed.free_port()}",
        rank=0,
        world_size=1,
        timeout=timedelta(seconds=60),
    )
    try:
        yield device
    finally:
        torch.distributed.destroy_process_group()


# A World of size 2 on that group, only so that it takes its torch.distributed branch: over
# one rank a sum or a maximum is the value itself, and a gather fills the first place.
TWO_RANKS = World(rank=0, size=2, local_rank=0)


def test_the_collectives_of_a_run_work_on_nccl(nccl):
    """What every rank of a multi-GPU run calls: the metric sums (on the GPU), the agreed
    stop flags, and the random states gathered for every checkpoint (train.save)."""
    sums = torch.tensor([1.5, 2.0, 0.0, 64.0], device=nccl)
    assert TWO_RANKS.sum(sums).tolist() == sums.tolist()
    assert TWO_RANKS.agree(15, True, nccl) == (15, True)
    own = (checkpoint.rng_state(), [1.0, 2.0, 0.0, 64.0])
    (rng, kept), *_ = TWO_RANKS.gather(own)
    assert torch.equal(rng["torch"], own[0]["torch"])
    assert rng["cuda"] and all(map(torch.equal, rng["cuda"], own[0]["cuda"]))
    assert kept == own[1]


def test_the_run_clock_all_reduces_on_nccl(nccl):
    """The run's clock (`World.maximum`, at every evaluation in train.py) all-reduces on
    the run's device: torch maps a group opened as "nccl" to CUDA tensors alone (its
    BackendConfig: {'cuda': 'nccl'}), where gloo, as on CPU, takes both."""
    assert TWO_RANKS.maximum(12.5, torch.device("cuda")) == 12.5
