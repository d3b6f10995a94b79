"""The regularizer group: penalties against hand-computed sums, which parameters they see,
and one epoch with every option of optexp/configs/regularizer/."""

import math

import pytest
import torch
from torch import nn

from optexp.parts import build_parts
from optexp.regularizers import NormPenalty
from optexp.train import run
from tests.groups import CONFIG_DIR, options

OPTIONS = options(CONFIG_DIR / "regularizer")


@pytest.fixture
def model() -> nn.Module:
    """Linear(2, 2) -> BatchNorm1d(2) -> Linear(2, 1) with values small enough to sum by hand."""
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Linear(2, 1))
    values = [
        [[1.0, -2.0], [3.0, -4.0]],  # weight 1: |.| sums to 10, squares to 30
        [5.0, -6.0],  # bias 1
        [1.0, 1.0],  # batch-norm scale (1-D, like a bias)
        [0.0, 0.0],  # batch-norm shift
        [[0.5, -0.5]],  # weight 2: |.| sums to 1, squares to 0.5
        [7.0],  # bias 2
    ]
    with torch.no_grad():
        for p, v in zip(net.parameters(), values, strict=True):
            p.copy_(torch.tensor(v))
    return net


@pytest.mark.parametrize(
    ("l1", "l2", "include", "expected"),
    [
        (0.1, 0.0, False, 0.1 * 11),  # weights only: |.| sums to 10 + 1
        (0.0, 0.01, False, 0.01 * 30.5),  # squares: 30 + 0.5
        (0.1, 0.01, False, 0.1 * 11 + 0.01 * 30.5),
        # with biases and norm weights: |.| adds 5 + 6 + 1 + 1 + 7 = 20, squares 25+36+1+1+49
        (0.1, 0.0, True, 0.1 * 31),
        (0.0, 0.01, True, 0.01 * 142.5),
        (0.1, 0.01, True, 0.1 * 31 + 0.01 * 142.5),
    ],
)
def test_penalty_equals_the_hand_computed_sum(model, l1, l2, include, expected):
    penalty = NormPenalty(model, l1=l1, l2=l2, regularize_bias_and_norm=include)
    assert penalty().item() == pytest.approx(expected, rel=1e-6)


def test_excluded_parameters_get_no_penalty_gradient(model):
    NormPenalty(model, l1=0.1, l2=0.01)().backward()
    weight, bias, scale, shift, weight2, bias2 = model.parameters()
    assert all(p.grad is None for p in (bias, scale, shift, bias2))
    # d/dtheta (l1 |theta| + l2 theta^2) = l1 sign(theta) + 2 l2 theta
    for w in (weight, weight2):
        assert torch.allclose(w.grad, 0.1 * w.sign() + 0.02 * w)


def test_regularize_bias_and_norm_penalizes_every_parameter(model):
    NormPenalty(model, l2=0.5, regularize_bias_and_norm=True)().backward()
    for p in model.parameters():
        assert torch.allclose(p.grad, p.detach())  # 2 * 0.5 * theta


@pytest.mark.parametrize(("option", "l1", "l2"), [("l1", 1e-4, 0), ("l2", 0, 1e-4)])
def test_config_builds_the_penalty_on_weights_only(make_cfg, option, l1, l2):
    parts = build_parts(make_cfg(f"regularizer={option}", "model.batch_norm=true"))
    assert (parts.penalty.l1, parts.penalty.l2) == (l1, l2)
    weights = [p for p in parts.model.parameters() if p.ndim > 1]
    assert [id(p) for p in parts.penalty.params] == [id(p) for p in weights]
    by_hand = sum(l1 * p.abs().sum() + l2 * p.square().sum() for p in weights)
    assert parts.penalty().item() == pytest.approx(by_hand.item(), rel=1e-6)


@pytest.mark.parametrize("option", OPTIONS)
def test_every_regularizer_option_trains_an_epoch_and_logs_its_penalty(make_cfg, tmp_path, option):
    cfg = make_cfg(
        f"regularizer={option}", "trainer.epochs=1", "model.hidden=[16]", "trainer.batch_size=256"
    )
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    final = summary["final"]
    assert math.isfinite(final["train/loss"]) and math.isfinite(final["train/penalty"])
    assert (final["train/penalty"] > 0) == (option != "none")


def test_catalogue_has_every_regularizer_of_techniques_md():
    assert {"none", "l1", "l2", "elastic_net"} <= set(OPTIONS)
