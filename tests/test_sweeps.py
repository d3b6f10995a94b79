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


# Every kind of override a job may hold: values, groups, presets, additions, deletions,
# dicts, interpolations, and Hydra's own keys, some that the derived fields read.
JOBS = [
    ["seed=1"],
    ["optimizer=sgd", "optimizer.lr=0.3"],
    ["+foo=3", "~augmentation"],
    ["hydra.job.config.override_dirname.exclude_keys=[seed]", "seed=2", "trainer.epochs=3"],
    ["optimizer.lr=${seed}", "hydra.job.chdir=true", "hydra.job.env_copy=[HOME]"],
    ["experiment=study_optimizers_small", "study.trial=3"],
    ["model=cnn", "dataset=cifar10", "trainer.early_stopping={enabled:false}"],
    ["hydra.searchpath=[pkg://optexp.configs]", "seed=4"],  # composed whole
]


@pytest.fixture()
def hydra_loader():
    """Hydra's own config loader, and a sweep's master config as `optexp -m` composes it."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(
            "config", ["hydra.sweep.dir=sweep", "hydra/launcher=vectorized"], RunMode.MULTIRUN
        )
        yield loader, master


def test_a_jobs_config_from_its_choices_composition_is_the_one_hydra_composes(hydra_loader):
    from optexp.cli.compose import ChoicesConfigLoader

    loader, master = hydra_loader
    choices = ChoicesConfigLoader(loader)
    for job in JOBS:
        ours = choices.load_sweep_config(master, job)
        assert OmegaConf.to_container(ours) == OmegaConf.to_container(
            loader.load_sweep_config(master, job)
        ), job
        assert OmegaConf.is_struct(ours) and not OmegaConf.is_readonly(ours.hydra)
    for job in (["nokey=1"], ["optimizer=nosuch"], ["seed=abc"], ["seed=1,2"]):
        errors = []
        for any_loader in (loader, choices):
            with pytest.raises(Exception) as error:
                any_loader.load_sweep_config(master, job)
            errors.append((error.type, str(error.value), str(error.value.__cause__)))
        assert errors[0] == errors[1], job


def test_a_sweep_composes_each_set_of_choices_once(hydra_loader, monkeypatch):
    from optexp.cli.compose import ChoicesConfigLoader

    loader, master = hydra_loader
    composed = []
    compose_whole = loader.load_sweep_config
    monkeypatch.setattr(
        loader, "load_sweep_config", lambda m, job: composed.append(job) or compose_whole(m, job)
    )
    choices = ChoicesConfigLoader(loader)
    configs = [
        choices.load_sweep_config(master, [f"optimizer={o}", f"seed={s}", f"optimizer.lr={s}"])
        for o in ("sgd", "adam")
        for s in range(3)
    ]
    assert composed == [["optimizer=sgd"], ["optimizer=adam"]]
    assert [(c.optimizer.lr, c.seed) for c in configs[:3]] == [(0, 0), (1, 1), (2, 2)]
    configs[0].optimizer.lr = 9.0  # a job's config is its own copy
    assert choices.load_sweep_config(master, ["optimizer=sgd"]).optimizer.lr != 9.0


@pytest.mark.parametrize(
    "overrides, sweeper",
    [
        ([], "OptexpSweeper"),
        (["experiment=study_optimizers_small"], "OptexpSweeper"),
        (["experiment=study_regularizers_small"], "OptexpSweeper"),
        (["hparams_search=lr_optuna"], "OptunaSweeper"),  # a preset's choice wins
        (["hydra/sweeper=basic"], "BasicSweeper"),  # and the command line's
    ],
)
def test_a_sweep_uses_the_optexp_sweeper_unless_a_preset_or_the_command_line_chooses(
    overrides, sweeper
):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith(sweeper)
