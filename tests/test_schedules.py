"""The scheduler group: every option's lr against its formula, computed here independently,
warm-up in front of it, the lr a real run logs, and one epoch with every option."""

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from optexp.config import ConfigError, TrainerConfig
from optexp.parts import build_schedule
from optexp.train import run
from tests.groups import CONFIG_DIR, options

OPTIONS = options(CONFIG_DIR / "scheduler")
LR = 0.1


def lr_path(cfg, intervals, epochs=100, steps_per_epoch=1, metric=lambda t: 0.0):
    """The lr of each of the first `intervals` intervals, stepping as the loop does."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.optimizer.lr)
    trainer = TrainerConfig(epochs=epochs)
    schedule = build_schedule(cfg.scheduler, optimizer, trainer, steps_per_epoch)
    lrs = []
    for t in range(intervals):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.after_step(t + 1, t + 1)
        schedule.after_epoch(t + 1, metric(t))  # the same calls for both intervals, as train.py
    return lrs


def cos_between(start, end, fraction):
    return end + (start - end) * (1 + math.cos(math.pi * fraction)) / 2


def restart_position(t, t_0, t_mult):
    """(T_cur, T_i): intervals since the last restart, and the current period."""
    period = t_0
    while t >= period:
        t, period = t - period, period * t_mult
    return t, period


def one_cycle(t, total, peak, pct=0.3, div=25.0, final_div=1e4):
    rise_end = pct * total - 1  # torch's phase boundary: the peak is reached at this step
    if t <= rise_end:
        return cos_between(peak / div, peak, t / rise_end)
    return cos_between(peak, peak / div / final_div, (t - rise_end) / (total - 1 - rise_end))


# option, overrides, number of intervals, formula of t (lr = optimizer.lr = LR)
CASES = [
    ("constant", [], 10, lambda t: LR),
    ("step", ["scheduler.step_size=3", "scheduler.gamma=0.5"], 12, lambda t: LR * 0.5 ** (t // 3)),
    ("exponential", ["scheduler.gamma=0.8"], 12, lambda t: LR * 0.8**t),
    (
        "cyclic_sine",
        ["scheduler.step_size=3", "scheduler.max_lr=0.5"],
        20,  # three cycles of 6, and a bit
        lambda t: LR + (0.5 - LR) * abs(math.sin(math.pi * t / 6)),
    ),
    (
        "cyclic_triangular",
        ["scheduler.step_size_up=3", "scheduler.max_lr=0.5"],
        20,
        lambda t: LR + (0.5 - LR) * (1 - abs(t % 6 - 3) / 3),
    ),
    (
        "cosine",
        ["scheduler.eta_min=0.01"],
        100,  # the run is 100 epochs long in lr_path
        lambda t: cos_between(LR, 0.01, t / 100),
    ),
    (
        "cosine_restarts",
        ["scheduler.T_0=3", "scheduler.T_mult=1", "scheduler.eta_min=0.01"],
        12,
        lambda t: cos_between(LR, 0.01, (t % 3) / 3),
    ),
    (
        "cosine_restarts",
        ["scheduler.T_0=2", "scheduler.T_mult=2"],
        16,  # periods 2, 4, 8, then a restart
        lambda t: cos_between(LR, 0.0, (lambda c, p: c / p)(*restart_position(t, 2, 2))),
    ),
    ("one_cycle", [], 100, lambda t: one_cycle(t, 100, LR)),
]


@pytest.mark.parametrize(
    ("option", "overrides", "intervals", "formula"), CASES, ids=[c[0] for c in CASES]
)
def test_schedule_follows_its_formula_at_every_interval(
    make_cfg, option, overrides, intervals, formula
):
    cfg = make_cfg(
        f"scheduler={option}", "scheduler.interval=epoch", f"optimizer.lr={LR}", *overrides
    )
    expected = [formula(t) for t in range(intervals)]
    assert lr_path(cfg, intervals) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("option", "formula"),
    [
        ("cosine", lambda t: cos_between(LR, 0.0, t / 12)),
        ("one_cycle", lambda t: one_cycle(t, 12, LR)),
    ],
)
def test_run_length_schedules_follow_the_number_of_steps(make_cfg, option, formula):
    """With interval=step the schedule spans epochs x steps_per_epoch optimizer steps."""
    cfg = make_cfg(f"scheduler={option}", "scheduler.interval=step", f"optimizer.lr={LR}")
    expected = [formula(t) for t in range(12)]
    assert lr_path(cfg, 12, epochs=3, steps_per_epoch=4) == pytest.approx(expected, rel=1e-9)


WARMUP = 3


@pytest.mark.parametrize(
    ("option", "main"),
    [
        ("constant", lambda t: LR),
        ("step", lambda t: LR * 0.1 ** (t // 10)),
        ("exponential", lambda t: LR * 0.9**t),
        ("cyclic_sine", lambda t: LR + (6e-3 - LR) * abs(math.sin(math.pi * t / 200))),
        ("cyclic_triangular", lambda t: LR + (6e-3 - LR) * (1 - abs(t % 200 - 100) / 100)),
        ("cosine", lambda t: cos_between(LR, 0.0, t / (20 - WARMUP))),
        ("cosine_restarts", lambda t: cos_between(LR, 0.0, (t % 10) / 10)),
    ],
)
def test_warmup_ramps_linearly_then_hands_over_to_the_schedule(make_cfg, option, main):
    cfg = make_cfg(
        f"scheduler={option}",
        "scheduler.interval=epoch",
        f"scheduler.warmup_epochs={WARMUP}",
        f"optimizer.lr={LR}",
    )
    lrs = lr_path(cfg, 20, epochs=20)
    ramp = [LR * (t + 1) / (WARMUP + 1) for t in range(WARMUP)]
    assert lrs[:WARMUP] == pytest.approx(ramp, rel=1e-9)
    assert lrs[WARMUP:] == pytest.approx([main(t) for t in range(20 - WARMUP)], rel=1e-9)


def test_warmup_counts_steps_with_interval_step(make_cfg):
    cfg = make_cfg("scheduler=constant", "scheduler.interval=step", "scheduler.warmup_epochs=2")
    lrs = lr_path(cfg, 10, epochs=5, steps_per_epoch=3)  # 2 epochs of 3 steps = 6 steps
    lr = cfg.optimizer.lr
    assert lrs == pytest.approx([lr * (t + 1) / 7 for t in range(6)] + [lr] * 4, rel=1e-9)


def test_plateau_cuts_the_lr_after_patience_epochs_without_improvement(make_cfg):
    cfg = make_cfg("scheduler=plateau", f"optimizer.lr={LR}")
    patience, factor = cfg.scheduler.patience, cfg.scheduler.factor
    lrs = lr_path(cfg, 14, metric=lambda t: 1.0)  # never improves after the first epoch
    # epoch k (from 1) trains after k - 1 steps; the first sets the best value, and every
    # patience + 1 steps without improvement after it cut the lr once
    expected = [LR * factor ** (max(k - 2, 0) // (patience + 1)) for k in range(1, 15)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert lrs[-1] < LR  # it did cut


def test_plateau_follows_the_early_stopping_mode(make_cfg):
    cfg = make_cfg(
        "scheduler=plateau",
        "trainer.early_stopping.monitor=val/acc",
        "trainer.early_stopping.mode=max",
    )
    assert cfg.scheduler.mode == "max"
    rising = lr_path(cfg, 10, metric=lambda t: t / 10)  # accuracy improving every epoch
    assert rising == [cfg.optimizer.lr] * 10


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["scheduler=plateau", "scheduler.warmup_epochs=1"], "scheduler.warmup_epochs"),
        (["scheduler=plateau", "scheduler.interval=step"], "scheduler.interval"),
        (["scheduler=cyclic_sine", "scheduler.step_size=0"], "scheduler.step_size"),
    ],
)
def test_impossible_schedule_settings_are_config_errors(make_cfg, overrides, key):
    with pytest.raises(ConfigError) as error:
        lr_path(make_cfg(*overrides), 1)
    assert error.value.key == key


def test_logged_lr_of_a_real_run_follows_the_formula(make_cfg, tmp_path):
    cfg = make_cfg(
        "scheduler=cyclic_sine",
        "scheduler.interval=epoch",
        "scheduler.step_size=2",
        "scheduler.max_lr=0.01",
        "optimizer.lr=0.001",
        "trainer.epochs=6",
        "model.hidden=[16]",
        "trainer.batch_size=256",
    )
    run(cfg, tmp_path)
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("lr")]
    # epoch e trains with t = e - 1; TensorBoard stores float32
    expected = [(e, 0.001 + 0.009 * abs(math.sin(math.pi * (e - 1) / 4))) for e in range(1, 7)]
    assert [s for s, _ in logged] == [s for s, _ in expected]
    assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)


@pytest.mark.parametrize("option", OPTIONS)
def test_every_scheduler_option_trains_an_epoch(make_cfg, tmp_path, option):
    cfg = make_cfg(
        f"scheduler={option}", "trainer.epochs=1", "model.hidden=[16]", "trainer.batch_size=256"
    )
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    assert math.isfinite(summary["final"]["train/loss"]) and summary["final"]["lr"] > 0


def test_catalogue_has_every_schedule_of_techniques_md():
    assert {
        "constant",
        "step",
        "exponential",
        "cyclic_sine",
        "cyclic_triangular",
        "cosine",
        "cosine_restarts",
        "one_cycle",
        "plateau",
    } <= set(OPTIONS)
