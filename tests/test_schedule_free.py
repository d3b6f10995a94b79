"""Schedule-Free through the loop's evaluation weights: validation, the best weights and
the test at x, training at y untouched by how often the run is evaluated, batch norm
recomputed at x, exact resume, and the combinations that would evaluate the wrong weights
refused."""

from __future__ import annotations

import pytest
import torch

from optexp import metrics
from optexp.errors import ConfigError
from optexp.parts import build_parts
from optexp.train import run
from tests.resume import assert_resumes_exactly

SMALL = (
    "optimizer=schedule_free_adamw",
    "optimizer.lr=0.01",
    "trainer.epochs=2",
    "trainer.batch_size=64",
    "trainer.tensorboard=false",
    "trainer.early_stopping.enabled=false",
)


def last_checkpoint(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def validation_loss(make_cfg, overrides, weights) -> float:
    parts = build_parts(make_cfg(*overrides))
    parts.model.load_state_dict(weights)
    return metrics.evaluate(parts, parts.data.val)["loss"]


@pytest.mark.parametrize("option", ["schedule_free_adamw", "schedule_free_sgd"])
def test_validation_is_at_x_as_the_checkpoint_keeps_it_and_not_at_y(make_cfg, tmp_path, option):
    overrides = (*SMALL, f"optimizer={option}")
    summary = run(make_cfg(*overrides), tmp_path)
    state = last_checkpoint(tmp_path)
    at_x = validation_loss(make_cfg, overrides, state["average"]["evaluated"])
    at_y = validation_loss(make_cfg, overrides, state["model"])  # the training weights
    assert summary["final"]["val/loss"] == pytest.approx(at_x, rel=1e-6)
    assert abs(at_x - at_y) > 1e-4  # x and y differ: evaluating y would be another number


def test_the_trajectory_does_not_depend_on_how_often_the_run_is_evaluated(make_cfg, tmp_path):
    """Every 3 steps or once an epoch: the training weights y end bit-equal."""
    run(make_cfg(*SMALL), tmp_path / "epochs")
    run(make_cfg(*SMALL, "trainer.eval_every_steps=3"), tmp_path / "steps")
    epochs, steps = (last_checkpoint(tmp_path / name) for name in ("epochs", "steps"))
    for name, weight in epochs["model"].items():
        assert torch.equal(weight, steps["model"][name]), name


def test_batch_norm_is_recomputed_at_x_without_changing_the_training(make_cfg, tmp_path):
    norm = (*SMALL, "model.batch_norm=true", "model.dropout=0.2")  # dropout: the random state
    recomputed = run(make_cfg(*norm), tmp_path / "recomputed")
    kept = run(make_cfg(*norm, "optimizer.bn_batches=0"), tmp_path / "kept")
    assert recomputed["final"]["val/loss"] != kept["final"]["val/loss"]
    assert recomputed["final"]["train/loss"] == kept["final"]["train/loss"]
    ends = [last_checkpoint(tmp_path / name)["model"] for name in ("recomputed", "kept")]
    assert all(torch.equal(ends[0][name], ends[1][name]) for name in ends[0])


@pytest.mark.parametrize("option", ["schedule_free_adamw", "schedule_free_sgd"])
def test_a_stopped_run_resumes_exactly(make_cfg, tmp_path, monkeypatch, option):
    """Stopped 11 steps into the first epoch of 20, x and y and z saved, resumed."""
    cfg = make_cfg(*SMALL, f"optimizer={option}")
    assert_resumes_exactly(cfg, tmp_path, monkeypatch, stop_at=12)


def test_the_warmed_up_lr_is_logged_as_lr_scheduled(make_cfg, tmp_path):
    summary = run(make_cfg(*SMALL, "optimizer.warmup_steps=1000"), tmp_path)
    steps = summary["global_step"]
    assert summary["final"]["lr"] == 0.01
    assert summary["final"]["lr/scheduled"] == pytest.approx(0.01 * steps / 1000)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (("trainer.ema.enabled=true",), "trainer.ema.enabled"),
        (("trainer.swa.enabled=true",), "trainer.swa.enabled"),
        (("scheduler=cosine",), "scheduler"),
        (("scheduler.warmup_epochs=1",), "scheduler"),
        (("optimizer=sam", "optimizer.base=schedulefree.SGDScheduleFree"), "optimizer.base"),
    ],
)
def test_what_would_evaluate_the_wrong_weights_is_refused(make_cfg, overrides, key):
    with pytest.raises(ConfigError) as refused:
        build_parts(make_cfg(*SMALL, *overrides))
    assert refused.value.key == key


def test_the_command_line_refuses_a_schedule_in_one_line(optexp_cli):
    result = optexp_cli("optimizer=schedule_free_sgd", "scheduler=cosine", "trainer.epochs=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line, hint = result.stderr.splitlines()  # the error, and how to see its traceback
    assert line.startswith("optexp: error: scheduler=cosine would change the lr")
    assert "optimizer.warmup_steps" in line and "OPTEXP_DEBUG" in hint
