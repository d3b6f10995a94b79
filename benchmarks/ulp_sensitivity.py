"""Is a vectorized run's difference from its separate run rounding, or a bug? Against each
job of a sweep run twice (separate runs, and the vectorized launcher), the same separate
run once more with every initial weight moved by one ulp: a trial whose test loss moves as
much under that nudge is chaotic, and no stack can reproduce it to more than rounding.

    optexp -m GRID hydra.sweep.dir=SEPARATE
    optexp -m GRID hydra/launcher=vectorized hydra.sweep.dir=VECTORIZED
    OMP_NUM_THREADS=1 python benchmarks/ulp_sensitivity.py SEPARATE VECTORIZED [--above 1e-3]

Prints, for each job whose vectorized test loss differs from the separate one by more than
`--above` (relative), that difference beside the nudged run's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import optexp.train as training
from optexp.cli import CONFIG_DIR
from optexp.search_space import with_trial

build_parts = training.build_parts


def nudged(cfg: Any, *args: Any, **kwargs: Any) -> Any:
    """The run's parts with every initial weight one ulp up."""
    parts = build_parts(cfg, *args, **kwargs)
    with torch.no_grad():
        for p in parts.model.parameters():
            p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))
    return parts


def test_loss(run: Path) -> float:
    return json.loads((run / "metrics.json").read_text())["test"]["loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("separate", type=Path)
    parser.add_argument("vectorized", type=Path)
    parser.add_argument("--above", type=float, default=1e-3)
    args = parser.parse_args()
    training.build_parts = nudged
    for run in sorted(
        args.separate.glob("*/metrics.json"), key=lambda p: int(p.parent.name.split("_")[0])
    ):
        run = run.parent
        base = test_loss(run)
        gap = abs(test_loss(args.vectorized / run.name) - base) / abs(base)
        if gap <= args.above:
            continue
        overrides = list(OmegaConf.load(run / ".hydra" / "overrides.yaml"))
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = with_trial(compose("config", overrides=overrides))
        with tempfile.TemporaryDirectory() as folder:
            moved = abs(training.run(cfg, Path(folder))["test"]["loss"] - base) / abs(base)
        print(f"{run.name}: vectorized {gap:.1e}, one ulp {moved:.1e}", flush=True)


if __name__ == "__main__":
    main()
