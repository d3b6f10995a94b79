"""The user's own config folders, searched before optexp's built-in configs.

A folder that mirrors the groups (`my_configs/optimizer/lion.yaml`,
`my_configs/experiment/mine.yaml`) adds options, and a file named like a built-in one
replaces it. Name the folders in OPTEXP_CONFIG_DIR (set once for a project; several
separated by `os.pathsep`, the first wins) or pass Hydra's `--config-dir DIR`.

Hydra itself puts `--config-dir` and `hydra.searchpath` after the primary config's
source, where a same-named built-in file would shadow the user's; the search-path plugin
in hydra_plugins/optexp_user_configs/ puts these folders ahead of it instead, and has
them read by `UserConfigSource`. Before a run starts, a folder Hydra would misread is
refused in one line naming the path (`check_folder`), and so is a file in it that is not
UTF-8 text, or a preset without its `# @package _global_` line.
"""

from __future__ import annotations

import codecs
import difflib
import os
from argparse import ArgumentParser
from collections.abc import Sequence
from importlib.resources import files

from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra._internal.utils import get_args_parser
from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.errors import SearchPathException
from hydra.plugins.config_source import ConfigLoadError, ConfigResult

ENV = "OPTEXP_CONFIG_DIR"
BUILT_IN = "pkg://optexp.configs"
SCHEME = "optexp-user"  # the user's folders, read by UserConfigSource
PRESET_GROUPS = ("experiment", "hparams_search", "debug", "problem")  # `@package _global_`
LAYOUT = "a config folder holds group folders (optimizer/, experiment/, ...)"


def groups() -> list[str]:
    """optexp's config groups: the folders of its built-in configs (hydra/ included)."""
    return sorted(
        entry.name
        for entry in files("optexp.configs").iterdir()
        if entry.is_dir() and not entry.name.startswith(("_", "."))
    )


def check_folder(folder: str, source: str) -> None:
    """Refuse a folder Hydra would misread: missing, a file, holding a config.yaml (which
    would replace optexp's primary config), or YAML files outside optexp's groups (which
    Hydra would silently ignore). `source` says where the folder was named."""
    if not os.path.exists(folder):
        raise SearchPathException(f"config directory '{folder}' not found (from {source})")
    if not os.path.isdir(folder):
        raise SearchPathException(
            f"{source} '{folder}' is a file, not a folder: {LAYOUT}"
            if source == "--config-dir"
            else f"{source} names '{folder}', a file, not a folder: {LAYOUT}"
        )
    known = groups()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith((".", "_")):
            continue  # .git, __pycache__
        if os.path.isdir(path):
            if name not in known and _holds_yaml(path):
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" Did you mean {close[0]}/?" if close else ""
                raise SearchPathException(
                    f"{path}/ is not a config group, so Hydra would never read its files "
                    f"(from {source}).{hint} Allowed: {', '.join(known)}"
                )
        elif name == "config.yaml":
            raise SearchPathException(
                f"{path}: {LAYOUT} and must not hold config.yaml, which would replace "
                f"optexp's own (from {source}); put its keys in a preset, "
                "experiment/NAME.yaml, and pick it with experiment=NAME"
            )
        elif name.endswith((".yaml", ".yml")):
            raise SearchPathException(
                f"{path} is outside any group folder, so Hydra would never read it "
                f"(from {source}): {LAYOUT}; move it to {_home(name, known)}"
            )


def _holds_yaml(folder: str) -> bool:
    """YAML files in the folder or one level below (groups nest: optimizer/textbook/)."""
    for entry in os.scandir(folder):
        if entry.name.endswith(".yaml"):
            return True
        if entry.is_dir() and any(e.name.endswith(".yaml") for e in os.scandir(entry.path)):
            return True
    return False


def _home(name: str, known: list[str]) -> str:
    """Where a stray option file belongs: the group with a built-in option of its name."""
    stem = name.rsplit(".", 1)[0]
    for group in known:
        if (files("optexp.configs") / group / f"{stem}.yaml").is_file():
            return f"{group}/{stem}.yaml"
    return f"its group's folder, e.g. optimizer/{stem}.yaml"


def user_dirs() -> list[str]:
    """The folders named in OPTEXP_CONFIG_DIR, as absolute paths, first one first."""
    return [os.path.abspath(d) for d in os.environ.get(ENV, "").split(os.pathsep) if d]


def config_dirs(argv: Sequence[str]) -> list[str]:
    """Every `--config-dir`/`-cd` value of a command line, in order: Hydra's own parser
    keeps only the last one."""
    parser = ArgumentParser(parents=[get_args_parser()], add_help=False, conflict_handler="resolve")
    parser.add_argument("--config-dir", "-cd", action="append", default=[])
    return parser.parse_args(argv).config_dir


def search_first(argv: Sequence[str]) -> None:
    """Put the command line's `--config-dir DIR` folders (each one checked, the first one
    first) in front of the folders already named in OPTEXP_CONFIG_DIR."""
    folders = []
    for config_dir in config_dirs(argv):
        if not config_dir.strip():
            raise SearchPathException(
                f"--config-dir {config_dir!r} is not allowed. Allowed: a folder of group "
                "folders (optimizer/, experiment/, ...); `--config-dir .` for this one"
            )
        folders.append(os.path.abspath(config_dir))
        check_folder(folders[-1], "--config-dir")
    if folders:
        os.environ[ENV] = os.pathsep.join([*folders, *user_dirs()])


def add_user_dirs(search_path: ConfigSearchPath) -> None:
    """Insert the user's folders just before optexp's built-in configs."""
    if not any(element.path == BUILT_IN for element in search_path.get_path()):
        return  # another Hydra app in this environment: leave its search path alone
    for folder in user_dirs():
        check_folder(folder, ENV)  # --config-dir's was checked before it joined ENV's
        search_path.prepend("optexp-user", f"{SCHEME}://{folder}", SearchPathQuery(path=BUILT_IN))


class UserConfigSource(FileConfigSource):
    """A user's config folder: read as Hydra reads any folder, but a file Hydra cannot
    read, or a preset that would put its keys in the wrong place, is refused in one line
    naming the file. (Registered by hydra_plugins/optexp_user_configs/.)"""

    @staticmethod
    def scheme() -> str:
        return SCHEME

    def load_config(self, config_path: str) -> ConfigResult:
        path = os.path.join(self.path, self._normalize_file_name(config_path))
        raw = b""
        try:
            with open(path, "rb") as file:
                raw = file.read()
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ConfigLoadError(
                f"{path} is not UTF-8 text (byte {raw[error.start]:#04x} at position "
                f"{error.start}): save it as UTF-8"
            ) from None
        except OSError:
            pass  # Hydra's own read says what is wrong
        try:
            result = super().load_config(config_path)
            if raw.startswith(codecs.BOM_UTF8):  # Hydra reads the header past a BOM as none
                result.header = self._get_header_dict(text[:512])
        except ValueError as error:  # a malformed `# @package` header
            raise ConfigLoadError(f"{path}: {error}") from None
        group = config_path.strip("/").split("/")[0]
        if group in PRESET_GROUPS and result.header.get("package") is None:
            raise ConfigLoadError(
                f"{path} needs `# @package _global_` as its first line: a file in {group}/ "
                f"sets keys of the whole config (without it they would go under `{group}.`)"
            )
        return result
