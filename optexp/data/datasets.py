"""Dataset options. Each returns `Data` with inputs already scaled/normalized.

Add one: write a function here (or anywhere importable) that returns `Data`, and a
YAML file in optexp/configs/dataset/ whose `_target_` names it. Sets that fit in memory are
loaded whole: batches are cut from tensors on the device, with no DataLoader. Image
folders are read from disk by DataLoader workers (`FileSplit`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from optexp.data import Data, FileSplit, Split, split, worker_error
from optexp.errors import ConfigError, UserError

# torchvision's in-memory sets: the per-channel mean and std of each training set (the
# values its literature uses).
TORCHVISION_STATS = {
    "MNIST": ((0.1307,), (0.3081,)),
    "FashionMNIST": ((0.2860,), (0.3530,)),
    "CIFAR10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "CIFAR100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def digits(val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> Data:
    """scikit-learn's 8x8 handwritten digits (bundled, offline), pixels scaled to [0, 1]."""
    table = torch.from_numpy(_digits_table())  # 1797 rows: 64 pixels (0-16), then the label
    x = table[:, :-1].float().reshape(-1, 1, 8, 8) / 16.0  # N x 1 x 8 x 8
    y = table[:, -1].long()
    train, val, test = split(x, y, val_fraction, test_fraction, seed)
    return Data(train, val, test, num_classes=10)


def _digits_table() -> np.ndarray:
    """The table scikit-learn ships as sklearn/datasets/data/digits.csv.gz, read as its
    `load_digits` reads it, but without importing `sklearn.datasets`, whose imports (scipy
    included) cost a good part of a short run. `load_digits` if the file moved."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return np.loadtxt(path, delimiter=",")
    from sklearn.datasets import load_digits

    bunch = load_digits()
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


# --- your own files ---------------------------------------------------------------------


IMAGE_FOLDER_LAYOUT = "a folder of <class>/<image> files, or of train/ [val/] [test/] such folders"
STATS_SAMPLE = 1000  # training images the normalization statistics are measured on


def image_folder(
    path: str | None = None,
    image_size: int = 32,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    workers: int | None = None,
) -> Data:
    """Images in torchvision's ImageFolder layout, `path/<class>/<image>`, read from disk
    batch by batch by `workers` DataLoader processes (None: one per CPU, up to 8), as RGB
    resized to `image_size` squared. If `path` has a `train/` subfolder, the splits come
    from `train/`, `val/` and `test/` (each `<class>/<image>`); a missing `val/` or
    `test/` is carved from `train/` with its fraction. Inputs are normalized with the
    per-channel mean and std of (up to STATS_SAMPLE of) the training images."""
    if image_size < 1:
        raise ConfigError("dataset.image_size", image_size, "an integer >= 1")
    if workers is None:
        workers = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    if workers < 0:
        raise ConfigError("dataset.workers", workers, "null, or an integer >= 0 (0: in-process)")
    root = _existing_path(path, IMAGE_FOLDER_LAYOUT)
    pre_split = (root / "train").is_dir()
    folder = _image_folder(root / "train" if pre_split else root, image_size)
    labels = torch.tensor(folder.targets)
    given = {
        name: _image_folder(root / name, image_size, folder.classes)
        for name in ("val", "test")
        if pre_split and (root / name).is_dir()
    }
    # Split sample indices: the same assignment `split` makes for in-memory tensors.
    train, val, test = split(
        torch.arange(len(labels)),
        labels,
        0.0 if "val" in given else val_fraction,
        0.0 if "test" in given else test_fraction,
        seed,
    )
    shape = (3, image_size, image_size)
    mean, std = _channel_stats(Subset(folder, train.x[:STATS_SAMPLE].tolist()), workers)

    def part(name: str, carved: Split | None) -> FileSplit | None:
        """The split from its own folder if given, else the samples carved for it."""
        if name in given:
            images, y = given[name], torch.tensor(given[name].targets)
        elif carved is not None:
            images, y = Subset(folder, carved.x.tolist()), carved.y
        else:
            return None
        return FileSplit(images, y, shape, mean, std, workers)

    classes = len(folder.classes)
    splits = part("train", train), part("val", val), part("test", test)
    return Data(*splits, num_classes=classes, mean=mean, std=std)


def _image_folder(folder: Path, image_size: int, classes: list[str] | None = None) -> Dataset:
    """torchvision's ImageFolder giving uint8 RGB images (its loader converts every image
    to RGB) resized to `image_size` squared."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    resize = v2.Compose([v2.PILToTensor(), v2.Resize((image_size, image_size), antialias=True)])
    try:
        dataset = ImageFolder(str(folder), transform=resize)
    except (OSError, RuntimeError, ValueError) as error:
        raise ConfigError(
            "dataset.path", str(folder), IMAGE_FOLDER_LAYOUT, f"cannot be loaded: {error}"
        ) from None
    if classes is not None and dataset.classes != classes:
        raise ConfigError(
            "dataset.path",
            str(folder),
            f"the class folders of train/: {', '.join(classes)}",
            f"has other class folders: {', '.join(dataset.classes)}",
        )
    return dataset


def _channel_stats(images: Dataset, workers: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], summed batch by batch."""
    from torch.utils.data import DataLoader

    total = squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    try:
        for x, _ in DataLoader(images, batch_size=256, num_workers=workers):
            x = x.double().div_(255)
            total = total + x.sum(dim=(0, 2, 3))
            squares = squares + x.square().sum(dim=(0, 2, 3))
            count += x.numel() // x.shape[1]
    except OSError as error:
        raise UserError(f"cannot read an image of dataset.path: {worker_error(error)}") from None
    mean = total / count
    variance = (squares - count * mean.square()) / max(count - 1, 1)
    std = variance.clamp_min(0).sqrt()
    std = torch.where(std > 0, std, 1.0)  # a constant channel
    return tuple(mean.tolist()), tuple(std.tolist())


def _existing_path(path: str | None, allowed: str) -> Path:
    if path is None:
        raise ConfigError("dataset.path", path, allowed, "is not set")
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise ConfigError("dataset.path", path, allowed, "does not exist")
    return resolved


ARRAYS_LAYOUT = (
    "a .npz or .pt file holding x_train, y_train, x_test, y_test (and optionally x_val, y_val)"
)


def arrays(path: str | None = None, val_fraction: float = 0.1, seed: int = 0) -> Data:
    """Your own tensors: `path` is a .npz (numpy.savez) or .pt (torch.save of a dict) file
    with x_train, y_train, x_test, y_test and optionally x_val, y_val (else validation is
    carved from training with `val_fraction`). Integer labels make a classification task,
    float targets a regression. uint8 inputs are scaled to [0, 1]; others are used as
    they are."""
    tensors = _read_arrays(_existing_path(path, ARRAYS_LAYOUT), path)
    names = ["train", "test"] + (["val"] if {"x_val", "y_val"} & tensors.keys() else [])
    missing = [f"{xy}_{name}" for name in names for xy in "xy" if f"{xy}_{name}" not in tensors]
    if missing:
        raise _bad_arrays(path, f"has no {', '.join(missing)}")
    pairs = {name: (tensors[f"x_{name}"], tensors[f"y_{name}"]) for name in names}
    classification = _check_arrays(path, pairs)
    splits = {
        name: Split(_inputs(x), y.long() if classification else y.float())
        for name, (x, y) in pairs.items()
    }
    if "val" in splits:
        train, val = splits["train"], splits["val"]
    else:
        train, val, _ = split(splits["train"].x, splits["train"].y, val_fraction, 0.0, seed)
    num_classes = 1 + max(int(s.y.max()) for s in splits.values()) if classification else None
    return Data(train, val, splits["test"], num_classes)


def _read_arrays(file: Path, path: str | None) -> dict[str, Tensor]:
    import numpy as np

    if file.suffix not in (".npz", ".pt"):
        raise _bad_arrays(path, "is neither a .npz nor a .pt file")
    try:
        if file.suffix == ".npz":
            with np.load(file, allow_pickle=False) as npz:
                return {key: torch.from_numpy(npz[key]) for key in npz.files}
        loaded = torch.load(file, map_location="cpu", weights_only=True)
        if not isinstance(loaded, dict):
            raise _bad_arrays(path, f"holds a {type(loaded).__name__}, not a dict of tensors")
        return {str(key): torch.as_tensor(value) for key, value in loaded.items()}
    except ConfigError:
        raise
    except Exception as error:  # whatever a damaged or foreign file makes the readers raise
        raise _bad_arrays(path, f"cannot be read ({type(error).__name__}: {error})") from None


def _check_arrays(path: str | None, pairs: dict[str, tuple[Tensor, Tensor]]) -> bool:
    """Refuse what would fail later or train on garbage; True for integer (class) labels."""
    kinds = {name: _label_kind(y) for name, (_, y) in pairs.items()}
    feature_shapes = {name: tuple(x.shape[1:]) for name, (x, _) in pairs.items()}
    for name, (x, y) in pairs.items():
        if len(x) != len(y) or len(x) == 0:
            raise _bad_arrays(path, f"has {len(x)} x_{name} but {len(y)} y_{name}")
        if kinds[name] is None:
            raise _bad_arrays(path, f"y_{name} is {y.dtype}, not integer labels or float targets")
        if kinds[name] != kinds["train"]:
            raise _bad_arrays(path, f"y_{name} is {kinds[name]} but y_train is {kinds['train']}")
        if feature_shapes[name] != feature_shapes["train"]:
            raise _bad_arrays(
                path,
                f"x_{name} has samples of shape {feature_shapes[name]}, "
                f"x_train of {feature_shapes['train']}",
            )
        for key, values in ((f"x_{name}", x), (f"y_{name}", y)):
            if values.is_floating_point() and not values.isfinite().all():
                raise _bad_arrays(path, f"{key} has non-finite values (NaN or inf)")
        if kinds[name] == "integer" and (y.ndim != 1 or y.min() < 0):
            raise _bad_arrays(path, f"y_{name} must be one class id >= 0 per sample")
    return kinds["train"] == "integer"


def _label_kind(y: Tensor) -> str | None:
    if y.is_floating_point():
        return "float"
    if y.dtype == torch.bool or y.is_complex():
        return None
    return "integer"


def _inputs(x: Tensor) -> Tensor:
    """float32 inputs, bytes scaled to [0, 1]; one feature per sample becomes (N, 1)."""
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    return x.unsqueeze(1) if x.ndim == 1 else x


def _bad_arrays(path: str | None, problem: str) -> ConfigError:
    return ConfigError("dataset.path", path, ARRAYS_LAYOUT, problem)


# --- generated ---------------------------------------------------------------------------

SYNTHETIC_KINDS = {"classification": ("spirals", "blobs"), "regression": ("sine",)}


def synthetic(
    task: str = "classification",
    kind: str | None = None,
    n_samples: int = 1000,
    noise: float = 0.1,
    num_classes: int = 3,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Data:
    """Points in the plane, generated from `seed`: for classification, `spirals`
    (`num_classes` interleaved arms) or `blobs` (one Gaussian cluster per class); for
    regression, `sine`: y = sin(pi x1) cos(pi x2) on [-1, 1]^2. `noise` is the std of
    Gaussian noise added to the inputs (classification) or to the targets (regression).
    `kind: null` takes the task's first kind."""
    if task not in SYNTHETIC_KINDS:
        raise ConfigError("dataset.task", task, " | ".join(SYNTHETIC_KINDS))
    kind = kind or SYNTHETIC_KINDS[task][0]
    if kind not in SYNTHETIC_KINDS[task]:
        raise ConfigError("dataset.kind", kind, f"{' | '.join(SYNTHETIC_KINDS[task])} for {task}")
    if n_samples < 10:
        raise ConfigError("dataset.n_samples", n_samples, "an integer >= 10")
    if task == "classification" and num_classes < 2:
        raise ConfigError("dataset.num_classes", num_classes, "an integer >= 2")
    generator = torch.Generator().manual_seed(seed)
    x, y = _GENERATORS[kind](n_samples, num_classes, generator)
    jitter = noise * torch.randn(
        x.shape if task == "classification" else y.shape, generator=generator
    )
    x, y = (x + jitter, y) if task == "classification" else (x, y + jitter)
    train, val, test = split(x, y, val_fraction, test_fraction, seed)
    return Data(train, val, test, num_classes if task == "classification" else None)


def _spirals(n: int, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    y = torch.arange(n) % k
    radius = torch.rand(n, generator=generator)
    angle = 2 * math.pi * y / k + 4 * radius  # each arm sweeps 4 radians outwards (CS231n)
    return torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1), y


def _blobs(n: int, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    y = torch.arange(n) % k
    centre_angle = 2 * math.pi * y / k
    centres = torch.stack([centre_angle.cos(), centre_angle.sin()], dim=1)
    return centres + 0.25 * torch.randn(n, 2, generator=generator), y


def _sine(n: int, _: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    x = 2 * torch.rand(n, 2, generator=generator) - 1
    return x, torch.sin(math.pi * x[:, 0]) * torch.cos(math.pi * x[:, 1])


_GENERATORS = {"spirals": _spirals, "blobs": _blobs, "sine": _sine}


# --- MNIST-1D: generated offline by its own package, cached under data_dir -----------------


def mnist1d(
    data_dir: str,
    num_samples: int = 5000,
    generator_seed: int = 42,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Data:
    """MNIST-1D (Greydanus 2020): 10 digit templates turned into signals of length 40 by
    padding, scaling, translation, noise and shear. Made by the `mnist1d` package's own
    generator (`make_dataset`, never its download); its defaults (5000 samples, seed 42)
    give the published set: the first 80 % (4000) train, the rest (1000) test. Samples
    are (1, 40), one channel, so 1-D convolutions apply. The arrays are cached in
    data_dir as an .npz named by the generator settings; validation is carved from the
    training part by `seed` (data_seed)."""
    if num_samples < 20:
        raise ConfigError("dataset.num_samples", num_samples, "an integer >= 20")
    arrays = mnist1d_arrays(Path(data_dir), num_samples, generator_seed)
    x, x_test = (torch.from_numpy(arrays[k]).float().unsqueeze(1) for k in ("x", "x_test"))
    y, y_test = (torch.from_numpy(arrays[k]).long() for k in ("y", "y_test"))
    train, val, _ = split(x, y, val_fraction, 0.0, seed)
    return Data(train, val, Split(x_test, y_test), num_classes=10)


def mnist1d_arrays(root: Path, num_samples: int, generator_seed: int) -> dict[str, np.ndarray]:
    """x, y, x_test, y_test from the cache file, generated (and cached) if it is missing."""
    args = _mnist1d_args(num_samples, generator_seed)
    digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:10]
    path = root / f"mnist1d_n{num_samples}_seed{generator_seed}_{digest}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    arrays = _generate_mnist1d(args)
    root.mkdir(parents=True, exist_ok=True)
    # Parallel sweep jobs may generate at once: each writes its own file, renamed into place.
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
    np.savez(partial, **arrays)
    os.replace(partial, path)
    return arrays


def _mnist1d_args(num_samples: int, generator_seed: int) -> dict[str, Any]:
    try:
        from mnist1d.data import get_dataset_args
    except ImportError:
        raise UserError("dataset=mnist1d needs the mnist1d package: pip install mnist1d") from None
    args = get_dataset_args(as_dict=True)
    args.pop("url")  # the download address: never used, and no part of the data
    return args | {"num_samples": num_samples, "seed": generator_seed}


def _generate_mnist1d(args: dict[str, Any]) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    # make_dataset seeds numpy's and Python's global generators: keep the run's own draws.
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        made = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {
        "x": made["x"].astype(np.float32),
        "y": made["y"].astype(np.int64),
        "x_test": made["x_test"].astype(np.float32),
        "y_test": made["y_test"].astype(np.int64),
    }
