"""Reading the runs below a folder: each run's overrides, saved config, status and final
metrics (`find_runs`, `read_run`), and its TensorBoard scalars (`read_scalars`, the one
TensorBoard reader of the report). Nothing here groups, measures or draws."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from optexp.errors import UserError
from optexp.rundir import (
    HYDRA_DIR,
    METRICS_FILE,
    TB_DIR,
    Status,
    load_summary,
    tb_dir,
)

INCOMPLETE = "running/incomplete"  # the status of a run that has no summary yet

Scalars = dict[str, dict[int, float]]  # a run's TensorBoard scalars: {tag: {step: value}}


class ReportError(UserError):
    """Bad input to the report: printed as one line, exit 2."""


@dataclass(frozen=True)
class Metric:
    label: str
    where: tuple[str, ...]  # path into the run's summary
    higher_is_better: bool
    fmt: str


METRICS = {
    "test/acc": Metric("test acc", ("test", "acc"), True, ".4f"),
    "test/loss": Metric("test loss", ("test", "loss"), False, ".4f"),
    "train_eval/acc": Metric("train acc (eval)", ("train_eval", "acc"), True, ".4f"),
    "train_eval/loss": Metric("train loss (eval)", ("train_eval", "loss"), False, ".4f"),
    "val/acc": Metric("best val acc", ("best", "val/acc"), True, ".4f"),
    "val/loss": Metric("best val loss", ("best", "val/loss"), False, ".4f"),
    "epochs": Metric("epochs", ("epochs_completed",), False, ".1f"),
    "wall_s": Metric("wall s", ("wall_s",), False, ".1f"),
}


@dataclass
class Run:
    path: Path
    overrides: dict[str, str]  # key -> value as written on the command line
    status: str  # a rundir.Status, or INCOMPLETE
    values: dict[str, float]  # finite metric values only
    config: dict[str, Any] = field(default_factory=dict)
    error: str = ""  # why a failed run failed

    def config_value(self, key: str) -> str:
        """`key`'s value in the saved config, for a key the run did not override."""
        value = OmegaConf.select(OmegaConf.create(self.config), key, default=None)
        return "(default)" if value is None else str(value)

    def value_of(self, key: str) -> str:
        """`key`'s value in this run: as overridden, else as saved."""
        return self.overrides.get(key) or self.config_value(key)


def find_runs(root: Path) -> list[Run]:
    """Every run below `root` (or `root` itself); an unreadable one and the reason of a
    failed one are listed on stderr."""
    if not root.exists():
        raise ReportError(f"{root} does not exist")
    if not root.is_dir():
        raise ReportError(
            f"{root} is a file, not a folder: name the folder holding the runs "
            "(a sweep, outputs/, or one run's folder)"
        )
    # rglob also looks in root itself: PATH may be a single run
    dirs = {p.parent for p in root.rglob(METRICS_FILE)}
    dirs |= {p.parent for p in root.rglob(HYDRA_DIR) if p.is_dir()}
    if not dirs:
        raise ReportError(
            f"no runs found under {root} (no {METRICS_FILE} or {HYDRA_DIR}/ below it)"
        )
    runs = []
    for folder in sorted(dirs):
        try:
            runs.append(read_run(folder))
        except ReportError as error:  # one broken run does not hide the others
            print(f"optexp-report: unreadable run {folder}: {error}", file=sys.stderr)
    if not runs:
        raise ReportError(f"no readable runs under {root}")
    for run in runs:
        if run.status == Status.FAILED:
            print(f"optexp-report: failed run {run.path}: {run.error}", file=sys.stderr)
    return runs


def read_run(path: Path) -> Run:
    hydra_dir = path / HYDRA_DIR
    overrides = parse_overrides(_override_lines(hydra_dir / "overrides.yaml"))
    config = load_yaml(hydra_dir / "config.yaml") or {}
    try:
        summary = load_summary(path)
    except UserError as error:
        raise ReportError(str(error)) from None
    if summary is None:
        return Run(path, overrides, INCOMPLETE, {}, config)
    status = str(summary.get("status", "unknown"))
    error = str(summary.get("error") or "")
    return Run(path, overrides, status, metric_values(summary), config, error)


def _override_lines(path: Path) -> list[str]:
    lines = load_yaml(path)
    if lines is None:
        return []
    if not isinstance(lines, list):
        what = "a mapping" if isinstance(lines, dict) else f"{type(lines).__name__} {lines!r}"
        raise ReportError(f"cannot read {path}: {what}, not a list of overrides")
    for line in lines:
        if not isinstance(line, str):
            raise ReportError(
                f"cannot read {path}: {line!r} ({type(line).__name__}) is not an "
                "override such as optimizer.lr=0.1"
            )
    return lines


def load_yaml(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return OmegaConf.to_container(OmegaConf.load(path))
    except (OSError, OmegaConfBaseException, ValueError, yaml.YAMLError) as error:
        detail = " ".join(str(error).split())  # one line
        raise ReportError(f"cannot read {path}: {detail}") from None


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """Hydra's own override grammar: `+key=v`, `key=v` and `~key` all name `key`."""
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except HydraException as error:
        detail = " ".join(str(error).split())  # one line
        raise ReportError(f"cannot parse overrides {lines}: {detail}") from None
    return {
        o.key_or_group: "(deleted)" if o.is_delete() else o.get_value_element_as_str()
        for o in parsed
    }


def metric_values(summary: dict[str, Any]) -> dict[str, float]:
    """The finite values of METRICS in a run's summary."""
    values = {}
    for name, metric in METRICS.items():
        value: Any = summary
        for part in metric.where:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, int | float) and math.isfinite(value):
            values[name] = float(value)
    return values


def read_scalars(run_dir: Path) -> Scalars:
    """Every scalar of a run's TensorBoard events: {tag: {step: value}}, non-finite values
    kept (a diverged epoch logs its NaN loss): a caller that draws leaves them out."""
    events_dir = tb_dir(run_dir)
    if not events_dir.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(events_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def logged_tags(scalars: list[Scalars]) -> str:
    """The tags these runs log, for a message: `val/loss, train/loss`, or that there are none."""
    shown = ", ".join(sorted({tag for s in scalars for tag in s if "/" in tag}))
    return shown or f"nothing (no {TB_DIR}/ events)"
