"""Sweeps through a real SLURM cluster on this machine (tests/slurm.py): every job a SLURM
array task, time limits and `scontrol requeue` resumed exactly, errors where users look."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optexp.report import main as report_main
from tests.conftest import REPO
from tests.slurm import slurm_cluster  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.xdist_group("slurm"), pytest.mark.usefixtures("slurm_cluster")]

QUICK = ("trainer.epochs=1", "trainer.tensorboard=false", "trainer.checkpoint.keep_best=false")
SLURM = ("hydra/launcher=slurm_cpu", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1")
# About 50 s of training on one core (30 epochs took 5 s here). SLURM sends a time limit's
# warning at its first time-limit check after the job starts, and checks every 30 s: the
# first start must outlast that on a machine faster than this one. Small steps, so a stop
# lands mid-epoch.
LONG = (
    "trainer.batch_size=4",
    "trainer.epochs=300",
    "trainer.early_stopping.enabled=false",
    "trainer.tensorboard=false",
)
# SLURM's shortest limit is 1 minute; SIGUSR2 comes up to a minute before the time asked.
TIME_LIMITED = ("hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=40")


def optexp(*args: str, sweep: Path) -> list[str]:
    return [sys.executable, "-m", "optexp", "-m", *args, f"hydra.sweep.dir={sweep}"]


def environment() -> dict[str, str]:
    # Jobs inherit it through sbatch: they import this checkout's optexp.
    return os.environ | {"PYTHONPATH": str(REPO)}


def sweep(*args: str, sweep: Path, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        optexp(*args, sweep=sweep),
        capture_output=True,
        text=True,
        env=environment(),
        timeout=timeout,
        check=False,
    )


def the_run(sweep_dir: Path) -> dict:
    (path,) = sweep_dir.glob("0_*/metrics.json")
    return json.loads(path.read_text())


def job_folder(sweep_dir: Path) -> Path:
    """submitit's folder of a one-job sweep, named by its SLURM job id."""
    (folder,) = sweep_dir.glob(".submitit/[0-9]*")
    return folder


def job_log(sweep_dir: Path, suffix: str) -> str:
    (log,) = job_folder(sweep_dir).glob(f"*_log.{suffix}")
    return log.read_text()


def starts(sweep_dir: Path) -> int:
    """How many times the job started: its submitit log is appended to on each requeue."""
    return job_log(sweep_dir, "out").count("Starting with JobEnvironment")


def same_result(run: dict, reference: dict) -> None:
    assert run["status"] == reference["status"] == "completed"
    for key in ("test", "best", "global_step", "epochs_completed"):
        assert run[key] == reference[key], key
    assert run["final"]["train/loss"] == reference["final"]["train/loss"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """metrics.json of the LONG run, run here without SLURM and without interruption."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    cmd = [sys.executable, "-m", "optexp", *LONG, f"hydra.run.dir={run_dir}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=environment(), check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((run_dir / "metrics.json").read_text())


def test_four_job_sweep_runs_as_a_slurm_array(tmp_path, capsys):
    result = sweep(*SLURM, "optimizer.lr=0.01,0.001", "seed=0,1", *QUICK, sweep=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Submitit 'slurm' sweep output dir" in result.stdout
    tasks = [path.name for path in tmp_path.glob(".submitit/[0-9]*_[0-9]*")]
    assert len(tasks) == 4 and len({task.split("_")[0] for task in tasks}) == 1  # one array
    log = next(tmp_path.glob(".submitit/[0-9]*_0/*_0_log.out")).read_text()
    assert "hostname=" in log and "Exiting after successful completion" in log

    report_main([str(tmp_path), "--format", "json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert sorted(row["settings"]["optimizer.lr"] for row in rows) == ["0.001", "0.01"]
    assert [len(row["dirs"]) for row in rows] == [2, 2]  # 4 runs, seeds grouped
    assert all(row["status"] == "2 completed" for row in rows)


def test_time_limit_requeues_and_resumes_exactly(tmp_path, uninterrupted):
    args = (*SLURM, *TIME_LIMITED, "hydra.launcher.max_num_timeout=10", *LONG)
    result = sweep(*args, sweep=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert starts(tmp_path) >= 2, "never requeued: LONG ended before SLURM's warning"
    # SLURM's warning comes when its timer looks, up to a minute early: during training
    # (optexp saves last.pt, then requeues) or while the job still starts (submitit requeues).
    log = job_log(tmp_path, "err")
    assert "optexp: SIGUSR2 received" in log or "Caught signal SIGUSR2" in log
    same_result(the_run(tmp_path), uninterrupted)


def test_scontrol_requeue_mid_run_resumes_exactly(tmp_path, uninterrupted):
    launcher = subprocess.Popen(
        optexp(*SLURM, *LONG, sweep=tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment(),
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("0_*/checkpoints/last.pt")):  # a few epochs in
            assert time.monotonic() < deadline and launcher.poll() is None
            time.sleep(0.5)
        subprocess.run(["scontrol", "requeue", job_folder(tmp_path).name], check=True)
        output, _ = launcher.communicate(timeout=400)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, output[-2000:]
    assert starts(tmp_path) == 2
    assert "optexp: SIGTERM received" in job_log(tmp_path, "err")
    same_result(the_run(tmp_path), uninterrupted)


def test_bad_config_in_a_job_shows_its_one_line_error(tmp_path):
    result = sweep(*SLURM, "dataset=synthetic", "model=cnn", *QUICK, sweep=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("optexp: error:")]
    assert len(errors) == 1 and "model" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    run = the_run(tmp_path)  # and in the run's own metrics.json, for optexp-report
    assert run["status"] == "failed" and run["error"] in errors[0]


def test_a_two_task_job_trains_as_the_local_two_process_run(tmp_path):
    """submitit's tasks_per_node=2: one run on two SLURM tasks, each taking its rank from
    SLURM (no process of optexp's own), equal to the same run on two local processes."""
    run = ("dataset=synthetic", "dataset.n_samples=400", "model.hidden=[16]", *QUICK)
    run = (*run, "trainer.epochs=2", "trainer.batch_size=32", "trainer.devices=2")
    local_dir = tmp_path / "local"
    cmd = [sys.executable, "-m", "optexp", *run, f"hydra.run.dir={local_dir}"]
    local = subprocess.run(cmd, capture_output=True, text=True, env=environment(), check=False)
    assert local.returncode == 0, local.stderr[-2000:]
    tasks = ("hydra.launcher.tasks_per_node=2",)
    result = sweep(*SLURM, *tasks, *run, "seed=0", sweep=tmp_path / "slurm")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((tmp_path / "slurm").glob(".submitit/[0-9]*/*_1_log.out"))) == 1  # 2 tasks
    on_slurm = the_run(tmp_path / "slurm")
    same_result(on_slurm, json.loads((local_dir / "metrics.json").read_text()))
