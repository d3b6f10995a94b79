"""Hydra finds this plugin by its namespace package, hydra_plugins, for every app."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from optexp.user_configs import add_user_dirs


class OptexpUserConfigs(SearchPathPlugin):
    """The user's config folders ahead of optexp's built-in ones (see optexp.user_configs)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        add_user_dirs(search_path)
