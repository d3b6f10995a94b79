"""The console entry point `optexp`: Hydra's own command line, `--version` and a fast
`--help`, then the Hydra app; every error the user can fix, Hydra's included, is one line
and exit status 2 (`Session.refuse`)."""

from __future__ import annotations

import os
import signal
import sys
import warnings

import hydra
from hydra._internal.utils import get_args_parser

import optexp
from optexp.cli.app import train_from_config
from optexp.cli.errors import as_user_error, command_line_error
from optexp.cli.help import other_flags, print_help
from optexp.cli.session import SESSION
from optexp.cli.settings import check_one_option_per_group
from optexp.errors import UserError, debug_requested, one_line_warning
from optexp.user_configs import search_first


def main() -> None:
    SESSION.debug = debug_requested()  # before the line below, which Hydra would read
    warnings.formatwarning = one_line_warning
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's errors reach us instead of printing
    argv = sys.argv[1:]
    if "--version" in argv:  # Hydra's own flag prints only Hydra's version
        print(f"optexp {optexp.__version__} (Hydra {hydra.__version__})")
        return
    parser = get_args_parser()  # Hydra's own command line, its errors in one line
    parser.error = lambda message: SESSION.refuse(UserError(command_line_error(message)))
    args = parser.parse_args(argv)
    try:
        search_first(argv)  # every --config-dir, each checked
        if not args.multirun:
            check_one_option_per_group(args.overrides)
        if args.help and not other_flags(args):
            print_help(args.overrides)
            return
        run_app()
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        sys.exit(128 + signal.SIGINT)
    except BrokenPipeError:  # `optexp --help | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except Exception as error:
        user_error = as_user_error(error, SESSION.job_started)
        if user_error is None:
            raise
        SESSION.refuse(user_error)
    SESSION.end()


def run_app() -> None:
    try:
        train_from_config()
    except Exception:
        # A sweeper that stops at failed jobs (Optuna's max_failure_rate), or finds no
        # finished trial: those jobs are the reason, which SESSION.end says.
        if not SESSION.failed_jobs:
            raise


if __name__ == "__main__":
    main()
