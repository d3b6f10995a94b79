"""Dataset options. Each returns `Data` with inputs already scaled/normalized.

Add one: write a function here (or anywhere importable) that returns `Data`, and a
YAML file in optexp/configs/dataset/ whose `_target_` names it. Sets that fit in memory are
loaded whole: batches are cut from tensors on the device, with no DataLoader. Your own
files are `optexp.data.files`, generated sets `optexp.data.generated`.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from optexp.data import Data, Split, split, train_head

# Earlier configs name these here (optexp-init's copies, users' own files): re-exported.
from optexp.data.files import arrays, image_folder  # noqa: F401
from optexp.data.generated import mnist1d, synthetic  # noqa: F401
from optexp.errors import ConfigError, UserError

# torchvision's in-memory sets: the per-channel mean and std of each training set (the
# values its literature uses).
TORCHVISION_STATS = {
    "MNIST": ((0.1307,), (0.3081,)),
    "FashionMNIST": ((0.2860,), (0.3530,)),
    "CIFAR10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "CIFAR100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def digits(
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    train_size: int | None = None,
) -> Data:
    """scikit-learn's 8x8 handwritten digits (bundled, offline), pixels scaled to [0, 1].
    `train_size`: train on the first N of the training split only (a set small enough to
    overfit); validation and test stay as they are."""
    table = torch.from_numpy(_digits_table())  # 1797 rows: 64 pixels (0-16), then the label
    x = table[:, :-1].float().reshape(-1, 1, 8, 8) / 16.0  # N x 1 x 8 x 8
    y = table[:, -1].long()
    train, val, test = split(x, y, val_fraction, test_fraction, seed)
    return Data(train_head(train, train_size), val, test, num_classes=10)


def _digits_table() -> np.ndarray:
    return _sklearn_table("digits.csv.gz", "load_digits", header=False)


def breast_cancer(val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> Data:
    """Wisconsin diagnostic breast cancer (scikit-learn, bundled, offline): 569 samples of
    30 features, 2 classes (0 malignant, 1 benign); standardized by the training split."""
    table = _sklearn_table("breast_cancer.csv", "load_breast_cancer")
    return _standardized(table, val_fraction, test_fraction, seed, num_classes=2)


def wine(val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> Data:
    """UCI wine recognition (scikit-learn, bundled, offline): 178 samples of 13 chemical
    measurements, 3 cultivars; standardized by the training split."""
    table = _sklearn_table("wine_data.csv", "load_wine")
    return _standardized(table, val_fraction, test_fraction, seed, num_classes=3)


def _standardized(
    table: np.ndarray, val_fraction: float, test_fraction: float, seed: int, num_classes: int
) -> Data:
    """Rows of features then a label, split by `seed`, every split standardized with the
    training split's mean and std alone (validation and test must not shape the inputs)."""
    x = torch.from_numpy(table[:, :-1]).float()
    y = torch.from_numpy(table[:, -1]).long()
    train, val, test = split(x, y, val_fraction, test_fraction, seed)
    mean, std = train.x.mean(0), train.x.std(0)
    std = torch.where(std > 0, std, 1.0)  # a feature constant in training: centred only

    def scaled(s: Split) -> Split:
        return Split((s.x - mean) / std, s.y)

    return Data(scaled(train), scaled(val), None if test is None else scaled(test), num_classes)


def _sklearn_table(file: str, loader: str, header: bool = True) -> np.ndarray:
    """The table scikit-learn ships as sklearn/datasets/data/`file` (features, then the
    label), read as its `loader` reads it, but without importing `sklearn.datasets`, whose
    imports (scipy included) take about a second, most of a short run. `header`: the file
    starts with a line of counts and class names. `loader` if the file moved."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "datasets" / "data" / file
        if path.is_file():
            return np.loadtxt(path, delimiter=",", skiprows=int(header))
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader)()
    return np.column_stack([bunch.data, bunch.target])


def torchvision_set(
    name: str, data_dir: str, download: bool = True, val_fraction: float = 0.1, seed: int = 0
) -> Data:
    """The torchvision set `name` (a key of TORCHVISION_STATS), loaded whole and
    normalized; its own test split, validation carved from its training split."""
    if name not in TORCHVISION_STATS:
        raise ConfigError("dataset.name", name, " | ".join(TORCHVISION_STATS))
    from torchvision import datasets

    cls = getattr(datasets, name)
    try:
        sets = [cls(data_dir, train=train, download=download) for train in (True, False)]
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise UserError(_not_found(name, cls, data_dir, download, error)) from None
    (x, y), (x_test, y_test) = (_images(s) for s in sets)
    mean, std = TORCHVISION_STATS[name]
    x, x_test = normalize(x, mean, std), normalize(x_test, mean, std)
    train, val, _ = split(x, y, val_fraction, 0.0, seed)
    return Data(train, val, Split(x_test, y_test), len(sets[0].classes), mean, std)


def _images(dataset: Any) -> tuple[Tensor, Tensor]:
    """uint8 images (N, H, W) or (N, H, W, C) -> float (N, C, H, W) in [0, 1]."""
    x = torch.as_tensor(dataset.data)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float().div_(255), torch.as_tensor(dataset.targets, dtype=torch.long)


def _not_found(name: str, cls: type, data_dir: str, download: bool, error: Exception) -> str:
    """Where the files go, for someone who fetches them by hand (e.g. no network here)."""
    root = Path(data_dir)
    if hasattr(cls, "base_folder"):  # the CIFAR sets: one archive of python pickles
        files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        where = (
            f"download {cls.url} and unpack it into {root}/ "
            f"(giving {root / cls.base_folder}/ with {', '.join(files)})"
        )
    else:  # the MNIST family: four gzipped idx files
        files = [os.path.splitext(f)[0] for f, _ in cls.resources]
        where = (
            f"download {', '.join(f for f, _ in cls.resources)} from {cls.mirrors[0]} "
            f"and gunzip them into {root / name / 'raw'}/ (giving {', '.join(files)})"
        )
    why = "downloading it failed" if download else "dataset.download=false"
    detail = " ".join(str(error).split())  # one line: the CLI prints errors on one line
    return (
        f"{name} is not in data_dir={str(root)!r} and {why} ({detail}). "
        f"To provide it by hand, {where}, then run with dataset.download=false."
    )


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """(x - mean) / std per channel (dimension 1)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)
