"""End-to-end runs of the loop on the bundled digits, read back from what they leave behind."""

import json
import math
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from optexp import checkpoint, train
from optexp.metrics import evaluate
from optexp.parts import build_parts
from optexp.train import run

TAGS = ("train/loss", "train/acc", "val/loss", "val/acc", "lr", "grad_norm", "time/epoch_s")


def scalars(run_dir, tag):
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_two_epoch_run_leaves_metrics_checkpoints_and_events(make_cfg, tmp_path):
    summary = run(make_cfg("trainer.epochs=2"), tmp_path)

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(summary))
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 2
    assert metrics["best_epoch"] in (1, 2) and metrics["seed"] == 0
    assert 0 < metrics["test"]["loss"] < math.log(10) and 0.1 < metrics["test"]["acc"] <= 1
    assert metrics["best"]["val/loss"] <= metrics["final"]["val/loss"]
    assert set(metrics["versions"]) >= {"python", "torch", "optexp"}

    last = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert last["progress"]["epoch"] == 2 and last["progress"]["step"] == 2 * math.ceil(1258 / 64)
    assert set(last) >= {
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "early_stopping",
        "rng",
        "config",
    }
    assert json.loads(last["config"])["trainer"]["epochs"] == 2
    assert (tmp_path / "checkpoints" / "best.pt").is_file()

    for tag in TAGS:
        steps = [step for step, _ in scalars(tmp_path, tag)]
        assert steps == [1, 2], tag
    val_loss = [v for _, v in scalars(tmp_path, "val/loss")]
    assert val_loss[-1] == pytest.approx(metrics["final"]["val/loss"], rel=1e-6)
    assert [v for _, v in scalars(tmp_path, "lr")] == pytest.approx([1e-3, 1e-3])


# The default experiment's first three epochs on a CPU, one thread (conftest), recorded
# at 0ad1298 before the loop was restructured: a change that moves the numbers fails here
# (torchtune's regression-test habit). The tolerance admits other CPUs' rounding only.
PINNED = {"train/loss": 0.99298086, "val/loss": 0.68548571, "test/loss": 0.73023243}


def test_default_experiment_gives_the_pinned_losses(make_cfg, tmp_path):
    summary = run(make_cfg("trainer.epochs=3", "trainer.tensorboard=false"), tmp_path)
    final = summary["final"] | {"test/loss": summary["test"]["loss"]}
    assert {k: final[k] for k in PINNED} == pytest.approx(PINNED, rel=1e-5)


def test_default_experiment_reaches_the_accuracy_target(make_cfg, tmp_path):
    summary = run(make_cfg(), tmp_path)
    assert summary["status"] in ("completed", "early_stopped")
    assert summary["test"]["acc"] >= 0.95


def test_same_seed_gives_identical_metrics(make_cfg, tmp_path):
    cfg = make_cfg("trainer.epochs=2", "model.dropout=0.2")
    first = run(cfg, tmp_path / "a")
    second = run(cfg, tmp_path / "b")
    assert (
        first["test"] == second["test"]
        and first["final"]["train/loss"] == second["final"]["train/loss"]
    )
    other = run(make_cfg("trainer.epochs=2", "model.dropout=0.2", "seed=1"), tmp_path / "c")
    assert other["final"]["train/loss"] != first["final"]["train/loss"]


@pytest.mark.parametrize("test_weights", ["best", "last"])
def test_early_stopping_fires_on_a_plateau_and_tests_the_chosen_weights(
    make_cfg, tmp_path, test_weights
):
    # min_delta larger than any possible gain: epoch 1 stays best, the run stops 2 epochs later.
    cfg = make_cfg(
        "trainer.epochs=20",
        "trainer.early_stopping.patience=2",
        "trainer.early_stopping.min_delta=100",
        "optimizer.lr=0.01",
        f"trainer.test_weights={test_weights}",
    )
    summary = run(cfg, tmp_path)
    assert summary["status"] == "early_stopped" and summary["test_weights"] == test_weights
    assert summary["best_epoch"] == 1 and summary["epochs_completed"] == 3

    parts = build_parts(cfg)
    test_with = {}
    for name in ("best", "last"):
        parts.model.load_state_dict(
            checkpoint.load(tmp_path / "checkpoints" / f"{name}.pt")["model"]
        )
        test_with[name] = evaluate(parts, parts.data.test)
    assert summary["test"] == pytest.approx(test_with[test_weights])
    assert test_with["best"]["loss"] != pytest.approx(test_with["last"]["loss"])


def test_bf16_autocast_trains_on_cpu(make_cfg, tmp_path):
    summary = run(
        make_cfg("trainer.epochs=2", "trainer.precision=bf16", "trainer.device=cpu"), tmp_path
    )
    assert summary["status"] == "completed"
    assert summary["test"]["acc"] > 0.5  # bf16 is coarse, but it learns


def test_gradient_clipping_bounds_the_update(make_cfg, tmp_path):
    clipped = run(
        make_cfg(
            "trainer.epochs=1", "trainer.grad_clip=0.01", "optimizer=adam", "optimizer.lr=0.01"
        ),
        tmp_path / "clip",
    )
    free = run(make_cfg("trainer.epochs=1", "optimizer.lr=0.01"), tmp_path / "free")
    assert clipped["final"]["grad_norm"] > 0.01  # the measured norm is before clipping
    assert clipped["final"]["train/loss"] != free["final"]["train/loss"]


def test_debug_preset_trains_two_batches_with_anomaly_detection(make_cfg, tmp_path, monkeypatch):
    seen = []

    def build_spying(cfg, world=None):
        parts = build_parts(cfg, world)
        loss_fn = parts.loss_fn

        def spy(out, y):
            seen.append((torch.is_anomaly_enabled(), len(y)))
            return loss_fn(out, y)

        parts.loss_fn = spy
        return parts

    monkeypatch.setattr(train, "build_parts", build_spying)
    summary = run(make_cfg("debug=default", "trainer.tensorboard=false"), tmp_path)
    assert summary["status"] == "completed" and summary["global_step"] == 2
    assert seen[:2] == [(True, 64), (True, 64)]  # training batches: 2 x trainer.batch_size
    # validation, test and the clean pass over the training split: 128 samples each
    assert sum(n for _, n in seen[2:]) == 3 * 128
    assert not torch.is_anomaly_enabled()  # switched off again after the run


def test_layer_statistics_match_the_weights_and_histograms_come_when_asked(make_cfg, tmp_path):
    first = run(make_cfg("trainer.epochs=1", "trainer.histograms_every=2"), tmp_path)
    start = checkpoint.load(tmp_path / "checkpoints" / "last.pt")["model"]  # after epoch 1
    # Event files are read in name order: the second they were made, then host, pid and a
    # per-process counter that sorts 10 before 9. A new second keeps the resumed run's last
    # (a flaky failure under xdist, seen in a fresh venv).
    time.sleep(1.1)
    run(make_cfg("trainer.epochs=2", "trainer.histograms_every=2"), tmp_path)  # resumed
    end = checkpoint.load(tmp_path / "checkpoints" / "last.pt")["model"]

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    value = {
        tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]
    }
    for name, weight in end.items():
        assert value[f"weight_norm/{name}"][2] == pytest.approx(weight.norm().item(), rel=1e-5)
        ratio = (weight - start[name]).norm() / weight.norm()
        assert value[f"update_ratio/{name}"][2] == pytest.approx(ratio.item(), rel=1e-4)
        assert sorted(value[f"update_ratio/{name}"]) == [1, 2]  # each epoch once
    global_grad = math.sqrt(sum(value[f"grad_norm/{name}"][2] ** 2 for name in end))
    assert value["grad_norm"][2] == pytest.approx(global_grad, rel=1e-5)

    assert {"weights/1.weight", "gradients/1.weight"} <= set(events.Tags()["histograms"])
    assert [e.step for e in events.Histograms("weights/1.weight")] == [2]  # every 2nd epoch
    assert not any("/1.weight" in key for key in first["final"])  # TensorBoard only


def test_every_stateful_part_is_in_the_checkpoint_registry(make_cfg):
    """A part of `Parts` holding state that `state.PARTS` does not name would be lost on
    resume: every field with a non-empty state_dict must be registered, and every
    registered name must be such a field, under one key each."""
    import dataclasses

    from optexp.parts import build_parts
    from optexp.state import PARTS

    parts = build_parts(make_cfg("trainer.ema.enabled=true", "scheduler=cosine"))
    fields = {f.name: getattr(parts, f.name) for f in dataclasses.fields(parts)}
    has_state = {name for name, part in fields.items() if hasattr(part, "state_dict")}
    holds_state = {name for name in has_state if fields[name].state_dict()}
    assert {"model", "optimizer", "schedule", "weights"} <= holds_state
    assert holds_state - {"forward"} <= set(PARTS.values()) <= has_state  # forward: the model
    assert len(set(PARTS.values())) == len(PARTS)
