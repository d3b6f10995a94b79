"""The experiment presets: each composes, names real options, and runs as a sweep."""

import json

import pytest
from hydra import compose, initialize_config_dir

from optexp.checks import check_config as check
from tests.groups import CONFIG_DIR, options

PRESETS = options(CONFIG_DIR / "experiment")


def sweep_params(preset: str) -> dict[str, list[str]]:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params or {}  # a preset without a sweep has none
    return {key: str(values).split(",") for key, values in params.items()}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_every_swept_choice_is_valid(make_cfg, preset):
    check(make_cfg(f"experiment={preset}"))
    for key, values in sweep_params(preset).items():
        for value in values:
            check(make_cfg(f"experiment={preset}", f"{key}={value}"))


def test_comparison_presets_sweep_what_they_compare():
    assert sweep_params("optimizers") == {
        "optimizer": ["sgd", "momentum", "adagrad", "rmsprop", "adam"],
        "seed": ["0", "1", "2"],
    }
    assert "scheduler" in sweep_params("schedules")
    assert "regularizer" in sweep_params("regularizers")


def test_optimizers_preset_runs_the_comparison_as_one_sweep(optexp_cli, tmp_path):
    result = optexp_cli(
        "-m", "experiment=optimizers", "hydra.sweeper.params.seed=0", "trainer.epochs=1"
    )
    assert result.returncode == 0, result.stderr
    runs = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/metrics.json")]
    assert sorted(run["choices"]["optimizer"] for run in runs) == sorted(
        ["sgd", "momentum", "adagrad", "rmsprop", "adam"]
    )
    assert all(run["status"] == "completed" and run["seed"] == 0 for run in runs)


def test_a_preset_overrides_hydras_settings_of_optexp():
    """hydra/default.yaml comes before the presets in the defaults list, so a preset's
    `hydra:` keys win (debug runs land apart from real ones)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["debug=default"], return_hydra_config=True)
    assert cfg.hydra.run.dir.startswith("outputs/debug/")
