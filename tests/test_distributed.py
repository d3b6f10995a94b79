"""One run on two processes (torch.distributed, gloo on CPU): the 1-process trajectory,
one set of files, exact resume after the group is killed or stopped, a dead rank ending
the run in bounded time, refusals, and a sweep whose jobs each use two processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.test_faults import COMPARED, start

# A model without batch norm or dropout on a small set: 280 training samples, batches of
# 32 (16 per rank), 9 steps an epoch.
RUN = (
    "dataset=synthetic",
    "dataset.n_samples=400",
    "model.hidden=[16]",
    "trainer.batch_size=32",
    "trainer.early_stopping.enabled=false",
)
TWO = ("trainer.devices=2",)


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_two_processes_follow_the_one_process_trajectory_and_write_one_set_of_files(
    optexp_cli, tmp_path
):
    one = optexp_cli(*RUN, "trainer.epochs=3", run_dir=tmp_path / "one")
    two = optexp_cli(*RUN, *TWO, "trainer.epochs=3", run_dir=tmp_path / "two")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    a, b = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert a["global_step"] == b["global_step"] == 27
    for key in ("train/loss", "val/loss", "weight_norm"):
        assert b["final"][key] == pytest.approx(a["final"][key], rel=1e-5), key
    assert b["test"]["acc"] == a["test"]["acc"]
    for name, value in weights(tmp_path / "one").items():
        torch.testing.assert_close(weights(tmp_path / "two")[name], value, rtol=1e-5, atol=1e-6)
    # Rank 0 alone writes: one summary table, one events file, no file of rank 1.
    assert two.stdout.count("optexp: completed") == 1
    assert len(list((tmp_path / "two" / "tb").iterdir())) == 1
    found = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert found == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_a_killed_or_stopped_group_resumes_to_the_uninterrupted_result(optexp_cli, tmp_path):
    args = (*RUN, *TWO, "trainer.epochs=8", "trainer.batch_size=4")  # 70 steps an epoch
    assert optexp_cli(*args, run_dir=tmp_path / "whole", timeout=300).returncode == 0
    whole = metrics(tmp_path / "whole")
    for stop in (signal.SIGKILL, signal.SIGTERM):
        run_dir = tmp_path / stop.name
        process = start(tmp_path, run_dir, *args, start_new_session=True)
        wait_for(lambda d=run_dir: (d / "checkpoints" / "last.pt").is_file(), process)
        time.sleep(0.5)  # into a later epoch
        if stop == signal.SIGKILL:
            os.killpg(process.pid, signal.SIGKILL)  # every process of the run, no warning
        else:
            process.send_signal(signal.SIGTERM)  # to optexp: it stops the workers
        _out, err = process.communicate(timeout=120)
        if stop == signal.SIGTERM:
            assert process.returncode == 128 + signal.SIGTERM, err
            assert metrics(run_dir)["status"] == "interrupted" and "to continue" in err
            saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
            if saved["progress"]["batches_done"]:  # mid-epoch: each rank's own sums so far
                assert len(saved["sums_ranks"]) == 2, saved["sums_ranks"]
                assert saved["sums_ranks"][0] != saved["sums_ranks"][1]
        again = optexp_cli(*args, run_dir=run_dir, timeout=300)
        assert again.returncode == 0, again.stderr
        resumed = metrics(run_dir)
        assert {k: resumed[k] for k in COMPARED} == {k: whole[k] for k in COMPARED}, stop
        assert resumed["final"]["train/loss"] == whole["final"]["train/loss"]
        for name, value in weights(tmp_path / "whole").items():
            assert torch.equal(weights(run_dir)[name], value), (stop, name)


def test_a_rank_that_dies_ends_the_run_in_one_line_without_a_hang(tmp_path):
    run_dir = tmp_path / "run"
    args = (*RUN, *TWO, "trainer.epochs=200", "trainer.batch_size=4")
    process = start(tmp_path, run_dir, *args, start_new_session=True)
    wait_for(lambda: (run_dir / "checkpoints" / "last.pt").is_file(), process)
    workers = [pid for pid in descendants(process.pid) if "spawn_main" in cmdline(pid)]
    assert len(workers) == 2, [cmdline(pid) for pid in descendants(process.pid)]
    os.kill(max(workers), signal.SIGKILL)  # one rank, the later started
    killed = time.monotonic()
    _out, err = process.communicate(timeout=120)
    assert time.monotonic() - killed < 60
    assert process.returncode == 2, err
    lines = [line for line in err.splitlines() if line.startswith("optexp: error:")]
    assert len(lines) == 1 and "rank 1 of 2 failed (killed by SIGKILL)" in lines[0], err
    assert "Traceback" not in err
    assert metrics(run_dir)["status"] == "failed"
    assert (
        torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["progress"]["epoch"] >= 1
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("trainer.devices=0",), "trainer.devices=0 is not allowed. Allowed: an integer >= 1"),
        (("trainer.devices=4096", "trainer.batch_size=4096"), "more processes than this node"),
        (("trainer.devices=2", "trainer.batch_size=63"), "trainer.batch_size=63"),
        (("trainer.num_nodes=2", "trainer.batch_size=64"), "trainer.num_nodes=2"),
        (("trainer.devices=2", "optimizer=lbfgs"), "cannot split torch.optim.LBFGS"),
    ],
)
def test_a_run_on_devices_it_cannot_have_is_refused_in_one_line(
    optexp_cli, tmp_path, args, message
):
    result = optexp_cli(*args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_a_sweep_whose_jobs_each_use_two_processes(optexp_cli, tmp_path):
    result = optexp_cli("-m", *RUN, *TWO, "trainer.epochs=2", "seed=0,1", timeout=300)
    assert result.returncode == 0, result.stderr
    summaries = [metrics(p.parent) for p in sorted((tmp_path / "sweep").glob("*/metrics.json"))]
    assert [s["status"] for s in summaries] == ["completed", "completed"]
    assert summaries[0]["test"] != summaries[1]["test"]  # two seeds, two runs


def wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
