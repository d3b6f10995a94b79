"""The optimizer group: textbook update rules against torch.optim, weight-decay groups,
and one epoch with every option of optexp/configs/optimizer/."""

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from optexp import checkpoint
from optexp.optim import param_groups, textbook
from optexp.parts import build_parts
from optexp.train import run
from tests.groups import CONFIG_DIR, options

OPTIONS = options(CONFIG_DIR / "optimizer")
TINY = ("trainer.epochs=1", "model.hidden=[16]", "trainer.batch_size=256")


def small_problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A float64 two-layer net and a fixed regression batch: differences show at 1e-6."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    return model, torch.randn(32, 5, dtype=torch.float64), torch.randn(32, 3, dtype=torch.float64)


def train_steps(model, x, y, optimizer, steps):
    """`steps` optimizer steps on mini-batches of 8; the parameters after each step."""
    history = []
    for t in range(steps):
        batch = slice(8 * (t % 4), 8 * (t % 4) + 8)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x[batch]), y[batch]).backward()
        optimizer.step()
        history.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    return history


PAIRS = {
    "sgd": (textbook.SGD, torch.optim.SGD, {"lr": 0.1}),
    "momentum": (textbook.Momentum, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    "adagrad": (textbook.AdaGrad, torch.optim.Adagrad, {"lr": 0.1, "eps": 1e-10}),
    "rmsprop": (textbook.RMSprop, torch.optim.RMSprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-8}),
    "adam": (textbook.Adam, torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-8}),
}


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_textbook_optimizer_follows_torch_for_100_steps(name, weight_decay):
    ours_cls, torch_cls, knobs = PAIRS[name]
    paths = []
    for cls in (ours_cls, torch_cls):
        model, x, y = small_problem()
        # parameter groups as optexp builds them: with decay, biases in an undecayed group
        optimizer = cls(param_groups(model, weight_decay, False), **knobs)
        paths.append(train_steps(model, x, y, optimizer, 100))
    start = torch.cat([p.detach().flatten() for p in small_problem()[0].parameters()])
    assert (paths[0][-1] - start).abs().max() > 1e-2  # it did move
    for t, (ours, theirs) in enumerate(zip(*paths, strict=True)):
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-6), f"{name} differs at step {t + 1}"


def test_textbook_momentum_keeps_past_lrs_in_its_velocity_where_torch_does_not():
    """A constant gradient c, 10 steps at lr 0.1, then one at 0.01: the closed forms differ."""
    c, beta = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.9

    def path(cls):
        theta = nn.Parameter(torch.zeros(2, dtype=torch.float64))
        optimizer = cls([theta], lr=0.1, momentum=beta)
        thetas = []
        for t in range(11):
            optimizer.param_groups[0]["lr"] = 0.1 if t < 10 else 0.01
            optimizer.zero_grad()
            (c * theta).sum().backward()
            optimizer.step()
            thetas.append(theta.detach().clone())
        return thetas

    ours, theirs = path(textbook.Momentum), path(torch.optim.SGD)
    assert torch.allclose(ours[9], theirs[9], rtol=0, atol=1e-12)  # same while lr is constant
    s10 = sum(beta**k for k in range(10))
    # ours: v = beta * (-0.1 * s10 * c) - 0.01 * c; torch: -0.01 * (beta * s10 + 1) * c
    assert torch.allclose(ours[10] - ours[9], -(beta * 0.1 * s10 + 0.01) * c)
    assert torch.allclose(theirs[10] - theirs[9], -0.01 * (beta * s10 + 1) * c)


def test_weight_decay_skips_biases_and_norm_weights_by_default(make_cfg):
    cfg = make_cfg("optimizer=sgd", "optimizer.weight_decay=0.1", "model.batch_norm=true")
    groups = build_parts(cfg).optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert all(p.ndim == 2 for p in groups[0]["params"])
    assert all(p.ndim == 1 for p in groups[1]["params"]) and len(groups[1]["params"]) == 3 * 2 + 1

    cfg = make_cfg(
        "optimizer=sgd",
        "optimizer.weight_decay=0.1",
        "model.batch_norm=true",
        "optimizer.regularize_bias_and_norm=true",
    )
    parts = build_parts(cfg)
    (group,) = parts.optimizer.param_groups
    assert group["weight_decay"] == 0.1
    assert len(group["params"]) == len(list(parts.model.parameters()))


@pytest.mark.parametrize("option", ["sgd", "textbook/sgd", "textbook/adam", "adam"])
def test_decayed_step_shrinks_weights_and_leaves_biases_alone(make_cfg, option):
    """With a zero loss gradient, only weight decay moves the parameters."""
    cfg = make_cfg(f"optimizer={option}", "optimizer.weight_decay=0.1", "model.batch_norm=true")
    parts = build_parts(cfg)
    before = [p.detach().clone() for p in parts.model.parameters()]
    for p in parts.model.parameters():
        p.grad = torch.zeros_like(p)
    parts.optimizer.step()
    for old, new in zip(before, parts.model.parameters(), strict=True):
        if old.ndim == 1:
            assert torch.equal(old, new), "a bias or norm weight was decayed"
        else:
            assert new.norm() < old.norm() * (1 - 1e-5)


def test_gd_takes_one_full_batch_step_per_epoch(make_cfg, tmp_path):
    cfg = make_cfg("optimizer=gd", "trainer.epochs=2", "model.hidden=[16]")
    summary = run(cfg, tmp_path)
    assert summary["global_step"] == 2


@pytest.mark.parametrize("option", OPTIONS)
def test_every_optimizer_option_trains_an_epoch(make_cfg, tmp_path, option):
    cfg = make_cfg(f"optimizer={option}", *TINY)
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    assert math.isfinite(summary["final"]["train/loss"])
    assert summary["final"]["train/loss"] < math.log(10) * 1.5  # not blown up
    state = checkpoint.load(tmp_path / "checkpoints" / "last.pt")  # plain state: resumable
    assert state["optimizer"]["param_groups"][0]["lr"] == cfg.optimizer.lr


def test_every_textbook_optimizer_has_a_config():
    classes = {
        n
        for n, obj in vars(textbook).items()
        if isinstance(obj, type) and obj.__module__ == textbook.__name__
    }
    targets = {OmegaConf.load(CONFIG_DIR / "optimizer" / f"{o}.yaml")._target_ for o in OPTIONS}
    assert {f"optexp.optim.textbook.{c}" for c in classes} <= targets
    assert {"gd", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"} <= set(
        OPTIONS
    )


def test_textbook_state_and_schedule_resume_exactly(make_cfg, tmp_path):
    """Textbook state (Adam's t, m, v) and a warmed-up schedule survive a checkpoint."""
    parts = (
        "optimizer=textbook/adam",
        "scheduler=cyclic_sine",
        "scheduler.warmup_epochs=1",
        "model.hidden=[16]",
        "trainer.batch_size=256",
    )
    straight = run(make_cfg(*parts, "trainer.epochs=3"), tmp_path / "straight")
    run(make_cfg(*parts, "trainer.epochs=1"), tmp_path / "resumed")
    resumed = run(make_cfg(*parts, "trainer.epochs=3"), tmp_path / "resumed")
    assert resumed["global_step"] == straight["global_step"] == 3 * 5
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "lr", "weight_norm"):
        assert resumed["final"][key] == straight["final"][key], key
    assert resumed["test"] == straight["test"]
