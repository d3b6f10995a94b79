"""Targets set once (AlgoPerf's way): `optexp-report REFERENCE_RUNS --set-targets` reads a
reference sweep (`experiment=study_targets`: the baselines with a larger budget of trials,
in studies of their own) and writes each problem's validation target into its problem
file, as `study.target`, for the study to read. Per baseline and study, the best value
any trial reached at its middle evaluation (half the budget: a study's methods get twice
the time the reference needed, as AlgoPerf sets budgets that its target-setting runs
reach their targets well within); per baseline, the median over studies; the target is
the best baseline's. A study's methods never enter it, so adding or removing one moves
no target."""

from __future__ import annotations

import dataclasses
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from optexp.report.runs import ReportError, Run, load_yaml, read_scalars
from optexp.rundir import HYDRA_DIR, Status


@dataclass(frozen=True)
class SetTarget:
    problem: str
    metric: str
    value: float
    method: str  # the baseline whose median set it
    studies: int
    trials: int
    chance: float | None  # kept from the problem file


def reference_targets(
    runs: Sequence[Run], metrics: dict[str, str] | None = None
) -> list[SetTarget]:
    """Each problem's target; `metrics`: problem -> the metric its file names now."""
    metrics = metrics or {}
    by_problem: dict[str, list[Run]] = {}
    for r in runs:
        if r.status == Status.COMPLETED and "study.trial" in r.overrides:
            by_problem.setdefault(problem_of(r), []).append(r)
    if not by_problem:
        raise ReportError("no finished trial below: --set-targets reads a reference sweep's trials")
    return [target_of(p, rs, metrics.get(p)) for p, rs in sorted(by_problem.items())]


def problem_of(run: Run) -> str:
    return run.overrides.get("+problem") or run.value_of("problem")


def target_of(problem: str, runs: Sequence[Run], metric: str | None = None) -> SetTarget:
    """`metric`: the problem file's own, if it names one now; else the runs' config's."""
    node = (runs[0].config.get("study") or {}).get("target") or {}
    metric = metric or node.get("metric") or "val/acc"
    higher = metric.endswith("acc")
    best_of = max if higher else min
    per_method: dict[str, dict[int, float]] = {}
    for r in runs:
        if (value := halfway_value(r, metric)) is not None:
            study = int((r.config.get("study") or {}).get("index", 0))
            per_study = per_method.setdefault(r.value_of("optimizer"), {})
            per_study[study] = best_of(per_study.get(study, value), value)
    if not per_method:
        raise ReportError(f"problem {problem}: no finished trial logs {metric}")
    medians = {m: statistics.median(v.values()) for m, v in per_method.items()}
    method = best_of(sorted(medians), key=lambda m: medians[m])
    trials = len({r.overrides.get("study.trial") for r in runs})
    chance = node.get("chance")
    return SetTarget(
        problem, metric, medians[method], method, len(per_method[method]), trials, chance
    )


def halfway_value(run: Run, metric: str) -> float | None:
    """The metric at the run's middle evaluation (epoch ceil(E / 2) of E), from its
    TensorBoard scalars."""
    curve = read_scalars(run.path).get(metric, {})
    if not curve:
        return None
    value = curve.get(math.ceil(max(curve) / 2))
    return float(value) if value is not None and math.isfinite(value) else None


def snippet(t: SetTarget) -> str:
    chance = "" if t.chance is None else f", chance: {t.chance:g}"
    return (
        "study:   # chance: what a constant predictor scores\n"
        f"  target: {{metric: {t.metric}, value: {t.value:.6g}{chance}}}   # optexp-report "
        f"--set-targets: {t.method}'s at half its budget, median of {t.studies} studies x "
        f"{t.trials} trials\n"
    )


def problem_file(run: Run, problem: str) -> Path:
    """The problem's YAML file, through the run's config search path."""
    hydra = load_yaml(run.path / HYDRA_DIR / "hydra.yaml") or {}
    sources = hydra.get("hydra", {}).get("runtime", {}).get("config_sources", [])
    for source in sources:
        if source.get("schema") == "file":
            folder = Path(source["path"])
        elif source.get("schema") == "pkg":
            folder = Path(str(resources.files(source["path"])))
        else:
            continue
        path = folder / "problem" / f"{problem}.yaml"
        if path.is_file():
            return path
    raise ReportError(f"cannot find problem {problem}'s file in the run's config search path")


STUDY_BLOCK = re.compile(r"^study:.*\n(?:[ \t]+.*\n|\n)*", re.MULTILINE)


def write_target(path: Path, t: SetTarget) -> SetTarget:
    """Replace the file's top-level `study:` block, or append one; the rest stays as it is.
    Returns the target as written (with the file's chance level)."""
    text = path.read_text()
    if (chance := file_target(path).get("chance")) is not None:  # the file's own, as it is now
        t = dataclasses.replace(t, chance=chance)
    text = STUDY_BLOCK.sub("", text).rstrip("\n") + "\n" + snippet(t)
    try:
        path.write_text(text)
    except OSError as error:
        raise ReportError(f"cannot write {path}: {error.strerror or error}") from None
    return t


def set_targets(runs: Sequence[Run]) -> list[str]:
    """Write every problem's target; returns what was written, one line each."""
    trials = [r for r in runs if "study.trial" in r.overrides]
    paths = {problem_of(r): problem_file(r, problem_of(r)) for r in trials}
    metrics = {p: m for p, path in paths.items() if (m := file_target(path).get("metric"))}
    lines = []
    for t in reference_targets(runs, metrics):
        t = write_target(paths[t.problem], t)
        lines.append(f"wrote {paths[t.problem]}: {snippet(t).splitlines()[1].strip()}")
    return lines


def file_target(path: Path) -> dict:
    """The `study.target` node of a problem file as it is now."""
    return ((load_yaml(path) or {}).get("study") or {}).get("target") or {}
