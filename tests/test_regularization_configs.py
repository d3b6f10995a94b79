"""The regularization study's configs: every option of regularization/ composes with each
problem built to overfit and its search space parses; a method that does not apply, a
strength out of range and a method typed before its problem are refused in one line;
dataset.train_size trains on a small split and leaves validation and test alone."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from optexp.checks import check_config
from optexp.config import ConfigError
from optexp.data import datasets, generated
from optexp.search_space import specs, with_trial
from tests.groups import CONFIG_DIR, options
from tests.test_presets import sweep_params

METHODS = options(CONFIG_DIR / "regularization")
PROBLEMS = ("digits_small_mlp", "digits_small_cnn", "mnist1d_small_mlp")
PAIRS = {"weight_decay_dropout": ("weight_decay", "dropout"),
         "augmentation_dropout": ("augmentation", "dropout")}  # fmt: skip


def study_cfg(make_cfg, problem: str, method: str, *more: str):
    return make_cfg("experiment=study_regularizers", f"+problem={problem}",
                    f"+regularization={method}", *more)  # fmt: skip


@pytest.mark.parametrize("method", METHODS)
def test_every_method_composes_and_its_trials_set_keys_of_the_config(make_cfg, method):
    cfg = study_cfg(make_cfg, "digits_small_cnn", method)
    check_config(cfg)
    searched = list(specs(cfg.search_space))
    assert searched, "a method needs a space (a fixed value if nothing is searched)"
    assert "optimizer.lr" not in {s.key for s in searched}  # the base's space is dropped
    for s in searched:
        assert OmegaConf.select(cfg, s.key) is not None, s.key
    for trial in ("defaults", 0, 5):
        check_config(with_trial(study_cfg(make_cfg, "digits_small_cnn", method,
                                          f"study.trial={trial}")))  # fmt: skip


@pytest.mark.parametrize("pair", PAIRS)
def test_a_pair_is_its_two_methods_and_the_union_of_their_spaces(make_cfg, pair):
    keys = {s.key for s in specs(study_cfg(make_cfg, "digits_small_mlp", pair).search_space)}
    singles = [study_cfg(make_cfg, "digits_small_mlp", m).search_space for m in PAIRS[pair]]
    assert keys == {s.key for space in singles for s in specs(space)}


def test_the_method_wins_over_the_problems_base(make_cfg):
    cfg = study_cfg(make_cfg, "digits_small_mlp", "weight_decay")
    assert cfg.optimizer.weight_decay == 0.01 and cfg.optimizer._target_ == "torch.optim.AdamW"
    cfg = study_cfg(make_cfg, "digits_small_mlp", "early_stopping")
    assert cfg.trainer.early_stopping.enabled and cfg.trainer.test_weights == "best"
    base = study_cfg(make_cfg, "digits_small_mlp", "none")
    assert base.optimizer.weight_decay == 0.0 and not base.trainer.early_stopping.enabled


@pytest.mark.parametrize("problem", PROBLEMS)
def test_each_problem_overfits_by_construction(make_cfg, problem):
    cfg = make_cfg(f"+problem={problem}")
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.optimizer.weight_decay == 0
    assert cfg.trainer.test_weights == "last" and not cfg.trainer.early_stopping.enabled
    assert cfg.dataset.train_size is not None


def test_the_presets_sweep_every_method_and_the_small_one_is_small():
    full = sweep_params("study_regularizers")
    signals = sweep_params("study_regularizers_mnist1d")
    assert set(full["+regularization"]) == set(METHODS)
    assert set(full["+regularization"]) - set(signals["+regularization"]) == {
        "augmentation", "mixup", "cutmix", "augmentation_dropout"}  # fmt: skip
    assert set(full["+problem"]) | set(signals["+problem"]) == set(PROBLEMS)
    assert full["study.trial"][0] == "defaults" and len(full["study.trial"]) >= 9
    assert len(full["study.index"]) >= 3
    assert list(full)[:2] == ["+problem", "+regularization"]  # the method after its problem
    small = sweep_params("study_regularizers_small")
    runs = 1
    for values in small.values():
        runs *= len(values)
    assert runs == 64 and {"none", "dropout", "weight_decay"} <= set(small["+regularization"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("model=linear", "+regularization=batch_norm"),
         "model.batch_norm=True is not a parameter of model=linear"),
        (("dataset=wine", "+regularization=augmentation"),
         "augmentation=flip_rotate_jitter needs inputs shaped (C, H, W)"),
        (("dataset=wine", "+regularization=cutmix"), "augmentation=cutmix needs inputs shaped"),
        (("+problem=digits_small_mlp", "+regularization=dropout", "model.dropout=1.5"),
         "model.dropout=1.5 is not allowed. Allowed: a number in [0, 1)"),
        (("+problem=digits_small_mlp", "+regularization=label_smoothing",
          "loss.label_smoothing=2"), "loss.label_smoothing=2 is not allowed"),
        (("+regularization=weight_decay", "+problem=digits_small_mlp"),
         "regularization=weight_decay comes before +problem"),
        (("dataset.train_size=5000",), "dataset.train_size=5000 is not allowed"),
    ],
)  # fmt: skip
def test_what_does_not_apply_is_refused_in_one_line_before_anything_is_written(
    optexp_cli, tmp_path, args, message
):
    result = optexp_cli(*args, "trainer.epochs=1")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.splitlines()[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_train_size_takes_the_head_of_the_training_split_only():
    whole, small = datasets.digits(seed=3), datasets.digits(seed=3, train_size=50)
    assert len(small.train) == 50 and torch.equal(small.train.x, whole.train.x[:50])
    assert torch.equal(small.val.x, whole.val.x) and torch.equal(small.test.x, whole.test.x)
    for bad in (1, len(whole.train) + 1):
        with pytest.raises(ConfigError, match=r"dataset\.train_size"):
            datasets.digits(train_size=bad)


def test_train_size_on_mnist1d(tmp_path, monkeypatch):
    def arrays(root, num_samples, generator_seed):
        x = torch.randn(num_samples, 40, generator=torch.Generator().manual_seed(0)).numpy()
        y = (torch.arange(num_samples) % 10).numpy()
        return {"x": x[:80], "y": y[:80], "x_test": x[80:], "y_test": y[80:]}

    monkeypatch.setattr(generated, "mnist1d_arrays", arrays)
    whole = generated.mnist1d(str(tmp_path), num_samples=100)
    small = generated.mnist1d(str(tmp_path), num_samples=100, train_size=20)
    assert len(small.train) == 20 and torch.equal(small.train.x, whole.train.x[:20])
    assert torch.equal(small.val.x, whole.val.x) and torch.equal(small.test.x, whole.test.x)
