"""Hydra finds these plugins by their namespace package, hydra_plugins, for every app:
the search path puts the user's folders first, and UserConfigSource reads them."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from optexp.user_configs import UserConfigSource, add_user_dirs

__all__ = ["OptexpUserConfigs", "UserConfigSource"]


class OptexpUserConfigs(SearchPathPlugin):
    """The user's config folders ahead of optexp's built-in ones (see optexp.user_configs)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        add_user_dirs(search_path)
