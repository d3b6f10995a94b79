"""`optexp --help`: what Hydra's --help prints (the groups and their options, the
composed config), from one composition. Hydra's own help copies its whole config
repository once per group: over a second."""

from __future__ import annotations

import argparse
import string

from hydra._internal.config_repository import IConfigRepository
from hydra._internal.utils import get_args_parser
from hydra.core.object_type import ObjectType
from omegaconf import OmegaConf

from optexp.cli.app import CONFIG_MODULE


def other_flags(args: argparse.Namespace) -> list[str]:
    """Hydra flags set besides --help, --config-dir and the overrides: Hydra's own help
    handles those."""
    defaults = vars(get_args_parser().parse_args([]))
    return [
        name
        for name, value in vars(args).items()
        if value != defaults[name] and name not in ("help", "config_dir", "overrides")
    ]


def print_help(overrides: list[str]) -> None:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        # The loader's repository itself: the loader's get_group_options copies it per call.
        repository = GlobalHydra.instance().config_loader().repository
        groups = "".join(
            f"{group}: {', '.join(group_options(repository, group))}\n"
            for group in repository.get_group_options("", ObjectType.GROUP)
            if group != "hydra"
        )
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    print(
        string.Template(cfg.hydra.help.template).safe_substitute(
            APP_CONFIG_GROUPS=groups, CONFIG=OmegaConf.to_yaml(job)
        )
    )


def group_options(repository: IConfigRepository, group: str) -> list[str]:
    """A group's options over the whole search path, the user's folders included; those
    of a nested folder as e.g. `textbook/adam`."""
    names = repository.get_group_options(group, ObjectType.CONFIG)
    for sub in repository.get_group_options(group, ObjectType.GROUP):
        names += [f"{sub}/{name}" for name in group_options(repository, f"{group}/{sub}")]
    return sorted(names)
