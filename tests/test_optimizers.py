"""The optimizer group: textbook update rules against torch.optim, weight-decay groups,
the options of other packages (NAdamW, Lion, ADOPT, SOAP, Prodigy) against their
definitions, and one epoch with every option of optexp/configs/optimizer/."""

import math
import warnings
from importlib import metadata

import prodigyopt
import pytest
import pytorch_optimizer
import torch
from omegaconf import OmegaConf
from torch import nn

from optexp import checkpoint
from optexp.checks import check_config
from optexp.config import UserError
from optexp.errors import Advice
from optexp.optim import param_groups, textbook
from optexp.parts import OWN_KEYS, build_optimizer, build_parts
from optexp.provenance import OPTIMIZER_PACKAGES, versions
from optexp.train import run
from tests.groups import CONFIG_DIR, options
from tests.resume import assert_resumes_exactly

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


PACKAGED = {
    "nadamw": torch.optim.NAdam,
    "lion": pytorch_optimizer.Lion,
    "adopt": pytorch_optimizer.ADOPT,
    "soap": pytorch_optimizer.SOAP,
    "prodigy": prodigyopt.Prodigy,
}


def option_node(option: str):
    """The option's values as its file writes them (less Hydra's defaults list, which
    links its search space)."""
    node = OmegaConf.load(CONFIG_DIR / "optimizer" / f"{option}.yaml")
    node.pop("defaults", None)
    return node


@pytest.mark.parametrize("option", PACKAGED)
def test_a_packaged_option_builds_its_class_with_the_values_of_its_file(make_cfg, option):
    """Every knob of the file reaches the optimizer (training: the every-option test)."""
    optimizer = build_parts(make_cfg(f"optimizer={option}", "model.hidden=[16]")).optimizer
    assert type(optimizer) is PACKAGED[option]
    node = OmegaConf.to_container(option_node(option))
    knobs = {k: v for k, v in node.items() if k != "_target_" and k not in OWN_KEYS["optimizer"]}
    for key, value in knobs.items():
        # SOAP keeps data_format on itself, not in its defaults
        built = optimizer.defaults.get(key, getattr(optimizer, key, None))
        assert (list(built) if isinstance(built, tuple) else built) == value, key


def test_nadamw_steps_as_torch_nadam_with_decoupled_decay_and_not_without():
    """The file selects decoupled decay, and a momentum of b1 from the first step (as
    AlgoPerf's NAdamW; torch's default momentum_decay starts at b1 / 2)."""
    node = option_node("nadamw")
    knobs = {k: node[k] for k in ("lr", "eps", "weight_decay", "momentum_decay")}
    paths = {}
    for name in ("option", "decoupled", "coupled"):
        model, x, y = small_problem()
        model[0].weight.data.mul_(20)  # large weights: their decay shows within 20 steps
        if name == "option":
            optimizer = build_optimizer(node, model, torch.device("cpu"))
        else:
            optimizer = torch.optim.NAdam(
                param_groups(model, knobs["weight_decay"], False),
                betas=tuple(node.betas),
                decoupled_weight_decay=name == "decoupled",
                **knobs,
            )
        paths[name] = train_steps(model, x, y, optimizer, 20)
        mu_product = optimizer.state[model[0].weight]["mu_product"]  # prod of momenta
        assert math.isclose(mu_product, node.betas[0] ** 20, rel_tol=1e-6)  # float32
    for t, (ours, theirs) in enumerate(zip(paths["option"], paths["decoupled"], strict=True)):
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-12), f"differs at step {t + 1}"
    assert (paths["option"][-1] - paths["coupled"][-1]).abs().max() > 1e-6


def test_lion_steps_by_the_sign_of_its_interpolated_momentum():
    """Chen et al. 2023, Program 1: u = sign(b1 * m + (1 - b1) * g); m = b2 * m + (1 - b2)
    * g; theta -= lr * (u + weight_decay * theta). With m0 = 0 the first step is the sign
    of the gradient; the second shows which beta does what."""
    node = option_node("lion")
    lr, wd, (b1, b2) = node.lr, node.weight_decay, node.betas
    model, x, y = small_problem()
    optimizer = build_optimizer(node, model, torch.device("cpu"))
    momentum = [torch.zeros_like(p) for p in model.parameters()]
    for t in range(2):
        before = [p.detach().clone() for p in model.parameters()]
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x[8 * t : 8 * t + 8]), y[8 * t : 8 * t + 8]).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        optimizer.step()
        for p, old, g, m in zip(model.parameters(), before, grads, momentum, strict=True):
            decay = wd if p.ndim > 1 else 0.0  # optexp's groups: no decay on biases
            step = torch.sign(b1 * m + (1 - b1) * g)
            if t == 0:
                assert torch.equal(step, torch.sign(g))
            assert torch.allclose(p, old * (1 - lr * decay) - lr * step, rtol=0, atol=1e-15)
            m.mul_(b2).add_(g, alpha=1 - b2)


def test_prodigy_warns_of_an_lr_far_from_1(make_cfg):
    with pytest.warns(Advice, match=r"optimizer.lr=0.01 with prodigyopt.Prodigy: .*learning-rate"):
        check_config(make_cfg("optimizer=prodigy", "optimizer.lr=0.01"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_config(make_cfg("optimizer=prodigy"))  # lr=1
        check_config(make_cfg("optimizer=adam", "optimizer.lr=0.01"))  # not Prodigy


@pytest.mark.parametrize("option", ["adam", "sgd", "nadamw", "lion", "soap"])
def test_a_wrong_optimizer_switch_is_refused_before_torch_sees_it(make_cfg, option):
    """`maximize=[1]` once reached torch's fused Adam as a list, and ended in a traceback."""
    with pytest.raises(UserError, match=r"^optimizer.maximize=\[1\] is not allowed.*true \| false"):
        check_config(make_cfg(f"optimizer={option}", "+optimizer.maximize=[1]"))
    check_config(make_cfg(f"optimizer={option}", "+optimizer.maximize=true"))


def test_metrics_json_records_the_optimizer_packages_versions():
    recorded = versions()
    for name in OPTIMIZER_PACKAGES:
        assert recorded[name] == metadata.version(name)
    assert list(recorded).index("torch") < list(recorded).index("pytorch_optimizer")


@pytest.mark.parametrize("option", ["prodigy", "soap"])
def test_optimizers_with_state_of_their_own_resume_exactly(make_cfg, tmp_path, monkeypatch, option):
    """Prodigy's d and its running sums, SOAP's eigenbases and their refresh count: saved
    after 5 steps, mid-epoch, and resumed: the run ends where the uninterrupted one does."""
    cfg = make_cfg(f"optimizer={option}", "model.hidden=[16]", "trainer.epochs=2")
    assert_resumes_exactly(cfg, tmp_path, monkeypatch, stop_at=6)


def test_prodigys_estimated_step_size_is_logged(make_cfg, tmp_path):
    """lr/d: what Prodigy's step really is scaled by (its lr only multiplies it)."""
    summary = run(make_cfg("optimizer=prodigy", *TINY), tmp_path)
    assert summary["final"]["lr"] == 1.0
    assert summary["final"]["lr/d"] > 1e-6  # grown from its d0 = 1e-6 by the first epoch
