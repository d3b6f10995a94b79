"""Model builders. Each takes the dataset's `input_shape` and `num_outputs` (filled in
by optexp) plus its own knobs from optexp/configs/model/<name>.yaml."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

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


class GRUClassifier(nn.Module):
    """A GRU over the L positions of a signal (C, L), C features per step; the final
    hidden state of the last layer (both directions when bidirectional) -> Linear."""

    def __init__(self, channels: int, num_outputs: int, hidden: int, layers: int, both: bool):
        super().__init__()
        self.gru = nn.GRU(channels, hidden, layers, batch_first=True, bidirectional=both)
        self.directions = 2 if both else 1
        self.head = nn.Linear(hidden * self.directions, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        _, last = self.gru(x.transpose(1, 2))  # (N, L, C) in; last: (layers * dirs, N, H)
        return self.head(torch.cat(list(last[-self.directions :]), dim=1))


def gru(
    input_shape: tuple[int, ...],
    num_outputs: int,
    hidden: int = 32,
    layers: int = 1,
    bidirectional: bool = True,
) -> nn.Module:
    """A recurrent classifier for signals (C, L) such as MNIST-1D's (1, 40): the paper's
    GRU baseline reads the 40 positions one at a time (Greydanus 2020)."""
    check_input_shape(input_shape, "C, L", "model", "gru", "mlp | linear | cnn | resnet18")
    return GRUClassifier(input_shape[0], num_outputs, hidden, layers, bidirectional)


class NoisyQuadratic(nn.Module):
    """DeepOBS's quadratic_deep as a model: parameters theta (initialized to 1) and, for a
    sample x, the output sqrt(d / 2) (theta - x) S with S S^T = H, so that mse against
    zero targets is 0.5 (theta - x)^T H (theta - x), DeepOBS's loss, averaged over x.
    H = R diag(lambda) R^T: 90 % of the eigenvalues uniform in (0, 1), 10 % in (30, 60)
    (the spectrum reported for deep networks), R a random rotation; both drawn from
    `hessian_seed` alone, a fixed property of the problem as in DeepOBS."""

    def __init__(self, dim: int, hessian_seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(hessian_seed)
        large = max(1, round(dim / 10))
        eigenvalues = torch.cat(
            [
                torch.rand(dim - large, generator=generator, dtype=torch.float64),
                30 + 30 * torch.rand(large, generator=generator, dtype=torch.float64),
            ]
        )
        q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
        rotation = q * torch.sign(torch.diagonal(r))  # Haar-distributed (Mezzadri 2007)
        root = rotation @ torch.diag(eigenvalues.sqrt()) * math.sqrt(dim / 2)
        self.register_buffer("root", root.float())  # not trained, but moved and saved
        self.theta = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return (self.theta - x) @ self.root


def quadratic(input_shape: tuple[int, ...], num_outputs: int, hessian_seed: int = 42) -> nn.Module:
    """The noisy quadratic (with dataset=noisy_quadratic and loss=mse): one parameter per
    input dimension, an ill-conditioned fixed Hessian (see NoisyQuadratic)."""
    check_input_shape(input_shape, "D", "model", "quadratic", "mlp | linear")
    if num_outputs != input_shape[0]:
        raise ConfigError(
            "model", "quadratic", "dataset=noisy_quadratic", problem="needs zero targets of width D"
        )
    return NoisyQuadratic(input_shape[0], hessian_seed)


class TokenTransformer(nn.Module):
    """Token embeddings plus learned positions -> pre-norm transformer encoder layers
    (no dropout) -> layer norm of the last position -> Linear."""

    def __init__(
        self, vocab: int, length: int, num_outputs: int, width: int, heads: int, depth: int
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(0.02 * torch.randn(length, width))
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        h = self.encoder(self.embed(x.long()) + self.position)  # tokens may come as floats
        return self.head(self.norm(h[:, -1]))


def transformer(
    input_shape: tuple[int, ...],
    num_outputs: int,
    width: int = 64,
    heads: int = 4,
    depth: int = 1,
    vocab_size: int | None = None,
) -> nn.Module:
    """A small transformer over sequences of integer tokens (L,), e.g. dataset=
    token_lookup; `vocab_size` null: the tokens are the classes."""
    check_input_shape(input_shape, "L", "model", "transformer", "mlp | linear | cnn | gru")
    if width % heads:
        raise ConfigError("model.heads", heads, f"a divisor of model.width={width}")
    vocab = vocab_size or num_outputs
    return TokenTransformer(vocab, input_shape[0], num_outputs, width, heads, depth)
