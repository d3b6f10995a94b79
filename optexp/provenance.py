"""Where a run came from: the code it ran (`versions`), the machine and torch's settings
its numbers depend on (`environment`), how it was started (`Launch`), and all of them as
Markdown for TensorBoard's Text tab (`describe_run`)."""

from __future__ import annotations

import functools
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

import optexp

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

LIBRARIES = ("hydra-core", "omegaconf", "numpy", "tensorboard", "torchvision")
# The packages optimizer options take their classes from, beside torch.optim: their
# versions are part of what a run computed, so metrics.json records them (null: absent).
OPTIMIZER_PACKAGES = ("pytorch_optimizer", "prodigyopt", "schedulefree")


@dataclass
class Launch:
    """How Hydra started a run (a run started by calling `optexp.train.run` has none)."""

    overrides: list[str]  # the job's own, as typed
    command: str  # the command line that started it: the sweep's, for a sweep's job

    @classmethod
    def from_hydra(cls, hydra_cfg: DictConfig) -> Launch:
        overrides = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
        return cls(overrides, shlex.join(["optexp", *sys.argv[1:]]))


def versions() -> dict[str, str | None]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{name: _installed(name) for name in OPTIMIZER_PACKAGES},
        "optexp": optexp.__version__,
        "git_commit": _git_commit(),
    }


@cache  # the code a process runs does not change under it: ask git once per sweep
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(optexp.__file__).parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def describe_run(
    config: dict[str, Any], device: torch.device, launch: Launch | None
) -> dict[str, str]:
    """What the run was, as Markdown by TensorBoard tag: the composed config, how it was
    started, and the code and machine it ran on."""
    import yaml  # PyYAML, Hydra's own: a third of OmegaConf.to_yaml's time on a plain dict

    texts = {"run/config": f"```yaml\n{yaml.safe_dump(config, sort_keys=False)}```"}
    if launch is not None:
        overrides = " ".join(f"`{o}`" for o in launch.overrides) or "(none)"
        texts["run/launch"] = _table({"command": f"`{launch.command}`", "overrides": overrides})
    environment = {k: str(v) for k, v in versions().items()}
    environment |= {name: _version(name) for name in LIBRARIES}
    texts["run/environment"] = _table(environment | {"device": _device_name(device)})
    return texts


def _table(rows: dict[str, str]) -> str:
    return "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows.items())


@functools.cache  # read from the package's metadata file: once a process
def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _version(distribution: str) -> str:
    return _installed(distribution) or "not installed"


def _device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({processor(device)})"
    return f"{device} ({processor(device)}, {torch.get_num_threads()} torch threads)"


def environment(device: torch.device) -> dict[str, Any]:
    """What a run's numbers depend on beside the code, the config and the seeds: how many
    threads torch splits its reductions over (sums in another order round differently),
    the processor, and whether torch may pick nondeterministic or benchmarked kernels."""
    import torch

    return {
        "torch_threads": torch.get_num_threads(),
        "processor": processor(device),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


def processor(device: torch.device) -> str:
    """The GPU's name for a CUDA device, else the CPU's model."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_model()


@cache  # the machine does not change under a process
def _cpu_model() -> str:
    """/proc/cpuinfo's "model name" (Linux); elsewhere what `platform` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()
