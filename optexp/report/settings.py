"""The report's settings (`ReportSettings`): what shapes the study, the profiles and the
figures, built once from the flags (`from_args`). Each default is written here only:
the flags default to None ("not given") and their help quotes `DEFAULTS`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

TIME_UNITS = ("epochs", "seconds")
SCORE_SCALES = ("linear", "log")
TIME_TO_TARGET = ("fastest", "tuned")  # AlgoPerf's fastest value per seed; the tuned value's
BANDS = ("minmax", "std")


@dataclass(frozen=True)
class ReportSettings:
    """Each field is the flag of its name (`tau_max`: --tau-max), so the flags map onto it
    with no table to keep in step."""

    tau_max: float = 4.0  # upper end of the profiles and their scores, as AlgoPerf
    time_unit: str = "epochs"  # of time to target; epochs do not depend on the machine's load
    score_scale: str = "linear"  # the tau axis the score integrates over
    profile_metric: str = "test/loss"  # the final metric of the second profile
    problem: str | None = None  # the problem key; None: `problem`, else `dataset`
    time_to_target: str = "fastest"  # per seed the fastest value (AlgoPerf), or the tuned one
    target_tolerance: float = 0.05  # how much `--target auto` loosens the best median
    bootstrap: int = 1000  # resamples of the seeds
    ci: float = 0.95  # level of the percentile intervals
    bootstrap_seed: int = 0
    curve: str = "val/loss"  # the TensorBoard tag of the curve figures
    band: str = "minmax"  # the shaded band over runs: min-max, or ±1 sample std

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReportSettings:
        """The settings the flags give; a flag not given (None) keeps its default."""
        given = {f.name: getattr(args, f.name) for f in fields(cls)}
        return cls(**{name: value for name, value in given.items() if value is not None})


DEFAULTS = ReportSettings()
