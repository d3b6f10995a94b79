"""The `optexp-init DIR` command: a starter folder for a project's own configs.

It copies the default option of each group that has settings (`optimizer/adam.yaml`
becomes `DIR/optimizer/my_adam.yaml`, with a header saying how to pick it), writes a
preset `experiment/mine.yaml` that picks all the copies, and a short README. So
`optexp --config-dir DIR experiment=mine` runs the default experiment from files the
user owns, and each file shows the keys its option takes. Existing files are never
overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from optexp.errors import debug_requested, exit_with_error

BUILT_IN = files("optexp.configs")

HEADER = """\
# Your copy of optexp's {group}/{option}.yaml: pick it with `{group}={name}`.
# `_target_` is what it builds; the other keys are its arguments. A file named like a
# built-in option ({group}/{option}.yaml) would replace that option instead.
"""

PRESET_HEAD = """\
# @package _global_
# A preset: a short diff over optexp's defaults. Run it with `optexp experiment=mine`.
# It picks your copies below; change them, or any key (`optexp --cfg job` lists them).
defaults:
"""

PRESET_TAIL = """
trainer:
  epochs: 10   # a preset may also set single keys; these win over the files above
"""

README = """\
# Configs of this project for optexp

Each folder is one of optexp's config groups. A file adds an option to its group
(`optimizer/my_adam.yaml` is `optimizer=my_adam`); a file named like a built-in option
(`optimizer/adam.yaml`) replaces it. `experiment/mine.yaml` is a preset using them.
List your options beside the built-in ones, and run the preset:

    optexp --config-dir {dir} --help
    optexp --config-dir {dir} experiment=mine

Or name the folder once (e.g. in .envrc) and leave out `--config-dir`:

    export OPTEXP_CONFIG_DIR={env}

The built-in configs, to copy more from: {built_in}
"""


def default_choices() -> dict[str, str]:
    """{group: option} of the experiment's built-in defaults, e.g. {"optimizer": "adam"}
    (Hydra's own settings, `hydra: default`, are no part of an experiment)."""
    defaults = OmegaConf.create((BUILT_IN / "config.yaml").read_text()).defaults
    return {
        group: option
        for entry in defaults
        if isinstance(entry, DictConfig)
        for group, option in entry.items()
        if option is not None and group != "hydra"
    }


def starter_files(folder: Path) -> dict[Path, str]:
    """The files to write: a copy of each default that has settings, the preset, README."""
    written: dict[Path, str] = {}
    picks = []
    for group, option in default_choices().items():
        text = (BUILT_IN / group / f"{option}.yaml").read_text()
        if not OmegaConf.create(text):  # `none`: nothing to edit
            continue
        name = f"my_{option}"
        header = HEADER.format(group=group, option=option, name=name)
        written[folder / group / f"{name}.yaml"] = header + text
        picks.append(f"  - override /{group}: {name}\n")
    written[folder / "experiment" / "mine.yaml"] = PRESET_HEAD + "".join(picks) + PRESET_TAIL
    env = folder if folder.is_absolute() else f'"$PWD/{folder}"'  # the same from any folder
    written[folder / "README.md"] = README.format(dir=folder, env=env, built_in=BUILT_IN)
    return written


class Refused(Exception):
    """A starter folder that cannot be written as asked; nothing of it was written."""


def in_the_way(todo: dict[Path, str]) -> str | None:
    """What stops the files from being written, checked before any is: a file where a
    folder is to go (the target itself, or one above a file), or a file that exists."""
    for path in todo:
        for folder in reversed(path.parents):
            if os.path.lexists(folder) and not folder.is_dir():
                kind = "a broken link" if folder.is_symlink() else "a file"
                return f"{folder} is {kind}; a folder is needed (nothing written)"
        if os.path.lexists(path):
            return f"{path} exists; nothing written (choose a new folder)"
    return None


def write_starter(folder: Path) -> list[Path]:
    """Write the starter files, or none of them: everything is checked first, and what
    was made before a failure (a full disk, a read-only subfolder) is removed again."""
    todo = starter_files(folder)
    if problem := in_the_way(todo):
        raise Refused(problem)
    made: list[Path] = []  # files and folders this call created, in order
    try:
        for path, text in todo.items():
            missing = [d for d in reversed(path.parents) if not d.exists()]
            for directory in missing:
                directory.mkdir()
                made.append(directory)
            made.append(path)
            path.write_text(text)
    except OSError as error:
        for created in reversed(made):
            with contextlib.suppress(OSError):
                created.rmdir() if created.is_dir() else created.unlink()
        name = error.filename or path
        raise Refused(
            f"cannot write {name}: {error.strerror or error} (nothing written)"
        ) from error
    return list(todo)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="optexp-init",
        description="Write a starter folder of your own configs: one annotated file per "
        "group, a preset experiment/mine.yaml and a README. Nothing is overwritten: if one "
        "of these files exists, or a file stands where a folder is needed, nothing is "
        "written.",
    )
    p.add_argument("dir", metavar="DIR", help="the folder to create or fill (. for this one)")
    name = p.parse_args(argv).dir
    folder = Path(name)
    try:
        if not name.strip():  # an unset shell variable: not the current folder
            raise Refused(f"DIR {name!r} is not allowed. Allowed: a folder's path; . for this one")
        written = write_starter(folder)
    except (Refused, OSError) as error:  # OSError: reading the built-in configs
        if debug_requested():
            raise
        exit_with_error("optexp-init", str(error))
    print(f"wrote {len(written)} files under {folder}/:")
    print("".join(f"  {path.relative_to(folder)}\n" for path in written), end="")
    print(f"next: optexp --config-dir {folder} experiment=mine")


if __name__ == "__main__":
    main()
