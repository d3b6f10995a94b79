"""A sweep that says where it is (optexp.cli.progress): one line per finished job with
the count done of the total, no epoch lines or summary tables unless asked for, and the
total computed as Hydra's own sweeper expands the sweep."""

from __future__ import annotations

import re

import pytest

from optexp.cli.progress import sweep_size

QUICK = ("trainer.epochs=1", "trainer.tensorboard=false")


def test_a_sweep_prints_one_line_per_job_and_no_epochs(optexp_cli):
    result = optexp_cli("-m", "seed=0,1", "model.dropout=0.0,0.2", *QUICK)
    assert result.returncode == 0, result.stderr
    jobs = re.findall(r"^job (\d) \((\d)/4 done\)  completed  .* val/loss ", result.stdout, re.M)
    assert sorted(jobs) == [("0", "1"), ("1", "2"), ("2", "3"), ("3", "4")]
    assert "epoch 1/1" not in result.stdout and "split" not in result.stdout
    assert "optexp: sweep: 4 jobs, 0 failed, 0 diverged" in result.stdout


def test_show_epochs_keeps_each_jobs_own_output(optexp_cli):
    result = optexp_cli("-m", "seed=0,1", "hydra.callbacks.progress.show_epochs=true", *QUICK)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("epoch 1/1") == 2 and result.stdout.count("optexp: completed") == 2
    assert "job 1 (2/2 done)  completed" in result.stdout


def test_a_failed_and_a_diverged_job_are_counted(optexp_cli):
    result = optexp_cli("-m", "optimizer.lr=1e-3,1e30", "model.dropout=0.0,1.5", *QUICK)
    assert result.returncode == 2  # the refused option: one line, the sweep goes on
    assert re.search(r"^job \d \(\d/4 done\)  diverged", result.stdout, re.M)
    assert "optexp: sweep: 4 jobs, 2 failed, 1 diverged" in result.stdout


@pytest.mark.parametrize(
    ("params", "typed", "size"),
    [
        ({}, ["seed=0,1,2", "optimizer=sgd,adam"], 6),
        ({"seed": "0,1,2", "+problem": "a,b"}, [], 6),
        ({"seed": "0,1,2", "+problem": "a,b"}, ["seed=0"], 2),  # typed replaces the preset's
        ({"study.trial": "range(4)"}, ["x=1"], 4),
    ],
)
def test_the_total_is_the_product_hydras_sweeper_expands(make_cfg, params, typed, size):
    from omegaconf import OmegaConf

    config = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {
                    "_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                    "params": params or None,
                },
                "overrides": {"task": typed},
            }
        }
    )
    assert sweep_size(config) == size
    config.hydra.sweeper._target_ = "hydra_plugins.hydra_optuna_sweeper.OptunaSweeper"
    assert sweep_size(config) is None
