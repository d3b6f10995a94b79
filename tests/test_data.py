"""Dataset options on small files written here: torchvision's formats, image folders,
.npz/.pt arrays, and generated sets. Downloads fail at once (conftest: no_network)."""

import os

import pytest
import torch

from optexp.config import ConfigError, UserError
from optexp.data import datasets
from optexp.parts import build
from tests.datafiles import (
    N_TEST,
    N_TRAIN,
    TORCHVISION_SETS,
    array_set,
    save_arrays,
    write_image_folder,
    write_torchvision_set,
)


def test_digits_are_scikit_learns_whether_read_from_its_file_or_through_load_digits(
    monkeypatch,
):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    expected = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    direct = datasets._digits_table()
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)  # no file
    assert (datasets._digits_table() == direct).all()  # the load_digits fallback
    monkeypatch.undo()

    data = datasets.digits(val_fraction=0.1, test_fraction=0.2, seed=0)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.long
    x = torch.cat([data.val.x, data.test.x, data.train.x])
    y = torch.cat([data.val.y, data.test.y, data.train.y])
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, expected[order]) and torch.equal(y, torch.tensor(bunch.target)[order])


@pytest.mark.parametrize(
    ("option", "loader", "features", "classes"),
    [("breast_cancer", "load_breast_cancer", 30, 2), ("wine", "load_wine", 13, 3)],
)
def test_bundled_tables_are_scikit_learns_standardized_by_the_training_split(
    option, loader, features, classes, monkeypatch
):
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader)()
    file = {"breast_cancer": "breast_cancer.csv", "wine": "wine_data.csv"}[option]
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)  # no file
    fallback = datasets._sklearn_table(file, loader)
    monkeypatch.undo()
    assert (datasets._sklearn_table(file, loader) == fallback).all()

    data = getattr(datasets, option)(val_fraction=0.1, test_fraction=0.2, seed=3)
    assert data.input_shape == (features,) and data.num_classes == classes
    n = len(bunch.target)
    n_val, n_test = round(n * 0.1), round(n * 0.2)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(3))  # `split`'s
    x = torch.tensor(bunch.data, dtype=torch.float32)[order]
    y = torch.tensor(bunch.target)[order]
    raw = {
        "val": slice(0, n_val),
        "test": slice(n_val, n_val + n_test),
        "train": slice(n_val + n_test, n),
    }
    mean, std = x[raw["train"]].mean(0), x[raw["train"]].std(0)  # training rows only
    for name, rows in raw.items():
        split = getattr(data, name)
        assert torch.equal(split.y, y[rows])
        assert torch.allclose(split.x, (x[rows] - mean) / std, atol=1e-5)
    assert data.train.x.mean(0).abs().max() < 1e-5
    assert torch.allclose(data.train.x.std(0), torch.ones(features), atol=1e-5)


@pytest.mark.parametrize("option", sorted(TORCHVISION_SETS))
def test_torchvision_sets_load_from_files_with_their_own_test_split(
    option, tmp_path, fake_checksums, make_cfg
):
    write_torchvision_set(option, tmp_path)
    cfg = make_cfg(f"dataset={option}", "dataset.download=false", "dataset.val_fraction=0.25")
    data = build("dataset", cfg.dataset, data_dir=str(tmp_path))

    channels, classes = (1, 10) if "mnist" in option else (3, TORCHVISION_SETS[option][1])
    size = 28 if "mnist" in option else 32
    assert data.input_shape == (channels, size, size) and data.num_classes == classes
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, N_TEST)
    assert data.train.y.dtype == torch.long and data.test.y.tolist() == [
        i % classes for i in range(N_TEST)
    ]
    # normalized with the set's statistics: undoing it gives back whole bytes in [0, 255]
    mean, std = torch.tensor(data.mean).view(-1, 1, 1), torch.tensor(data.std).view(-1, 1, 1)
    pixels = (data.test.x * std + mean) * 255
    assert len(data.mean) == channels and pixels.min() > -0.01 and pixels.max() < 255.01
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)


def test_validation_is_carved_from_training_by_the_data_seed(tmp_path):
    write_torchvision_set("mnist", tmp_path)
    first = datasets.torchvision_set("MNIST", str(tmp_path), download=False, seed=0)
    again = datasets.torchvision_set("MNIST", str(tmp_path), download=False, seed=0)
    other = datasets.torchvision_set("MNIST", str(tmp_path), download=False, seed=1)
    assert torch.equal(first.val.x, again.val.x) and not torch.equal(first.val.x, other.val.x)
    everything = torch.cat([first.train.x, first.val.x]).flatten(1)
    assert len(everything) == N_TRAIN and len(everything.unique(dim=0)) == N_TRAIN


@pytest.mark.parametrize(
    ("option", "files"),
    [
        ("mnist", ["MNIST/raw", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
        ("fashion_mnist", ["FashionMNIST/raw", "train-images-idx3-ubyte"]),
        ("cifar10", ["cifar-10-batches-py", "data_batch_5", "test_batch", "batches.meta"]),
        ("cifar100", ["cifar-100-python", "cifar-100-python.tar.gz", "meta"]),
    ],
)
@pytest.mark.parametrize("download", [True, False])
def test_missing_files_say_where_to_put_which_files(make_cfg, tmp_path, option, files, download):
    cfg = make_cfg(f"dataset={option}", f"dataset.download={download}")
    with pytest.raises(UserError) as raised:
        build("dataset", cfg.dataset, data_dir=str(tmp_path / "nowhere"))
    message = str(raised.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message
    assert all(name in message for name in files)
    assert ("downloading it failed" in message) == download
    assert "name resolution" in message or not download  # the network's own reason


# --- arrays -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_arrays_classification(tmp_path, suffix):
    path = save_arrays(tmp_path / f"set{suffix}", array_set("classification"))
    data = datasets.arrays(str(path), val_fraction=0.2)
    assert data.num_classes == 3 and data.input_shape == (5,)
    assert (len(data.train), len(data.val), len(data.test)) == (24, 6, 10)
    assert data.train.y.dtype == torch.long and data.train.x.dtype == torch.float32


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_arrays_regression_with_own_validation_split_and_byte_images(tmp_path, suffix):
    arrays = array_set("regression")
    arrays["x_train"] = torch.randint(0, 256, (30, 1, 4, 4), dtype=torch.uint8)
    arrays["x_test"] = torch.full((10, 1, 4, 4), 255, dtype=torch.uint8)
    arrays |= {"x_val": torch.zeros(7, 1, 4, 4, dtype=torch.uint8), "y_val": torch.ones(7)}
    data = datasets.arrays(str(save_arrays(tmp_path / f"set{suffix}", arrays)))
    assert data.num_classes is None and data.num_outputs == 1
    assert (len(data.train), len(data.val)) == (30, 7) and data.train.y.dtype == torch.float32
    assert data.test.x.max() == 1 and data.train.x.max() <= 1 and data.val.y.tolist() == [1] * 7


def _broken(change):
    def make(tmp_path):
        arrays = array_set("regression" if change == "nan_y" else "classification")
        if change == "no_test":
            del arrays["x_test"], arrays["y_test"]
        elif change == "only_x_val":
            arrays["x_val"] = arrays["x_train"][:3]
        elif change == "lengths":
            arrays["y_train"] = arrays["y_train"][:-1]
        elif change == "nan_x":
            arrays["x_test"][0, 0] = float("inf")
        elif change == "nan_y":
            arrays["y_train"][2] = float("nan")
        elif change == "negative":
            arrays["y_test"][0] = -1
        elif change == "mixed":
            arrays["y_test"] = arrays["y_test"].float()
        elif change == "shapes":
            arrays["x_test"] = arrays["x_test"][:, :4]
        return str(save_arrays(tmp_path / "bad.npz", arrays))

    return make


def _write(name, content):
    def make(tmp_path):
        (tmp_path / name).write_bytes(content)
        return str(tmp_path / name)

    return make


def _torch_list(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    return str(tmp_path / "list.pt")


@pytest.mark.parametrize(
    ("make_path", "problem"),
    [
        (lambda tmp_path: None, "is not set"),
        (lambda tmp_path: str(tmp_path / "absent.npz"), "does not exist"),
        (_write("garbage.npz", b"not a zip file"), "cannot be read"),
        (_write("garbage.pt", b"\x00\x01 not a pickle"), "cannot be read"),
        (_write("set.csv", b"1,2\n"), "neither a .npz nor a .pt"),
        (_torch_list, "holds a list, not a dict"),
        (_broken("no_test"), "has no x_test, y_test"),
        (_broken("only_x_val"), "has no y_val"),
        (_broken("lengths"), "has 30 x_train but 29 y_train"),
        (_broken("nan_x"), "x_test has non-finite values"),
        (_broken("nan_y"), "y_train has non-finite values"),
        (_broken("negative"), "y_test must be one class id >= 0"),
        (_broken("mixed"), "y_test is float but y_train is integer"),
        (_broken("shapes"), "x_test has samples of shape (4,), x_train of (5,)"),
    ],
)
def test_bad_array_files_are_refused_naming_dataset_path(tmp_path, make_path, problem):
    with pytest.raises(ConfigError) as raised:
        datasets.arrays(make_path(tmp_path))
    assert raised.value.key == "dataset.path" and problem in str(raised.value)
    assert "x_train, y_train, x_test, y_test" in str(raised.value)  # says what is expected


# --- image folders ----------------------------------------------------------------------


def test_image_folder_splits_one_folder_and_normalizes_by_training_statistics(tmp_path):
    root = write_image_folder(tmp_path / "images")
    data = datasets.image_folder(
        str(root), image_size=8, val_fraction=0.2, test_fraction=0.2, workers=0
    )
    assert data.input_shape == (3, 8, 8) and data.num_classes == 3
    assert (len(data.train), len(data.val), len(data.test)) == (10, 4, 4)
    assert sorted(torch.cat([data.train.y, data.val.y, data.test.y]).tolist()) == sorted(
        [c for c in range(3) for _ in range(6)]
    )
    x, y = next(data.train.batches(64))  # the whole training split, decoded from the files
    assert x.shape == (10, 3, 8, 8) and torch.equal(y, data.train.y)
    per_channel = x.transpose(0, 1).flatten(1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(per_channel.std(1), torch.ones(3), atol=1e-4)
    assert all(0 < m < 1 for m in data.mean)


def test_image_folder_batches_follow_the_order_and_resume_point_in_worker_processes(tmp_path):
    root = write_image_folder(tmp_path / "images")
    data = datasets.image_folder(str(root), image_size=8, val_fraction=0.0, test_fraction=0.0)
    assert data.train.workers == min(8, len(os.sched_getaffinity(0)))  # one per CPU
    whole = torch.cat([x for x, _ in data.train.batches(18)])
    order = torch.randperm(18, generator=torch.Generator().manual_seed(1))
    batches = list(data.train.batches(4, order, first=2))  # a resumed epoch: from batch 2 on
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([x for x, _ in batches]), whole[order[8:]])
    assert torch.equal(torch.cat([y for _, y in batches]), data.train.y[order[8:]])


def test_an_image_that_does_not_decode_is_a_user_error_naming_the_problem(tmp_path):
    root = write_image_folder(tmp_path / "images")
    data = datasets.image_folder(str(root), image_size=8, test_fraction=0.0, workers=0)
    for path in root.rglob("*.png"):
        path.write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"dataset\.path=.* has an unreadable image, class"):
        list(data.train.batches(4))


def test_image_folder_takes_train_val_test_subfolders_when_present(tmp_path):
    write_image_folder(tmp_path / "set" / "train", per_class=4)
    write_image_folder(tmp_path / "set" / "test", per_class=2)
    data = datasets.image_folder(str(tmp_path / "set"), image_size=16, val_fraction=0.25, workers=0)
    assert (len(data.train), len(data.val), len(data.test)) == (9, 3, 6)  # val from train/
    assert data.test.y.tolist() == [0, 0, 1, 1, 2, 2] and data.input_shape == (3, 16, 16)


def test_image_folder_refuses_a_folder_without_class_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"dataset\.path=.*cannot be loaded"):
        datasets.image_folder(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="does not exist"):
        datasets.image_folder(str(tmp_path / "absent"))


def test_image_folder_refuses_splits_with_different_classes(tmp_path):
    write_image_folder(tmp_path / "set" / "train", classes=3, per_class=2)
    write_image_folder(tmp_path / "set" / "val", classes=2, per_class=2)
    with pytest.raises(ConfigError, match="class folders of train/: class0, class1, class2"):
        datasets.image_folder(str(tmp_path / "set"))


# --- generated --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["spirals", "blobs"])
def test_synthetic_classification(kind):
    data = datasets.synthetic(kind=kind, n_samples=200, num_classes=4, seed=3)
    assert data.num_classes == 4 and data.input_shape == (2,)
    assert (len(data.train), len(data.val), len(data.test)) == (140, 20, 40)
    assert set(data.train.y.tolist()) == {0, 1, 2, 3}
    again = datasets.synthetic(kind=kind, n_samples=200, num_classes=4, seed=3)
    assert torch.equal(data.train.x, again.train.x)
    other = datasets.synthetic(kind=kind, n_samples=200, num_classes=4, seed=4)
    assert not torch.equal(data.train.x, other.train.x)


def test_synthetic_regression_follows_its_function_up_to_the_noise():
    data = datasets.synthetic(task="regression", n_samples=500, noise=0.05)
    assert data.num_classes is None and data.num_outputs == 1
    x, y = data.train.x, data.train.y
    assert y.dtype == torch.float32 and y.shape == (len(x),)
    clean = torch.sin(torch.pi * x[:, 0]) * torch.cos(torch.pi * x[:, 1])
    assert 0.03 < (y - clean).std() < 0.07


@pytest.mark.parametrize(
    ("arguments", "key"),
    [
        ({"task": "ranking"}, "dataset.task"),
        ({"task": "regression", "kind": "spirals"}, "dataset.kind"),
        ({"n_samples": 0}, "dataset.n_samples"),
        ({"num_classes": 1}, "dataset.num_classes"),
    ],
)
def test_synthetic_refuses_bad_knobs(arguments, key):
    with pytest.raises(ConfigError) as raised:
        datasets.synthetic(**arguments)
    assert raised.value.key == key
