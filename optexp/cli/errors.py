"""Any error the user can fix as one line: optexp's own, Hydra's (a missing option, an
override its grammar cannot read), OmegaConf's (a wrong type, an interpolation that does
not resolve) and YAML's (a syntax error in a config file)."""

from __future__ import annotations

import difflib

import yaml
from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from optexp.errors import UserError

USER_ERRORS = (UserError, HydraException, OmegaConfBaseException, yaml.YAMLError)


def as_user_error(error: Exception, job_started: bool) -> Exception | None:
    """`error` as one the user can fix, or None for a bug (whose traceback is shown)."""
    if isinstance(error, USER_ERRORS):
        return error
    if job_started:  # from inside a job, anything else is a bug
        return None
    if isinstance(error, OSError):  # Hydra making the run directory
        return UserError(f"cannot write {error.filename or 'the output'}: {error.strerror}")
    if isinstance(error, ValueError):  # Hydra refusing a combination of flags
        return error
    return None


def command_line_error(message: str) -> str:
    """An argparse message of Hydra's command line, with where to look."""
    if message.startswith("unrecognized arguments") and "=" in message:
        return f"{message}: flags such as -m go before the overrides (see optexp --help)"
    return f"{message} (see optexp --help)"


def describe(error: BaseException) -> str:
    """One line: Hydra's message, its cause's first line, and the closest valid key if one
    was misspelt (never Hydra's "+key" hint: a key the part lacks is refused anyway)."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{mark.name}:{mark.line + 1}:{mark.column + 1}: YAML syntax: {error.problem}"
    message = str(error).split("Config search path:")[0].strip()  # drop Hydra's path dump
    if isinstance(error, MissingConfigException) and error.options:
        return f"{message.splitlines()[0]}. Allowed: {', '.join(error.options)}."
    lines = [line for line in message.splitlines() if not line.startswith("To append")]
    if isinstance(error, OmegaConfBaseException):  # name the key, drop OmegaConf's context
        context = ("full_key:", "object_type=", "reference_type=")
        lines = [line for line in lines if not line.strip().startswith(context)]
        if getattr(error, "full_key", None) and lines:
            lines[0] = f"{error.full_key}: {lines[0]}"
    override = getattr(error, "override", None)
    if override and lines:
        lines[0] = f"in override {override!r}: {lines[0]}"
        lines += _quoting_hint(override, lines[0])
    cause = error.__cause__
    if isinstance(cause, OmegaConfBaseException):
        lines.append(str(cause).strip().splitlines()[0])
        lines.extend(suggestion(cause))
    parts = [line.strip() for line in lines if line.strip()]
    return " ".join(p if p.endswith((".", "?", ":")) else f"{p}." for p in parts)


def _quoting_hint(override: str, message: str) -> list[str]:
    if "LexerNoViableAlt" not in message:
        return []
    key, _, value = override.partition("=")
    return [f"Characters outside Hydra's grammar need quotes: '{key}=\"{value}\"'"]


def suggestion(cause: OmegaConfBaseException) -> list[str]:
    """ "Did you mean KEY?" for a key missing from its node, when one is close."""
    key, parent = getattr(cause, "key", None), getattr(cause, "parent_node", None)
    if not isinstance(key, str) or parent is None or not hasattr(parent, "keys") or key in parent:
        return []
    close = difflib.get_close_matches(key, [str(k) for k in parent], n=1)
    if not close:
        return []
    full_key = getattr(cause, "full_key", key) or key
    return [f"Did you mean {full_key[: len(full_key) - len(key)]}{close[0]}?"]
