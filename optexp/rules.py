"""What a value may be: a test and the words that tell the user what is allowed.

`optexp.config` attaches these to the trainer's knobs, `optexp.checks` to the parts'
parameters and to Hydra's settings. Plain Python: no torch, no Hydra.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

FLOAT32_MAX = 3.4028234663852886e38  # beyond it a value overflows when torch uses it
SEED_MAX = 2**32 - 1  # numpy's legacy seeding accepts [0, 2**32 - 1]
INT_MAX = 2**31 - 1  # far beyond any sensible count, and safe in torch's int64 arithmetic


class Rule(NamedTuple):
    test: Callable[[Any], bool]
    allowed: str  # as the error message says it
    nullable: bool = False  # null is allowed too

    def or_null(self, allowed: str | None = None) -> Rule:
        return Rule(self.test, allowed or f"null or {self.allowed}", nullable=True)

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        try:
            return bool(self.test(value))
        except TypeError:  # a list where a number goes, ...
            return False


def number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def int_at_least(low: int) -> Rule:
    return Rule(lambda v: integer(v) and low <= v <= INT_MAX, f"an integer >= {low}")


def in_range(low: float, high: float, closed: str = "[]") -> Rule:
    """A number between `low` and `high`; `closed` says which ends are allowed: "[)"..."""
    left, right = closed

    def test(v: Any) -> bool:
        above = v >= low if left == "[" else v > low
        below = v <= high if right == "]" else v < high
        return number(v) and above and below

    return Rule(test, f"a number in {left}{low:g}, {high:g}{right}")


def one_of(*allowed: Any) -> Rule:
    return Rule(lambda v: v in allowed and not isinstance(v, bool), " | ".join(map(str, allowed)))


def list_of(item: Rule, allowed: str) -> Rule:
    return Rule(lambda v: isinstance(v, list) and all(item.accepts(x) for x in v), allowed)


def device(v: Any) -> bool:
    kind, _, index = str(v).partition(":")
    return kind in ("auto", "cpu", "cuda", "mps") and (not index or index.isdigit())


COUNT = int_at_least(1)
COUNT0 = int_at_least(0)
POSITIVE = Rule(lambda v: number(v) and v > 0, "a number > 0")
NON_NEGATIVE = Rule(lambda v: number(v) and v >= 0, "a number >= 0")
FRACTION = in_range(0, 1, "[)")
PROBABILITY = in_range(0, 1, "[]")
OPEN_FRACTION = in_range(0, 1, "()")
BOOL = Rule(lambda v: isinstance(v, bool), "true | false")
SEED = Rule(
    lambda v: integer(v) and 0 <= v <= SEED_MAX,
    f"an integer in [0, {SEED_MAX}] (what numpy accepts)",
)
PATH = Rule(lambda v: isinstance(v, str) and bool(v.strip()), "a path")
DEVICE = Rule(device, "auto | cpu | cuda | cuda:N | mps")
