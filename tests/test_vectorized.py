"""Seeds and trials trained as one stack (optexp.vector): each member equals its separate
run (with its own hyperparameters and schedule, for a trial), the outputs are those of
separate runs, a member that diverges or stops leaves the others training, a group
continues exactly, and what cannot be vectorized is said and run apart."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

from optexp import train
from optexp.report import main as report_main
from optexp.vector import optimizers
from optexp.vector.group import NotVectorizable, RunSpec, run_group
from optexp.vector.steps import GroupSteps

TRAINER = (
    "trainer.batch_size=32",
    "trainer.epochs=3",
    "trainer.tensorboard=false",
    "trainer.early_stopping.enabled=false",
)
SMALL = ("dataset=synthetic", "dataset.n_samples=300", "model.hidden=[16,16]", *TRAINER)
MNIST1D = ("dataset=mnist1d", "dataset.num_samples=400", *TRAINER)
OPTIMIZERS = (
    *("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "textbook/adam"),
    *("nadamw", "lion", "adopt", "schedule_free_adamw"),
)


def members(
    make_cfg, tmp_path: Path, *overrides: str, seeds=(0, 1, 2), base=SMALL
) -> list[RunSpec]:
    return [
        RunSpec(make_cfg(*base, *overrides, f"seed={s}"), tmp_path / f"member{s}", {})
        for s in seeds
    ]


def same_run(member: dict, separate: dict, rel: float = 1e-5) -> None:
    assert member["status"] == separate["status"]
    assert member["global_step"] == separate["global_step"]
    assert member["best_epoch"] == separate["best_epoch"]
    for key in ("train/loss", "val/loss", "grad_norm", "weight_norm"):
        assert member["final"][key] == pytest.approx(separate["final"][key], rel=rel), key
    assert member["test"]["loss"] == pytest.approx(separate["test"]["loss"], rel=rel)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_member_trains_as_its_separate_run(make_cfg, tmp_path, optimizer):
    group = members(make_cfg, tmp_path, f"optimizer={optimizer}", "optimizer.lr=0.05")
    results = run_group(group)
    for k in (0, 2):
        separate = train.run(group[k].cfg, tmp_path / f"separate{k}")
        same_run(results[k], separate)
    assert results[0]["final"]["train/loss"] != results[2]["final"]["train/loss"]  # seeds differ


# Each member's own optimizer values and warm-up (a study's trials), on a cosine schedule
# (Schedule-Free: its own warm-up, no schedule).
TRIALS = {
    "momentum": [
        ("optimizer.lr=0.05", "optimizer.momentum=0.9", "scheduler.warmup_epochs=0"),
        ("optimizer.lr=0.02", "optimizer.momentum=0.5", "scheduler.warmup_epochs=1"),
    ],
    "nesterov": [
        ("optimizer.lr=0.05", "optimizer.momentum=0.9", "optimizer.weight_decay=0.001"),
        ("optimizer.lr=0.1", "optimizer.momentum=0.8", "optimizer.weight_decay=0.01"),
    ],
    "adam": [
        ("optimizer.lr=0.01", "optimizer.eps=1e-8", "optimizer.weight_decay=0.001"),
        ("optimizer.lr=0.002", "optimizer.eps=1e-6", "optimizer.weight_decay=0.01"),
    ],
    "adamw": [
        ("optimizer.lr=0.01", "optimizer.betas=[0.9,0.999]", "optimizer.weight_decay=0.01"),
        ("optimizer.lr=0.003", "optimizer.betas=[0.7,0.99]", "optimizer.weight_decay=0.3"),
    ],
    "nadamw": [
        ("optimizer.lr=0.01", "optimizer.eps=1e-8", "scheduler.warmup_epochs=1"),
        ("optimizer.lr=0.004", "optimizer.eps=1e-6", "scheduler.warmup_epochs=2"),
    ],
    "lion": [
        ("optimizer.lr=0.001", "optimizer.betas=[0.9,0.99]", "optimizer.weight_decay=0.1"),
        ("optimizer.lr=0.0003", "optimizer.betas=[0.95,0.98]", "optimizer.weight_decay=1.0"),
    ],
    # evaluated at its own x: its warm-up, averaging weights and interpolation
    "schedule_free_adamw": [
        ("optimizer.lr=0.01", "optimizer.warmup_steps=5", "optimizer.weight_decay=0.01"),
        ("optimizer.lr=0.003", "optimizer.betas=[0.7,0.99]", "optimizer.weight_decay=0.1"),
    ],
}


@pytest.mark.parametrize("optimizer", TRIALS)
def test_trials_with_their_own_hyperparameters_train_as_their_separate_runs(
    make_cfg, tmp_path, optimizer
):
    schedule = ("scheduler=cosine", "scheduler.interval=step")
    if optimizer.startswith("schedule_free"):  # its own warm-up replaces a schedule
        schedule = ("~scheduler",)  # none, as a study has it
    base = (*SMALL, f"optimizer={optimizer}", *schedule)
    group = [
        RunSpec(make_cfg(*base, *trial, f"seed={k}"), tmp_path / f"member{k}", {})
        for k, trial in enumerate(TRIALS[optimizer])
    ]
    results = run_group(group)
    for k, result in enumerate(results):
        separate = train.run(group[k].cfg, tmp_path / f"separate{k}")
        same_run(result, separate, rel=1e-4)
        # its own schedule: the lr it logged is its separate run's
        assert result["final"]["lr"] == pytest.approx(separate["final"]["lr"], rel=1e-6)


def test_trials_an_optimizer_cannot_take_per_member_are_refused(make_cfg, tmp_path):
    differing = [("optimizer.lr=0.01",), ("optimizer.lr=0.02",)]
    group = [
        RunSpec(make_cfg(*SMALL, "optimizer=adagrad", *lr, f"seed={k}"), tmp_path / f"m{k}", {})
        for k, lr in enumerate(differing)
    ]
    with pytest.raises(
        NotVectorizable, match=r"differ in optimizer\.lr, and torch\.optim\.Adagrad"
    ):
        run_group(group)
    decays = [("optimizer.weight_decay=0",), ("optimizer.weight_decay=0.1",)]
    group = [
        RunSpec(make_cfg(*SMALL, "optimizer=adamw", *wd, f"seed={k}"), tmp_path / f"w{k}", {})
        for k, wd in enumerate(decays)
    ]
    with pytest.raises(NotVectorizable, match="parameter groups differ"):
        run_group(group)
    assert not any(tmp_path.iterdir())


class OwnElementwise(torch.optim.SGD):
    """A user's optimizer that says its step is elementwise: seeds stack, trials do not."""

    elementwise = True


class OwnStacked(optimizers.SGD):
    """A user's stacked step (stacks_members, inherited): trials stack too."""


def test_a_users_optimizer_says_whether_it_stacks(make_cfg, tmp_path):
    def group(target: str, lrs: tuple[float, ...], name: str) -> list[RunSpec]:
        own = ("optimizer=momentum", f"optimizer._target_={__name__}.{target}")
        return [
            RunSpec(
                make_cfg(*SMALL, *own, f"optimizer.lr={lr}", f"seed={k}"),
                tmp_path / f"{name}{k}",
                {},
            )
            for k, lr in enumerate(lrs)
        ]

    seeds = group("OwnElementwise", (0.05, 0.05), "seeds")
    for k, result in enumerate(run_group(seeds)):
        same_run(result, train.run(seeds[k].cfg, tmp_path / f"alone{k}"))
    with pytest.raises(NotVectorizable, match="no stacked step"):
        run_group(group("OwnElementwise", (0.05, 0.02), "lrs"))
    trials = group("OwnStacked", (0.05, 0.02), "trials")
    for k, result in enumerate(run_group(trials)):
        same_run(result, train.run(trials[k].cfg, tmp_path / f"apart{k}"))


def test_the_launcher_stacks_a_studys_trials_by_their_resolved_values(make_cfg, tmp_path):
    """Trials are named by an index; the launcher groups them by the values it resolves to:
    one stack per optimizer with a stacked step; otherwise only the seeds of one trial."""
    from optexp.cli.app import Job
    from optexp.search_space import with_trial
    from optexp.vector.launcher import stack_groups

    study = ("experiment=study_optimizers", "+problem=digits_mlp")
    jobs, num = {}, 0
    for optimizer in ("nadamw", "adamw", "muon"):
        for index in (0, 1):
            for trial in ("defaults", 0, 1):
                picked = (f"optimizer={optimizer}", f"study.index={index}", f"study.trial={trial}")
                jobs[num] = Job(with_trial(make_cfg(*study, *picked)), tmp_path / str(num), None)
                num += 1
    groups = [sorted(group) for group in stack_groups(jobs)]
    assert groups[:2] == [list(range(0, 6)), list(range(6, 12))]  # nadamw's, adamw's
    # muon has no stacked step: its trials apart, its defaults over the two studies (seeds)
    assert groups[2:] == [[12, 15], [13], [14], [16], [17]]


def test_a_cnn_with_per_member_data_trains_as_its_separate_runs(make_cfg, tmp_path):
    """cnn1d on MNIST-1D, data_seed=${seed}: each member its own generated set and order."""
    cnn = ("model=cnn1d", "model.channels=[8,8]", "model.kernel_sizes=[5,3]", "data_seed=${seed}")
    group = members(make_cfg, tmp_path, *cnn, "trainer.epochs=2", seeds=(0, 1), base=MNIST1D)
    results = run_group(group)
    for k in (0, 1):
        same_run(results[k], train.run(group[k].cfg, tmp_path / f"separate{k}"), rel=1e-4)
        # A member's checkpoint holds its slices only, not the whole stack its modules view.
        member, separate = (
            p / "checkpoints" / "last.pt" for p in (group[k].run_dir, tmp_path / f"separate{k}")
        )
        assert member.stat().st_size == pytest.approx(separate.stat().st_size, rel=0.05)


def test_grad_clip_and_dropout_run_per_member(make_cfg, tmp_path):
    """Clipping is per member (equal to the separate run); dropout draws per member."""
    group = members(make_cfg, tmp_path, "trainer.grad_clip=0.05", seeds=(0, 1))
    same_run(run_group(group)[1], train.run(group[1].cfg, tmp_path / "separate"))
    dropout = members(make_cfg, tmp_path / "dropout", "model.dropout=0.5", seeds=(0, 1))
    assert run_group(dropout)[1]["status"] == "completed"


def test_a_diverged_member_does_not_stop_the_others(make_cfg, tmp_path, monkeypatch):
    group = members(make_cfg, tmp_path)
    step = GroupSteps.step
    calls = []

    def poisoned(g, window, measure, active):  # member 1's weights go to NaN at its 5th step
        calls.append(1)
        if len(calls) == 5:
            g.stack.params[0].data[1] = float("nan")
        return step(g, window, measure, active)

    monkeypatch.setattr(GroupSteps, "step", poisoned)
    results = run_group(group)
    assert results[1]["status"] == "diverged"
    assert results[1]["epochs_completed"] == 0
    for k in (0, 2):
        assert results[k]["status"] == "completed"
        monkeypatch.setattr(GroupSteps, "step", step)
        same_run(results[k], train.run(group[k].cfg, tmp_path / f"separate{k}"))


def test_an_early_stopped_member_ends_alone(make_cfg, tmp_path):
    stopping = ("trainer.early_stopping.enabled=true", "trainer.early_stopping.patience=1")
    group = members(make_cfg, tmp_path, *stopping, "trainer.epochs=30", "optimizer.lr=0.3")
    results = run_group(group)
    for k, result in enumerate(results):
        same_run(result, train.run(group[k].cfg, tmp_path / f"separate{k}"))
    assert len({r["epochs_completed"] for r in results}) > 1  # they ended apart


@pytest.mark.parametrize(
    "overrides", [(), ("optimizer=schedule_free_adamw", "optimizer.warmup_steps=20")]
)  # Schedule-Free: its counters and z in each member's checkpoint, its x recomputed
def test_a_group_killed_mid_epoch_continues_bit_equal(make_cfg, tmp_path, monkeypatch, overrides):
    whole = run_group(members(make_cfg, tmp_path / "whole", *overrides))
    step, calls = GroupSteps.step, []

    def killed(g, window, measure, active):  # SIGTERM during the 14th step (of 9 per epoch)
        calls.append(1)
        if len(calls) == 14:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(g, window, measure, active)

    monkeypatch.setattr(GroupSteps, "step", killed)
    group = members(make_cfg, tmp_path / "killed", *overrides)
    stopped = run_group(group)
    assert [r["status"] for r in stopped] == ["interrupted"] * 3
    assert stopped[0]["global_step"] == 14
    monkeypatch.setattr(GroupSteps, "step", step)
    alone = tmp_path / "alone"  # a member's checkpoint is its separate run's, too
    shutil.copytree(group[1].run_dir, alone)
    resumed = run_group(members(make_cfg, tmp_path / "killed", *overrides))
    for result, reference in zip(resumed, whole, strict=True):
        assert result["final"] == {**reference["final"], **pick_timing(result)}
        assert result["test"] == reference["test"]
        assert result["global_step"] == reference["global_step"]
    same_run(train.run(group[1].cfg, alone), whole[1])


def pick_timing(result: dict) -> dict:
    return {k: v for k, v in result["final"].items() if k.startswith(("time/", "throughput/"))}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (("optimizer=lbfgs",), "evaluates the loss itself"),
        (("trainer.ema.enabled=true",), "average weights"),
        (("optimizer=schedule_free_sgd",), "eval\\(\\) without a stacked step"),
        (("regularizer=l2",), "penalty"),
        (("model=gru", *MNIST1D), "vmap cannot run"),
        (("+problem=lookup_transformer", *TRAINER), "no batching rule for aten::_scaled_dot"),
    ],
)
def test_what_cannot_be_vectorized_is_refused_before_any_write(
    make_cfg, tmp_path, overrides, reason
):
    base = () if overrides[0].startswith(("model=gru", "+problem")) else SMALL
    with pytest.raises(NotVectorizable, match=reason):
        run_group(members(make_cfg, tmp_path, *overrides, seeds=(0, 1), base=base))
    assert not any(tmp_path.iterdir())


def test_the_launcher_writes_separate_runs_that_the_report_reads(optexp_cli, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    args = ("-m", "hydra/launcher=vectorized", *SMALL, "seed=0,1,2", "optimizer=sgd,adam")
    result = optexp_cli(*args, f"hydra.sweep.dir={sweep}", "trainer.tensorboard=true")
    assert result.returncode == 0, result.stderr[-2000:]
    runs = sorted(sweep.glob("*/metrics.json"))
    assert len(runs) == 6
    assert all(json.loads(p.read_text())["status"] == "completed" for p in runs)
    assert all(any((p.parent / "tb").iterdir()) for p in runs)
    assert all((p.parent / "checkpoints" / "last.pt").exists() for p in runs)
    report_main([str(sweep)])
    table = capsys.readouterr().out
    assert "sgd" in table and "adam" in table and "3" in table
    again = optexp_cli(*args, f"hydra.sweep.dir={sweep}", "trainer.tensorboard=true")
    assert again.returncode == 0
    assert again.stderr.count("already, skipped") == 6


def test_the_launcher_trains_each_optimizers_trials_as_one_stack(optexp_cli, tmp_path):
    sweep = tmp_path / "sweep"
    grid = ("optimizer=momentum,nesterov", "optimizer.lr=0.05,0.02", "seed=0,1")
    args = ("-m", "hydra/launcher=vectorized", *SMALL, *grid, "trainer.epochs=1")
    result = optexp_cli(*args, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "jobs 0-3 trained as one stack" in result.stderr  # momentum's lr x seed
    assert "jobs 4-7 trained as one stack" in result.stderr  # nesterov's
    assert result.stdout.count(" completed ") == 8 and "(8/8 done)" in result.stdout
    runs = sorted(sweep.glob("*/metrics.json"))
    assert [json.loads(p.read_text())["status"] for p in runs] == ["completed"] * 8


def test_the_launcher_runs_an_unvectorizable_group_one_by_one(optexp_cli, tmp_path):
    sweep = tmp_path / "sweep"
    args = ("-m", "hydra/launcher=vectorized", *SMALL, "seed=0,1", "optimizer=lbfgs")
    result = optexp_cli(*args, "trainer.epochs=1", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "jobs 0,1 train one by one, not vectorized" in result.stderr
    assert "evaluates the loss itself" in result.stderr
    assert len(list(sweep.glob("*/metrics.json"))) == 2
