"""Datasets from your own files: an image folder read from disk batch by batch
(`image_folder`, DataLoader workers decode each batch), and tensors in a .npz or .pt file
loaded whole (`arrays`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from optexp.data import Data, FileSplit, Split, UnreadableImage, image_error, split
from optexp.errors import ConfigError, UserError

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
    workers = _workers(workers)
    root = _existing_path(path, IMAGE_FOLDER_LAYOUT)
    pre_split, loader = (root / "train").is_dir(), ImageLoader(root, path)
    folder = _image_folder(root / "train" if pre_split else root, image_size, loader)
    labels = torch.tensor(folder.targets)
    given = {
        name: _image_folder(root / name, image_size, loader, folder.classes)
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


def _workers(workers: int | None) -> int:
    """DataLoader processes: None is one per CPU this process may use, up to 8."""
    if workers is None:
        return min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    if workers < 0:
        raise ConfigError("dataset.workers", workers, "null, or an integer >= 0 (0: in-process)")
    return workers


class ImageLoader:
    """torchvision's image loader (RGB), whose error names the file that does not read,
    relative to dataset.path. Decoding every image to count the others would cost as
    much as an epoch: the message says that only the first one found is named."""

    def __init__(self, root: Path, path: str | None) -> None:
        self.root, self.path = root, path  # plain attributes: spawned workers unpickle it

    def __call__(self, file: str) -> Any:
        from PIL import UnidentifiedImageError
        from torchvision.datasets.folder import default_loader

        try:
            return default_loader(file)
        except OSError as error:  # PIL's errors are OSErrors: truncated, unidentified
            if isinstance(error, UnidentifiedImageError):
                detail = "not an image file PIL can identify"
            else:
                detail = error.strerror or str(error) or type(error).__name__
            problem = (
                f"has an unreadable image, {os.path.relpath(file, self.root)} ({detail}); "
                "only the first one found is named"
            )
            allowed = "image files PIL can read: replace or remove that one"
            error = ConfigError("dataset.path", self.path, allowed, problem)
            raise UnreadableImage(str(error)) from None


def _image_folder(
    folder: Path, image_size: int, loader: ImageLoader, classes: list[str] | None = None
) -> Dataset:
    """torchvision's ImageFolder giving uint8 RGB images resized to `image_size` squared."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    resize = v2.Compose([v2.PILToTensor(), v2.Resize((image_size, image_size), antialias=True)])
    try:
        dataset = ImageFolder(str(folder), transform=resize, loader=loader)
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
        raise UserError(image_error(error)) from None
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
