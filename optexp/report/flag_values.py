"""The `type=` helpers of optexp-report's flags: each checks one value alone and says, in
one line naming the flag and the value, what is allowed (`flags` puts them together)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from optexp.report.measures import Target, parse_target

FIGURE_TYPES = (".png", ".pdf", ".svg")


def number_in(flag: str, low: float, high: float, closed: str = "(]") -> Callable[[str], float]:
    """argparse `type=`: a finite number between low and high (`closed` says which ends
    are allowed, "(]": low < x <= high), else one line naming the flag, the value and the
    range. Every numeric flag goes through it."""
    left, right = closed
    above, below = (">=" if left == "[" else ">"), ("<=" if right == "]" else "<")
    words = f"a number {above} {low:g} and {below} {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = (value >= low if left == "[" else value > low) and (
            value <= high if right == "]" else value < high
        )
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"{flag} {text!r} is not allowed. Allowed: {words}")
        return value

    return parse


def integer_in(flag: str, low: int, high: int) -> Callable[[str], int]:
    """argparse `type=`: an integer with low <= x <= high, else one line as number_in's."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{flag} {text!r} is not allowed. Allowed: an integer >= {low} and <= {high}"
            )
        return value

    return parse


def target_arg(text: str) -> Target:
    """argparse `type=` of --target: [PROBLEM:]METRIC=VALUE with a finite VALUE."""
    try:
        target = parse_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not target.metric and not target.auto:
        raise argparse.ArgumentTypeError(
            f"--target {text!r} is not METRIC=VALUE (e.g. val/acc=0.9)"
        )
    if not (target.auto or math.isfinite(target.value)):
        raise argparse.ArgumentTypeError(
            f"--target {text!r}: {target.value:g} is not allowed. Allowed: a finite number or auto"
        )
    return target


def figure_path(flag: str) -> Callable[[str], Path]:
    """argparse `type=` of --plot, --sensitivity, --profile: a file name with an image
    suffix (matplotlib would silently add .png, or write FOLDER.png for a folder)."""

    def parse(text: str) -> Path:
        path = Path(text)
        allowed = f"Allowed: a file name ending in {', '.join(FIGURE_TYPES)}"
        if text.strip() and path.is_dir():
            raise argparse.ArgumentTypeError(f"{flag} {text!r} is a folder. {allowed}")
        if not text.strip() or path.suffix.lower() not in FIGURE_TYPES:
            raise argparse.ArgumentTypeError(f"{flag} {text!r} is not allowed. {allowed}")
        return path

    return parse


def folder_path(text: str) -> Path:
    """argparse `type=` of --study: not empty (Path('') is the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"--study {text!r} is not allowed. Allowed: a folder path (a new folder, an "
            "empty one, or an earlier study's)"
        )
    return Path(text)
