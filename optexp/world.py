"""This process's place among the processes of one data-parallel run (`World`), and the
few collectives the loop needs: each rank's part of a batch, sums of the metrics, one
agreed stop flag, the gathered random states. On one process each is a no-op, and
torch.distributed is never touched; `optexp.distributed` starts and joins the ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> World:
        """The ranks torchrun, optexp's launcher (both: RANK, WORLD_SIZE, LOCAL_RANK) or
        SLURM (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID) gave this process."""
        env = os.environ
        if "RANK" in env and "WORLD_SIZE" in env:
            return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
        if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
            rank, size = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
            return cls(rank, size, int(env.get("SLURM_LOCALID", 0)))
        return cls()

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's contiguous part of a batch (the first `len % size` ranks take one more)."""
        if self.size == 1:
            return x, y
        start, stop = self.bounds(len(y))
        return x[start:stop], y[start:stop]

    def bounds(self, n: int) -> tuple[int, int]:
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (self.rank < extra)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over the ranks (a new tensor), the same on every rank."""
        import torch

        if self.size > 1:
            values = values.clone()
            torch.distributed.all_reduce(values)
        return values

    def agree(self, signum: int, time_up: bool, device: torch.device) -> tuple[int, bool]:
        """A stop signal (its number; 0: none) and a spent time budget as any rank saw them:
        one all-reduce, so every rank stops at the same step."""
        import torch

        if self.size == 1:
            return signum, time_up
        flags = torch.tensor([float(signum), float(time_up)], device=device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        return int(flags[0].item()), bool(flags[1].item())

    def maximum(self, value: float, device: torch.device) -> float:
        """The largest `value` of the ranks (the time budget's clock), the same everywhere.
        On `device`: nccl reduces CUDA tensors only."""
        import torch

        if self.size == 1:
            return value
        values = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
        return float(values.item())

    def gather(self, value: Any) -> list[Any]:
        """`value` of every rank, by rank (a plain list on one process)."""
        import torch

        if self.size == 1:
            return [value]
        gathered: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(gathered, value)
        return gathered
