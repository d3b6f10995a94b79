"""One run on several processes: data-parallel training on torch.distributed.

`trainer.devices: N` (processes on this node) and `trainer.num_nodes`. The one Hydra job
composes and checks the config and decides the run directory, then `launch` starts the N
workers through PyTorch's own elastic launcher (`torch.distributed.launcher.elastic_launch`,
what `torchrun` runs): it sets each worker's RANK, WORLD_SIZE and MASTER_ADDR/PORT as
torchrun does, so a worker started by optexp, by torchrun or by SLURM takes the same path
(`World.from_environment`), and it stops the other workers and reports which one failed
when one dies. Under torchrun or SLURM (`srun`, submitit's `tasks_per_node`) optexp is one
of the ranks already and starts nothing.

`trainer.batch_size` stays the global batch: each rank takes its contiguous part of every
batch of the data_seed-ordered epoch (`World.shard`), its loss weighted by its share, so
DistributedDataParallel's mean of the ranks' gradients is the gradient of the whole batch.
Validation and test are sharded the same way and their sums all-reduced, so every rank
has the same metrics, hence the same early-stopping and divergence decisions; a stop
signal or a spent time budget is one all-reduced flag per step. Only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optexp import rundir
from optexp.errors import ConfigError, UserError
from optexp.world import World

if TYPE_CHECKING:
    import torch


@contextlib.contextmanager
def process_group(world: World, name: str, gpu: torch.device | None, timeout_s: float) -> Any:
    """torch.distributed's process group for the run (nothing on one process): backend
    `name` (auto: nccl for a `gpu`, else gloo); every collective gives up after
    `timeout_s`, so a rank that died never hangs the others."""
    import torch

    if world.size == 1:
        yield
        return
    if gpu is not None:
        torch.cuda.set_device(gpu)
    torch.distributed.init_process_group(
        ("nccl" if gpu is not None else "gloo") if name == "auto" else name,
        rank=world.rank,
        world_size=world.size,
        timeout=timedelta(seconds=timeout_s),
    )
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def run(cfg: Any, run_dir: Path, choices: dict[str, str], launch_info: Any) -> dict[str, Any]:
    """The run of `cfg` on `trainer.devices` x `trainer.num_nodes` processes: as a rank that
    torchrun or SLURM started, or by starting the workers of this node; rank 0's summary."""
    trainer, world = cfg.trainer, World.from_environment()
    ranks = trainer.devices * trainer.num_nodes
    if world.size > 1:
        if world.size != ranks:
            raise ConfigError(
                "trainer.devices",
                trainer.devices,
                f"devices x num_nodes = the {world.size} ranks the launcher started",
                problem=f"with trainer.num_nodes={trainer.num_nodes} asks for {ranks} ranks",
            )
        return run_rank(world, cfg, run_dir, choices, launch_info)
    if trainer.num_nodes > 1:
        raise ConfigError(
            "trainer.num_nodes",
            trainer.num_nodes,
            "1, or more under a launcher that starts the nodes: SLURM "
            "(hydra/launcher=slurm_multi_node) or torchrun",
            problem="needs processes on other nodes, which optexp does not start",
        )
    check_devices(trainer.devices, trainer.device)
    return launch(trainer.devices, run_dir, worker, cfg, run_dir, choices, launch_info)


def run_rank(
    world: World, cfg: Any, run_dir: Path, choices: dict[str, str], launch_info: Any
) -> dict[str, Any]:
    """This rank's part of the run (`optexp.train.run`) inside the run's process group."""
    import torch

    from optexp.train import run as train

    trainer = cfg.trainer
    device = torch.device("cuda", world.local_rank) if uses_cuda(trainer.device) else None
    rendezvous_from_slurm()
    with process_group(world, trainer.distributed_backend, device, trainer.distributed_timeout):
        return train(cfg, run_dir, choices, launch_info, world)


def rendezvous_from_slurm() -> None:
    """Under SLURM's own tasks (srun, submitit's tasks_per_node), where no launcher set
    MASTER_ADDR and MASTER_PORT: the first node of the job and a port from its id, as
    submitit's TorchDistributedEnvironment chooses them."""
    env = os.environ
    if "MASTER_ADDR" in env or "SLURM_JOB_ID" not in env:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


@dataclass(frozen=True)
class Refused:
    """A worker's UserError, returned to `launch` (an exception would end as an exit code)."""

    message: str


def worker(cfg: Any, run_dir: Path, choices: dict[str, str], launch_info: Any) -> Any:
    """A worker that `launch` started: its rank comes from the elastic agent's environment.
    Every rank checks alike, so a refused config is refused by each, in one line."""
    try:
        return run_rank(World.from_environment(), cfg, run_dir, choices, launch_info)
    except UserError as error:
        return Refused(str(error))


def uses_cuda(device: str) -> bool:
    import torch

    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def check_devices(devices: int, device: str) -> None:
    """At most one process per GPU, or per CPU core."""
    import torch

    cuda = uses_cuda(device)
    available = torch.cuda.device_count() if cuda else (os.cpu_count() or 1)
    if devices > available:
        what = "GPUs" if cuda else "CPU cores"
        raise ConfigError(
            "trainer.devices",
            devices,
            f"at most {available}, the {what} of this node",
            problem=f"asks for more processes than this node has {what}",
        )


def launch(nprocs: int, run_dir: Path, entrypoint: Any, *args: Any) -> Any:
    """Run `entrypoint(*args)` on `nprocs` local workers (elastic launch, spawn) and return
    rank 0's result. A worker that fails ends the others: the run's metrics.json says so
    and UserError names the rank. A stop signal to this process reaches the workers as
    SIGTERM; they save and stop, and rank 0's summary is returned."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nprocs,
        run_id=f"optexp-{os.getpid()}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"localhost:{free_port()}",
        max_restarts=0,  # a failed run is reported, not restarted: last.pt continues it
        monitor_interval=0.1,
        start_method="spawn",
    )
    threads = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nprocs))}
    with quiet_elastic_logs(), environment(threads, only_if_unset=True):
        try:
            result = elastic_launch(config, entrypoint)(*args)[0]
            if isinstance(result, Refused):
                raise UserError(result.message)
            return result
        except ChildFailedError as error:
            reason = failure(error, nprocs)
        except SignalException:
            summary = rundir.read_summary(run_dir)
            if summary is not None and summary.get("status") == rundir.Status.INTERRUPTED:
                return summary
            reason = "stopped by a signal before rank 0 saved the run"
    rundir.write_failure(run_dir, reason)
    raise UserError(reason)


def failure(error: Any, nprocs: int) -> str:
    """One line: which rank failed and how."""
    rank, first = min(error.failures.items())
    how = f"exit code {first.exitcode}"
    if first.exitcode < 0:
        with contextlib.suppress(ValueError):
            how = f"killed by {signal.Signals(-first.exitcode).name}"
    return (
        f"rank {rank} of {nprocs} failed ({how}), so the other ranks were stopped; "
        "the same command continues the run from its last checkpoint"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def quiet_elastic_logs() -> Any:
    """The elastic agent logs its configuration and every worker's end at INFO/WARNING;
    optexp reports a failure in one line itself."""
    loggers = [logging.getLogger(name) for name in ("torch.distributed", "torch.multiprocessing")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def environment(values: dict[str, str], only_if_unset: bool = False) -> Any:
    saved = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if not (only_if_unset and key in os.environ):
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
