"""MNIST-1D from the mnist1d package's generator: the same arrays every time, cached in
data_dir, split by data_seed; the MNIST-1D paper's CNN trains on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optexp import models
from optexp.config import ConfigError
from optexp.data import generated as datasets

SMALL = 200  # samples: 160 train, 40 test


def test_two_generations_give_identical_arrays(tmp_path):
    first = datasets.mnist1d_arrays(tmp_path / "a", SMALL, 42)
    second = datasets.mnist1d_arrays(tmp_path / "b", SMALL, 42)
    assert first.keys() == {"x", "y", "x_test", "y_test"}
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert first["x"].shape == (160, 40) and first["x_test"].shape == (40, 40)
    other = datasets.mnist1d_arrays(tmp_path / "c", SMALL, 43)
    assert not np.array_equal(first["x"], other["x"])


def test_the_cache_is_written_once_and_then_read(tmp_path, monkeypatch):
    made = datasets.mnist1d_arrays(tmp_path, SMALL, 42)
    (cached,) = tmp_path.glob("mnist1d_n200_seed42_*.npz")

    def no_generation(args):
        raise AssertionError("generated again although the cache exists")

    monkeypatch.setattr(datasets, "_generate_mnist1d", no_generation)
    loaded = datasets.mnist1d_arrays(tmp_path, SMALL, 42)
    np.testing.assert_array_equal(loaded["x"], made["x"])
    assert list(tmp_path.iterdir()) == [cached]  # no partial files left behind


def test_generation_leaves_the_global_random_state_alone(tmp_path):
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    datasets.mnist1d_arrays(tmp_path, SMALL, 42)  # make_dataset seeds numpy with 42
    assert np.random.rand() == expected


def test_signals_are_one_channel_and_validation_follows_data_seed(tmp_path):
    data = datasets.mnist1d(str(tmp_path), num_samples=SMALL, val_fraction=0.25, seed=0)
    assert data.input_shape == (1, 40) and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (120, 40, 40)
    again = datasets.mnist1d(str(tmp_path), num_samples=SMALL, val_fraction=0.25, seed=0)
    other = datasets.mnist1d(str(tmp_path), num_samples=SMALL, val_fraction=0.25, seed=1)
    assert torch.equal(data.val.x, again.val.x) and not torch.equal(data.val.x, other.val.x)
    assert torch.equal(data.test.x, other.test.x)  # the package's own test part


def test_cnn1d_defaults_are_the_papers_cnn():
    model = models.cnn1d((1, 40), 10)
    convolutions = [m for m in model if isinstance(m, torch.nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convolutions] == [
        (25, 5, 2),
        (25, 3, 2),
        (25, 3, 2),
    ]
    assert model[-1].in_features == 125  # 25 channels x 5 positions
    assert sum(p.numel() for p in model.parameters()) == 5210
    assert model(torch.randn(3, 1, 40)).shape == (3, 10)


def test_cnn1d_knobs_and_refusals():
    model = models.cnn1d((2, 64), 4, channels=[8, 8], kernel_sizes=[3, 3], batch_norm=True)
    assert model(torch.randn(5, 2, 64)).shape == (5, 4)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model)
    for shape in [(1, 8, 8), (40,)]:
        with pytest.raises(ConfigError, match=r"needs inputs shaped \(C, L\)"):
            models.cnn1d(shape, 10)
    with pytest.raises(ConfigError, match="kernel_sizes"):
        models.cnn1d((1, 40), 10, channels=[8], kernel_sizes=[3, 3])


def test_cnn1d_trains_on_mnist1d(make_cfg, tmp_path):
    from optexp.train import run

    cfg = make_cfg(
        "dataset=mnist1d",
        "model=cnn1d",
        f"data_dir={tmp_path}",
        "dataset.num_samples=1000",
        "optimizer.lr=1e-2",
        "trainer.epochs=8",
        "trainer.batch_size=50",
        "trainer.tensorboard=false",
        "trainer.checkpoint.keep_best=false",
    )
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    first, last = summary["best"], summary["final"]
    assert last["train/loss"] < 1.5 and summary["test"]["acc"] > 0.3  # chance is 0.1
    assert first["val/acc"] > 0.3
