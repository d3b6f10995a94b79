"""The built-in config groups' options, as the tests run them."""

from __future__ import annotations

from pathlib import Path

from optexp.cli import CONFIG_DIR

__all__ = ["CONFIG_DIR", "options"]


def options(group: Path) -> list[str]:
    """The option names of a built-in config group folder, nested ones as e.g.
    `textbook/adam`."""
    return sorted(str(path.relative_to(group).with_suffix("")) for path in group.rglob("*.yaml"))
