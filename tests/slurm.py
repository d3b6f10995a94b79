"""A real one-node SLURM cluster for the tests (scripts/slurm-cluster): started once per
test session where it can start (root, the packages or apt-get), found if already
running, and stopped afterwards if this session started it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "slurm-cluster"
CONF = Path(os.environ.get("OPTEXP_SLURM_DIR", "/var/lib/optexp-slurm")) / "slurm.conf"


def cluster(command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), command], capture_output=True, text=True, timeout=timeout, check=False
    )


def no_cluster(reason: str) -> None:
    print(f"\nSLURM tests skipped: {reason}", file=sys.stderr)
    pytest.skip(f"no local SLURM cluster: {reason}")


def check_one_worker(session: pytest.Session) -> None:
    """Fail unless xdist keeps the SLURM tests on one worker: two would start and stop one
    cluster each, at once, as they did with pytest 9.2 (pytest-xdist#1386)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    grouped = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group")]
    if not all("@" in nodeid for nodeid in grouped):  # loadgroup appends "@group" to the ids
        pytest.fail(
            "pytest-xdist did not keep the SLURM tests on one worker (--dist loadgroup): this"
            f" pytest {pytest.__version__} and pytest-xdist do not work together; see the pin"
            " in pyproject.toml"
        )


@pytest.fixture(scope="session")
def slurm_cluster(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The cluster's slurm.conf, with SLURM_CONF set for this process and its children."""
    check_one_worker(request.session)
    if os.geteuid() != 0:
        no_cluster("scripts/slurm-cluster needs root")
    started = cluster("status").returncode != 0
    if started:
        result = cluster("start")
        if result.returncode != 0:
            no_cluster((result.stderr.strip().splitlines() or ["start failed"])[-1])
    os.environ["SLURM_CONF"] = str(CONF)
    yield CONF
    if started:
        cluster("stop")
