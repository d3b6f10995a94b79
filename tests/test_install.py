"""optexp as a user installs it: a wheel built from this tree, installed into a fresh
environment that cannot see the source tree, every command run from an empty folder.
The commands are those of the README's "Install" section and docs/configs.md's own config folders.

The environment gets this interpreter's third-party packages (torch, Hydra, ...) from a
plain path line in a .pth file: a path line adds the folder to sys.path without running
that folder's own .pth files, so the editable install of this tree stays out of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

import optexp

REPO = Path(__file__).resolve().parent.parent
SOURCE_ONLY = ("OPTEXP_DEBUG", "OPTEXP_CONFIG_DIR", "HYDRA_FULL_ERROR", "PYTHONPATH")

# One worker builds the environment once (pyproject: pytest-xdist's --dist loadgroup).
pytestmark = pytest.mark.xdist_group("install")

HEAVY_BALL = """\
# SGD with heavy momentum, an optimizer of the user's
_target_: torch.optim.SGD
lr: 0.05
momentum: 0.95
"""
QUICK = """\
# @package _global_
defaults:
  - override /optimizer: heavy_ball
trainer:
  epochs: 1
"""


@dataclass
class Installed:
    root: Path
    bin: Path

    def run(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """A command of the environment, as a user with it on PATH runs it."""
        environ = {k: v for k, v in os.environ.items() if k not in SOURCE_ONLY}
        environ["PATH"] = f"{self.bin}{os.pathsep}{environ.get('PATH', '')}"
        command = [str(self.bin / args[0]), *args[1:]]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=cwd,
            env=environ | (env or {}),
            timeout=timeout,
            check=False,
        )


def _not_source(folder: str, names: list[str]) -> set[str]:
    """What a clone's working tree may hold besides the source: runs, data, builds, caches."""
    top = {".git", "build", "dist", "outputs", "data", ".venv"} if Path(folder) == REPO else set()
    junk = ("__pycache__", ".egg-info", "_cache")
    return {name for name in names if name in top or name.endswith(junk)}


def _pip(*args: str | Path) -> None:
    command = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *map(str, args)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy: setuptools builds inside the tree it is given
    shutil.copytree(REPO, source, ignore=_not_source)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", root / "dist", source)
    (wheel,) = (root / "dist").glob("optexp-*.whl")
    venv.create(root / "venv", with_pip=False)  # no system site packages
    python = root / "venv" / "bin" / "python"
    _pip("--python", python, "install", "--no-deps", "--no-index", wheel)
    shutil.rmtree(source)  # nothing of the source tree is left to import
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    Path(site, "base_packages.pth").write_text("".join(f"{p}\n" for p in ours))
    return Installed(root, python.parent)


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("metrics.json"))]


def test_the_package_comes_from_the_wheel_not_the_source_tree(installed, empty):
    code = "import json, optexp, sys; print(json.dumps([optexp.__file__, *sys.path]))"
    where = installed.run("python", "-c", code, cwd=empty)
    assert where.returncode == 0, where.stderr
    module, *path = json.loads(where.stdout)
    assert Path(module).is_relative_to(installed.root / "venv")
    # Not a substring test: a checkout in /tmp/ci and a venv in /tmp/civ are apart. The
    # outer environment's packages may live inside the checkout (`python -m venv .venv`).
    packages = [Path(p) for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    assert not any(
        Path(entry).is_relative_to(REPO) and not any(map(Path(entry).is_relative_to, packages))
        for entry in [module, *path]
        if entry
    )
    version = installed.run("optexp", "--version", cwd=empty)
    assert version.stdout.startswith(f"optexp {optexp.__version__} ")


def test_one_epoch_run_help_cfg_and_completion(installed, empty):
    run = installed.run("optexp", "trainer.epochs=1", cwd=empty)
    assert run.returncode == 0, run.stderr
    (metrics,) = _metrics(empty / "outputs")
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 1
    help_ = installed.run("optexp", "--help", cwd=empty)
    assert help_.returncode == 0 and "\noptimizer: adagrad, adam" in help_.stdout
    job = installed.run("optexp", "--cfg", "job", "optimizer=sgd", cwd=empty)
    assert job.returncode == 0 and "_target_: torch.optim.SGD" in job.stdout, job.stderr
    script = installed.run("optexp", "-sc", "install=bash", cwd=empty)
    assert script.stdout.rstrip().endswith("hydra_bash_completion optexp"), script.stderr
    line = {"COMP_LINE": "optexp ", "COMP_POINT": "7"}
    completion = installed.run("optexp", "-sc", "query=bash", cwd=empty, env=line)
    assert completion.returncode == 0, completion.stderr
    assert {"dataset=", "optimizer", "optimizer.", "trainer."} <= set(completion.stdout.split())


def test_a_two_job_sweep_and_its_report(installed, empty):
    sweep = installed.run(
        "optexp", "-m", "optimizer=sgd,adam", "trainer.epochs=1", "hydra.sweep.dir=sweep", cwd=empty
    )
    assert sweep.returncode == 0, sweep.stderr
    assert [m["choices"]["optimizer"] for m in _metrics(empty / "sweep")] == ["sgd", "adam"]
    report = installed.run("optexp-report", "sweep", cwd=empty)
    assert report.returncode == 0, report.stderr
    assert "2 runs in 2 groups" in report.stdout and "sgd" in report.stdout


def test_own_configs_add_an_optimizer_and_a_preset(installed, empty):
    init = installed.run("optexp-init", "my_configs", cwd=empty)
    assert init.returncode == 0, init.stderr
    (empty / "my_configs" / "optimizer" / "heavy_ball.yaml").write_text(HEAVY_BALL)
    (empty / "my_configs" / "experiment" / "quick.yaml").write_text(QUICK)

    help_ = installed.run("optexp", "--config-dir", "my_configs", "--help", cwd=empty)
    optimizers = next(x for x in help_.stdout.splitlines() if x.startswith("optimizer: "))
    assert "heavy_ball" in optimizers and "my_adam" in optimizers and "sgd" in optimizers
    starter = installed.run(
        "optexp", "--config-dir", "my_configs", "experiment=mine", "trainer.epochs=1", cwd=empty
    )
    assert starter.returncode == 0, starter.stderr
    assert _metrics(empty / "outputs")[0]["choices"]["optimizer"] == "my_adam"

    once = {"OPTEXP_CONFIG_DIR": str(empty / "my_configs")}
    shutil.rmtree(empty / "outputs")
    run = installed.run("optexp", "experiment=quick", cwd=empty, env=once)
    assert run.returncode == 0, run.stderr
    (metrics,) = _metrics(empty / "outputs")
    assert metrics["choices"]["optimizer"] == "heavy_ball" and metrics["final"]["lr"] == 0.05
    typo = installed.run("optexp", "optimizer=heavy_bal", cwd=empty, env=once)
    assert typo.returncode == 2 and "heavy_ball" in typo.stderr.splitlines()[0]
    line = {"COMP_LINE": "optexp optimizer=h", "COMP_POINT": "18"} | once
    completion = installed.run("optexp", "-sc", "query=bash", cwd=empty, env=line)
    assert completion.stdout.split() == ["optimizer=heavy_ball"]
