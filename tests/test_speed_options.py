"""Speed options: fused optimizer kernels, trainer.channels_last and trainer.compile."""

import pytest
import torch

from optexp.data import Data, Split
from optexp.parts import build_parts
from optexp.train import run


def test_adam_uses_the_fused_kernel_unless_the_config_picks_one(make_cfg):
    assert build_parts(make_cfg("trainer.device=cpu")).optimizer.defaults["fused"] is True
    chosen = build_parts(make_cfg("trainer.device=cpu", "+optimizer.foreach=true")).optimizer
    assert chosen.defaults["foreach"] is True and not chosen.defaults["fused"]


def test_channels_last_converts_image_splits_and_batches_keep_the_layout():
    images = Split(torch.randn(6, 3, 5, 5), torch.arange(6))
    data = Data(images, images, None, num_classes=6).to(torch.device("cpu"), torch.channels_last)
    assert data.train.x.is_contiguous(memory_format=torch.channels_last)
    assert not images.x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(data.train.x, images.x) and data.test is None
    x, _ = next(data.train.batches(4, torch.randperm(6)))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_leaves_the_mlp_run_unchanged(make_cfg, tmp_path):
    short = ("trainer.epochs=1", "trainer.tensorboard=false")
    plain = run(make_cfg(*short), tmp_path / "plain")
    last = run(make_cfg(*short, "trainer.channels_last=true"), tmp_path / "last")
    assert last["status"] == "completed"
    assert last["test"] == plain["test"] and last["best"]["val/loss"] == plain["best"]["val/loss"]


def test_compile_compiles_the_model_in_place(make_cfg, monkeypatch):
    if not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not supported on this platform")
    # Dynamo's eager backend traces the model like the default one, without the C++ build.
    compiled, real_compile = [], torch.nn.Module.compile
    monkeypatch.setattr(
        torch.nn.Module,
        "compile",
        lambda model, **_: compiled.append(model) or real_compile(model, backend="eager"),
    )
    torch.manual_seed(0)
    parts = build_parts(make_cfg("trainer.compile=true"))
    torch.manual_seed(0)
    plain = build_parts(make_cfg()).model
    assert compiled == [parts.model]
    assert list(parts.model.state_dict()) == list(plain.state_dict())  # checkpoints unchanged
    x = parts.data.val.x[:16]
    assert torch.allclose(parts.model(x), plain(x))
