"""Datasets generated offline, from their seed: points in the plane (`synthetic`) and
MNIST-1D, made by its own package's generator and cached under data_dir (`mnist1d`)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from optexp.data import Data, Split, split, train_head
from optexp.errors import ConfigError, UserError

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
    train_size: int | None = None,
) -> Data:
    """MNIST-1D (Greydanus 2020): 10 digit templates turned into signals of length 40 by
    padding, scaling, translation, noise and shear. Made by the `mnist1d` package's own
    generator (`make_dataset`, never its download); its defaults (5000 samples, seed 42)
    give the published set: the first 80 % (4000) train, the rest (1000) test. Samples
    are (1, 40), one channel, so 1-D convolutions apply. The arrays are cached in
    data_dir as an .npz named by the generator settings; validation is carved from the
    training part by `seed` (data_seed). `train_size`: train on the first N of the rest
    only (a set small enough to overfit); validation and test stay as they are."""
    if num_samples < 20:
        raise ConfigError("dataset.num_samples", num_samples, "an integer >= 20")
    arrays = mnist1d_arrays(Path(data_dir), num_samples, generator_seed)
    x, x_test = (torch.from_numpy(arrays[k]).float().unsqueeze(1) for k in ("x", "x_test"))
    y, y_test = (torch.from_numpy(arrays[k]).long() for k in ("y", "y_test"))
    train, val, _ = split(x, y, val_fraction, 0.0, seed)

    return Data(train_head(train, train_size), val, Split(x_test, y_test), num_classes=10)


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


# --- problems for the optimizer study: a noisy quadratic, a lookup task, autoencoding -------


def noisy_quadratic(
    dim: int = 100,
    n_samples: int = 2000,
    noise: float = 0.6,
    val_fraction: float = 0.25,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> Data:
    """The data of DeepOBS's quadratic_deep (with model=quadratic, loss=mse): samples x of
    N(0, noise^2 I) in `dim` dimensions and zero targets, so that the loss of a sample is
    0.5 (theta - x)^T H (theta - x). DeepOBS draws 1000 training and 1000 test samples
    from fixed seeds; here they follow `seed` (data_seed), 1000 / 500 / 500 by default."""
    if dim < 2:
        raise ConfigError("dataset.dim", dim, "an integer >= 2")
    if n_samples < 10:
        raise ConfigError("dataset.n_samples", n_samples, "an integer >= 10")
    generator = torch.Generator().manual_seed(seed)
    x = noise * torch.randn(n_samples, dim, generator=generator)
    train, val, test = split(x, torch.zeros(n_samples, dim), val_fraction, test_fraction, seed)
    return Data(train, val, test, num_classes=None)


def token_lookup(
    length: int = 8,
    vocab: int = 16,
    n_samples: int = 2000,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> Data:
    """An algorithmic task for sequence models (copying one token): `length` random tokens
    of `vocab`, then a position j < `length` as one more token; the label is the token at
    position j. Generated from `seed` (data_seed); `vocab` classes. A model must look up
    by position (attention does it in one layer), not memorize: the sequences are random.
    Samples are (length + 1,) integer-valued floats."""
    if n_samples < 10:
        raise ConfigError("dataset.n_samples", n_samples, "an integer >= 10")
    if not 2 <= length <= vocab:
        raise ConfigError("dataset.length", length, f"an integer in [2, dataset.vocab={vocab}]")
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n_samples, length), generator=generator)
    where = torch.randint(0, length, (n_samples,), generator=generator)
    # the position is a token too (j < vocab); floats, so that any model takes them (the
    # transformer embeds them as integers)
    x = torch.cat([tokens, where[:, None]], dim=1).float()
    y = tokens[torch.arange(n_samples), where]
    train, val, test = split(x, y, val_fraction, test_fraction, seed)
    return Data(train, val, test, num_classes=vocab)


def mnist1d_autoencoder(
    data_dir: str,
    num_samples: int = 5000,
    generator_seed: int = 42,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Data:
    """MNIST-1D's signals as their own targets (with loss=mse and an mlp with a narrow
    middle layer): reconstruct the 40 values through the bottleneck. The same arrays and
    splits as dataset=mnist1d; the labels are not used."""
    data = mnist1d(data_dir, num_samples, generator_seed, val_fraction, seed)
    flat = [Split(s.x.flatten(1), s.x.flatten(1)) for s in (data.train, data.val, data.test)]
    return Data(*flat, num_classes=None)
