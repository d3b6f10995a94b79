"""The user's own config folders, searched before optexp's built-in configs.

A folder that mirrors the groups (`my_configs/optimizer/lion.yaml`,
`my_configs/experiment/mine.yaml`) adds options, and a file named like a built-in one
replaces it. Name the folders in OPTEXP_CONFIG_DIR (set once for a project; several
separated by `os.pathsep`, the first wins) or pass Hydra's `--config-dir DIR`.

Hydra itself puts `--config-dir` and `hydra.searchpath` after the primary config's
source, where a same-named built-in file would shadow the user's; the search-path plugin
in hydra_plugins/optexp_user_configs/ puts these folders ahead of it instead.
"""

from __future__ import annotations

import os

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.errors import SearchPathException

ENV = "OPTEXP_CONFIG_DIR"
BUILT_IN = "pkg://optexp.configs"


def user_dirs() -> list[str]:
    """The folders named in OPTEXP_CONFIG_DIR, as absolute paths, first one first."""
    return [os.path.abspath(d) for d in os.environ.get(ENV, "").split(os.pathsep) if d]


def search_first(config_dir: str) -> None:
    """Put `--config-dir DIR` in front of the folders already named in OPTEXP_CONFIG_DIR."""
    os.environ[ENV] = os.pathsep.join([os.path.abspath(config_dir), *user_dirs()])


def add_user_dirs(search_path: ConfigSearchPath) -> None:
    """Insert the user's folders just before optexp's built-in configs."""
    if not any(element.path == BUILT_IN for element in search_path.get_path()):
        return  # another Hydra app in this environment: leave its search path alone
    for folder in user_dirs():
        if not os.path.isdir(folder):
            raise SearchPathException(
                f"config directory '{folder}' not found (from --config-dir or {ENV})"
            )
        search_path.prepend("optexp-user", f"file://{folder}", SearchPathQuery(path=BUILT_IN))
