"""Training-time augmentation of a whole batch on the device, each sample with its own
random draw from torch's global generator (so `seed` reproduces it).

torchvision's v2 transforms draw ONE set of parameters per call, i.e. per batch here;
the per-sample versions below are plain tensor ops instead: masks for flips,
`affine_grid`/`grid_sample` for rotations, gathered windows for crops, per-sample
factors for colour jitter. Inputs arrive normalized with the dataset's `mean`/`std`
(None: already in [0, 1]); colour jitter undoes and redoes that to work on pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from optexp.checks import check_input_shape
from optexp.errors import ConfigError

NONE = "none for inputs that are not images"


class FlipRotateJitter:
    """Random horizontal flip (probability `flip`), rotation by up to `degrees` either
    way (corners filled with 0, the mean colour of normalized inputs), then brightness,
    contrast and saturation factors drawn from [1 - v, 1 + v]; saturation only where
    there are 3 colour channels."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        flip: float = 0.5,
        degrees: float = 10.0,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
    ) -> None:
        check_input_shape(input_shape, "C, H, W", "augmentation", "flip_rotate_jitter", NONE)
        self.mean, self.std = mean, std
        self.flip, self.degrees = flip, degrees
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    def __call__(self, x: Tensor) -> Tensor:
        x = random_flip(x, self.flip)
        x = random_rotation(x, self.degrees)
        pixels = _to_pixels(x, self.mean, self.std)
        pixels = colour_jitter(pixels, self.brightness, self.contrast, self.saturation)
        return _from_pixels(pixels, self.mean, self.std)


class CropFlip:
    """Zero-pad by `padding` on every side, cut a random window of the original size
    (the classic CIFAR recipe), then flip horizontally with probability `flip`."""

    def __init__(self, input_shape: tuple[int, ...], padding: int = 4, flip: float = 0.5) -> None:
        check_input_shape(input_shape, "C, H, W", "augmentation", "crop_flip", NONE)
        self.padding, self.flip = padding, flip

    def __call__(self, x: Tensor) -> Tensor:
        return random_crop(x, self.padding, self.flip)


class Mix:
    """Mixup (Zhang et al. 2018: a convex mix of two images and of their labels, the weight
    drawn from Beta(alpha, alpha)) or cutmix (Yun et al. 2019: a box of one image pasted
    into the other, the labels mixed by its area): torchvision's `v2.MixUp` / `v2.CutMix`,
    on the whole batch (each image with its neighbour in the batch), with probability `p`
    per batch; `kind: both` picks one of the two per batch, as timm does. The labels
    become class probabilities, which cross-entropy takes; the accuracy is still measured
    against the original labels."""

    mixes_labels = True  # called as (x, y) -> (x, class probabilities)

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int | None,
        kind: str = "mixup",
        alpha: float = 0.2,
        p: float = 1.0,
    ) -> None:
        check_input_shape(input_shape, "C, H, W", "augmentation", kind, NONE)
        if num_classes is None:
            raise ConfigError(
                "augmentation", kind, "none for a regression dataset",
                problem="mixes class labels, but the dataset has real-valued targets",
            )  # fmt: skip
        mixers = {
            "mixup": v2.MixUp(alpha=alpha, num_classes=num_classes),
            "cutmix": v2.CutMix(alpha=alpha, num_classes=num_classes),
        }
        if kind not in (*mixers, "both"):
            raise ConfigError("augmentation.kind", kind, "mixup | cutmix | both")
        self.mix = v2.RandomChoice(list(mixers.values())) if kind == "both" else mixers[kind]
        self.p = p

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.p < 1 and torch.rand(()) >= self.p:
            return x, y
        return self.mix(x, y)


class PerImage:
    """A per-image augmentation (x -> x) in the loop's form, (x, y) -> (x, y)."""

    def __init__(self, augment: Callable[[Tensor], Tensor]) -> None:
        self.augment = augment

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.augment(x), y


def for_batches(augment: Any) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None:
    """An augmentation as the loop calls it: (x, y) -> (inputs, training targets)."""
    if augment is None or getattr(augment, "mixes_labels", False):
        return augment
    return PerImage(augment)


def random_flip(x: Tensor, p: float) -> Tensor:
    """Mirror each image left-right with probability `p`."""
    chosen = torch.rand(len(x), device=x.device) < p
    return torch.where(chosen.view(-1, 1, 1, 1), x.flip(-1), x)


def random_rotation(x: Tensor, degrees: float) -> Tensor:
    """Rotate each image about its centre by an angle uniform in [-degrees, degrees]."""
    if degrees <= 0:
        return x
    angle = (2 * torch.rand(len(x), device=x.device) - 1) * math.radians(degrees)
    cos, sin = angle.cos(), angle.sin()
    height, width = x.shape[-2:]
    # affine_grid works in [-1, 1] coordinates: rescale so non-square images rotate rigidly.
    zero = torch.zeros_like(angle)
    theta = torch.stack(
        [
            torch.stack([cos, -sin * height / width, zero], dim=1),
            torch.stack([sin * width / height, cos, zero], dim=1),
        ],
        dim=1,
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_crop(x: Tensor, padding: int, flip: float = 0.0) -> Tensor:
    """Pad with zeros, then take a window of the original size at a random offset,
    mirrored left-right with probability `flip`. The mirror reverses the window's column
    index, and whole pixels (all channels) are gathered at once: one pass over the
    batch instead of a crop, a flipped copy and a select."""
    if padding <= 0:
        return random_flip(x, flip)
    n, _, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding)).permute(0, 2, 3, 1)  # N H W C
    top = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
    left = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
    rows = (top + torch.arange(height, device=x.device)).view(n, height, 1)
    cols = left + torch.arange(width, device=x.device)
    if flip > 0:
        mirrored = torch.rand(n, 1, device=x.device) < flip
        cols = torch.where(mirrored, cols.flip(-1), cols)
    samples = torch.arange(n, device=x.device).view(n, 1, 1)
    crops = padded[samples, rows, cols.view(n, 1, width)].permute(0, 3, 1, 2)
    return crops if x.is_contiguous(memory_format=torch.channels_last) else crops.contiguous()


def colour_jitter(pixels: Tensor, brightness: float, contrast: float, saturation: float) -> Tensor:
    """torchvision's brightness / contrast / saturation blends in [0, 1] pixel space,
    with one factor per image; saturation needs 3 colour channels."""
    colour = pixels.shape[1] == 3
    if brightness > 0:
        pixels = _blend(pixels, 0.0, _factors(pixels, brightness))
    if contrast > 0:
        grey = TF.rgb_to_grayscale(pixels) if colour else pixels
        pixels = _blend(pixels, grey.mean(dim=(1, 2, 3), keepdim=True), _factors(pixels, contrast))
    if saturation > 0 and colour:
        pixels = _blend(pixels, TF.rgb_to_grayscale(pixels), _factors(pixels, saturation))
    return pixels


def _factors(x: Tensor, strength: float) -> Tensor:
    """One factor per image, uniform in [1 - strength, 1 + strength]."""
    return (1 + strength * (2 * torch.rand(len(x), device=x.device) - 1)).view(-1, 1, 1, 1)


def _blend(image: Tensor, other: Tensor | float, factor: Tensor) -> Tensor:
    return (factor * image + (1 - factor) * other).clamp(0, 1).to(image.dtype)


def _to_pixels(x: Tensor, mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> Tensor:
    if mean is None or std is None:
        return x
    return x * _per_channel(std, x) + _per_channel(mean, x)


def _from_pixels(
    pixels: Tensor, mean: tuple[float, ...] | None, std: tuple[float, ...] | None
) -> Tensor:
    if mean is None or std is None:
        return pixels
    return (pixels - _per_channel(mean, pixels)) / _per_channel(std, pixels)


def _per_channel(values: tuple[float, ...], like: Tensor) -> Tensor:
    return torch.tensor(values, device=like.device, dtype=like.dtype).view(1, -1, 1, 1)
