"""The `optexp` command as a user runs it: help, config printing, a run, user errors."""

import json


def test_help_lists_groups_and_examples(optexp_cli):
    result = optexp_cli("--help")
    assert result.returncode == 0
    for text in ("\noptimizer: ", "trainer: default", "optexp -m", "tensorboard --logdir"):
        assert text in result.stdout, text


def test_cfg_job_prints_the_composed_config_without_training(optexp_cli, tmp_path):
    result = optexp_cli("--cfg", "job", "optimizer.lr=0.05")
    assert result.returncode == 0
    assert "lr: 0.05" in result.stdout and "_target_: torch.optim.Adam" in result.stdout
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_overrides_change_what_runs(optexp_cli, tmp_path):
    result = optexp_cli("trainer.epochs=3", "optimizer.lr=0.01")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3 and metrics["final"]["lr"] == 0.01
    assert metrics["choices"]["optimizer"] == "adam"
    assert "epoch 3/3" in result.stdout  # one plain line per epoch off a terminal
    test_loss = f"{metrics['test']['loss']:.4f}"
    assert f"\n  test (best weights) {test_loss:>12}" in result.stdout  # the summary, as text


def test_unknown_option_lists_the_available_ones_and_exits_2(optexp_cli):
    result = optexp_cli("optimizer=adamm")
    assert result.returncode == 2
    assert "optimizer/adamm" in result.stderr and "adam" in result.stderr
    assert "Traceback" not in result.stderr


def test_out_of_range_value_is_one_clear_line_and_exit_2(optexp_cli, tmp_path):
    result = optexp_cli("optimizer.lr=-1")
    assert result.returncode == 2
    assert "optimizer.lr=-1" in result.stderr and "Allowed: a number > 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_unknown_target_argument_suggests_the_closest(optexp_cli):
    result = optexp_cli("+optimizer.beta=[0.9,0.99]")
    assert result.returncode == 2
    assert "optimizer.beta" in result.stderr and "optimizer.betas" in result.stderr
    assert "Traceback" not in result.stderr


def test_misspelt_preset_is_refused_not_skipped(optexp_cli):
    result = optexp_cli("--cfg", "job", "experiment=optimisers")
    assert result.returncode == 2
    assert "experiment/optimisers" in result.stderr and "optimizers" in result.stderr


def test_an_interpolation_on_the_command_line_runs_and_is_logged_as_typed(optexp_cli, tmp_path):
    result = optexp_cli("seed=${data_seed}", "data_seed=3", "trainer.epochs=1")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["seed"] == 3
