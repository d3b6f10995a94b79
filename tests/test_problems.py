"""The optimizer study's problems: their models (a GRU for signals, DeepOBS's noisy
quadratic, a token transformer), their generated data, the preset that sweeps them with
the data varying along with the seed, and every problem preset training a step, those
that read files on a tiny fake of them (and refusing in one line without them)."""

from __future__ import annotations

import math

import pytest
import torch

from optexp import models
from optexp.config import ConfigError, UserError
from optexp.data import generated
from optexp.losses import MSELoss
from optexp.train import run
from tests.datafiles import write_text, write_torchvision_set
from tests.groups import CONFIG_DIR, options
from tests.test_presets import sweep_params

PROBLEMS = options(CONFIG_DIR / "problem")
ONE_STEP = (
    "trainer.epochs=1",
    "trainer.limit_batches=1",  # one batch of each split: one optimizer step, then val, test
    "trainer.batch_size=16",
    "trainer.tensorboard=false",
    "trainer.checkpoint.keep_best=false",
)


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


def test_the_study_sweeps_four_problems_or_more_with_the_data_varying_by_study(make_cfg):
    problems = sweep_params("study_optimizers")["+problem"]
    assert len(problems) >= 4
    cfg = make_cfg("experiment=study_optimizers", "+problem=digits_mlp", "study.index=2")
    assert cfg.seed == 2 and cfg.data_seed == 2 and cfg.dataset.seed == 2
    assert make_cfg("experiment=study_optimizers", "data_seed=0").data_seed == 0


def problem_data(problem: str, data_dir) -> list[str]:
    """What a problem needs to run here, offline and fast: a fake of its files in the
    format its reader expects, or a small generated set."""
    at = [f"data_dir={data_dir}"]
    if problem == "cifar10_resnet18":  # CIFAR-10's python pickle batches
        write_torchvision_set("cifar10", data_dir)
        return [*at, "dataset.download=false"]
    if problem == "shakespeare_char_lm":  # seq_len 128: each split needs 129 characters
        write_text(data_dir, "tiny_shakespeare", n_chars=2000)
        return at
    if problem.startswith("mnist1d"):  # 160 training signals: a small split must fit in them
        small = ["dataset.train_size=100"] if problem == "mnist1d_small_mlp" else []
        return [*at, "dataset.num_samples=200", *small]
    return at


@pytest.mark.parametrize("problem", PROBLEMS)
def test_every_problem_trains_a_step(make_cfg, tmp_path, fake_checksums, problem):
    overrides = problem_data(problem, tmp_path / "data")
    summary = run(make_cfg(f"+problem={problem}", *ONE_STEP, *overrides), tmp_path / "run")
    assert summary["status"] == "completed" and summary["global_step"] == 1
    assert math.isfinite(summary["test"]["loss"])


def test_the_new_problems_are_there():
    assert {"breast_cancer_mlp", "wine_mlp", "lee_news_char_lm"} <= set(PROBLEMS)
    assert {"cifar10_resnet18", "shakespeare_char_lm"} <= set(PROBLEMS)


@pytest.mark.parametrize(
    ("problem", "where"),
    [
        ("cifar10_resnet18", "unpack it into {data}/ (giving {data}/cifar-10-batches-py/"),
        (
            "shakespeare_char_lm",
            "tinyshakespeare/input.txt and save it as {data}/tiny_shakespeare.txt",
        ),
    ],
)
def test_a_problem_without_its_data_says_where_to_put_it_in_one_line(
    make_cfg, tmp_path, problem, where
):
    data = tmp_path / "nowhere"
    with pytest.raises(UserError) as raised:  # downloads fail at once here (conftest)
        run(make_cfg(f"+problem={problem}", f"data_dir={data}"), tmp_path / "run")
    message = str(raised.value)
    assert "\n" not in message and where.format(data=data) in message, message
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_the_command_line_reports_missing_text_as_one_error_line(optexp_cli, tmp_path):
    result = optexp_cli("+problem=shakespeare_char_lm", f"data_dir={tmp_path / 'nowhere'}")
    assert result.returncode == 2
    error, hint = result.stderr.strip().splitlines()
    assert error.startswith("optexp: error: dataset=text_file: tiny_shakespeare.txt is not in")
    assert hint == "(set OPTEXP_DEBUG=1 for the traceback)"
