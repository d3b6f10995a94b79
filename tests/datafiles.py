"""Tiny stand-ins for dataset files, written in the formats their readers expect:
torchvision's MNIST idx files and CIFAR pickles, ImageFolder PNGs, .npz/.pt arrays, a
UTF-8 text file."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import torch

# option -> (torchvision folder under data_dir, number of classes)
TORCHVISION_SETS = {
    "mnist": ("MNIST/raw", 10),
    "fashion_mnist": ("FashionMNIST/raw", 10),
    "cifar10": ("cifar-10-batches-py", 10),
    "cifar100": ("cifar-100-python", 100),
}
N_TRAIN, N_TEST = 40, 12


def write_torchvision_set(option: str, root: Path, seed: int = 0) -> None:
    """N_TRAIN training and N_TEST test images of `option` under the data_dir `root`."""
    folder, classes = TORCHVISION_SETS[option]
    rng = np.random.default_rng(seed)
    (root / folder).mkdir(parents=True, exist_ok=True)
    if option in ("mnist", "fashion_mnist"):
        for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
            _write_idx(
                root / folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28))
            )
            _write_idx(root / folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % classes)
    elif option == "cifar10":
        for i in range(1, 6):  # five training batches, as the real set
            _write_cifar(root / folder / f"data_batch_{i}", rng, N_TRAIN // 5, classes, "labels")
        _write_cifar(root / folder / "test_batch", rng, N_TEST, classes, "labels")
        _pickle(root / folder / "batches.meta", {"label_names": [f"c{i}" for i in range(classes)]})
    else:
        _write_cifar(root / folder / "train", rng, N_TRAIN, classes, "fine_labels")
        _write_cifar(root / folder / "test", rng, N_TEST, classes, "fine_labels")
        _pickle(root / folder / "meta", {"fine_label_names": [f"c{i}" for i in range(classes)]})


def _write_idx(path: Path, values: np.ndarray) -> None:
    """LeCun's idx format: magic (0, 0, type 0x08 = ubyte, ndim), big-endian sizes, bytes."""
    header = struct.pack(">I", 0x0800 + values.ndim) + struct.pack(
        f">{values.ndim}I", *values.shape
    )
    path.write_bytes(header + values.astype(np.uint8).tobytes())


def _write_cifar(path: Path, rng: np.random.Generator, n: int, classes: int, key: str) -> None:
    data = rng.integers(0, 256, (n, 3 * 32 * 32)).astype(np.uint8)  # rows of R, G, B planes
    _pickle(path, {"data": data, key: [i % classes for i in range(n)]})


def _pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj))


def write_image_folder(root: Path, classes: int = 3, per_class: int = 6) -> Path:
    """root/<class>/<i>.png, images of assorted sizes and modes (grey and RGB)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            shape = (10 + i, 12) if i % 2 else (16, 16, 3)
            pixels = rng.integers(0, 256, shape).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


def array_set(task: str = "classification", n: int = 30, shape: tuple = (5,)) -> dict:
    """x_train/y_train/x_test/y_test tensors of a small classification or regression set,
    inputs of `shape` per sample (e.g. (1, 8, 8) for images), 3 classes."""
    generator = torch.Generator().manual_seed(0)
    arrays = {}
    for name, size in (("train", n), ("test", n // 3)):
        arrays[f"x_{name}"] = torch.randn(size, *shape, generator=generator)
        arrays[f"y_{name}"] = (
            torch.arange(size) % 3
            if task == "classification"
            else torch.randn(size, generator=generator)
        )
    return arrays


def save_arrays(path: Path, arrays: dict) -> Path:
    """As numpy.savez for .npz, torch.save for .pt."""
    if path.suffix == ".npz":
        np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    else:
        torch.save(arrays, path)
    return path


def write_text(root: Path, name: str, n_chars: int = 2000) -> Path:
    """root/<name>.txt: `n_chars` characters of English-like lines (what dataset=text_file
    reads), the same every time."""
    words = [
        "to",
        "be",
        "or",
        "not",
        "that",
        "is",
        "the",
        "question",
        "whether",
        "tis",
        "nobler",
        "in",
        "mind",
    ]
    rng = np.random.default_rng(0)
    text = ""
    while len(text) < n_chars:
        text += " ".join(rng.choice(words, 8)).capitalize() + ".\n"
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.txt"
    path.write_text(text[:n_chars], encoding="utf-8")
    return path
