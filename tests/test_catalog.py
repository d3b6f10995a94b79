"""Every option of the dataset, augmentation, model and loss groups, composed from its
YAML file and trained for one epoch on tiny data. The options are found by listing the
config folders, so a new YAML file is covered the moment it exists."""

import math

import pytest

from optexp.train import run
from tests.datafiles import (
    TORCHVISION_SETS,
    array_set,
    save_arrays,
    write_image_folder,
    write_text,
    write_torchvision_set,
)
from tests.groups import CONFIG_DIR, options

GROUPS = ("dataset", "augmentation", "model", "loss")
CASES = [(g, option) for g in GROUPS for option in options(CONFIG_DIR / g)]
QUICK = (
    "trainer.epochs=1",
    "trainer.batch_size=32",
    "trainer.tensorboard=false",
    "trainer.checkpoint.keep_best=false",
)


def dataset_overrides(option: str, tmp_path) -> list[str]:
    """What an option needs to train offline and fast: its files, or a small size."""
    if option in TORCHVISION_SETS:
        write_torchvision_set(option, tmp_path / "data")
        return [f"data_dir={tmp_path / 'data'}", "dataset.download=false"]
    if option == "image_folder":
        folder = write_image_folder(tmp_path / "images")
        return [f"dataset.path={folder}", "dataset.image_size=8"]
    if option == "arrays":
        return [f"dataset.path={save_arrays(tmp_path / 'set.npz', array_set())}"]
    if option == "synthetic":
        return ["dataset.n_samples=200"]
    if option in ("mnist1d", "mnist1d_autoencoder"):
        mse = ["loss=mse"] if option == "mnist1d_autoencoder" else []
        return [f"data_dir={tmp_path / 'data'}", "dataset.num_samples=200", *mse]
    if option == "noisy_quadratic":
        return ["dataset.n_samples=200", "dataset.dim=10", "loss=mse"]
    if option == "token_lookup":
        return ["dataset.n_samples=200"]
    if option == "lee_news":
        return ["dataset.max_chars=3000", "dataset.seq_len=16"]
    if option == "text_file":
        write_text(tmp_path / "data", "tiny")
        return [f"data_dir={tmp_path / 'data'}", "dataset.name=tiny", "dataset.seq_len=16"]
    if option == "digits":
        return ["dataset.val_fraction=0.5", "dataset.test_fraction=0.45"]  # 90 to train on
    return []


# Models for one kind of data: the study's quadratic and the token transformer
MODEL_DATA = {
    "quadratic": ["dataset=noisy_quadratic", "dataset.n_samples=100", "loss=mse"],
    "transformer": ["dataset=token_lookup", "dataset.n_samples=100", "model.width=16"],
}


def tiny_signals(tmp_path) -> list[str]:
    """24 random one-channel signals of length 40 (what cnn1d takes), 3 classes."""
    path = save_arrays(tmp_path / "signals.npz", array_set(n=24, shape=(1, 40)))
    return ["dataset=arrays", f"dataset.path={path}", "dataset.val_fraction=0.25"]


def tiny_images(tmp_path) -> list[str]:
    """24 random 8x8 one-channel images of 3 classes: every model and loss can take them."""
    path = save_arrays(tmp_path / "images.npz", array_set(n=24, shape=(1, 8, 8)))
    return ["dataset=arrays", f"dataset.path={path}", "dataset.val_fraction=0.25"]


def test_every_group_has_its_options():
    found = {(g, o) for g, o in CASES}
    assert {("dataset", "cifar100"), ("augmentation", "crop_flip")} <= found
    assert {("model", "resnet18"), ("loss", "hinge"), ("dataset", "synthetic")} <= found


@pytest.mark.parametrize(("group", "option"), CASES)
def test_every_option_trains_for_an_epoch(make_cfg, tmp_path, fake_checksums, group, option):
    if group == "dataset":
        overrides = dataset_overrides(option, tmp_path)
    elif group == "augmentation":
        overrides = [*tiny_images(tmp_path), "model=cnn", "model.channels=[8]"]
    elif (group, option) in (("model", "cnn1d"), ("model", "gru")):
        overrides = tiny_signals(tmp_path)
    elif group == "model" and option in MODEL_DATA:
        overrides = MODEL_DATA[option]
    else:
        overrides = tiny_images(tmp_path)
    summary = run(make_cfg(f"{group}={option}", *QUICK, *overrides), tmp_path / "run")
    assert summary["status"] == "completed" and summary["epochs_completed"] == 1
    acc = summary["test"].get("acc", 0.0)  # a regression set has no accuracy
    assert math.isfinite(summary["test"]["loss"]) and 0 <= acc <= 1


@pytest.mark.parametrize(("dataset", "model"), [("arrays", "linear"), ("synthetic", "mlp")])
def test_regression_trains_with_mse(make_cfg, tmp_path, dataset, model):
    if dataset == "arrays":
        path = save_arrays(tmp_path / "set.pt", array_set("regression"))
        overrides = ["dataset=arrays", f"dataset.path={path}"]
    else:
        overrides = ["dataset=synthetic", "dataset.task=regression", "dataset.n_samples=200"]
    summary = run(make_cfg(*overrides, f"model={model}", "loss=mse", *QUICK), tmp_path / "run")
    assert summary["status"] == "completed" and math.isfinite(summary["test"]["loss"])
    assert "acc" not in summary["test"] and "val/acc" not in summary["final"]
