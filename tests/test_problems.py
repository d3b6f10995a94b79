"""The optimizer study's problems: their models (a GRU for signals, DeepOBS's noisy
quadratic, a token transformer), their generated data, and the preset that sweeps them
with the data varying along with the seed."""

from __future__ import annotations

import pytest
import torch

from optexp import models
from optexp.config import ConfigError
from optexp.data import generated
from optexp.losses import MSELoss
from tests.test_presets import sweep_params


def test_gru_reads_a_signal_one_position_at_a_time():
    for both in (True, False):
        model = models.gru((1, 40), 10, hidden=8, bidirectional=both)
        assert model(torch.randn(5, 1, 40)).shape == (5, 10)
        assert model.head.in_features == 8 * (2 if both else 1)
    with pytest.raises(ConfigError) as raised:
        models.gru((1, 8, 8), 10)
    assert raised.value.key == "model" and "inputs shaped (C, L)" in str(raised.value)


def test_the_noisy_quadratic_is_deepobs_loss_with_its_spectrum():
    data = generated.noisy_quadratic(dim=20, n_samples=100, seed=3)
    assert data.num_classes is None and data.num_outputs == 20 and len(data.train) == 50
    assert torch.equal(data.train.y, torch.zeros(50, 20))
    model = models.quadratic((20,), 20, hessian_seed=42)
    root = model.root.double()
    hessian = root @ root.T * 2 / 20  # root = R sqrt(diag(lambda)) sqrt(d / 2)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    assert (eigenvalues[:18] > 0).all() and (eigenvalues[:18] < 1).all()  # 90 % in (0, 1)
    assert (eigenvalues[18:] > 30).all() and (eigenvalues[18:] < 60).all()  # 10 % in (30, 60)
    assert torch.equal(model.theta, torch.ones(20))  # DeepOBS starts at 1
    x = data.train.x.double()
    q = model.theta.double() - x
    expected = 0.5 * torch.einsum("ni,ij,nj->n", q, hessian, q).mean()
    loss = MSELoss()(model(data.train.x), data.train.y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    again = models.quadratic((20,), 20, hessian_seed=42)
    assert torch.equal(again.root, model.root)  # a property of the problem, not of the run
    with pytest.raises(ConfigError):
        models.quadratic((20,), 10)


def test_token_lookup_labels_are_the_token_at_the_given_position():
    data = generated.token_lookup(length=6, vocab=9, n_samples=300, seed=1)
    x, y = data.train.x, data.train.y
    assert x.shape[1] == 7 and x.dtype == torch.float32 and data.num_classes == 9
    where = x[:, -1].long()
    assert (where < 6).all() and torch.equal(x[torch.arange(len(y)), where].long(), y)
    same = generated.token_lookup(length=6, vocab=9, n_samples=300, seed=1)
    assert torch.equal(same.train.x, x)
    assert not torch.equal(generated.token_lookup(6, 9, 300, seed=2).train.x, x)
    with pytest.raises(ConfigError):
        generated.token_lookup(length=12, vocab=9)


def test_the_transformer_takes_tokens_as_floats_or_integers():
    model = models.transformer((7,), 9, width=16, heads=4)
    tokens = torch.randint(0, 9, (4, 7))
    out = model(tokens.float())
    assert out.shape == (4, 9) and torch.equal(out, model(tokens))
    with pytest.raises(ConfigError) as raised:
        models.transformer((7,), 9, width=10, heads=4)
    assert raised.value.key == "model.heads"


def test_the_autoencoder_set_reconstructs_mnist1d_signals(tmp_path):
    data = generated.mnist1d_autoencoder(str(tmp_path), num_samples=100, seed=0)
    assert data.num_classes is None and data.input_shape == (40,) and data.num_outputs == 40
    for split in (data.train, data.val, data.test):
        assert torch.equal(split.x, split.y)


def test_the_study_sweeps_five_problems_or_more_with_the_data_varying_by_seed(make_cfg):
    problems = sweep_params("study_optimizers")["+problem"]
    assert len(problems) >= 5
    cfg = make_cfg("experiment=study_optimizers", "+problem=quadratic_deep", "seed=2")
    assert cfg.data_seed == 2 and cfg.dataset.seed == 2
    assert make_cfg("experiment=study_optimizers", "seed=1", "data_seed=0").data_seed == 0
