"""Model builders. Each takes the dataset's `input_shape` and `num_outputs` (filled in
by optexp) plus its own knobs from optexp/configs/model/<name>.yaml."""

from __future__ import annotations

import math

from torch import nn

from optexp.checks import check_input_shape
from optexp.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError("model.activation", name, " | ".join(ACTIVATIONS))
    return ACTIVATIONS[name]()


def mlp(
    input_shape: tuple[int, ...],
    num_outputs: int,
    hidden: list[int] = (128, 128),  # type: ignore[assignment]
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Sequential:
    """Flatten -> [Linear -> (BatchNorm) -> activation -> (Dropout)] x len(hidden) -> Linear."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for size in hidden:
        layers.append(nn.Linear(width, size))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(make_activation(activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)


def linear(input_shape: tuple[int, ...], num_outputs: int) -> nn.Sequential:
    """Flatten -> Linear: softmax regression with cross-entropy, linear regression with mse."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_outputs))


def cnn(
    input_shape: tuple[int, ...],
    num_outputs: int,
    channels: list[int] = (32, 64),  # type: ignore[assignment]
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Sequential:
    """[Conv3x3 -> (BatchNorm) -> activation -> MaxPool2] per entry of `channels`, then
    global average pooling -> (Dropout) -> Linear. The pooling to 1x1 makes one network
    fit 8x8, 28x28 and 32x32 images alike."""
    check_input_shape(input_shape, "C, H, W", "model", "cnn", "mlp | linear for flat features")
    in_channels = input_shape[0]
    layers: list[nn.Module] = []
    for width in channels:
        layers.append(nn.Conv2d(in_channels, width, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(width))
        # ceil_mode: a 1x1 map stays 1x1, so deep stacks still fit tiny images
        layers += [make_activation(activation), nn.MaxPool2d(2, ceil_mode=True)]
        in_channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(in_channels, num_outputs))
    return nn.Sequential(*layers)


def cnn1d(
    input_shape: tuple[int, ...],
    num_outputs: int,
    channels: list[int] = (25, 25, 25),  # type: ignore[assignment]
    kernel_sizes: list[int] = (5, 3, 3),  # type: ignore[assignment]
    stride: int = 2,
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Sequential:
    """[Conv1d(kernel, stride, padding 1) -> (BatchNorm) -> activation] per entry of
    `channels`, then flatten -> (Dropout) -> Linear, for signals (C, L). The defaults are
    the MNIST-1D paper's CNN (its repository's ConvBase): 40 -> 19 -> 10 -> 5 positions of
    25 channels, 125 features into the linear layer."""
    check_input_shape(input_shape, "C, L", "model", "cnn1d", "mlp | linear | cnn | resnet18")
    if len(kernel_sizes) != len(channels):
        raise ConfigError("model.kernel_sizes", list(kernel_sizes), "one size per channels entry")
    in_channels, length = input_shape
    layers: list[nn.Module] = []
    for width, kernel in zip(channels, kernel_sizes, strict=True):
        length = (length + 2 - kernel) // stride + 1
        if length < 1:
            raise ConfigError(
                "model.kernel_sizes", list(kernel_sizes), f"layers that fit length {input_shape[1]}"
            )
        layers.append(nn.Conv1d(in_channels, width, kernel, stride, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(make_activation(activation))
        in_channels = width
    layers.append(nn.Flatten())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(in_channels * length, num_outputs))
    return nn.Sequential(*layers)


def resnet18(input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """torchvision's ResNet-18 (random init) with the stem used for small images: a 3x3
    stride-1 first convolution and no max-pool, so 32x32 inputs are not shrunk 4x at once."""
    from torchvision.models import resnet18 as torchvision_resnet18

    check_input_shape(input_shape, "C, H, W", "model", "resnet18", "mlp | linear for flat features")
    model = torchvision_resnet18(weights=None, num_classes=num_outputs)
    model.conv1 = nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model
