"""Bad input, as a user types it: one clear message naming the key, exit 2, no traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from tests.datafiles import array_set, save_arrays, write_image_folder

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")

# (command-line arguments, text the message must contain: the key, or the misspelt option)
BAD_INPUTS = [
    (["optimizer=adamm"], "optimizer/adamm"),
    (["trainer.epohcs=3"], "Did you mean trainer.epochs?"),
    (["trainer.early_stopping.mnitor=val/acc"], "trainer.early_stopping.monitor"),
    (["trainer.epochs=abc"], "trainer.epochs"),
    (["trainer.batch_size=1.5"], "trainer.batch_size"),
    (["seed=1.5"], "seed"),
    (["trainer.epochs=[1,"], "trainer.epochs"),
    (["optimizer.lr=0"], "optimizer.lr"),
    (["optimizer.lr=-0.1"], "optimizer.lr"),
    (["trainer.epochs=0"], "trainer.epochs"),
    (["trainer.batch_size=0"], "trainer.batch_size"),
    (["trainer.eval_batch_size=-4"], "trainer.eval_batch_size"),
    (["model.dropout=1.0"], "model.dropout"),
    (["model.dropout=-0.5"], "model.dropout"),
    (["trainer.early_stopping.patience=-1"], "trainer.early_stopping.patience"),
    (["trainer.early_stopping.min_delta=-1"], "trainer.early_stopping.min_delta"),
    (["optimizer.betas=[0.9,1.0]"], "optimizer.betas"),
    (["optimizer.betas=[0.9]"], "optimizer.betas"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay"),
    (["optimizer.eps=0"], "optimizer.eps"),
    (["trainer.precision=fp8"], "trainer.precision"),
    pytest.param(["trainer.precision=fp16"], "trainer.precision", marks=NO_CUDA),
    pytest.param(["trainer.device=cuda"], "trainer.device", marks=NO_CUDA),
    (["trainer.device=tpu"], "trainer.device"),
    (["trainer.early_stopping.mode=lowest"], "trainer.early_stopping.mode"),
    (["trainer.early_stopping.monitor=val/f1"], "trainer.early_stopping.monitor"),
    (["trainer.resume=/nonexistent/last.pt"], "trainer.resume"),
    (["model.activation=relux"], "model.activation"),
    (["+model.widht=3"], "model.widht"),
    (["loss.label_smoothing=2"], "loss.label_smoothing"),
    (["trainer.grad_clip=-1"], "trainer.grad_clip"),
    (["trainer.divergence_threshold=0"], "trainer.divergence_threshold"),
    (["scheduler.interval=batch"], "scheduler.interval"),
    (["optimizer._target_=torch.optim.Adamm"], "optimizer._target_"),
    (["trainer.checkpoint.every=0"], "trainer.checkpoint.every"),
    (["dataset.val_fraction=1.5"], "dataset.val_fraction"),
    (["-m", "--cfg", "hydra"], "Only one of --run, --multirun, --cfg"),
    (["optimizer=momentum", "optimizer.momentum=1.0"], "optimizer.momentum"),
    (["regularizer=l1", "regularizer.l1=-1"], "regularizer.l1"),
    (["scheduler=plateau", "scheduler.interval=step"], "scheduler.interval"),
    (["dataset=synthetic", "dataset.task=regression"], "loss=cross_entropy (CrossEntropyLoss)"),
    (["dataset=synthetic", "model=resnet18"], "model=resnet18 needs inputs shaped (C, H, W)"),
    (["dataset=arrays"], "dataset.path"),
    (["dataset=image_folder", "dataset.workers=-1"], "dataset.workers=-1"),
    (["dataset=arrays", "dataset.path=/nonexistent.npz"], "dataset.path"),
    (["dataset=mnist", "dataset.download=false", "data_dir=nowhere"], "dataset.download=false"),
    # Issue 14: schedule knobs, non-finite numbers, seeds, keys nothing reads.
    (["scheduler=exponential", "scheduler.gamma=-0.5"], "scheduler.gamma=-0.5"),
    (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0"),
    (["optimizer.lr=1e400"], "optimizer.lr=inf is not allowed. Allowed: a finite number"),
    (["seed=-1"], "seed=-1"),
    (["data_seed=99999999999"], "data_seed=99999999999"),
    (["+trainer.epoch=2"], "did you mean trainer.epochs?"),
    (["+foo=1"], "foo=1 is not read"),
    (["+regularizer.l2=0.1"], "regularizer.l2=0.1 is not read"),
    (["model.batch_norm=abc"], "model.batch_norm='abc'"),
    # Hydra's own knobs, interpolations, a sweep asked for without -m, monitor vs mode.
    (["-m", "hparams_search=lr_optuna", "hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs=0"),
    (["-m", "hparams_search=lr_optuna", "hydra.sweeper.storage=x"], "hydra.sweeper.storage='x'"),
    (["-m", "seed=0,1", "hydra.sweeper.max_batch_size=0"], "hydra.sweeper.max_batch_size=0"),
    (["-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "launcher.n_jobs=0"),
    (["-m", "seed=range(0)"], "the sweep has no jobs"),
    (["-m", "seed=0,1", "hydra.sweep.subdir="], "hydra.sweep.subdir=''"),
    (["hydra.job.chdir=true"], "hydra.job.chdir=True"),
    (
        ["trainer.early_stopping.monitor=val/acc"],
        "monitor='val/acc' needs trainer.early_stopping.mode=max",
    ),
    (["trainer.early_stopping.mode=max"], "mode='max' does not fit monitor=val/loss"),
    (["hparams_search=lr_optuna"], "defines a sweep (set by hparams_search=lr_optuna)"),
    (["experiment=optimizers"], "Allowed: optexp -m experiment=optimizers"),
    (["optimizer=[sgd,adam]"], "lists several options. Allowed: one option, or a sweep: optexp -m"),
    (["optimizer.lr=${oops}"], "optexp: error: optimizer.lr: Interpolation key 'oops' not found"),
    (["model.activation=${oops}"], "optexp: error: model.activation: Interpolation key 'oops'"),
    (["seed=${oc.env:OPTEXP_NO_SUCH_VARIABLE}"], "optexp: error: seed: KeyError"),
    (["optimizer.lr=null"], "optimizer.lr=None is not allowed. Allowed: a number > 0"),
    (["model.dropout=null"], "model.dropout=None is not allowed"),
    (["-m", "hparams_search=lr_optuna", "trainer.early_stopping.mode=up"], "mode='up'"),
    (["--bogus"], "optexp: error: unrecognized arguments: --bogus (see optexp --help)"),
    (["seed=1", "-m"], "flags such as -m go before the overrides"),
    (["data_dir=données"], """need quotes: 'data_dir="données"'"""),
    (["trainer.resume=."], "trainer.resume='.' holds no checkpoints/last.pt"),
    (["hydra.output_subdir=null"], "hydra.output_subdir=None is not allowed"),
    (["-m", "hydra/launcher=joblib", "hydra.launcher.backend=nope"], "launcher.backend='nope'"),
    # Issue 26: the message names what the user typed: the option, the key they set.
    (
        ["dataset=synthetic", "dataset.task=regression", "loss=hinge"],
        "loss=hinge (MultiMarginLoss) needs class labels, but the dataset has real-valued targets",
    ),
    (
        ["dataset=synthetic", "dataset.task=regression", "trainer.early_stopping.monitor=val/acc"],
        "monitor='val/acc' is not measured by a regression run (the dataset has real-valued",
    ),
    (
        ["+loss.foo=1"],
        "loss.foo=1 is not a parameter of loss=cross_entropy (torch.nn.CrossEntropyLoss)",
    ),
    (
        ["optimizer=nesterov", "optimizer.momentum=0"],
        "optimizer=nesterov was refused by torch.optim.SGD",
    ),
]


@pytest.mark.parametrize(("args", "named"), BAD_INPUTS)
def test_bad_input_is_one_clear_message_and_exit_2(optexp_cli, tmp_path, args, named):
    result = optexp_cli(*args)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert result.stderr.count("optexp: error:") == 1
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_range_errors_say_what_is_allowed_before_a_run_directory_exists(optexp_cli, tmp_path):
    result = optexp_cli("trainer.precision=fp8")
    assert "trainer.precision='fp8' is not allowed. Allowed: 32 | bf16 | fp16." in result.stderr
    assert not (tmp_path / "run").exists()  # checked by a Hydra callback, before run_job


@pytest.mark.parametrize(
    "args",
    [
        ["dataset=synthetic", "model=cnn"],  # model vs input rank
        ["dataset=synthetic", "augmentation=crop_flip"],  # augmentation vs input rank
        ["dataset=synthetic", "dataset.task=regression"],  # cross-entropy vs float targets
        ["scheduler=plateau", "scheduler.warmup_epochs=2"],  # schedule combination
    ],
)
def test_a_run_refused_by_a_check_across_parts_leaves_no_directory(optexp_cli, tmp_path, args):
    run_dir = tmp_path / "outputs" / "day" / "time"
    result = optexp_cli(*args, run_dir=run_dir)
    assert result.returncode == 2 and result.stderr.count("optexp: error:") == 1
    assert not (tmp_path / "outputs").exists()  # nor the parents Hydra made for it


def test_a_bad_rerun_loses_nothing_already_written(optexp_cli, tmp_path):
    assert optexp_cli("trainer.epochs=1").returncode == 0
    run_dir = tmp_path / "run"
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    assert optexp_cli("trainer.epochs=1", "optimizer.lr=-1").returncode == 2
    assert optexp_cli("trainer.epochs=1", "model.hidden=[3]").returncode == 2  # conflicts
    assert optexp_cli("trainer.epochs=1", "optimizer.lr=${oops}").returncode == 2
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p in before}
    changed = [p.name for p in before if before[p] != after[p] and p.name != ".optexp.lock"]
    assert changed == [], changed  # .hydra/ included; the lock names the latest process


def test_a_file_that_is_no_checkpoint_at_all_is_named_so(optexp_cli, tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    result = optexp_cli(f"trainer.resume={tmp_path / 'metrics.json'}")
    assert result.returncode == 2 and "is not a checkpoint file (torch.save's)" in result.stderr


def files(folder: Path) -> dict[Path, bytes]:
    """A folder's files and their bytes; the lock only names the latest process."""
    return {
        path: path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file() and path.name != ".optexp.lock"
    }


def read_only(paths: list[Path]) -> list[Path]:
    for path in paths:
        path.chmod(path.stat().st_mode & ~0o222)
    return paths


def writable(paths: list[Path]) -> None:
    for path in paths:
        path.chmod(path.stat().st_mode | 0o200)


def test_read_only_run_and_sweep_directories_are_one_clear_error(optexp_as_user, user_dir):
    # As an unprivileged user (tests/as_user.py): root would write there regardless.
    assert optexp_as_user("trainer.epochs=1").returncode == 0  # the user's own run
    run_dir, sweep_dir, fresh = user_dir / "run", user_dir / "sweep", user_dir / "ro" / "run"
    sweep_dir.mkdir()
    fresh.parent.mkdir()
    before = files(run_dir)
    locked = read_only([run_dir, *run_dir.rglob("*"), sweep_dir, fresh.parent])
    try:
        refused = {
            f"cannot write in the run directory {run_dir}": optexp_as_user("trainer.epochs=2"),
            f"cannot create the run directory {fresh}": optexp_as_user(run_dir=fresh),
            f"cannot write {sweep_dir / 'multirun.yaml'}": optexp_as_user(
                "-m", "seed=0,1", "trainer.epochs=1"
            ),
        }
    finally:
        writable(locked)
    for message, result in refused.items():
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"optexp: error: {message}: Permission denied")
        assert len(result.stderr.splitlines()) == 2, result.stderr
    assert files(run_dir) == before
    assert not fresh.exists() and list(sweep_dir.iterdir()) == []


def test_a_read_only_data_folder_is_read_and_a_data_dir_to_write_is_one_line(
    optexp_as_user, user_dir
):
    images = write_image_folder(user_dir / "images", classes=2, per_class=4)
    (data_dir := user_dir / "data").mkdir()  # mnist1d writes its generated set there
    before = files(images)
    locked = read_only([images, *images.rglob("*"), data_dir])
    try:
        read = optexp_as_user(
            "dataset=image_folder", f"dataset.path={images}", "dataset.image_size=8",
            "dataset.workers=0", "trainer.epochs=1",
        )  # fmt: skip
        args = ("dataset=mnist1d", "dataset.num_samples=200", "trainer.epochs=1")
        refused = optexp_as_user(f"data_dir={data_dir}", *args, run_dir=user_dir / "run2")
    finally:
        writable(locked)
    assert read.returncode == 0, read.stderr  # reading needs no write
    assert files(images) == before
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    line = refused.stderr.splitlines()[0]
    assert line.startswith(f"optexp: error: data_dir='{data_dir}' cannot be used: Permission")
    assert len(refused.stderr.splitlines()) == 2, refused.stderr
    assert list(data_dir.iterdir()) == [] and not (user_dir / "run2").exists()


def test_debug_variable_shows_the_traceback_for_developers(tmp_path):
    env = os.environ | {"PYTHONPATH": str(REPO), "OPTEXP_DEBUG": "1"}
    cmd = [
        sys.executable,
        "-m",
        "optexp",
        "trainer.resume=/nonexistent",
        f"hydra.run.dir={tmp_path}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "trainer.resume" in result.stderr
    for off in ("0", "false", ""):
        env |= {"OPTEXP_DEBUG": off, "HYDRA_FULL_ERROR": off}
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, off


@pytest.mark.parametrize("folder", ["hydra.run.dir", "hydra.sweep.dir"])
def test_an_empty_run_or_sweep_folder_is_refused_and_nothing_lands_in_the_cwd(tmp_path, folder):
    env = {k: v for k, v in os.environ.items() if k not in ("OPTEXP_DEBUG", "HYDRA_FULL_ERROR")}
    cmd = [sys.executable, "-m", "optexp", *(["-m"] * (folder == "hydra.sweep.dir")), f"{folder}="]
    result = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, env=env | {"PYTHONPATH": str(REPO)},
        check=False,
    )  # fmt: skip
    assert result.returncode == 2 and f"optexp: error: {folder}='' is not allowed" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_finished_run_without_checkpoints_is_not_replaced(optexp_cli, tmp_path):
    assert optexp_cli("trainer.epochs=1").returncode == 0
    run_dir = tmp_path / "run"
    for path in (run_dir / "checkpoints").iterdir():
        path.unlink()
    before = files(run_dir)
    result = optexp_cli("trainer.epochs=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "holds a finished run (status: completed) that this run would replace" in result.stderr
    assert files(run_dir) == before


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "optimizer=nope,sgd"],  # refused while Hydra composes the first job
        ["-m", "seed=0,1", "optimizer=sgd,nope"],  # the last job refused
        ["-m", "seed=range(0)"],  # no jobs at all
    ],
)
def test_a_sweep_refused_before_its_first_job_leaves_no_sweep_folder(optexp_cli, tmp_path, args):
    result = optexp_cli(*args, "trainer.epochs=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    ("arrays", "problem"),
    [
        ({"x_train": np.zeros((5, 3)), "y_train": np.zeros(4, int)}, "5 x_train but 4 y_train"),
        ({"x_train": np.zeros((5, 3)), "y_train": np.zeros(5, int)}, "no x_test, y_test"),
        ({"x_train": np.full((5, 3), np.nan), "y_train": np.zeros(5, int)}, "non-finite"),
    ],
)
def test_bad_arrays_file_names_the_path_and_the_problem(optexp_cli, tmp_path, arrays, problem):
    path = tmp_path / "set.npz"
    np.savez(path, **{"x_test": np.zeros((2, 3)), "y_test": np.zeros(2, int)} | arrays)
    if problem == "no x_test, y_test":
        np.savez(path, **arrays)
    result = optexp_cli("dataset=arrays", f"dataset.path={path}")
    assert result.returncode == 2
    assert f"dataset.path='{path}'" in result.stderr and problem in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("_target_: torch.optim.SGD\nlr: 0.1\n  momentum: 0.9\n", ":3:11:", "mapping values"),
        ("_target_: torch.optim.SGD\n\tlr: 0.1\n", ":2:1:", "'\\t'"),
        ("_target_: torch.optim.SGD\nlr: [0.1\n", ":3:1:", "expected ',' or ']'"),
    ],
)
def test_a_yaml_syntax_error_in_a_users_file_names_file_line_and_column(
    optexp_cli, tmp_path, text, where, problem
):
    (tmp_path / "mine" / "optimizer").mkdir(parents=True)
    path = tmp_path / "mine" / "optimizer" / "broken.yaml"
    path.write_text(text)
    result = optexp_cli("--config-dir", str(tmp_path / "mine"), "optimizer=broken")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.splitlines()[0]
    assert line.startswith(f"optexp: error: {path}{where} YAML syntax:") and problem in line


def test_messages_are_one_line_without_hydras_preamble_or_its_append_hint(optexp_cli):
    bad_target = ["optimizer._target_=torch.optim.Adamm"]  # Hydra's get_object logs too
    for args in (
        ["optimizer.beta=0.9"],
        ["+optimizer.momentun=0.9"],
        ["dataset=arrays"],
        bad_target,
    ):
        result = optexp_cli(*args)
        assert result.returncode == 2
        assert "Error executing job" not in result.stderr
        assert "To append" not in result.stderr
        assert len(result.stderr.splitlines()) == 2, result.stderr  # the error, the debug hint
        assert result.stdout == "", result.stdout  # nor a log line of Hydra's
    assert "Did you mean optimizer.betas?" in optexp_cli("optimizer.beta=0.9").stderr


@pytest.mark.parametrize(
    ("files", "args", "named"),
    [
        (
            {"model/wide_cnn.yaml": "_target_: optexp.models.cnn\nchannels: [8]\n"},
            ["dataset=synthetic", "model=wide_cnn"],
            "model=wide_cnn needs inputs shaped (C, H, W)",
        ),
        (
            {"loss/my_hinge.yaml": "_target_: torch.nn.MultiMarginLoss\n"},
            ["dataset=synthetic", "dataset.task=regression", "loss=my_hinge"],
            "loss=my_hinge (MultiMarginLoss) needs class labels",
        ),
        (  # two values break a rule: the one typed on the command line is named, not the preset's
            {"experiment/short.yaml": "# @package _global_\ntrainer:\n  epochs: 0\n"},
            ["experiment=short", "optimizer.lr=0"],
            "optexp: error: optimizer.lr=0 is not allowed",
        ),
    ],
)
def test_a_message_names_the_users_own_option_and_the_key_they_typed(
    optexp_cli, tmp_path, files, args, named
):
    for name, text in files.items():
        (tmp_path / "mine" / name).parent.mkdir(parents=True)
        (tmp_path / "mine" / name).write_text(text)
    result = optexp_cli("--config-dir", str(tmp_path / "mine"), *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert named in result.stderr.splitlines()[0], result.stderr


def test_a_run_directory_that_is_a_file_is_one_clear_error(optexp_cli, tmp_path):
    (tmp_path / "run").write_text("a file where the run directory should go")
    result = optexp_cli("trainer.epochs=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("optexp: error: cannot create the run directory")
    assert len(result.stderr.splitlines()) == 2, result.stderr
    assert (tmp_path / "run").read_text().startswith("a file")


def unreadable_paths(tmp_path: Path) -> dict[str, tuple[list[str], Path, str]]:
    """Settings whose path a run cannot read: (arguments, the path, the message's start)."""
    arrays = save_arrays(tmp_path / "set.npz", array_set())
    images = write_image_folder(tmp_path / "images", classes=2, per_class=4)
    torch.save({"model": {}}, checkpoint := tmp_path / "last.pt")
    (data := tmp_path / "data").mkdir()
    return {
        "arrays": (["dataset=arrays", f"dataset.path={arrays}"], arrays, "dataset.path="),
        "images": (["dataset=image_folder", f"dataset.path={images}"], images, "dataset.path="),
        "resume": (
            [f"trainer.resume={checkpoint}"],
            checkpoint,
            f"cannot read checkpoint {checkpoint}: Permission",
        ),
        "data_dir": ([f"data_dir={data}", "dataset=mnist1d"], data, "data_dir="),
    }


@pytest.mark.parametrize("setting", ["arrays", "images", "resume", "data_dir"])
def test_an_unreadable_path_is_one_line_naming_its_setting(optexp_as_user, user_dir, setting):
    args, path, start = unreadable_paths(user_dir)[setting]
    path.chmod(0)
    try:
        result = optexp_as_user(*args, "trainer.epochs=1")
    finally:
        path.chmod(0o755)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"optexp: error: {start}"), result.stderr
    assert str(path) in result.stderr.splitlines()[0]
    assert "Permission denied" in result.stderr and len(result.stderr.splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["dataset.val_fraction=0.5", "dataset.test_fraction=0.4999"], "leaves 1 training"),
        (["dataset.val_fraction=0.6", "dataset.test_fraction=0.4"], "leaves 0 training"),
        (["dataset=synthetic", "dataset.n_samples=10", "dataset.val_fraction=0.01"], "and 0 val"),
    ],
)
def test_fractions_that_leave_too_few_samples_are_refused(optexp_cli, args, named):
    result = optexp_cli(*args, "trainer.epochs=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "optexp: error: dataset.val_fraction=" in result.stderr and named in result.stderr


def test_an_image_folder_of_one_class_is_refused(optexp_cli, tmp_path):
    folder = write_image_folder(tmp_path / "images", classes=1, per_class=10)
    result = optexp_cli("dataset=image_folder", f"dataset.path={folder}", "dataset.workers=0")
    assert result.returncode == 2 and "has a single class" in result.stderr


@pytest.mark.parametrize(
    ("split", "workers", "damage", "problem"),
    [
        ("train", 2, "truncated", "Truncated File Read"),  # read for the normalization stats
        ("val", 0, "truncated", "Truncated File Read"),  # read while validating
        ("train", 0, "garbage", "not an image file PIL can identify"),
    ],
)
def test_a_corrupt_jpg_among_good_images_is_one_line_naming_the_file(
    optexp_cli, tmp_path, split, workers, damage, problem
):
    from PIL import Image

    folder = tmp_path / "images"
    for name in ("train", "val"):
        write_image_folder(folder / name, classes=2, per_class=6)
    jpeg = folder / split / "class1" / "broken.jpg"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(jpeg)
    half = jpeg.read_bytes()[: jpeg.stat().st_size // 2]  # its header still reads
    jpeg.write_bytes(half if damage == "truncated" else b"not an image")
    args = ("dataset=image_folder", f"dataset.path={folder}", f"dataset.workers={workers}")
    result = optexp_cli(*args, "trainer.epochs=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 2, result.stderr
    line = result.stderr.splitlines()[0]
    assert line.startswith(f"optexp: error: dataset.path='{folder}' has an unreadable image"), line
    assert f" {split}/class1/broken.jpg ({problem})" in line, line
    assert "only the first one found is named" in line, line
