"""Shared fixtures: compose configs through Hydra's compose API, run the CLI as a user would."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import optexp.config  # noqa: F401  (registers the schema)
from optexp.cli import CONFIG_DIR
from tests.as_user import USER, user_prefix

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
    ) -> subprocess.CompletedProcess[str]:
        own = ("OPTEXP_DEBUG", "HYDRA_FULL_ERROR", "OPTEXP_CONFIG_DIR")  # only what a test sets
        environ = {k: v for k, v in os.environ.items() if k not in own} | (env or {})
        environ["PYTHONPATH"] = str(REPO)
        target = run_dir or tmp_path / "run"
        cmd = [
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


@pytest.fixture
def user_dir() -> Iterator[Path]:
    """A fresh folder of the unprivileged user's own (`tests/as_user.py`), outside pytest's
    tmp_path (root's is 0700: that user could not enter it); removed afterwards."""
    prefix = user_prefix()
    if isinstance(prefix, str):
        pytest.skip(f"file permissions cannot be tested: {prefix}")
    base = Path(tempfile.mkdtemp(prefix="optexp-user-")).resolve()
    for folder in (base, base / "home", base / "work"):
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)
        if prefix:  # root: the user owns them
            os.chown(folder, pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid)
    yield base / "work"
    for path in base.rglob("*"):  # what a test left read-only or unreadable
        path.chmod(path.stat().st_mode | 0o700)
    shutil.rmtree(base)


@pytest.fixture
def optexp_as_user(user_dir: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -m optexp ARGS...` as the unprivileged user, in `user_dir`: the run
    dir `user_dir/run` (or `run_dir`), the sweep dir `user_dir/sweep`, HOME its own."""
    prefix = user_prefix()
    assert isinstance(prefix, tuple)

    def run(
        *args: str, run_dir: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        own = ("OPTEXP_DEBUG", "HYDRA_FULL_ERROR", "OPTEXP_CONFIG_DIR")
        environ = {k: v for k, v in os.environ.items() if k not in own}
        environ |= {"PYTHONPATH": str(REPO), "HOME": str(user_dir.parent / "home")}
        cmd = [
            *prefix,
            sys.executable,
            "-m",
            "optexp",
            *args,
            f"hydra.run.dir={run_dir or user_dir / 'run'}",
            f"hydra.sweep.dir={user_dir / 'sweep'}",
        ]
        return subprocess.run(
            cmd, capture_output=True, text=True, cwd=user_dir, env=environ, timeout=timeout,
            check=False,
        )  # fmt: skip

    return run


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
