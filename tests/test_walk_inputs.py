"""Bad inputs found by walking the configs, not listed by hand.

Every knob of every option file under optexp/configs/ (and the schema's top-level keys)
gets wrong types, zero, negatives, non-finite and huge values, and path knobs get a
missing path, an empty file, a directory and a file of garbage. Each try must end the
way a run would end for a user: refused as `optexp` refuses (a Hydra/OmegaConf error
while composing, or a UserError naming the key) or accepted and built; in the
exhaustive walk, an accepted config also trains a few steps, ending with a known
status and a finite, non-negative learning rate.

    python -m pytest tests/test_walk_inputs.py               # cheap: a rotating sample
    OPTEXP_WALK=all python -m pytest tests/test_walk_inputs.py   # every knob x every value
"""

from __future__ import annotations

import itertools
import math
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from optexp import train
from optexp.checks import check_config
from optexp.cli import CONFIG_DIR
from optexp.cli.errors import describe
from optexp.config import UserError
from optexp.config import knobs as schema_fields
from optexp.signals import StopRequest
from tests.datafiles import (
    TORCHVISION_SETS,
    array_set,
    save_arrays,
    write_image_folder,
    write_text,
    write_torchvision_set,
)

EXHAUSTIVE = os.environ.get("OPTEXP_WALK") == "all"
GROUPS = ("dataset", "augmentation", "model", "loss", "optimizer", "scheduler", "regularizer")
PATH_KEYS = ("dataset.path", "trainer.resume", "data_dir")
HUGE_FLOAT, HUGE_INT = 1e308, 2**62
RUNS = itertools.count()
STATUSES = ("completed", "early_stopped", "diverged", "interrupted")


def option_files() -> list[tuple[str, str]]:
    """(group, option) for every option file of the groups, nested ones included."""
    return [
        (group, str(path.relative_to(CONFIG_DIR / group).with_suffix("")))
        for group in GROUPS
        for path in sorted((CONFIG_DIR / group).rglob("*.yaml"))
    ]


def knobs(group: str, option: str) -> Iterator[tuple[str, Any]]:
    """(full key, default) of each leaf of an option file that is no interpolation."""
    node = OmegaConf.load(CONFIG_DIR / group / f"{option}.yaml")
    node.pop("defaults", None)  # Hydra's defaults list (an optimizer's search space), no knob
    for key, value in _leaves(OmegaConf.to_container(node, resolve=False), group):
        if not key.endswith("._target_") and not (isinstance(value, str) and "${" in value):
            yield key, value


def _leaves(tree: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(tree, dict) and tree:
        for key, sub in tree.items():
            yield from _leaves(sub, f"{prefix}.{key}")
    else:
        yield prefix, tree


def schema_knobs() -> Iterator[tuple[str, Any]]:
    """The top-level keys and the trainer's, from the composed defaults."""
    node = OmegaConf.load(CONFIG_DIR / "trainer" / "default.yaml")
    yield from _leaves(OmegaConf.to_container(node), "trainer")
    yield from (("seed", 0), ("data_seed", 0), ("data_dir", "data"))


def bad_values(key: str, default: Any, paths: dict[str, Path]) -> list[Any]:
    """Values a person could plausibly type for `key`, most of them wrong."""
    if key in PATH_KEYS:
        return [str(p) for p in paths.values()]
    if isinstance(default, bool):
        return ["abc", 2, 0.5]
    if isinstance(default, int):
        return ["abc", 0, -1, 1.5, math.inf, HUGE_INT]
    if isinstance(default, float):
        return ["abc", 0.0, -1.0, math.nan, math.inf, HUGE_FLOAT]
    if isinstance(default, list):
        return [[], [0], [-1], "abc", [math.inf], [HUGE_INT]]
    return ["abc", "", 0, -1, math.inf]  # strings and nulls (an int, a name or a path)


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Overrides that make each option runnable here: data files for the datasets that
    read them, a regression set for mse, signals for the 1-D model."""
    root = tmp_path_factory.mktemp("walk_data")
    for option in TORCHVISION_SETS:
        write_torchvision_set(option, root)
    images = write_image_folder(root / "images", classes=3, per_class=6)
    arrays = save_arrays(root / "set.npz", array_set())
    write_text(root, "walk")
    data = [f"data_dir={root}", "trainer.tensorboard=false"]
    return {
        "": data,
        "dataset/image_folder": [*data, f"dataset.path={images}", "dataset.workers=0"],
        "dataset/arrays": [*data, f"dataset.path={arrays}"],
        "dataset/text_file": [*data, "dataset.name=walk", "dataset.seq_len=16"],
        "dataset/lee_news": [*data, "dataset.max_chars=5000", "dataset.seq_len=16"],
        **{f"dataset/{o}": [*data, "dataset.download=false"] for o in TORCHVISION_SETS},
        "loss/mse": [*data, "dataset=synthetic", "dataset.task=regression"],
        "model/cnn1d": [*data, "dataset=mnist1d", "dataset.num_samples=200"],
        "model/gru": [*data, "dataset=mnist1d", "dataset.num_samples=200"],
        "model/quadratic": [*data, "dataset=noisy_quadratic", "loss=mse"],
        "model/transformer": [*data, "dataset=token_lookup"],
        "dataset/noisy_quadratic": [*data, "loss=mse"],
        "dataset/mnist1d_autoencoder": [*data, "loss=mse"],
        "augmentation/crop_flip": [*data, "augmentation.padding=1"],
    }


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("walk_paths")
    (root / "empty").write_bytes(b"")
    (root / "garbage.npz").write_bytes(b"\x00not a file of any kind\xff" * 10)
    (root / "folder").mkdir()
    return {
        "missing": root / "missing",
        "empty": root / "empty",
        "directory": root / "folder",
        "garbage": root / "garbage.npz",
    }


class StopAfter(StopRequest):
    """A stop after 12 optimizer steps: every walked run ends soon, whatever it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.remaining = 13

    def __bool__(self) -> bool:
        self.remaining -= 1
        if self.remaining == 0:
            self.signal = signal.SIGTERM
        return super().__bool__()


def tries(paths: dict[str, Path]) -> list[tuple[str, str, Any]]:
    """(option, key, value) of the whole walk: the option is "" for the schema's keys."""
    every = [
        (f"{g}/{o}", key, v)
        for g, o in option_files()
        for key, d in knobs(g, o)
        for v in bad_values(key, d, paths)
    ]
    every += [("", key, v) for key, d in schema_knobs() for v in bad_values(key, d, paths)]
    ranged = [(k, f.default) for k, f in schema_fields().items() if k.startswith("lr_range.")]
    return every + [("lr_range/default", k, v) for k, d in ranged for v in bad_values(k, d, paths)]


def outcome(cfg: DictConfig, key: str, value: Any, tmp_path: Path) -> str:
    """How `optexp` would end with `key=value`: "refused" (exit 2, one line naming the key
    or its part) or "accepted"; anything else fails the test with the try named."""
    try:
        OmegaConf.update(cfg, key, value, force_add=False)
    except OmegaConfBaseException as error:  # Hydra refuses it while composing
        assert key.rpartition(".")[2] in describe(error), describe(error)
        return "refused"
    try:
        check_config(cfg)
        if EXHAUSTIVE:
            return trained(cfg, key, tmp_path)
        from optexp.parts import build_parts

        build_parts(cfg)
    except UserError as error:
        message = str(error)
        assert "\n" not in message, message
        part = key.partition(".")[0]
        named = (key, f"{part}=", f"{part}.", *([str(value)] if key in PATH_KEYS else []))
        assert any(name in message for name in named), message  # a path may name itself
        return "refused"
    return "accepted"


def trained(cfg: DictConfig, key: str, tmp_path: Path) -> str:
    """Train a few steps; the run ends as runs end, its learning rate finite and >= 0."""
    short = {"trainer.limit_batches": 2, "trainer.epochs": 3}
    for name, setting in short.items():
        if name != key:
            OmegaConf.update(cfg, name, setting)
    summary = train.run(cfg, tmp_path / f"run{next(RUNS)}")  # a fresh directory: no resume
    assert summary["status"] in STATUSES, summary
    rates = [v for k, v in (summary["final"] or {}).items() if k.startswith("lr")]
    assert all(r is not None and math.isfinite(r) and r >= 0 for r in rates), summary["final"]
    return "accepted"


def selected(all_tries: list[Any]) -> list[Any]:
    """The cheap walk: every knob once, with a value rotating over its bad values."""
    if EXHAUSTIVE:
        return all_tries
    seen: dict[tuple[str, str], int] = {}
    chosen = []
    for option, key, value in all_tries:
        index = seen.setdefault((option, key), 0)
        seen[(option, key)] += 1
        if index == (len(option) + len(key)) % 3:
            chosen.append((option, key, value))
    return chosen


def test_every_bad_value_of_every_knob_is_refused_in_one_line_or_runs(
    make_cfg, bases, paths, tmp_path, monkeypatch
):
    monkeypatch.setattr(train, "StopRequest", StopAfter)
    composed: dict[str, DictConfig] = {}
    counts = {"refused": 0, "accepted": 0}
    for option, key, value in selected(tries(paths)):
        if option not in composed:
            chosen = [option.replace("/", "=", 1)] if option else []
            composed[option] = make_cfg(*bases.get(option, bases[""]), *chosen)
        cfg = composed[option].copy()
        try:
            counts[outcome(cfg, key, value, tmp_path)] += 1
        except AssertionError as failure:
            raise AssertionError(f"{option or 'defaults'}: {key}={value!r}: {failure}") from None
        except Exception as error:
            raise AssertionError(
                f"{option or 'defaults'}: {key}={value!r} ended in {type(error).__name__}: {error}"
            ) from error
    print(f"walk: {counts}")
    assert counts["refused"] > counts["accepted"] > 0, counts


def test_the_walk_covers_every_knob_with_a_rule_or_a_type():
    """A knob added to an option file needs a rule for its target in optexp/rules.py (or
    a typed schema field): the walk's values are only as good as the rules they meet. A
    trainer knob has its rule beside its default in optexp/config.py."""
    from optexp.config import knob_rules
    from optexp.rules import parameter_rules

    checked_by_target = {"dataset.name", "dataset.task", "dataset.kind", "dataset.path"}
    checked_by_target |= {"model.activation", "scheduler.mode", "augmentation", "regularizer"}
    missing = []
    for group, option in option_files():
        target = OmegaConf.load(CONFIG_DIR / group / f"{option}.yaml").get("_target_")
        rules = {f"{group}.{key}" for key in parameter_rules(group, target)}
        missing += [
            f"{group}/{option}: {key}"
            for key, _ in knobs(group, option)
            if key not in rules | checked_by_target
        ]
    missing += [key for key, _ in schema_knobs() if key not in knob_rules()]
    assert missing == [], f"knobs without a rule: {missing}"


def test_a_rule_keyed_by_target_is_not_applied_to_another_target(make_cfg):
    """SGD's momentum is a fraction; the same name on a target without a rule for it is
    left to that target (it refuses what it cannot use when built)."""
    with pytest.raises(UserError, match=r"optimizer.momentum=1.5 is not allowed"):
        check_config(make_cfg("optimizer=momentum", "optimizer.momentum=1.5"))
    check_config(make_cfg("optimizer=textbook/sgd", "+optimizer.momentum=1.5"))
