"""The CIFAR-10-shaped CNN workload written by hand: plain PyTorch, no optexp, no Hydra.

The same work as `optexp dataset=arrays model=cnn augmentation=crop_flip` on 32x32 RGB
images (see `benchmarks/run.py --parts cnn`): the images live on the device as tensors;
each epoch draws a random permutation, and every batch is augmented on the device (zero
padding by 4, a random 32x32 window and a left-right flip, drawn per image), then goes
through conv3x3(32)-ReLU-maxpool-conv3x3(64)-ReLU-maxpool-global-average-pool-linear
with Adam (fused). Mixed precision: autocast in bf16, or fp16 with a gradient scaler.
After every epoch it evaluates the validation images; it returns the last epoch's
training images per second (steps and validation, as optexp's `throughput` measures).
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch
from torch import Tensor, nn

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def make_model(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def crop_flip(x: Tensor, padding: int = 4) -> Tensor:
    """Per image: a random window of the original size from the zero-padded image, and a
    left-right flip with probability 1/2."""
    n, _, height, width = x.shape
    padded = nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    rows = (torch.arange(height, device=x.device).view(1, -1, 1) + dy).expand(n, height, width)
    cols = (torch.arange(width, device=x.device).view(1, 1, -1) + dx).expand(n, height, width)
    flip = torch.rand(n, 1, 1, device=x.device) < 0.5
    cols = torch.where(flip, cols.flip(-1), cols)
    batch = torch.arange(n, device=x.device).view(-1, 1, 1)
    crops = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    return crops.contiguous()  # the usual (N, C, H, W) layout, as optexp's by default


def train(
    x_train: Tensor,
    y_train: Tensor,
    x_val: Tensor,
    y_val: Tensor,
    epochs: int = 2,
    batch_size: int = 128,
    precision: str = "32",
    seed: int = 0,
) -> float:
    """Train on tensors already on the device; the last epoch's training images/s."""
    device = x_train.device
    torch.manual_seed(seed)
    model = make_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    loss_fn = nn.CrossEntropyLoss()
    dtype = DTYPES.get(precision)
    autocast = nullcontext if dtype is None else lambda: torch.autocast(device.type, dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    n = len(y_train)
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, device=device)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            x, y = crop_flip(x_train[index]), y_train[index]
            with autocast():
                loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        model.eval()
        with torch.no_grad(), autocast():
            (model(x_val).argmax(1) == y_val).float().mean().item()  # accuracy; waits for the GPU
        seconds = time.perf_counter() - started
    return n / seconds
