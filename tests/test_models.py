"""Model builders: shapes from the dataset, image-only models refusing flat inputs,
dropout and batch norm acting in training only."""

import pytest
import torch
from torch import nn

from optexp import models
from optexp.config import ConfigError


def test_linear_is_one_affine_map_of_the_flattened_input():
    model = models.linear((1, 8, 8), 10)
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    assert sum(p.numel() for p in model.parameters()) == 64 * 10 + 10


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("channels", [[16], [8, 16, 16, 16]])
def test_cnn_fits_small_and_larger_images(shape, channels):
    model = models.cnn(shape, 7, channels=channels, batch_norm=True, dropout=0.1)
    assert model(torch.randn(4, *shape)).shape == (4, 7)
    convolutions = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convolutions] == channels
    assert convolutions[0].in_channels == shape[0]


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 12, 12)])
def test_resnet18_has_a_small_image_stem(shape):
    model = models.resnet18(shape, 10)
    assert model.conv1.in_channels == shape[0]
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity) and model.fc.out_features == 10
    assert model(torch.randn(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize("builder", [models.cnn, models.resnet18])
def test_image_models_refuse_flat_inputs_naming_model(builder):
    with pytest.raises(ConfigError) as raised:
        builder((2,), 3)
    assert raised.value.key == "model" and "inputs shaped (C, H, W)" in str(raised.value)


DROPOUT_MODELS = {
    "mlp": (lambda: models.mlp((1, 8, 8), 10, hidden=[64], dropout=0.5), (1, 8, 8)),
    "cnn": (lambda: models.cnn((1, 8, 8), 10, channels=[16], dropout=0.5), (1, 8, 8)),
}
BATCH_NORM_MODELS = {
    "mlp": lambda: models.mlp((1, 8, 8), 10, hidden=[64], batch_norm=True),
    "cnn": lambda: models.cnn((1, 8, 8), 10, channels=[16], batch_norm=True),
}


@pytest.mark.parametrize("name", DROPOUT_MODELS)
def test_dropout_is_random_in_training_and_off_in_evaluation(name):
    torch.manual_seed(0)
    model = DROPOUT_MODELS[name][0]()
    x = torch.randn(8, 1, 8, 8)
    assert not torch.equal(model(x), model(x))  # a fresh mask each call
    model.eval()
    assert torch.equal(model(x), model(x))
    assert any(isinstance(m, nn.Dropout) for m in model)


@pytest.mark.parametrize("name", BATCH_NORM_MODELS)
def test_batch_norm_uses_batch_statistics_in_training_and_running_ones_in_evaluation(name):
    torch.manual_seed(0)
    model = BATCH_NORM_MODELS[name]()
    norm = next(m for m in model if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d))
    x = torch.randn(8, 1, 8, 8) + 3
    before = norm.running_mean.clone()
    together, alone = model(x)[:2], model(x[:2])
    assert not torch.allclose(together, alone)  # a sample's output depends on its batch
    assert not torch.equal(norm.running_mean, before)
    model.eval()
    frozen = norm.running_mean.clone()
    assert torch.allclose(model(x)[:2], model(x[:2]), atol=1e-6)
    assert torch.equal(norm.running_mean, frozen)
