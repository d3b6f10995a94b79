"""Composition of the default config and of overrides, and the checks before training."""

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from optexp.checks import check_config as check
from optexp.config import ConfigError


def test_default_config_composes_the_default_experiment(make_cfg):
    cfg = make_cfg()
    assert cfg.dataset._target_ == "optexp.data.datasets.digits"
    assert cfg.model._target_ == "optexp.models.mlp"
    assert cfg.loss._target_ == "torch.nn.CrossEntropyLoss"
    assert cfg.optimizer._target_ == "torch.optim.Adam"
    assert cfg.scheduler._target_ == "torch.optim.lr_scheduler.ConstantLR"
    assert "_target_" not in cfg.regularizer and "_target_" not in cfg.augmentation
    assert cfg.trainer.precision == "32" and cfg.trainer.early_stopping.monitor == "val/loss"
    check(cfg)  # the defaults pass the checks


def test_overrides_change_the_composed_values(make_cfg):
    cfg = make_cfg("trainer.epochs=3", "optimizer.lr=0.01", "seed=7", "model.hidden=[32]")
    assert cfg.trainer.epochs == 3 and cfg.optimizer.lr == 0.01 and cfg.seed == 7
    assert list(cfg.model.hidden) == [32]
    # interpolations follow the top-level keys
    assert OmegaConf.select(make_cfg("data_seed=5"), "dataset.seed") == 5


def test_misspelt_trainer_key_is_refused_while_composing(make_cfg):
    with pytest.raises(ConfigCompositionException, match="epohcs"):
        make_cfg("trainer.epohcs=3")


def test_wrong_type_is_refused_while_composing(make_cfg):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        make_cfg("trainer.epochs=abc")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optimizer.lr=0", "optimizer.lr"),
        ("optimizer.lr=-1", "optimizer.lr"),
        ("trainer.epochs=0", "trainer.epochs"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("trainer.precision=fp8", "trainer.precision"),
        ("trainer.device=gpu", "trainer.device"),
        ("model.dropout=1.0", "model.dropout"),
        ("trainer.early_stopping.patience=-1", "trainer.early_stopping.patience"),
        ("trainer.early_stopping.mode=low", "trainer.early_stopping.mode"),
        ("optimizer.betas=[0.9,1.0]", "optimizer.betas"),
        ("optimizer.weight_decay=-0.1", "optimizer.weight_decay"),
    ],
)
def test_out_of_range_values_name_key_value_and_allowed(make_cfg, override, key):
    with pytest.raises(ConfigError) as info:
        check(make_cfg(override))
    value = override.split("=", 1)[1]
    message = str(info.value)
    assert info.value.key == key and message.startswith(key)
    assert "Allowed:" in message and value.strip("[]").split(",")[0] in message


def test_trainer_default_yaml_is_generated_from_the_schema():
    """Each trainer knob's default, rule and doc live in optexp/config.py; the YAML file
    people read and optexp-init copies is its rendering, and must not drift from it."""
    from optexp.cli import CONFIG_DIR
    from optexp.config import trainer_yaml

    written = (CONFIG_DIR / "trainer" / "default.yaml").read_text()
    assert written == trainer_yaml(), (
        "run: python -m optexp.config > optexp/configs/trainer/default.yaml"
    )


def test_every_knob_has_a_default_a_rule_and_a_doc_that_agree(make_cfg):
    from optexp.config import knobs

    composed = OmegaConf.to_container(make_cfg("lr_range=default"), resolve=True)
    for key, knob in knobs().items():
        value = OmegaConf.select(OmegaConf.create(composed), key)
        assert value == knob.default, key  # what Hydra composes is the schema's default
        assert knob.metadata["rule"].accepts(knob.default), key
        assert knob.metadata["doc"].strip(), key
