"""Real sweeps through Hydra's launchers and the Optuna sweeper (one epoch per job)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from optexp.cli import CONFIG_DIR
from optexp.cli.settings import NAME_BYTES, job_folder
from optexp.report import main as report_main
from tests.datafiles import array_set, save_arrays

QUICK = ("trainer.epochs=1", "trainer.tensorboard=false", "trainer.checkpoint.keep_best=false")


def finished_runs(sweep: Path) -> dict[Path, dict]:
    """Job directory -> its metrics.json."""
    return {p.parent: json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")}


def saved_value(run: Path, key: str) -> object:
    """`key` in the config the job saved (.hydra/config.yaml)."""
    return OmegaConf.select(OmegaConf.load(run / ".hydra" / "config.yaml"), key)


@pytest.mark.parametrize(
    "launcher",
    [("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"), ("hydra/launcher=submitit_local",)],
)
def test_two_job_sweep_names_each_run_by_its_overrides(optexp_cli, tmp_path, capsys, launcher):
    result = optexp_cli("-m", *launcher, "optimizer.lr=0.01,0.001", *QUICK, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = finished_runs(tmp_path / "sweep")
    assert len(runs) == 2
    for lr in ("0.01", "0.001"):
        (run,) = [r for r in runs if f"optimizer.lr={lr}," in r.name]
        assert "trainer.epochs=1" in run.name
        assert runs[run]["status"] == "completed" and runs[run]["final"]["lr"] == float(lr)
    if "submitit_local" in launcher[0]:
        assert (tmp_path / "sweep" / ".submitit").is_dir()  # the jobs went through submitit

    report_main([str(tmp_path / "sweep"), "--format", "json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert sorted(r["settings"]["optimizer.lr"] for r in rows) == ["0.001", "0.01"]


def test_optuna_sweep_goes_on_past_a_diverged_trial(optexp_cli, tmp_path, capsys):
    # The grid sampler tries each threshold once: below the first epoch's loss, the
    # trial is stopped as diverged (objective +inf); the other two finish.
    result = optexp_cli(
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.n_jobs=1",
        "trainer.divergence_threshold=choice(0.001,100,1000)",
        *QUICK,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    statuses = {
        saved_value(run, "trainer.divergence_threshold"): metrics["status"]
        for run, metrics in finished_runs(tmp_path / "sweep").items()
    }
    assert statuses == {0.001: "diverged", 100: "completed", 1000: "completed"}
    best = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert best.best_params["trainer.divergence_threshold"] in (100, 1000)
    assert 0 < best.best_value < 10

    report_main([str(tmp_path / "sweep"), "--format", "json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert sorted(r["status"] for r in rows) == ["1 completed", "1 completed", "1 diverged"]


@pytest.mark.parametrize(("mode", "direction"), [("min", "minimize"), ("max", "maximize")])
def test_lr_optuna_preset_searches_log_lr_in_the_monitored_direction(mode, direction):
    monitor = {"min": "val/loss", "max": "val/acc"}[mode]
    overrides = [
        "hparams_search=lr_optuna",
        f"trainer.early_stopping.monitor={monitor}",
        f"trainer.early_stopping.mode={mode}",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == direction
    assert sweeper.params["optimizer.lr"] == "tag(log, interval(1e-4, 1e-1))"
    assert sweeper.n_trials > 0 and sweeper.sampler.seed == 0


def test_a_rerun_sweep_resumes_a_finished_job_whose_option_file_changed(optexp_cli, tmp_path):
    mine = tmp_path / "mine" / "optimizer"
    mine.mkdir(parents=True)
    (mine / "heavy.yaml").write_text("_target_: torch.optim.SGD\nlr: 0.05\n")
    args = ("--config-dir", str(tmp_path / "mine"), "-m", "optimizer=heavy", "trainer.epochs=1")
    assert optexp_cli(*args).returncode == 0
    (job,) = (tmp_path / "sweep").glob("*/metrics.json")
    before = job.read_bytes()
    assert "completed already, skipped" in optexp_cli(*args).stderr  # the same config
    (mine / "heavy.yaml").write_text("_target_: torch.optim.SGD\nlr: 0.01\n")
    edited = optexp_cli(*args)
    assert edited.returncode == 2 and "skipped" not in edited.stderr
    assert "optimizer.lr" in edited.stderr  # the resume names what changed
    assert job.read_bytes() == before


def test_a_sweep_over_paths_and_lists_keeps_each_job_one_folder_deep(optexp_cli, tmp_path, capsys):
    # Hydra names a job's folder by its overrides: a path's "/" made nested folders.
    data = tmp_path / "my data"  # with a space: the value needs quotes
    data.mkdir()
    paths = [str(save_arrays(data / f"{name}.npz", array_set())) for name in ("a", "b")]
    values = ",".join(f'"{path}"' for path in paths)
    args = ("-m", "dataset=arrays", f"dataset.path={values}", "model.hidden=[8],[4,4]", *QUICK)
    result = optexp_cli(*args, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    sweep = tmp_path / "sweep"
    jobs = sorted(path for path in sweep.iterdir() if path.is_dir())
    assert [job.name.split("_")[0] for job in jobs] == ["0", "1", "2", "3"]
    for job in jobs:  # one level, named readably by every override
        assert (job / "metrics.json").is_file() and (job / ".hydra").is_dir(), job
        assert (
            "dataset.path=" in job.name and "my data" in job.name and "model.hidden=[" in job.name
        )

    report_main([str(sweep), "--format", "json"])  # labelled by the overrides, as typed
    rows = json.loads(capsys.readouterr().out)["rows"]
    labels = sorted(
        (row["settings"]["dataset.path"], row["settings"]["model.hidden"]) for row in rows
    )
    assert labels == sorted((f'"{path}"', hidden) for path in paths for hidden in ("[8]", "[4,4]"))

    again = optexp_cli(*args, timeout=300)  # continuing the sweep finds each job's folder
    assert again.returncode == 0 and again.stderr.count("completed already, skipped") == 4
    assert sorted(path for path in sweep.iterdir() if path.is_dir()) == jobs


def test_a_job_folder_name_is_one_level_and_short_whatever_the_values():
    assert job_folder("dataset.path=/d/a.npz,seed=1") == "dataset.path=_d_a.npz,seed=1"
    assert job_folder("dataset.path='my data/a.npz'") == "dataset.path=my data_a.npz"
    widths = ",".join(["512"] * 100)  # a name over the file system's 255 bytes
    names = [job_folder(f"model.hidden=[{widths}],seed={seed}") for seed in (0, 1)]
    assert all(len(name.encode()) <= NAME_BYTES and "/" not in name for name in names)
    assert names[0] != names[1]  # the digest of the whole tells them apart
    assert names[0] == job_folder(f"model.hidden=[{widths}],seed=0")  # a re-run finds it


def test_the_optexp_sweeper_composes_one_job_per_override_value():
    from hydra_plugins.optexp_sweeper.sweeper import covering

    jobs = [(f"optimizer={o}", f"seed={s}", "x=1") for o in ("sgd", "adam") for s in (0, 1, 2)]
    chosen = covering(jobs)
    assert chosen == [jobs[0], jobs[1], jobs[2], jobs[3]]  # adam's first job brings adam
    assert {o for job in chosen for o in job} == {o for job in jobs for o in job}
    assert covering(jobs[:1] * 3) == jobs[:1]


@pytest.mark.parametrize("preset", ["study_optimizers_small", "study_regularizers_small"])
def test_the_study_presets_sweep_with_the_optexp_sweeper(preset):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptexpSweeper")
    assert cfg.hydra.sweeper.params  # the preset's grid, which BasicSweeper's params hold
