"""Shared fixtures: compose configs through Hydra's compose API, run the CLI as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import optexp.config  # noqa: F401  (registers the schema)
from optexp.cli import CONFIG_DIR

REPO = Path(__file__).resolve().parent.parent

# One thread per process, here and in the runs tests start: the suite runs many small
# trainings on few cores, where thread contention costs more than it gains. Results are
# compared only between runs that share this setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    """Compose the config as `optexp OVERRIDES...` would (without running it)."""

    def make(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides))

    return make


@pytest.fixture
def optexp_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -m optexp ARGS...` in a subprocess with the run dir under tmp_path (and
    `env` added to the environment)."""

    def run(
        *args: str,
        run_dir: Path | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        own = ("OPTEXP_DEBUG", "HYDRA_FULL_ERROR", "OPTEXP_CONFIG_DIR")  # only what a test sets
        environ = {k: v for k, v in os.environ.items() if k not in own} | (env or {})
        environ["PYTHONPATH"] = str(REPO)
        target = run_dir or tmp_path / "run"
        cmd = [
            *prefix,
            sys.executable,
            "-m",
            "optexp",
            *args,
            f"hydra.run.dir={target}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ]
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=environ,
            timeout=timeout,
            check=False,
        )

    return run


def unprivileged() -> list[str]:
    """A command prefix under which file permissions hold as for a user. For root: a user
    namespace without a mapping, where root keeps the owner's bits but loses its override
    of them (a read-only folder it owns is read-only)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") and subprocess.run(["unshare", "-U", "true"]).returncode == 0:
        return ["unshare", "-U"]
    pytest.skip("root without user namespaces: file permissions do not apply to it")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every download in-process fails at once, as on a machine without network; servers a
    test starts on this machine's loopback stay reachable."""
    real_urlopen = urllib.request.urlopen

    def loopback_only(url: str | urllib.request.Request, *args: Any, **kwargs: Any) -> Any:
        address = url.full_url if isinstance(url, urllib.request.Request) else url
        if urllib.parse.urlsplit(address).hostname in ("127.0.0.1", "localhost"):
            return real_urlopen(url, *args, **kwargs)
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", loopback_only)


@pytest.fixture
def fake_checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files a test writes cannot carry CIFAR's md5 sums: accept any file that exists."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path)
    )
