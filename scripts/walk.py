"""How far a reader walks to follow the config through one run:
`python scripts/walk.py [--all] [--vectorized] [OVERRIDES...]`.

Traces one short run of `optexp.train.run` (with --vectorized: a group of two seeds from
the vectorized launcher's entry, `optexp.vector.group.run_group`) and lists optexp's
functions in the order each is first called, the way a newcomer reads them: those handed
the config or what was built from it (a DictConfig node, the trainer's settings, the
run's `Parts`, a group's `RunSpec` or the loop's `Member`, or a list of them), or every
function with --all. A *stop* is a move to another module in that list; a *return* is a stop at a
module the reader had already left. Fewer returns: the code reads in fewer trips back and
forth. Module bodies (imports) are not stops.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def reading_route(overrides: list[str], every: bool, vectorized: bool) -> tuple[int, list[str]]:
    """How many optexp functions a reader of `train.run` (or `run_group`) reads (those
    handed the config, or every one with `every`; each once, at its first call), and the
    modules they visit in that order, back in a caller's module after each callee."""
    from hydra import compose, initialize_config_module
    from omegaconf import DictConfig

    import optexp.config  # noqa: F401  (registers the schema)
    from optexp import train
    from optexp.config import TrainerConfig
    from optexp.vector import group

    carriers = (DictConfig, TrainerConfig, train.Parts, train.Member, group.RunSpec)

    def carries(value: Any) -> bool:
        if isinstance(value, list) and value:
            value = value[0]
        return isinstance(value, carriers)

    with initialize_config_module("optexp.configs", version_base="1.3"):
        cfgs = [
            compose("config", overrides=["trainer.epochs=1", f"seed={seed}", *overrides])
            for seed in (0, 1)
        ]
    seen: set[tuple[str, str]] = set()
    route: list[str] = []  # the modules in reading order, returns to a caller included
    reading: list[tuple[int, str]] = []  # (frame id, module) of the functions being read

    def go(module: str) -> None:
        if not route or route[-1] != module:
            route.append(module)

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "return" and reading and reading[-1][0] == id(frame):
            reading.pop()
            if reading:
                go(reading[-1][1])  # back in the caller, reading on
            return
        module, code = frame.f_globals.get("__name__", ""), frame.f_code
        if event != "call" or not module.startswith("optexp"):
            return
        if code.co_name in ("<genexpr>", "<module>") or (module, code.co_qualname) in seen:
            return
        arguments = [frame.f_locals.get(name) for name in code.co_varnames[: code.co_argcount]]
        if every or any(carries(a) for a in arguments):
            seen.add((module, code.co_qualname))
            reading.append((id(frame), module))
            go(module)

    with tempfile.TemporaryDirectory() as folder:
        sys.setprofile(profile)
        try:
            if vectorized:
                specs = [group.RunSpec(c, Path(folder) / str(k), {}) for k, c in enumerate(cfgs)]
                group.run_group(specs)
            else:
                train.run(cfgs[0], Path(folder))
        finally:
            sys.setprofile(None)
    return len(seen), route


def walk(route: list[str]) -> tuple[int, int, int]:
    """(stops, modules, returns) of a route."""
    returns = sum(module in route[:i] for i, module in enumerate(route))
    return len(route), len(set(route)), returns


def main() -> None:
    flags, overrides = (
        ("--all", "--vectorized"),
        [a for a in sys.argv[1:] if not a.startswith("--")],
    )
    every, vectorized = (flag in sys.argv[1:] for flag in flags)
    functions, route = reading_route(overrides, every, vectorized)
    stops, modules, returns = walk(route)
    print(" -> ".join(m.removeprefix("optexp.") for m in route))
    print(f"{functions} functions, {stops} stops in {modules} modules, {returns} returns")


if __name__ == "__main__":
    main()
