"""The training techniques beyond one step per batch: closure optimizers (L-BFGS, SAM), step
and time budgets and evaluation every N steps, gradient accumulation, weight averaging
(EMA, SWA), mixup / cutmix, and the LR range test. Each against a hand-computed answer,
and each resumed exactly after a stop."""

from __future__ import annotations

import copy
import json
import math
import signal
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from optexp import checks, lr_range, steps, train
from optexp.config import TrainerConfig
from optexp.errors import ConfigError
from optexp.optim.sam import SAM
from optexp.parts import build_parts
from optexp.signals import StopRequest
from optexp.state import RunState
from tests.resume import assert_resumes_exactly

SMALL = ("trainer.tensorboard=false", "trainer.early_stopping.enabled=false")
PLAIN = ("dataset=synthetic", "dataset.n_samples=400", "model.hidden=[16]", *SMALL)


def scalars(run_dir, tag):
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


# ---------------------------------------------------------------- closure optimizers


def test_lbfgs_takes_torchs_own_step_through_the_loops_closure(make_cfg):
    cfg = make_cfg("optimizer=lbfgs", *PLAIN)
    train.seed_everything(0)
    parts = build_parts(cfg)
    reference = copy.deepcopy(parts.model)
    x, y = parts.data.train.x, parts.data.train.y
    steps.optimizer_step(parts, [(x, y)], measure=False)

    options = {k: v for k, v in cfg.optimizer.items() if k not in ("_target_", "full_batch")}
    by_hand = torch.optim.LBFGS(reference.parameters(), **options)

    def closure():
        by_hand.zero_grad()
        loss = nn.functional.cross_entropy(reference(x), y)
        loss.backward()
        return loss

    by_hand.step(closure)
    assert parts.closure
    for ours, theirs in zip(parts.model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_sam_steps_from_the_gradient_at_the_ascended_weights():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    model = nn.Linear(3, 1)
    w = weights(model)
    rho, lr = 0.1, 0.5

    def loss_at(params):
        weight, bias = params
        return ((x @ weight.T + bias - y) ** 2).mean()

    g = torch.autograd.grad(loss_at([p.requires_grad_() for p in w]), w)
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    ascended = [
        (wi + rho * gi / norm).detach().requires_grad_() for wi, gi in zip(w, g, strict=True)
    ]
    g_sharp = torch.autograd.grad(loss_at(ascended), ascended)
    expected = [wi - lr * gi for wi, gi in zip(w, g_sharp, strict=True)]

    sam = SAM(model.parameters(), base="torch.optim.SGD", rho=rho, lr=lr)

    def closure():
        sam.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = sam.step(closure)
    assert loss.item() == pytest.approx(loss_at(w).item())  # the first evaluation's loss
    for ours, theirs in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(ours, theirs.detach())


def test_sam_and_lbfgs_train_and_resume_exactly(make_cfg, tmp_path, monkeypatch):
    for option in ("sam", "lbfgs"):
        overrides = (f"optimizer={option}", *PLAIN, "trainer.epochs=3")
        assert_resumes_exactly(make_cfg(*overrides), tmp_path / option, monkeypatch, stop_at=5)


def test_an_optimizer_that_steps_with_a_closure_refuses_fp16_and_accumulation():
    with pytest.raises(ConfigError, match=r"trainer.precision='fp16'.*closure"):
        checks.check_closure(True, "torch.optim.LBFGS", TrainerConfig(precision="fp16"))
    with pytest.raises(ConfigError, match=r"trainer\.accumulate_batches=2"):
        checks.check_closure(True, "optexp.optim.sam.SAM", TrainerConfig(accumulate_batches=2))
    checks.check_closure(True, "torch.optim.LBFGS", TrainerConfig(precision="bf16"))
    checks.check_closure(False, "torch.optim.SGD", TrainerConfig(precision="fp16"))


# ---------------------------------------------------------------- budgets


def test_max_steps_ends_the_run_after_exactly_that_many_steps(make_cfg, tmp_path):
    summary = train.run(make_cfg("trainer.max_steps=25", "trainer.epochs=10", *SMALL), tmp_path)
    assert summary["status"] == "completed" and summary["global_step"] == 25
    assert summary["epochs_completed"] == 1  # 20 steps an epoch: the budget ends the second


def test_evaluation_every_n_steps_logs_validation_at_those_steps(make_cfg, tmp_path):
    cfg = make_cfg("trainer.eval_every_steps=7", "trainer.epochs=2", "trainer.max_steps=30")
    summary = train.run(cfg, tmp_path)
    # 20 steps an epoch: 7, 14, the end of the first epoch, 21, 28 and the budget's 30
    assert [step for step, _ in scalars(tmp_path, "val/loss")] == [7, 14, 20, 21, 28, 30]
    epochs = [v for _, v in scalars(tmp_path, "progress/epoch")]
    assert epochs == pytest.approx([7 / 20, 14 / 20, 1, 21 / 20, 28 / 20, 30 / 20])
    assert summary["global_step"] == 30 and summary["best_step"] in (7, 14, 20, 21, 28, 30)


def test_a_time_budget_spent_before_an_intervals_first_step_ends_the_run(
    make_cfg, tmp_path, monkeypatch
):
    """The deadline can pass during an evaluation, before the next interval steps once:
    the run ends there (time_limit) without an evaluation of no batches."""
    steps, calls = train.train_steps, []

    def late(*args, **kwargs):  # the third interval finds its deadline gone
        calls.append(1)
        if len(calls) < 3:
            return steps(*args, **kwargs)
        time.sleep(max(0.0, args[-1] - time.perf_counter()))  # args[-1]: the deadline
        return [], None, True

    monkeypatch.setattr(train, "train_steps", late)
    summary = train.run(make_cfg("trainer.max_time=3", "trainer.epochs=5", *SMALL), tmp_path)
    assert summary["status"] == "time_limit" and summary["epochs_completed"] == 2


def test_a_time_budget_ends_as_a_result_that_more_time_continues(make_cfg, tmp_path):
    short = train.run(make_cfg("trainer.max_time=0.05", "trainer.epochs=50", *SMALL), tmp_path)
    assert short["status"] == "time_limit" and 0 < short["global_step"] < 50 * 20
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    longer = train.run(make_cfg("trainer.max_time=0.3", "trainer.epochs=50", *SMALL), tmp_path)
    assert longer["global_step"] > short["global_step"]


def test_a_step_schedule_spans_the_step_budget(make_cfg, tmp_path):
    cfg = make_cfg("scheduler=cosine", "scheduler.interval=step", "trainer.max_steps=30", *SMALL)
    summary = train.run(cfg, tmp_path)
    assert summary["final"]["lr"] == pytest.approx(0.0, abs=1e-12)  # annealed to eta_min at 30


# ---------------------------------------------------------------- accumulation


def test_accumulated_batches_step_as_one_batch_of_them_all(make_cfg):
    def one_epoch(*overrides):
        train.seed_everything(0)
        parts = build_parts(make_cfg("optimizer=sgd", *PLAIN, *overrides))
        state = RunState()
        member = train.Member(parts, state, None, _NoTracker())
        batches = steps.epoch_batches(parts, state, _NoTracker())
        run_steps, stop = steps.RunSteps(parts), StopRequest()
        train.train_steps([member], [0], run_steps, batches, stop, math.inf, math.inf)
        return parts, state

    small, accumulated = one_epoch("trainer.batch_size=10", "trainer.accumulate_batches=3")
    large, whole = one_epoch("trainer.batch_size=30")
    assert accumulated.step == whole.step == math.ceil(280 / 30) == small.steps_per_epoch
    for a, b in zip(small.model.parameters(), large.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_stop_in_the_middle_of_an_accumulation_window_resumes_exactly(
    make_cfg, tmp_path, monkeypatch
):
    """SIGTERM arrives during the 5th batch's forward and backward, the second of the
    second window of 3: the window is finished (one optimizer step is one window), saved,
    and the resume goes on from the 7th batch."""
    real_forward_backward = steps.forward_backward
    calls = []

    def signalled_in_batch_5(*args):
        calls.append(1)
        if len(calls) == 5:
            Recorded.instances[-1].signal = signal.SIGTERM
        return real_forward_backward(*args)

    accumulate = ("trainer.accumulate_batches=3", "trainer.batch_size=16")  # 18 batches an epoch
    cfg = make_cfg(*accumulate, "trainer.epochs=2", *PLAIN)
    whole = train.run(cfg, tmp_path / "whole")
    monkeypatch.setattr(train, "StopRequest", Recorded)
    monkeypatch.setattr(steps, "forward_backward", signalled_in_batch_5)
    assert train.run(cfg, tmp_path / "stopped")["status"] == "interrupted"
    stopped = torch.load(tmp_path / "stopped" / "checkpoints" / "last.pt", weights_only=True)
    assert stopped["progress"]["batches_done"] == 6 and stopped["progress"]["step"] == 2
    monkeypatch.undo()
    resumed = train.run(cfg, tmp_path / "stopped")
    assert resumed["final"]["train/loss"] == whole["final"]["train/loss"]
    assert resumed["test"] == whole["test"] and resumed["global_step"] == whole["global_step"]


# ---------------------------------------------------------------- weight averaging


def test_ema_is_the_exponential_average_of_the_weights_after_each_step(make_cfg):
    cfg = make_cfg("trainer.ema.enabled=true", "trainer.ema.decay=0.8", *PLAIN)
    train.seed_everything(0)
    parts = build_parts(cfg)
    expected = None
    for x, y in parts.data.train.batches(16):
        steps.optimizer_step(parts, [(x, y)], measure=False)
        parts.weights.after_step(1 if expected is None else 2, epoch=1)
        now = weights(parts.model)
        expected = (
            now
            if expected is None
            else [0.8 * e + 0.2 * w for e, w in zip(expected, now, strict=True)]
        )
    averaged = list(parts.weights.model.module.parameters())
    for ours, theirs in zip(averaged, expected, strict=True):
        torch.testing.assert_close(ours, theirs)


def test_ema_and_swa_validate_the_averaged_weights_and_log_the_others(make_cfg, tmp_path):
    ema = train.run(make_cfg("trainer.ema.enabled=true", "trainer.epochs=2"), tmp_path / "ema")
    online = {k for k in ema["final"] if k.startswith("val_online/")}
    assert online == {"val_online/loss", "val_online/acc"}
    assert ema["final"]["val/loss"] != ema["final"]["val_online/loss"]
    swa = ("trainer.swa.enabled=true", "trainer.swa.start_epoch=1", "trainer.swa.lr=0.01")
    result = train.run(make_cfg(*swa, "trainer.epochs=3"), tmp_path / "swa")
    assert result["final"]["lr"] == pytest.approx(0.01)  # annealed to the SWA lr in 1 epoch
    off = ("trainer.evaluate_averaged=false",)
    other = train.run(make_cfg(*swa, *off, "trainer.epochs=3"), tmp_path / "online")
    assert "val_averaged/loss" in other["final"]


def test_swa_resumes_exactly_in_its_averaging_phase(make_cfg, tmp_path, monkeypatch):
    swa = ("trainer.swa.enabled=true", "trainer.swa.start_epoch=1", "trainer.swa.lr=0.05")
    cfg = make_cfg(*swa, "trainer.epochs=4", *PLAIN, "model.batch_norm=true")
    stopped = assert_resumes_exactly(cfg, tmp_path, monkeypatch, stop_at=14)
    assert stopped["progress"]["epoch"] >= 2 and int(stopped["average"]["n_averaged"]) >= 1


def test_averaging_knobs_that_cannot_work_together_are_refused(optexp_cli):
    cases = {
        ("trainer.ema.enabled=true", "trainer.swa.enabled=true"): "trainer.swa.enabled=True",
        ("trainer.swa.enabled=true", "trainer.swa.start_epoch=30"): "leaves no epoch to average",
        ("optimizer=gd", "trainer.accumulate_batches=2"): "1 with a full-batch optimizer",
        ("optimizer=sam", "trainer.accumulate_batches=2"): "cannot accumulate",
    }
    for args, message in cases.items():
        result = optexp_cli(*args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 2  # the line and the debug hint


# ---------------------------------------------------------------- mixup and cutmix


@pytest.mark.parametrize("option", ["mixup", "cutmix"])
def test_mixing_trains_on_mixed_labels_and_measures_accuracy_on_the_true_ones(
    make_cfg, tmp_path, monkeypatch, option
):
    seen = []
    real_forward_backward = steps.forward_backward

    def spying(parts, x, target, y, weight):
        seen.append((target, y))
        return real_forward_backward(parts, x, target, y, weight)

    monkeypatch.setattr(steps, "forward_backward", spying)
    cfg = make_cfg(f"augmentation={option}", "trainer.epochs=1", *SMALL)
    summary = train.run(cfg, tmp_path)
    target, y = seen[0]
    assert target.shape == (len(y), 10) and target.dtype.is_floating_point
    torch.testing.assert_close(target.sum(1), torch.ones(len(y)))
    assert y.dtype == torch.long  # the labels the accuracy is measured against
    assert (target.max(1).values < 1).any()  # some labels were mixed
    assert 0 < summary["final"]["train/acc"] <= 1


def test_mixing_refuses_losses_and_tasks_without_class_probabilities(optexp_cli):
    hinge = optexp_cli("augmentation=mixup", "loss=hinge")
    assert hinge.returncode == 2 and "cannot take the mixed (soft) labels" in hinge.stderr
    regression = ("augmentation=cutmix", "dataset=synthetic", "dataset.task=regression")
    result = optexp_cli(*regression, "loss=mse")
    assert result.returncode == 2 and "augmentation=cutmix" in result.stderr


# ---------------------------------------------------------------- the LR range test


def test_the_suggestion_is_the_steepest_descent_of_the_smoothed_loss():
    lrs = [10 ** (-6 + 7 * i / 99) for i in range(100)]
    curve = [-math.tanh(math.log10(lr) + 3) for lr in lrs]  # falls fastest at lr = 1e-3
    assert lr_range.suggest(lrs, curve) == pytest.approx(1e-3, rel=0.1)
    assert lr_range.suggest(lrs, [1.0] * 100) is None  # no descent, no suggestion
    assert lr_range.suggest(lrs[:3], curve[:3]) is None  # too few points


def test_the_range_test_stops_when_the_loss_explodes_and_writes_its_curve(optexp_cli, tmp_path):
    result = optexp_cli("lr_range=default", "optimizer=sgd", "lr_range.steps=120")
    assert result.returncode == 0, result.stderr
    found = json.loads((tmp_path / "run" / "lr_range.json").read_text())
    assert found["stopped"] == "diverged" and len(found["losses"]) < 120
    assert 1e-6 <= found["suggested_lr"] <= 10 and len(found["grid"]) == 5
    assert (tmp_path / "run" / "lr_range.png").stat().st_size > 0
    assert f"optimizer.lr={found['suggested_lr']:.3g}" in result.stdout
    bad = optexp_cli("lr_range=default", "lr_range.min_lr=1", "lr_range.max_lr=0.1")
    assert bad.returncode == 2 and "lr_range.max_lr" in bad.stderr


# ---------------------------------------------------------------- helpers


class _NoTracker:
    writes_tensorboard = False

    def batches(self, batches, first=0):
        return batches


class Recorded(StopRequest):
    """A StopRequest the test can reach: the last one made."""

    instances: list[StopRequest] = []  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        Recorded.instances.append(self)
