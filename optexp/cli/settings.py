"""Hydra's own settings that optexp's presets use (its sweepers, launchers and run
folders), checked before Hydra or a plugin acts on them: a bad value fails inside Hydra
or a plugin, often with a traceback, after files are written. A single run (no -m) must
not ask for a sweep: without -m, Hydra would run the defaults once, silently. Also the
resolver that names a sweep job's folder (`job_folder`)."""

from __future__ import annotations

import hashlib
from typing import Any

from omegaconf import DictConfig, OmegaConf

from optexp.checks import GROUPS_WITH_TARGET, OPTIONAL_GROUPS, check_rules
from optexp.config import knob_rules
from optexp.errors import ConfigError
from optexp.rules import COUNT, PROBABILITY, Rule, int_at_least, number

PATH_TEXT = Rule(lambda v: isinstance(v, str) and v.strip(), "a folder path")
HYDRA_RULES: dict[str, Rule] = {
    "hydra.run.dir": PATH_TEXT,
    "hydra.sweep.dir": PATH_TEXT,
    "hydra.sweep.subdir": PATH_TEXT._replace(allowed="a folder name"),
    "hydra.job.chdir": Rule(
        lambda v: v is False,
        "false (optexp resolves paths against the folder it is started in)",
    ),
    "hydra.sweeper.max_batch_size": int_at_least(1).or_null(),
    "hydra.sweeper.n_trials": COUNT,
    "hydra.sweeper.n_jobs": COUNT,
    "hydra.sweeper.max_failure_rate": PROBABILITY,
    "hydra.sweeper.direction": Rule(
        lambda v: all(  # a name, or the plugin's own Direction enum; one per objective
            getattr(d, "name", d) in ("minimize", "maximize") for d in _as_list(v)
        ),
        "minimize | maximize (lr_optuna: from trainer.early_stopping.mode, min | max)",
    ),
    "hydra.sweeper.storage": Rule(
        lambda v: isinstance(v, str) and "://" in v,
        "null (in memory) or a database URL, e.g. sqlite:///study.db",
    ),
    "hydra.launcher.backend": Rule(
        lambda v: v in ("loky", "threading", "multiprocessing"),
        "null | loky | threading | multiprocessing",
    ),
    "hydra.launcher.n_jobs": Rule(
        lambda v: number(v) and isinstance(v, int) and v != 0,
        "an integer >= 1, or -N for all cores but N - 1",
    ),
    "hydra.launcher.timeout_min": COUNT,
    "hydra.launcher.cpus_per_task": COUNT,
    "hydra.launcher.tasks_per_node": COUNT,
    "hydra.launcher.nodes": COUNT,
    "hydra.launcher.array_parallelism": COUNT,
}


# A sweep job's folder is named by its overrides (configs/hydra/default.yaml): a value's
# "/" would nest folders, its quotes are command-line syntax, not part of the value.
FOLDER_SAFE = str.maketrans({"/": "_", "\0": "_", "\n": "_", "\r": "_", '"': None, "'": None})
NAME_BYTES = 240  # under the usual limit of 255, with the job number in front


def job_folder(override_dirname: str) -> str:
    """A sweep job's folder name from Hydra's `hydra.job.override_dirname` (the job's
    overrides, sorted, joined by commas), one level deep for any value (a path, a list,
    quotes): `dataset.path=/d/a.npz` -> `dataset.path=_d_a.npz`. A longer name is cut, and
    ends with a digest of the whole, so that a re-run sweep finds each job's folder again."""
    name = override_dirname.translate(FOLDER_SAFE)
    if len(name.encode()) <= NAME_BYTES:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return name.encode()[: NAME_BYTES - 15].decode(errors="ignore") + "..." + digest


OmegaConf.register_new_resolver("optexp.job_folder", job_folder, replace=True)


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def check_hydra(cfg: DictConfig, multirun: bool) -> None:
    """Hydra's own settings; for a single run, no sweep asked for."""
    monitoring = ("trainer.early_stopping.monitor", "trainer.early_stopping.mode")
    check_rules(cfg, {key: knob_rules()[key] for key in monitoring})  # a sweeper's direction
    check_rules(cfg, HYDRA_RULES, strict=False)
    if cfg.hydra.output_subdir is None:
        allowed = "a folder name, e.g. .hydra (optexp-report reads each run's overrides there)"
        raise ConfigError("hydra.output_subdir", None, allowed)
    if multirun:
        return
    choices = cfg.hydra.runtime.choices
    params = OmegaConf.select(cfg, "hydra.sweeper.params")
    if params:
        preset = next(
            (f"{g}={choices[g]}" for g in ("hparams_search", "experiment") if choices.get(g)), None
        )
        raise ConfigError(
            "hydra.sweeper.params",
            params,
            f"optexp -m {preset or '...'} (a sweep runs with -m)",
            problem=f"defines a sweep{f' (set by {preset})' if preset else ''}",
        )
    check_one_option_per_group(OmegaConf.to_container(cfg.hydra.overrides.task, resolve=False))


def check_one_option_per_group(overrides: list[str]) -> None:
    """`optimizer=[sgd,adam]` on a single run: a list where one option goes (refused
    before composing too, where the options' own defaults would clash first)."""
    for override in overrides:
        group, _, value = override.partition("=")
        if group in (*GROUPS_WITH_TARGET, *OPTIONAL_GROUPS) and value.startswith("["):
            options = value.strip("[]")
            raise ConfigError(
                group,
                value,
                f"one option, or a sweep: optexp -m {group}={options}",
                problem="lists several options",
            )
