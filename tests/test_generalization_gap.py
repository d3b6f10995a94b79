"""The training split's metrics a run records for the generalization gap (`train_eval`):
the same weights as the test, in evaluation mode, over the whole training split; not the
running average of the epoch, taken with dropout on and the weights still moving."""

import json

import pytest
import torch
from torch import nn

from optexp import checkpoint
from optexp.parts import build_parts
from optexp.train import run


def clean_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Loss and accuracy of `model` on (x, y) in evaluation mode, written here apart
    from optexp's own evaluation."""
    model.eval()
    with torch.no_grad():
        out = model(x)
    return {
        "loss": nn.functional.cross_entropy(out, y).item(),
        "acc": (out.argmax(1) == y).float().mean().item(),
    }


def test_train_eval_is_a_clean_pass_over_the_training_split_with_the_tested_weights(
    make_cfg, tmp_path
):
    cfg = make_cfg("model.dropout=0.5", "trainer.epochs=2", "trainer.test_weights=last")
    run(cfg, tmp_path)
    summary = json.loads((tmp_path / "metrics.json").read_text())

    parts = build_parts(cfg)
    parts.model.load_state_dict(checkpoint.load(tmp_path / "checkpoints" / "last.pt")["model"])
    expected = clean_pass(parts.model, parts.data.train.x, parts.data.train.y)
    assert summary["train_eval"] == pytest.approx(expected, rel=1e-5)
    # the epoch's running figure (dropout on) is another number
    assert summary["final"]["train/acc"] != pytest.approx(expected["acc"], abs=1e-3)
