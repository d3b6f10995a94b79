"""The `optexp` command. Hydra composes the config from configs/ and the command line;
optexp checks it, trains, and returns the monitored metric to the sweeper.

Only Hydra is imported up front: `--help` and config errors answer fast; torch is
imported when there is something to train.
"""

from __future__ import annotations

import os
import string
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from optexp.config import UserError, check

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
USER_ERROR = 2
HELP_FLAGS = ("--help", "-h")
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


def print_help(overrides: list[str]) -> None:
    """Print what Hydra's --help prints, from one composition. (Hydra's own help lists the
    groups by copying its whole config store once per group: over a second.)"""
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        cause = f"\n{error.__cause__}" if error.__cause__ else ""
        print(f"optexp: error: {error}{cause}", file=sys.stderr)
        sys.exit(USER_ERROR)
    groups = "".join(
        f"{group.name}: {', '.join(sorted(option.stem for option in group.glob('*.yaml')))}\n"
        for group in sorted(CONFIG_DIR.iterdir())
        if group.is_dir()
    )
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    print(
        string.Template(cfg.hydra.help.template).safe_substitute(
            APP_CONFIG_GROUPS=groups, CONFIG=OmegaConf.to_yaml(job)
        )
    )


def main() -> None:
    """Console entry point: Hydra's usage errors (unknown option, bad override) exit 2."""
    if os.environ.get("OPTEXP_DEBUG"):
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    args = sys.argv[1:]
    asks_help = any(arg in HELP_FLAGS for arg in args)
    other_flags = [arg for arg in args if arg.startswith("-") and arg not in HELP_FLAGS]
    if asks_help and not other_flags:  # other flags (--resolve, --config-name): Hydra's help
        print_help([arg for arg in args if arg not in HELP_FLAGS])
        return
    try:
        train_from_config()
    except SystemExit as exit:
        if exit.code == 1 and not _composed:
            raise SystemExit(USER_ERROR) from None
        raise


if __name__ == "__main__":
    main()
