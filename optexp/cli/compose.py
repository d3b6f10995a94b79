"""A sweep's config loader that composes each set of config-group choices once.

Hydra composes every job of a sweep from its YAML files: the defaults list, each file read
and merged, for every job and again to check the sweep (benchmarks/RESULTS.md). Hydra's own
composition applies the plain `key=value` overrides last, to the composed config; so a job
is the composition of its group choices, copied, with its values applied by Hydra's own
function and the fields Hydra derives from the overrides set as Hydra sets them.
tests/test_sweeps.py checks the result against Hydra's composition for every kind of
override."""

from __future__ import annotations

import copy
import os
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.defaults_list import Overrides
from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException


class ChoicesConfigLoader(ConfigLoader):
    """Hydra's loader (`loader`) for everything; `load_sweep_config` reuses the
    composition of a job's group choices."""

    def __init__(self, loader: ConfigLoaderImpl) -> None:
        self.loader = loader
        self._compositions: dict[tuple[str, ...], DictConfig] = {}
        self._repo: Any = None  # the search path of the sweep, to tell groups from keys

    def __getstate__(self) -> dict[str, Any]:  # a launcher pickling it sends no configs
        return {"loader": self.loader}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["loader"])

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        parsed = OverridesParser.create().parse_overrides(overrides=list(sweep_overrides))
        values = self._values(master_config, parsed)
        if values is None:
            return self.loader.load_sweep_config(master_config, sweep_overrides)
        applied = {id(v) for v in values}
        choices = tuple(o.input_line for o in parsed if id(o) not in applied)
        if choices not in self._compositions:
            self._compositions[choices] = self.loader.load_sweep_config(
                master_config, list(choices)
            )
        cfg = copy.deepcopy(self._compositions[choices])
        try:
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        except OmegaConfBaseException as error:  # as Hydra's load_configuration reports it
            raise ConfigCompositionException() from error
        set_override_fields(cfg, master_config, parsed)
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg

    def _values(self, master_config: DictConfig, parsed: list[Override]) -> list[Override] | None:
        """The overrides Hydra applies after composing (not config-group choices), or None
        where this job must be composed whole: a sweep value (refused as Hydra refuses it)
        or a search path of its own."""
        if any(o.is_sweep_override() or o.get_key_element() == "hydra.searchpath" for o in parsed):
            return None
        if self._repo is None:
            _, self._repo = self.loader._parse_overrides_and_create_caching_repo(
                master_config.hydra.job.config_name, list(master_config.hydra.overrides.hydra)
            )
        return Overrides(self._repo, parsed).config_overrides

    def load_configuration(self, *args: Any, **kwargs: Any) -> DictConfig:
        return self.loader.load_configuration(*args, **kwargs)

    def get_search_path(self) -> Any:
        return self.loader.get_search_path()

    def get_sources(self) -> Any:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> Any:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.compute_defaults_list(*args, **kwargs)


def set_override_fields(cfg: DictConfig, master_config: DictConfig, parsed: list[Override]) -> None:
    """What Hydra's `_load_configuration_impl` derives from a job's overrides, after
    applying them: the lists of overrides, the copied environment, the job's dirname."""
    task = [o for o in parsed if not o.is_hydra_override()]
    hydra = cfg.hydra
    hydra.overrides.hydra = list(master_config.hydra.overrides.hydra) + [
        o.input_line for o in parsed if o.is_hydra_override()
    ]
    hydra.overrides.task = [o.input_line for o in task]
    with open_dict(hydra):
        for key in hydra.job.env_copy:
            hydra.job.env_set[key] = os.environ[key]
    dirname = hydra.job.config.override_dirname
    hydra.job.override_dirname = get_overrides_dirname(
        overrides=task,
        kv_sep=dirname.kv_sep,
        item_sep=dirname.item_sep,
        exclude_keys=dirname.exclude_keys,
    )
