"""The `optexp` command. Hydra composes the config from optexp/configs/ and the command
line; optexp checks it, trains, and returns the monitored metric to the sweeper.

    main.py     the console entry point: Hydra's command line, --help, --version, and
                every error the user can fix as one line with exit status 2
    app.py      the Hydra app: one job = check (a sweep's job), train, return the objective
    session.py  what this process knows of its run or sweep, and the Hydra callback that
                checks a single run before Hydra writes anything
    errors.py   any error (optexp's, Hydra's, OmegaConf's, YAML's) as one line
    help.py     `optexp --help`, from one composition

Only Hydra is imported up front: `--help` and config errors answer fast; torch is
imported when there is something to train.
"""

from optexp.cli.app import CONFIG_DIR, CONFIG_MODULE
from optexp.cli.main import main

__all__ = ["CONFIG_DIR", "CONFIG_MODULE", "main"]
