"""The `optexp` command. Hydra composes the config from configs/ and the command line;
optexp checks it, trains, and returns the monitored metric to the sweeper.

Only Hydra is imported up front: `--help` and config errors answer fast; torch is
imported when there is something to train.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from optexp.config import UserError, check

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
USER_ERROR = 2
_composed = False  # True once Hydra composed a config: its later exits are not usage errors


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def train_from_config(cfg: DictConfig) -> float:
    """One job: check the composed config, train, return the objective."""
    global _composed
    _composed = True
    try:
        check(cfg)
        from optexp.train import run

        hydra_cfg = HydraConfig.get()
        summary = run(cfg, Path(hydra_cfg.runtime.output_dir), chosen_options(hydra_cfg))
    except UserError as error:
        if os.environ.get("OPTEXP_DEBUG"):
            raise
        print(f"optexp: error: {error}", file=sys.stderr)
        sys.exit(USER_ERROR)
    return summary["objective"]


def chosen_options(hydra_cfg: DictConfig) -> dict[str, str]:
    """The option picked in each of optexp's config groups, e.g. {"optimizer": "adam"}."""
    return {
        group: option
        for group, option in hydra_cfg.runtime.choices.items()
        if option is not None and not group.startswith("hydra")
    }


def main() -> None:
    """Console entry point: Hydra's usage errors (unknown option, bad override) exit 2."""
    if os.environ.get("OPTEXP_DEBUG"):
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        train_from_config()
    except SystemExit as exit:
        if exit.code == 1 and not _composed:
            raise SystemExit(USER_ERROR) from None
        raise


if __name__ == "__main__":
    main()
