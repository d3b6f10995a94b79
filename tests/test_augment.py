"""Batch augmentation: per-sample randomness, reproducible under a seed, equal to
torchvision's per-image ops, and used by the loop on training batches only."""

import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from optexp import train
from optexp.config import ConfigError
from optexp.data.augment import (
    CropFlip,
    FlipRotateJitter,
    colour_jitter,
    random_crop,
    random_flip,
    random_rotation,
)
from optexp.parts import build_parts

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
OPTIONS = {  # option -> builder for images of C channels (mean/std per channel)
    "flip_rotate_jitter": lambda channels=3: FlipRotateJitter(
        (channels, 12, 12), MEAN[:channels], STD[:channels]
    ),
    "crop_flip": lambda channels=3: CropFlip((channels, 12, 12)),
}


def images(n=16, channels=3, size=12):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("shape", [(8, 1, 8, 8), (8, 3, 32, 32)])
def test_shape_and_dtype_are_kept(option, shape):
    x = torch.randn(shape)
    out = OPTIONS[option](shape[1])(x)
    assert out.shape == x.shape and out.dtype == x.dtype and not torch.equal(out, x)


@pytest.mark.parametrize("option", OPTIONS)
def test_same_seed_same_batch_other_seed_other_batch(option):
    x, augment = images(), OPTIONS[option]()
    torch.manual_seed(0)
    first = augment(x)
    torch.manual_seed(0)
    assert torch.equal(augment(x), first)
    torch.manual_seed(1)
    assert not torch.equal(augment(x), first)


@pytest.mark.parametrize("option", OPTIONS)
def test_each_sample_gets_its_own_draw(option):
    torch.manual_seed(0)
    same_image = images(n=1).expand(16, -1, -1, -1)
    out = OPTIONS[option]()(same_image)
    assert len(out.flatten(1).unique(dim=0)) > 8


def test_flip_forced_twice_is_the_identity_and_once_a_mirror():
    x = images()
    assert torch.equal(random_flip(x, 1.0), x.flip(-1))
    assert torch.equal(random_flip(random_flip(x, 1.0), 1.0), x)
    assert torch.equal(random_flip(x, 0.0), x)


def test_rotation_equals_torchvision_rotate_with_each_samples_angle():
    x = torch.rand(4, 3, 12, 20)  # not square: the rotation must still be rigid
    torch.manual_seed(0)
    out = random_rotation(x, 30.0)
    torch.manual_seed(0)
    angles = (2 * torch.rand(4) - 1) * 30.0
    for image, angle, rotated in zip(x, angles, out, strict=True):
        expected = TF.rotate(image, angle.item(), interpolation=InterpolationMode.BILINEAR)
        assert torch.allclose(rotated, expected, atol=1e-5)


def test_crop_is_a_window_of_the_zero_padded_image():
    x = images(n=32, size=6)
    torch.manual_seed(0)
    out = random_crop(x, 2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for image, crop in zip(padded, out, strict=True):
        matches = [
            (top, left)
            for top in range(5)
            for left in range(5)
            if torch.equal(image[:, top : top + 6, left : left + 6], crop)
        ]
        assert matches
        offsets.add(matches[0])
    assert len(offsets) > 5  # many different shifts within one batch
    assert torch.equal(random_crop(x, 0), x)


def test_crop_with_flip_mirrors_the_same_windows_per_image_and_keeps_the_layout():
    x = images(n=32, size=6)
    torch.manual_seed(0)
    plain = random_crop(x, 2)
    torch.manual_seed(0)
    assert torch.equal(random_crop(x, 2, flip=1.0), plain.flip(-1))  # same windows, mirrored
    torch.manual_seed(0)
    mixed = random_crop(x, 2, flip=0.5)
    mirrored = [torch.equal(m, p.flip(-1)) for m, p in zip(mixed, plain, strict=True)]
    kept = [torch.equal(m, p) for m, p in zip(mixed, plain, strict=True)]
    assert all(a or b for a, b in zip(mirrored, kept, strict=True)) and any(mirrored) and any(kept)
    assert mixed.is_contiguous()
    channels_last = x.contiguous(memory_format=torch.channels_last)
    assert random_crop(channels_last, 2).is_contiguous(memory_format=torch.channels_last)


def test_colour_jitter_equals_torchvision_adjustments_with_each_samples_factors():
    pixels = images(n=6)
    torch.manual_seed(0)
    out = colour_jitter(pixels, 0.2, 0.3, 0.4)
    torch.manual_seed(0)
    b, c, s = (1 + strength * (2 * torch.rand(6) - 1) for strength in (0.2, 0.3, 0.4))
    for i, image in enumerate(pixels):
        expected = TF.adjust_brightness(image, b[i].item())
        expected = TF.adjust_contrast(expected, c[i].item())
        expected = TF.adjust_saturation(expected, s[i].item())
        assert torch.allclose(out[i], expected, atol=1e-5)


def test_jitter_works_on_pixels_behind_the_normalization():
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    x = (images() - mean) / std
    off = FlipRotateJitter(
        (3, 12, 12), MEAN, STD, flip=0, degrees=0, brightness=0, contrast=0, saturation=0
    )
    assert torch.allclose(off(x), x, atol=1e-6)  # undo and redo are exact inverses
    strong = FlipRotateJitter(
        (3, 12, 12), MEAN, STD, flip=0, degrees=0, brightness=0.9, contrast=0.9
    )
    pixels = strong(x) * std + mean
    # clamped to [0, 1] as pixels, not as normalized values (those would stay above the mean)
    assert pixels.min() >= 0 and pixels.max() <= 1 + 1e-6 and pixels.min() < 0.05


def test_grey_images_get_brightness_and_contrast_but_no_saturation():
    grey = images(channels=1)
    torch.manual_seed(0)
    only_saturation = colour_jitter(grey, 0, 0, 0.9)
    assert torch.equal(only_saturation, grey)
    assert not torch.equal(colour_jitter(grey, 0.5, 0, 0), grey)


@pytest.mark.parametrize("option", OPTIONS)
def test_flat_inputs_are_refused_naming_the_augmentation_before_training(option, make_cfg):
    with pytest.raises(ConfigError) as raised:
        build_parts(make_cfg(f"augmentation={option}", "dataset=synthetic"))
    assert raised.value.key == "augmentation" and "(C, H, W)" in str(raised.value)
    assert f"augmentation={option} " in str(raised.value)


def test_the_loop_augments_training_batches_only(make_cfg, tmp_path, monkeypatch):
    seen = []

    def build_spying(cfg, world=None):
        parts = build_parts(cfg, world)
        augment = parts.augment

        def spy(x, y):
            seen.append(len(x))
            return augment(x, y)

        parts.augment = spy
        return parts

    build_parts = train.build_parts
    monkeypatch.setattr(train, "build_parts", build_spying)
    cfg = make_cfg(
        "augmentation=crop_flip",
        "dataset.val_fraction=0.5",
        "dataset.test_fraction=0.45",
        "trainer.epochs=2",
        "trainer.batch_size=32",
        "trainer.tensorboard=false",
    )
    summary = train.run(cfg, tmp_path)
    train_size = 1797 - round(1797 * 0.5) - round(1797 * 0.45)
    assert sum(seen) == 2 * train_size and max(seen) == 32  # never a val/test batch
    assert summary["status"] == "completed"
