"""The losses against hand computations, and their configs."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from optexp.config import ConfigError
from optexp.losses import MSELoss
from optexp.parts import build, build_parts

OUT = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.5]])
LABELS = torch.tensor([0, 2])


def test_mse_compares_class_labels_as_one_hot_rows():
    # one-hot rows [1, 0, 0] and [0, 0, 1]; squared errors summed, then over 6 elements
    by_hand = ((2 - 1) ** 2 + 0.5**2 + 1**2 + 0**2 + 1**2 + (0.5 - 1) ** 2) / 6
    assert MSELoss()(OUT, LABELS).item() == pytest.approx(by_hand)


def test_mse_compares_regression_targets_directly_whatever_the_output_column():
    out, y = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.5, 2.0, 1.0])
    assert MSELoss()(out, y).item() == pytest.approx((0.25 + 0 + 9) / 3)
    wide = torch.tensor([[1.0, 0.0], [3.0, 1.0]])
    assert MSELoss()(wide, torch.zeros(2, 2)).item() == pytest.approx((1 + 0 + 9 + 1) / 4)


def test_hinge_is_the_multi_class_margin_loss(make_cfg):
    hinge = build("loss", make_cfg("loss=hinge").loss)
    assert isinstance(hinge, nn.MultiMarginLoss) and hinge.margin == 1.0
    # sample 0, y=0: max(0, 1 - 2 + 0.5) + max(0, 1 - 2 - 1) = 0;
    # sample 1, y=2: max(0, 1 - 0.5 + 0) + max(0, 1 - 0.5 + 1) = 0.5 + 1.5; each / 3 classes
    by_hand = (0 + (0.5 + 1.5) / 3) / 2
    assert hinge(OUT, LABELS).item() == pytest.approx(by_hand)
    squared = build("loss", make_cfg("loss=hinge", "loss.p=2", "loss.margin=2").loss)
    # margin 2: sample 0: (2 - 2 + 0.5)^2 + 0; sample 1: (2 - 0.5)^2 + (2 - 0.5 + 1)^2
    by_hand = (0.25 / 3 + (2.25 + 6.25) / 3) / 2
    assert squared(OUT, LABELS).item() == pytest.approx(by_hand)


def test_mse_config_builds_the_one_hot_aware_loss(make_cfg):
    assert isinstance(build("loss", make_cfg("loss=mse").loss), MSELoss)


@pytest.mark.parametrize("loss", ["cross_entropy", "hinge"])
def test_classification_losses_are_refused_for_regression(make_cfg, loss):
    cfg = make_cfg("dataset=synthetic", "dataset.task=regression", f"loss={loss}")
    with pytest.raises(ConfigError, match="mse for a regression dataset"):
        build_parts(cfg)


def test_a_nested_target_inside_a_part_is_built_by_hydra():
    node = OmegaConf.create(
        {"_target_": "torch.nn.CrossEntropyLoss", "weight": {"_target_": "torch.ones", "size": [3]}}
    )
    loss = build("loss", node)
    assert isinstance(loss, nn.CrossEntropyLoss) and torch.equal(loss.weight, torch.ones(3))
