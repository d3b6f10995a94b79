"""Runs that are killed, preempted, diverge or meet a bad checkpoint lose nothing and say so."""

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from optexp import checkpoint, train
from optexp.checkpoint import CheckpointError
from optexp.config import ConfigError
from optexp.report import main as report_main
from optexp.signals import StopRequest
from optexp.state import KEYS as CHECKPOINT_KEYS
from optexp.train import run
from tests.conftest import REPO
from tests.datafiles import write_image_folder

COMPARED = ("test", "best", "best_epoch", "epochs_completed", "status", "global_step")
PAUSE = "OPTEXP_TEST_PAUSE_CHECKPOINT_WRITE"  # optexp.checkpoint's test-only hook


def start(
    tmp_path: Path,
    run_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    **popen: object,
) -> subprocess.Popen[str]:
    """Start `optexp ARGS` into `run_dir`, its output piped, `env` added to the environment."""
    own = ("OPTEXP_DEBUG", "HYDRA_FULL_ERROR", PAUSE)  # what a test sets
    env = {k: v for k, v in os.environ.items() if k not in own} | (env or {})
    env |= {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "optexp", *args, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )


def disk_full(*args: object) -> None:
    raise OSError(28, "No space left on device")


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def epochs_trained(stdout: str) -> list[int]:
    """The epochs a run printed (`epoch 3/5  train/loss ...`): a resumed run starts after
    its checkpoint's, where a restarted one would start at 1 and end the same."""
    return [
        int(line.split()[1].split("/")[0])
        for line in stdout.splitlines()
        if line.startswith("epoch ")
    ]


def logged_steps(run_dir: Path, tag: str) -> list[int]:
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


def test_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(optexp_cli, tmp_path):
    args = ("trainer.epochs=12", "trainer.batch_size=16", "model.dropout=0.2")
    assert optexp_cli(*args, run_dir=tmp_path / "whole").returncode == 0

    killed = tmp_path / "killed"
    process = start(tmp_path, killed, *args)
    last = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 60
    while not (last.is_file() and checkpoint.load(last)["progress"]["epoch"] >= 2):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not (killed / "metrics.json").exists()
    done = checkpoint.load(last)["progress"]["epoch"]

    resumed = optexp_cli(*args, run_dir=killed)  # a plain re-run into the same directory
    assert resumed.returncode == 0, resumed.stderr
    assert epochs_trained(resumed.stdout)[0] == done + 1
    whole, again = metrics(tmp_path / "whole"), metrics(killed)
    assert {k: again[k] for k in COMPARED} == {k: whole[k] for k in COMPARED}
    epochs = whole["epochs_completed"]
    assert logged_steps(killed, "train/loss") == list(range(1, epochs + 1))  # no gaps, no repeats


def test_sigterm_checkpoints_and_the_resumed_run_matches(optexp_cli, tmp_path):
    args = ("trainer.epochs=3", "trainer.batch_size=1", "model.dropout=0.2")
    assert optexp_cli(*args, run_dir=tmp_path / "whole").returncode == 0

    stopped = tmp_path / "stopped"
    process = start(tmp_path, stopped, *args)
    for line in process.stdout:
        if line.startswith("epoch 1/3"):
            break
    time.sleep(0.05)  # into epoch 2: 1258 steps of one sample each
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert "SIGTERM received" in stderr and "Traceback" not in stderr
    assert metrics(stopped)["status"] == "interrupted"
    state = checkpoint.load(stopped / "checkpoints" / "last.pt")
    assert state["progress"]["epoch"] < 3

    resumed = optexp_cli(*args, f"trainer.resume={stopped}", run_dir=stopped)
    assert resumed.returncode == 0, resumed.stderr
    whole, again = metrics(tmp_path / "whole"), metrics(stopped)
    assert {k: again[k] for k in COMPARED} == {k: whole[k] for k in COMPARED}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers in /proc")
def test_ctrl_c_to_the_process_group_stops_gracefully_with_dataloader_workers(tmp_path):
    folder = write_image_folder(tmp_path / "images", classes=2, per_class=40)
    args = (
        "dataset=image_folder",
        f"dataset.path={folder}",
        "dataset.image_size=8",
        "dataset.workers=2",
        "trainer.batch_size=2",
        "trainer.epochs=100",
    )
    stopped = tmp_path / "stopped"
    process = start(tmp_path, stopped, *args, start_new_session=True)  # a terminal's group
    for line in process.stdout:
        if line.startswith("epoch 1/100"):  # training (and graceful stopping) has begun
            break
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 60
    while len(children.read_text().split()) < 2:  # the two DataLoader workers are up
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the trainer and its workers get it
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert stderr.count("SIGINT received") == 1 and "Traceback" not in stderr
    assert metrics(stopped)["status"] == "interrupted"


class StopAfter(StopRequest):
    """A stop request that arrives after 30 optimizer steps (the loop asks before the first
    epoch, then once per step)."""

    def __init__(self) -> None:
        super().__init__()
        self.remaining = 31

    def __bool__(self) -> bool:
        if self.remaining == 0:
            self.signal = signal.SIGTERM
        self.remaining -= 1
        return super().__bool__()


def test_a_stop_mid_epoch_resumes_from_that_batch_exactly(make_cfg, tmp_path, monkeypatch):
    cfg = make_cfg("trainer.epochs=2", "model.dropout=0.2", "trainer.batch_size=32")
    whole = run(cfg, tmp_path / "whole")
    monkeypatch.setattr(train, "StopRequest", StopAfter)
    stopped = run(cfg, tmp_path / "stopped")  # 30 steps: epoch 1 has 40 batches
    state = checkpoint.load(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert stopped["status"] == "interrupted" and stopped["signal"] == signal.SIGTERM
    assert state["progress"]["epoch"] == 0 and state["progress"]["batches_done"] == 30
    monkeypatch.undo()
    resumed = run(cfg, tmp_path / "stopped")
    assert {k: resumed[k] for k in COMPARED} == {k: whole[k] for k in COMPARED}
    assert resumed["final"]["train/loss"] == whole["final"]["train/loss"]


def test_a_checkpoint_written_before_the_state_registry_resumes_exactly(
    make_cfg, tmp_path, monkeypatch
):
    """Checkpoints older than `state.PARTS` had no "average" key without EMA or SWA: such a
    file still resumes, to the uninterrupted run's numbers."""
    cfg = make_cfg("trainer.epochs=2", "trainer.batch_size=32")
    whole = run(cfg, tmp_path / "whole")
    monkeypatch.setattr(train, "StopRequest", StopAfter)
    run(cfg, tmp_path / "stopped")
    monkeypatch.undo()
    last = tmp_path / "stopped" / "checkpoints" / "last.pt"
    old = checkpoint.load(last, CHECKPOINT_KEYS)
    assert old.pop("average") == {}
    torch.save(old, last)
    resumed = run(cfg, tmp_path / "stopped")
    assert {k: resumed[k] for k in COMPARED} == {k: whole[k] for k in COMPARED}


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {Path.cwd() / 'exploited'}",))


def test_checkpoint_with_a_malicious_pickle_is_refused_and_nothing_runs(
    optexp_cli, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"model": Exploit()}, evil)
    result = optexp_cli(f"trainer.resume={evil}")
    assert result.returncode == 2
    assert "refused to load" in result.stderr and str(evil) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "exploited").exists()


def test_truncated_checkpoint_gives_a_clear_error_naming_the_file(optexp_cli, tmp_path):
    assert optexp_cli("trainer.epochs=1").returncode == 0
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    result = optexp_cli("trainer.epochs=2")
    assert result.returncode == 2
    assert (
        f"cannot read checkpoint {last}" in result.stderr
        and "truncated or corrupt" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_resume_with_a_different_config_names_the_differing_keys(optexp_cli, tmp_path):
    assert optexp_cli("trainer.epochs=1").returncode == 0
    result = optexp_cli("trainer.epochs=2", "model.hidden=[64]", "optimizer.lr=0.01")
    assert result.returncode == 2
    assert "trainer.resume" in result.stderr
    assert "model.hidden" in result.stderr and "optimizer.lr" in result.stderr
    # a longer run of the same config is a legitimate resume
    longer = optexp_cli("trainer.epochs=2")
    assert longer.returncode == 0 and metrics(tmp_path / "run")["epochs_completed"] == 2


def test_resume_check_reads_the_config_as_json_text_or_as_an_older_dict(tmp_path):
    current = {"optimizer": {"lr": 0.1}, "trainer": {"epochs": 3}}
    longer = {"optimizer": {"lr": 0.1}, "trainer": {"epochs": 5}}
    for saved in (json.dumps(current), current):  # this version's text, an older dict
        checkpoint.check_compatible(saved, longer, tmp_path / "last.pt")
        with pytest.raises(ConfigError, match=r"different config: optimizer\.lr"):
            checkpoint.check_compatible(saved, {**longer, "optimizer": {"lr": 1.0}}, tmp_path)
    with pytest.raises(CheckpointError, match="cannot read the config stored in"):
        checkpoint.check_compatible("{not json", longer, tmp_path / "last.pt")


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.write(checkpoint.serialize({"version": torch.tensor(1)}), path)

    monkeypatch.setattr(os, "fsync", disk_full)  # where a full disk shows at the latest
    with pytest.raises(CheckpointError, match=f"cannot write checkpoint {path}: No space left"):
        checkpoint.write(checkpoint.serialize({"version": torch.tensor(2)}), path)
    monkeypatch.undo()
    assert checkpoint.load(path)["version"].item() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left over


def test_a_stale_temporary_file_is_replaced_not_written_through(tmp_path):
    # A run killed between linking .best.pt.tmp to last.pt and renaming it leaves a
    # temporary file that *is* last.pt: writing into it would overwrite last.pt.
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    checkpoint.write(checkpoint.serialize({"version": torch.tensor(1)}), last)
    os.link(last, tmp_path / ".best.pt.tmp")
    checkpoint.write(checkpoint.serialize({"version": torch.tensor(2)}), best)
    assert checkpoint.load(last)["version"].item() == 1
    assert checkpoint.load(best)["version"].item() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_background_writes_land_in_order_and_are_on_disk_when_the_block_ends(tmp_path):
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    with checkpoint.Writer() as writer:
        for version in range(5):
            writer.save({"version": torch.tensor(version)}, last, best)
    assert checkpoint.load(last)["version"].item() == 4
    assert checkpoint.load(best)["version"].item() == 4


def test_a_failed_background_write_raises_at_the_next_save_and_keeps_the_previous(
    tmp_path, monkeypatch
):
    path = tmp_path / "last.pt"
    with checkpoint.Writer() as writer:
        writer.save({"version": torch.tensor(1)}, path)
        writer.wait()
        monkeypatch.setattr(os, "fsync", disk_full)
        writer.save({"version": torch.tensor(2)}, path)
        with pytest.raises(CheckpointError, match="cannot write checkpoint"):
            writer.save({"version": torch.tensor(3)}, path)
    monkeypatch.undo()
    assert checkpoint.load(path)["version"].item() == 1


def test_a_run_writes_its_results_while_checkpoints_are_still_on_their_way(
    make_cfg, tmp_path, monkeypatch
):
    # The checkpoint thread used to be what created the run directory; metrics.json
    # could then be written before the directory existed.
    def slow_write(data: memoryview, *paths: Path) -> None:
        time.sleep(0.2)
        real_write(data, *paths)

    real_write = checkpoint.write
    monkeypatch.setattr(checkpoint, "write", slow_write)
    summary = run(make_cfg("trainer.epochs=1", "trainer.tensorboard=false"), tmp_path / "new")
    assert json.loads((tmp_path / "new" / "metrics.json").read_text()) == summary
    assert checkpoint.load(tmp_path / "new" / "checkpoints" / "last.pt")["progress"]["epoch"] == 1


def test_a_failed_last_write_raises_when_the_block_ends(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("a file where a directory should be")
    with (
        pytest.raises(CheckpointError, match="cannot write checkpoint"),
        checkpoint.Writer() as writer,
    ):
        writer.save({"version": torch.tensor(1)}, blocked / "last.pt")


def test_unwritable_checkpoint_directory_is_a_clear_error(optexp_cli, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("a file where the directory should be")
    result = optexp_cli("trainer.epochs=1")
    assert result.returncode == 2
    assert "cannot write checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_nan_loss_stops_the_run_as_diverged(optexp_cli, tmp_path):
    result = optexp_cli("trainer.epochs=3", "optimizer.lr=1e30")
    assert result.returncode == 0, result.stderr
    summary = metrics(tmp_path / "run")
    assert summary["status"] == "diverged" and summary["epochs_completed"] == 0
    assert summary["final"]["train/loss"] is None  # NaN, written as null
    assert summary["objective"] is None  # +inf (the worst val/loss), written as null


def test_a_diverging_job_inside_a_multirun_leaves_the_others_completed(optexp_cli, tmp_path):
    result = optexp_cli("-m", "trainer.divergence_threshold=0.01,100", "trainer.epochs=2")
    assert result.returncode == 0, result.stderr
    runs = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").rglob("metrics.json"))]
    assert sorted(run["status"] for run in runs) == ["completed", "diverged"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (torch.zeros(3), "it holds a Tensor"),
        ({"model": {}}, "missing optimizer, scheduler"),
    ],
)
def test_a_file_that_is_no_optexp_checkpoint_is_refused_in_one_line(
    optexp_cli, tmp_path, content, problem
):
    path = tmp_path / "plain.pt"
    torch.save(content, path)
    result = optexp_cli(f"trainer.resume={path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path} is not an optexp checkpoint: {problem}" in result.stderr


def test_a_refused_sweep_job_says_why_in_metrics_json_and_the_others_run(optexp_cli, tmp_path):
    result = optexp_cli("-m", "dataset=synthetic,digits", "model=cnn,mlp", "trainer.epochs=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Error executing job" not in result.stderr
    assert "optexp: error: 1 sweep job failed" in result.stderr
    runs = {p.parent.name: metrics(p.parent) for p in (tmp_path / "sweep").rglob("metrics.json")}
    assert len(runs) == 4
    failed = [name for name, m in runs.items() if m["status"] == "failed"]
    assert failed == ["0_dataset=synthetic,model=cnn,trainer.epochs=1"]  # the later jobs ran
    assert "needs inputs shaped (C, H, W)" in runs[failed[0]]["error"]


def test_a_sweep_job_whose_config_does_not_resolve_is_recorded_as_failed(optexp_cli, tmp_path):
    result = optexp_cli("-m", "seed=0,1", "optimizer.lr=${oops}", "trainer.epochs=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    runs = [metrics(p.parent) for p in sorted((tmp_path / "sweep").glob("*/metrics.json"))]
    assert [run["status"] for run in runs] == ["failed", "failed"]
    assert runs[0]["error"].startswith("optimizer.lr: Interpolation key 'oops' not found")


def test_a_refused_optuna_trial_ends_the_search_in_one_line_and_is_recorded(optexp_cli, tmp_path):
    args = ("hparams_search=lr_optuna", "hydra.sweeper.n_trials=2", "dataset=synthetic")
    result = optexp_cli("-m", *args, "model=cnn", "trainer.epochs=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "optexp: error: 1 sweep job failed" in result.stderr  # max_failure_rate: 0
    (run,) = [metrics(p.parent) for p in (tmp_path / "sweep").glob("*/metrics.json")]
    assert run["status"] == "failed" and "needs inputs shaped (C, H, W)" in run["error"]


def wait_for_epoch(process: subprocess.Popen[str], last: Path, epoch: int) -> None:
    deadline = time.monotonic() + 60
    while not (last.is_file() and checkpoint.load(last)["progress"]["epoch"] >= epoch):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_two_processes_racing_for_a_run_directory_one_trains_and_a_kill_loses_nothing(
    optexp_cli, tmp_path
):
    args = ("trainer.epochs=10", "trainer.batch_size=16", "trainer.early_stopping.enabled=false")
    assert optexp_cli(*args, run_dir=tmp_path / "whole").returncode == 0
    run_dir, last = tmp_path / "shared", tmp_path / "shared" / "checkpoints" / "last.pt"
    racers = [start(tmp_path, run_dir, *args) for _ in range(2)]  # the same command, at once
    deadline = time.monotonic() + 60
    while all(racer.poll() is None for racer in racers):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    loser, winner = sorted(racers, key=lambda racer: racer.poll() is None)
    _, stderr = loser.communicate()
    assert loser.returncode == 2 and "Traceback" not in stderr
    assert f"is in use by optexp process {winner.pid}" in stderr
    wait_for_epoch(winner, last, 1)
    winner.send_signal(signal.SIGKILL)
    winner.communicate()
    assert checkpoint.load(last, CHECKPOINT_KEYS)
    resumed = optexp_cli(*args, run_dir=run_dir)  # the lock died with the process
    assert resumed.returncode == 0, resumed.stderr
    whole, again = metrics(tmp_path / "whole"), metrics(run_dir)
    assert {k: again[k] for k in COMPARED} == {k: whole[k] for k in COMPARED}
    assert again["final"]["train/loss"] == whole["final"]["train/loss"]


def test_sigkill_at_any_moment_leaves_a_loadable_last_pt_and_an_exact_resume(optexp_cli, tmp_path):
    # Seeded delays, mostly mid-epoch; a kill certain to land inside a checkpoint write is
    # the next test's.
    args = ("trainer.epochs=8", "trainer.batch_size=32", "trainer.early_stopping.enabled=false")
    assert optexp_cli(*args, run_dir=tmp_path / "whole").returncode == 0
    killed, last = tmp_path / "killed", tmp_path / "killed" / "checkpoints" / "last.pt"
    rng = random.Random(14)
    for _ in range(3):
        process = start(tmp_path, killed, *args)
        wait_for_epoch(process, last, 0) if last.is_file() else None
        deadline = time.monotonic() + 60
        while not last.is_file():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.communicate()
        checkpoint.load(last, CHECKPOINT_KEYS)  # loads, whatever the moment
    resumed = optexp_cli(*args, run_dir=killed)
    assert resumed.returncode == 0, resumed.stderr
    whole, again = metrics(tmp_path / "whole"), metrics(killed)
    assert {k: again[k] for k in COMPARED} == {k: whole[k] for k in COMPARED}
    assert again["final"]["train/loss"] == whole["final"]["train/loss"]


def tensors(state: object, key: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint's state, by its path in it."""
    if isinstance(state, torch.Tensor):
        return {key: state}
    if not isinstance(state, dict | list | tuple):
        return {}
    items = state.items() if isinstance(state, dict) else enumerate(state)
    return {k: v for name, sub in items for k, v in tensors(sub, f"{key}/{name}").items()}


def same_tensors(a: dict, b: dict) -> bool:
    """Two checkpoints hold the same tensors, bit for bit."""
    a, b = tensors(a), tensors(b)
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("write", [1, 3])
def test_sigkill_inside_a_checkpoint_write_keeps_the_previous_one_and_resumes_bit_equal(
    optexp_cli, tmp_path, capsys, write
):
    # The test-only hook pauses the WRITE-th checkpoint write after its temporary file is
    # whole, before the rename: the kill lands there, not near it.
    args = ("trainer.epochs=5", "trainer.batch_size=32", "trainer.early_stopping.enabled=false")
    args += ("model.dropout=0.2",)  # draws from the generator every step: resumed or not
    assert optexp_cli(*args, run_dir=tmp_path / "whole").returncode == 0
    killed, marker = tmp_path / "killed", tmp_path / "paused"
    process = start(tmp_path, killed, *args, env={PAUSE: f"{write}:{marker}"})
    deadline = time.monotonic() + 60
    while not marker.is_file():
        assert process.poll() is None, "the run ended before its checkpoint write paused"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    paused = Path(marker.read_text())
    process.send_signal(signal.SIGKILL)
    process.communicate()

    last = killed / "checkpoints" / "last.pt"
    if write == 1:
        assert not last.exists()  # nothing to resume from: the re-run starts afresh
    else:
        assert checkpoint.load(last, CHECKPOINT_KEYS)["progress"]["epoch"] == write - 1
    assert paused == last.with_name(".last.pt.tmp") and paused.stat().st_size > 0
    report_main([str(tmp_path / "killed"), "--format", "json"])  # the stray file is no run
    assert [row["status"] for row in json.loads(capsys.readouterr().out)["rows"]] == [
        "1 running/incomplete"
    ]
    resumed = optexp_cli(*args, run_dir=killed)  # the same command, without the hook
    assert resumed.returncode == 0, resumed.stderr
    assert epochs_trained(resumed.stdout) == list(range(write, 6))  # from last.pt on
    whole, again = metrics(tmp_path / "whole"), metrics(killed)
    assert {k: again[k] for k in COMPARED} == {k: whole[k] for k in COMPARED}
    final = [
        checkpoint.load(run / "checkpoints" / "last.pt") for run in (tmp_path / "whole", killed)
    ]
    assert same_tensors(*final)  # the model, the optimizer, every generator
    assert not list(killed.rglob("*.tmp"))


def test_an_interrupted_sweep_prints_the_command_that_continues_it(optexp_cli, tmp_path):
    sweep = tmp_path / "sweep"
    args = ("-m", "optimizer.lr=0.01,0.001", "trainer.epochs=3", "trainer.batch_size=1")
    shown = "hydra.callbacks.progress.show_epochs=true"  # the epoch line to interrupt after
    process = start(tmp_path, tmp_path / "unused", *args, shown, f"hydra.sweep.dir={sweep}")
    for line in process.stdout:
        if line.startswith("epoch 1/3"):
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    (command,) = [line for line in stderr.splitlines() if line.startswith("optexp: to continue:")]
    argv = shlex.split(command.removeprefix("optexp: to continue: "))
    assert argv[0] == "optexp" and f"hydra.sweep.dir={sweep}" in argv

    env = {k: v for k, v in os.environ.items() if k not in ("OPTEXP_DEBUG", "HYDRA_FULL_ERROR")}
    continued = subprocess.run(
        [sys.executable, "-m", "optexp", *argv[1:]],
        cwd=tmp_path, env=env | {"PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        check=False, timeout=300,
    )  # fmt: skip
    assert continued.returncode == 0, continued.stderr
    runs = sorted(sweep.glob("*/metrics.json"))
    assert [metrics(p.parent)["status"] for p in runs] == ["completed", "completed"]

    before = {p: p.read_bytes() for p in runs}
    again = optexp_cli(*args, run_dir=tmp_path / "unused")
    assert again.returncode == 0 and again.stderr.count("completed already, skipped") == 2
    assert {p: p.read_bytes() for p in runs} == before  # not rewritten
