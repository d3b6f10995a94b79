"""Dataset options. Each returns `Data` with inputs already scaled/normalized.

Add one: write a function here (or anywhere importable) that returns `Data`, and a
YAML file in configs/dataset/ whose `_target_` names it.
"""

from __future__ import annotations

import torch

from optexp.data import Data, split


def digits(val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> Data:
    """scikit-learn's 8x8 handwritten digits (bundled, offline), pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # N x 1 x 8 x 8
    y = torch.tensor(bunch.target, dtype=torch.long)
    train, val, test = split(x, y, val_fraction, test_fraction, seed)
    return Data(train, val, test, num_classes=10)
