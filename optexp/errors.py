"""The errors a user can fix, and how every optexp command reports them: one line naming
what is wrong and what is allowed, a hint, exit status 2, no traceback.

Imports nothing heavy: config errors answer fast.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, NoReturn

from omegaconf import DictConfig, ListConfig, OmegaConf

USER_ERROR = 2  # the exit status of every optexp command for an error the user can fix
DEBUG_HINT = "(set OPTEXP_DEBUG=1 for the traceback)"
DEFAULT_FORMAT = warnings.formatwarning


class UserError(Exception):
    """An error the user can fix (config, paths, files): reported in one line, exit 2."""


class Advice(UserWarning):
    """A setting that is allowed but likely not what the user meant: one line on stderr,
    `optexp: warning: ...` (the CLI's `warnings.formatwarning`), and the run goes on."""


def one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """`warnings.formatwarning` for the CLI: `Advice` in one line, others as Python has them."""
    if issubclass(category, Advice):
        return f"optexp: warning: {message}\n"
    return DEFAULT_FORMAT(message, category, filename, lineno, line)


class ConfigError(UserError, ValueError):
    """A user error in the configuration: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str, problem: str = "is not allowed"):
        self.key, self.value, self.allowed, self.problem = key, value, allowed, problem
        super().__init__(f"{key}={_show(value)} {problem}. Allowed: {allowed}.")

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # Pickled with its own arguments: a cluster launcher (submitit) sends a job's
        # error back to the sweep's process as a pickle.
        return type(self), (self.key, self.value, self.allowed, self.problem)


class Option(str):
    """A config group's option as a message names it, without quotes: `loss=hinge`, or
    `loss=hinge (MultiMarginLoss)` with what it built as a detail (`optexp.intent`)."""


def _show(value: Any) -> str:
    if isinstance(value, Option):
        return str(value)
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    return repr(value) if isinstance(value, str) else str(value)


def debug_requested() -> bool:
    """OPTEXP_DEBUG (or Hydra's HYDRA_FULL_ERROR) set to anything but 0, false, no, off
    or nothing: user errors show their traceback."""
    off = ("", "0", "false", "no", "off")
    names = ("OPTEXP_DEBUG", "HYDRA_FULL_ERROR")
    return any(os.environ.get(name, "").strip().lower() not in off for name in names)


def exit_with_error(program: str, message: str) -> NoReturn:
    """How every optexp command reports a user error: one line, the hint, exit 2."""
    print(f"{program}: error: {message}", file=sys.stderr)
    print(DEBUG_HINT, file=sys.stderr)
    raise SystemExit(USER_ERROR)
