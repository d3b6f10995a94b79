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


def lr_path(cfg, intervals, epochs=100, steps_per_epoch=1, metric=lambda t: 0.0, **trainer):
    """The lr of each of the first `intervals` intervals, stepping as the loop does
    (`trainer`: more TrainerConfig knobs, e.g. max_steps)."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.optimizer.lr)
    trainer = TrainerConfig(epochs=epochs, **trainer)
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


def linear_to_zero(t, total):
    return LR * max(1 - t / total, 0.0)


def wsd(t, total, fraction=0.2, shape="linear"):
    """Constant, then the last round(fraction * total) intervals down to 0."""
    cooldown = max(round(fraction * total), 1)
    s = min(max(t - (total - cooldown), 0) / cooldown, 1.0)
    return LR * (1 - s if shape == "linear" else 1 - math.sqrt(s))


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
    ("linear_decay", [], 103, lambda t: linear_to_zero(t, 100)),  # 0 from t = 100 on
    ("wsd", [], 103, lambda t: wsd(t, 100)),  # lr up to t = 80, then linear to 0
    (
        "wsd",
        ["scheduler.cooldown_fraction=0.35", "scheduler.cooldown_shape=1-sqrt"],
        103,
        lambda t: wsd(t, 100, 0.35, "1-sqrt"),
    ),
    ("wsd", ["scheduler.cooldown_fraction=1"], 103, lambda t: linear_to_zero(t, 100)),
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
        ("linear_decay", lambda t: linear_to_zero(t, 12)),
        ("wsd", lambda t: wsd(t, 12)),
    ],
)
def test_run_length_schedules_follow_the_number_of_steps(make_cfg, option, formula):
    """With interval=step the schedule spans epochs x steps_per_epoch optimizer steps."""
    cfg = make_cfg(f"scheduler={option}", "scheduler.interval=step", f"optimizer.lr={LR}")
    expected = [formula(t) for t in range(12)]
    assert lr_path(cfg, 12, epochs=3, steps_per_epoch=4) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("option", "formula"),
    [
        ("linear_decay", linear_to_zero),
        ("wsd", wsd),
        ("cosine", lambda t, n: cos_between(LR, 0, t / n)),
    ],
)
@pytest.mark.parametrize(
    ("trainer", "horizon"),
    [
        ({}, 30),  # 10 epochs of 3 steps
        ({"max_steps": 17}, 17),  # the step budget ends the run first
        ({"max_time": 1.0}, 30),  # a time budget may end it sooner: not known in advance
        ({"max_steps": 17, "max_time": 1.0}, 17),
    ],
)
def test_run_length_schedules_span_the_step_budget_not_the_time_budget(
    make_cfg, option, formula, trainer, horizon
):
    cfg = make_cfg(f"scheduler={option}", "scheduler.interval=step", f"optimizer.lr={LR}")
    lrs = lr_path(cfg, horizon + 3, epochs=10, steps_per_epoch=3, **trainer)
    expected = [formula(t, horizon) for t in range(horizon + 1)]
    assert lrs[: horizon + 1] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    if option != "cosine":  # cosine would climb back; these stay at 0
        assert lrs[horizon:] == [0.0] * 3


def test_wsd_holds_its_horizon_across_a_resume(make_cfg):
    """The cooldown's numbers are saved with the schedule, as torch's schedules save theirs:
    a resume with a longer budget (trainer.max_steps may change) keeps the first one."""
    cfg = make_cfg("scheduler=wsd", f"optimizer.lr={LR}")
    first = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR)
    schedule = build_schedule(cfg.scheduler, first, TrainerConfig(epochs=1), 10)
    for step in range(1, 5):
        first.step()
        schedule.after_step(step, 1)
    state = schedule.state_dict()
    again = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR)
    again.load_state_dict(first.state_dict())
    resumed = build_schedule(cfg.scheduler, again, TrainerConfig(epochs=5), 10)
    resumed.load_state_dict(state)
    lrs = []
    for step in range(5, 12):
        again.step()
        resumed.after_step(step, 1)
        lrs.append(again.param_groups[0]["lr"])
    assert lrs == pytest.approx([wsd(t, 10) for t in range(5, 12)], rel=1e-9, abs=1e-12)


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
        ("linear_decay", lambda t: linear_to_zero(t, 20 - WARMUP)),
        ("wsd", lambda t: wsd(t, 20 - WARMUP)),
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
        (["scheduler=wsd", "scheduler.cooldown_fraction=0"], "scheduler.cooldown_fraction"),
        (["scheduler=wsd", "scheduler.cooldown_shape=cos"], "scheduler.cooldown_shape"),
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


def logged_lr(run_dir):
    """{x: lr} of a run's TensorBoard events (x is the step with eval_every_steps)."""
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return {e.step: e.value for e in events.Scalars("lr")}


STEPS_PER_EPOCH = 5  # the digits' training split in batches of 256


@pytest.mark.parametrize(
    ("overrides", "warmup", "formula"),
    [
        (["scheduler=linear_decay"], 0, linear_to_zero),
        (
            ["scheduler=wsd", "scheduler.cooldown_fraction=0.5", "scheduler.cooldown_shape=1-sqrt"],
            0,
            lambda t, n: wsd(t, n, 0.5, "1-sqrt"),
        ),
        (["scheduler=linear_decay", "scheduler.warmup_epochs=0.4"], 2, linear_to_zero),
        (["scheduler=wsd", "scheduler.warmup_epochs=0.4"], 2, wsd),
    ],
    ids=["linear_decay", "wsd-1-sqrt", "linear_decay-warmup", "wsd-warmup"],
)
@pytest.mark.parametrize("max_steps", [None, 17], ids=["epochs", "max_steps"])
def test_real_runs_log_the_formula_and_end_at_zero(
    make_cfg, tmp_path, overrides, warmup, formula, max_steps
):
    """The lr each evaluation logs is the formula at its step (the lr of the step after
    it), and 0 after the budget's last step, whether epochs or max_steps end the run."""
    cfg = make_cfg(
        *overrides,
        f"optimizer.lr={LR}",
        f"trainer.max_steps={max_steps or 'null'}",
        "trainer.epochs=4",
        "trainer.eval_every_steps=2",
        "trainer.early_stopping.enabled=false",
        "model.hidden=[16]",
        "trainer.batch_size=256",
    )
    summary = run(cfg, tmp_path)
    horizon = min(4 * STEPS_PER_EPOCH, max_steps or math.inf)
    assert (summary["status"], summary["global_step"]) == ("completed", horizon)

    def expected(k):  # warm-up ramp, then the schedule over what is left
        return LR * (k + 1) / (warmup + 1) if k < warmup else formula(k - warmup, horizon - warmup)

    logged = logged_lr(tmp_path)
    assert max(logged) == horizon and len(logged) >= horizon // 2
    assert list(logged.values()) == pytest.approx([expected(k) for k in logged], rel=1e-6)
    assert summary["final"]["lr"] == 0.0 and logged[horizon] == 0.0


DECAY_TO_ZERO = {"linear_decay", "wsd"}  # lr 0 after the run's last step


@pytest.mark.parametrize("option", OPTIONS)
def test_every_scheduler_option_trains_an_epoch(make_cfg, tmp_path, option):
    cfg = make_cfg(
        f"scheduler={option}", "trainer.epochs=1", "model.hidden=[16]", "trainer.batch_size=256"
    )
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    assert math.isfinite(summary["final"]["train/loss"])
    lr = summary["final"]["lr"]
    assert lr == 0.0 if option in DECAY_TO_ZERO else lr > 0


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
        "linear_decay",
        "wsd",
    } <= set(OPTIONS)
