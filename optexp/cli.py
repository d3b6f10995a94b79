"""The `optexp` command. Hydra composes the config from optexp/configs/ and the command line;
optexp checks it, trains, and returns the monitored metric to the sweeper.

Only Hydra is imported up front: `--help` and config errors answer fast; torch is
imported when there is something to train.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import shutil
import signal
import string
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra._internal.config_repository import IConfigRepository
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.errors import HydraException, MissingConfigException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import optexp
from optexp.checks import check_config
from optexp.config import UserError
from optexp.user_configs import search_first

CONFIG_MODULE = "optexp.configs"  # found by package: works from any folder, in any install
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
USER_ERROR = 2
_job_started = False
_new_folders: list[Path] = []  # of a single run's directory, deepest first


class Rejected(BaseException):
    """A config refused by `CheckBeforeRun`. A BaseException: Hydra turns an Exception
    raised in a callback into a warning and carries on with the run."""

    def __init__(self, error: UserError) -> None:
        super().__init__(str(error))
        self.error = error


class CheckBeforeRun(Callback):
    """Checks a single run's config before Hydra creates its directory and log file, and
    notes which folders of that directory are new: a run refused when its parts are built
    and checked (`optexp.checks`) leaves none of them behind."""

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        global _new_folders
        try:
            check_config(config)
        except UserError as error:
            raise Rejected(error) from None
        run_dir = Path(config.hydra.run.dir).absolute()
        _new_folders = [path for path in (run_dir, *run_dir.parents) if not path.exists()]


def remove_refused_run_dir() -> None:
    """Remove the new run directory of a run refused before it wrote anything: Hydra's
    own files (.hydra/, the log) are all there is. Parents go only if left empty."""
    if not _new_folders or not _new_folders[0].is_dir():
        return
    run_dir = _new_folders[0]
    if any(path.name != ".hydra" and path.suffix != ".log" for path in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    for folder in _new_folders[1:]:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty: another run may have started in it since


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="config")
def train_from_config(cfg: DictConfig) -> float:
    """One job: check the composed config (again, for a sweep's jobs), train, return the
    objective for sweepers."""
    global _job_started
    _job_started = True
    check_config(cfg)
    from optexp.train import run

    hydra_cfg = HydraConfig.get()
    summary = run(cfg, Path(hydra_cfg.runtime.output_dir), chosen_options(hydra_cfg))
    if summary["status"] == "interrupted":  # by SIGINT/SIGTERM: exit as the signal would
        if summary["signal"] == signal.SIGUSR2:  # last.pt is saved: submitit requeues the job
            signal.raise_signal(signal.SIGUSR2)
        sys.exit(128 + summary["signal"])
    return summary["objective"]


def chosen_options(hydra_cfg: DictConfig) -> dict[str, str]:
    """The option picked in each of optexp's config groups, e.g. {"optimizer": "adam"}."""
    return {
        group: option
        for group, option in hydra_cfg.runtime.choices.items()
        if option is not None and not group.startswith("hydra")
    }


def main() -> None:
    """Console entry point: user errors, Hydra's included, print one line and exit 2."""
    debug = bool(os.environ.get("OPTEXP_DEBUG") or os.environ.get("HYDRA_FULL_ERROR"))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's errors reach us instead of printing
    if "--version" in sys.argv[1:]:  # Hydra's own flag prints only Hydra's version
        print(f"optexp {optexp.__version__} (Hydra {hydra.__version__})")
        return
    args = get_args_parser().parse_args(sys.argv[1:])  # Hydra's own command line
    try:
        if args.config_dir:
            search_first(args.config_dir)
        if args.help and not other_flags(args):
            print_help(args.overrides)
            return
        train_from_config()
    except (UserError, HydraException, OmegaConfBaseException) as error:
        remove_refused_run_dir()
        fail(error, debug)
    except Rejected as rejected:
        fail(rejected.error, debug)
    except ValueError as error:  # before a job: Hydra refusing a combination of flags
        if _job_started:
            raise  # from inside a job it is a bug: show the traceback
        fail(error, debug)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        sys.exit(128 + signal.SIGINT)
    except BrokenPipeError:  # `optexp --help | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def other_flags(args: argparse.Namespace) -> list[str]:
    """Hydra flags set besides --help, --config-dir and the overrides: Hydra's own help
    handles those."""
    defaults = vars(get_args_parser().parse_args([]))
    return [
        name
        for name, value in vars(args).items()
        if value != defaults[name] and name not in ("help", "config_dir", "overrides")
    ]


def fail(error: Exception, debug: bool) -> NoReturn:
    if debug:
        raise error
    print(f"optexp: error: {describe(error)}", file=sys.stderr)
    print("(set OPTEXP_DEBUG=1 for the traceback)", file=sys.stderr)
    sys.exit(USER_ERROR)


def print_help(overrides: list[str]) -> None:
    """Print what Hydra's --help prints, from one composition. (Hydra's own help copies
    its whole config repository once per group: over a second.)"""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        # The loader's repository itself: the loader's get_group_options copies it per call.
        repository = GlobalHydra.instance().config_loader().repository
        groups = "".join(
            f"{group}: {', '.join(group_options(repository, group))}\n"
            for group in repository.get_group_options("", ObjectType.GROUP)
            if group != "hydra"
        )
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    print(
        string.Template(cfg.hydra.help.template).safe_substitute(
            APP_CONFIG_GROUPS=groups, CONFIG=OmegaConf.to_yaml(job)
        )
    )


def group_options(repository: IConfigRepository, group: str) -> list[str]:
    """A group's options over the whole search path, the user's folders included; those
    of a nested folder as e.g. `textbook/adam`."""
    names = repository.get_group_options(group, ObjectType.CONFIG)
    for sub in repository.get_group_options(group, ObjectType.GROUP):
        names += [f"{sub}/{name}" for name in group_options(repository, f"{group}/{sub}")]
    return sorted(names)


def options(group: Path) -> list[str]:
    """The option names of a built-in config group folder, nested ones as e.g.
    `textbook/adam` (what the tests run)."""
    return sorted(str(path.relative_to(group).with_suffix("")) for path in group.rglob("*.yaml"))


def describe(error: BaseException) -> str:
    """Hydra's message, its cause's first line, and the closest valid key if one was misspelt."""
    message = str(error).split("Config search path:")[0].strip()  # drop Hydra's path dump
    if isinstance(error, MissingConfigException) and error.options:
        return f"{message.splitlines()[0]}. Allowed: {', '.join(error.options)}."
    override = getattr(error, "override", None)
    lines = [f"in override {override!r}: {message}" if override else message]
    cause = error.__cause__
    if isinstance(cause, OmegaConfBaseException):
        lines.append(str(cause).strip().splitlines()[0])
        lines.extend(_suggestion(cause))
    return "\n".join(line for line in lines if line)


def _suggestion(cause: OmegaConfBaseException) -> list[str]:
    key, parent = getattr(cause, "key", None), getattr(cause, "parent_node", None)
    if not isinstance(key, str) or parent is None or not hasattr(parent, "keys") or key in parent:
        return []
    close = difflib.get_close_matches(key, [str(k) for k in parent], n=1)
    if not close:
        return []
    full_key = getattr(cause, "full_key", key) or key
    return [f"Did you mean {full_key[: len(full_key) - len(key)]}{close[0]}?"]


if __name__ == "__main__":
    main()
