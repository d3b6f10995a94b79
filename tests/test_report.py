"""optexp-report on hand-made run directories whose numbers are known."""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from optexp.report import main

REPO = Path(__file__).resolve().parent.parent


def fake_run(
    root: Path,
    overrides: list[str],
    status: str | None = "completed",
    test_acc: float | None = 0.9,
    val_loss: float | None = 0.5,
    curve: list[float] | None = None,
) -> Path:
    """A run directory as optexp leaves it; status None = still running (no metrics.json)."""
    run = root / ",".join(overrides)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run / ".hydra" / "config.yaml").write_text("optimizer:\n  lr: 0.001\nseed: 0\n")
    if status is not None:
        best = {} if val_loss is None else {"val/loss": val_loss, "val/acc": 1 - val_loss}
        metrics = {
            "status": status,
            "epochs_completed": 3,
            "best": best,
            "test": {"acc": test_acc, "loss": None if test_acc is None else 1 - test_acc},
            "wall_s": 2.0,
        }
        (run / "metrics.json").write_text(json.dumps(metrics))
    if curve is not None:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(run / "tb")) as writer:
            for epoch, value in enumerate(curve, start=1):
                writer.add_scalar("val/loss", value, epoch)
    return run


def report(capsys: pytest.CaptureFixture[str], *args: Any) -> str:
    main([str(a) for a in args])
    return capsys.readouterr().out


def report_json(capsys: pytest.CaptureFixture[str], *args: Any) -> list[dict[str, Any]]:
    return json.loads(report(capsys, *args, "--format", "json"))["rows"]


def error(capsys: pytest.CaptureFixture[str], *args: Any) -> str:
    with pytest.raises(SystemExit) as exit:
        main([str(a) for a in args])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert one_error(err), err
    return err


def one_error(err: str) -> bool:
    """The error line, and after an error found in the runs (not in the flags) the hint."""
    first, *rest = err.strip().splitlines()
    hint = rest == ["(set OPTEXP_DEBUG=1 for the traceback)"]
    return first.startswith("optexp-report: error: ") and (rest == [] or hint)


@pytest.fixture
def lr_sweep(tmp_path: Path) -> Path:
    for seed, acc in enumerate([0.90, 0.92, 0.97]):
        fake_run(tmp_path, ["optimizer.lr=0.1", f"seed={seed}"], test_acc=acc, val_loss=0.3)
    for seed, acc in enumerate([0.5, 0.7]):
        fake_run(tmp_path, ["optimizer.lr=0.01", f"seed={seed}"], test_acc=acc, val_loss=0.6)
    return tmp_path


def test_groups_by_overrides_minus_seed_with_mean_sample_std_and_n(capsys, lr_sweep):
    rows = {r["settings"]["optimizer.lr"]: r for r in report_json(capsys, lr_sweep)}
    assert set(rows) == {"0.1", "0.01"}
    acc = rows["0.1"]["metrics"]["test/acc"]
    assert acc["n"] == 3 and len(rows["0.1"]["dirs"]) == 3
    assert acc["mean"] == pytest.approx(0.93)
    assert acc["std"] == pytest.approx(0.0360555, rel=1e-5)  # ddof=1: sqrt(0.0026 / 2)
    assert rows["0.01"]["metrics"]["test/acc"]["std"] == pytest.approx(statistics.stdev([0.5, 0.7]))


def test_sort_puts_the_best_group_first_in_the_metrics_direction(capsys, lr_sweep):
    fake_run(lr_sweep, ["optimizer.lr=9", "seed=0"], "diverged", test_acc=None, val_loss=None)

    def order(metric: str) -> list[str]:
        rows = report_json(capsys, lr_sweep, "--sort", metric)
        return [r["settings"]["optimizer.lr"] for r in rows]

    assert order("test/acc") == ["0.1", "0.01", "9"]  # higher is better; no value last
    assert order("test/loss") == ["0.1", "0.01", "9"]  # lower is better
    assert order("val/loss") == ["0.1", "0.01", "9"]


def test_every_status_appears_and_missing_values_do_not_count(capsys, tmp_path):
    fake_run(tmp_path, ["optimizer.lr=0.1", "seed=0"], "completed", test_acc=0.8)
    fake_run(tmp_path, ["optimizer.lr=0.1", "seed=1"], "diverged", test_acc=None, val_loss=None)
    fake_run(tmp_path, ["optimizer.lr=0.1", "seed=2"], "early_stopped", test_acc=0.6)
    fake_run(tmp_path, ["optimizer.lr=0.1", "seed=3"], "interrupted", test_acc=0.7)
    fake_run(tmp_path, ["optimizer.lr=0.1", "seed=4"], status=None)
    (row,) = report_json(capsys, tmp_path)
    assert len(row["dirs"]) == 5
    assert row["status"] == (
        "1 completed, 1 diverged, 1 early_stopped, 1 interrupted, 1 running/incomplete"
    )
    assert row["metrics"]["test/acc"] == pytest.approx({"mean": 0.7, "std": 0.1, "n": 3})


def test_a_run_that_diverged_late_keeps_its_earlier_best_out_of_the_means(capsys, tmp_path):
    fake_run(tmp_path, ["optimizer.lr=0.1", "seed=0"], "completed", val_loss=0.4)
    fake_run(tmp_path, ["optimizer.lr=0.1", "seed=1"], "diverged", test_acc=0.5, val_loss=0.2)
    (row,) = report_json(capsys, tmp_path)
    assert row["status"] == "1 completed, 1 diverged"
    assert row["metrics"]["val/loss"]["n"] == 1 == row["metrics"]["test/acc"]["n"]
    assert row["metrics"]["val/loss"]["mean"] == pytest.approx(0.4)


def test_a_single_run_directory_is_a_report_of_one(capsys, lr_sweep):
    (row,) = report_json(capsys, lr_sweep / "optimizer.lr=0.1,seed=2")
    assert row["metrics"]["test/acc"] == {"mean": 0.97, "std": None, "n": 1}


def test_ignore_merges_runs_that_differ_only_in_that_key(capsys, lr_sweep):
    rows = report_json(capsys, lr_sweep, "--ignore", "optimizer.lr")
    assert len(rows) == 1 and rows[0]["metrics"]["test/acc"]["n"] == 5


@pytest.fixture
def optimizer_sweep(tmp_path: Path) -> Path:
    """Per optimizer, three lrs x two seeds, with validation and test disagreeing."""
    table = {  # (optimizer, lr): (val_loss per seed, test_acc per seed)
        ("adam", "0.1"): ([0.40, 0.44], [0.95, 0.96]),  # best test, worse validation
        ("adam", "0.01"): ([0.30, 0.32], [0.90, 0.92]),  # best validation
        ("adam", "0.001"): ([0.50, 0.52], [0.80, 0.82]),
        ("sgd", "0.1"): ([0.20, None], [0.99, None]),  # best mean but diverged once
        ("sgd", "0.01"): ([0.60, 0.62], [0.70, 0.72]),
        ("sgd", "0.001"): ([0.35, 0.37], [0.85, 0.87]),  # best with all seeds finished
    }
    for (optimizer, lr), (val_losses, accs) in table.items():
        for seed, (val_loss, acc) in enumerate(zip(val_losses, accs, strict=True)):
            status = "completed" if val_loss is not None else "diverged"
            overrides = [f"optimizer={optimizer}", f"optimizer.lr={lr}", f"seed={seed}"]
            fake_run(tmp_path, overrides, status, test_acc=acc, val_loss=val_loss)
    return tmp_path


def test_select_best_tunes_on_validation_and_reports_test_over_seeds(capsys, optimizer_sweep):
    args = (optimizer_sweep, "--select-best-by", "val/loss", "--over", "optimizer.lr")
    rows = {r["settings"]["optimizer"]: r for r in report_json(capsys, *args)}
    assert rows["adam"]["settings"]["optimizer.lr"] == "0.01"
    test_acc = rows["adam"]["metrics"]["test/acc"]
    assert test_acc == pytest.approx({"mean": 0.91, "std": statistics.stdev([0.9, 0.92]), "n": 2})
    assert rows["sgd"]["settings"]["optimizer.lr"] == "0.001"
    assert rows["sgd"]["metrics"]["val/loss"]["mean"] == pytest.approx(0.36)
    assert rows["adam"]["tried"].split(", ") == ["0.001", "0.01", "0.1"]


def test_formats_parse(capsys, lr_sweep):
    lines = report(capsys, lr_sweep, "--format", "csv").splitlines()
    records = list(csv.DictReader(io.StringIO("\n".join(lines))))
    assert [r["optimizer.lr"] for r in records] == ["0.1", "0.01"]
    assert float(records[0]["test/acc mean"]) == pytest.approx(0.93)
    assert records[0]["test/acc n"] == "3"

    markdown = report(capsys, lr_sweep, "--format", "markdown").splitlines()
    assert "| optimizer.lr | status | test acc |" in markdown[2]
    assert markdown[3].startswith("| --- |")
    assert markdown[4].startswith("| 0.1 | 3 completed | 0.9300 ± 0.0361 (3) |")

    table = report(capsys, lr_sweep)
    assert "0.9300 ± 0.0361 (3)" in table and "0.6000 ± 0.1414 (2)" in table

    assert len(json.loads(report(capsys, lr_sweep, "--format", "json"))["rows"]) == 2


def test_plot_draws_mean_and_band_per_group_from_tensorboard_events(capsys, tmp_path):
    from PIL import Image

    for seed, curve in enumerate([[1.0, 0.6, 0.4], [1.2, 0.8, 0.5]]):
        fake_run(tmp_path / "runs", ["optimizer.lr=0.1", f"seed={seed}"], curve=curve)
    fake_run(tmp_path / "runs", ["optimizer.lr=0.01", "seed=0"], curve=[2.0, 1.9, 1.8])
    png = tmp_path / "curves.png"
    report(capsys, tmp_path / "runs", "--plot", png, "--band", "std")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    with Image.open(png) as image:
        assert image.size[0] > 500
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert len(colors) > 50  # lines, band, text: not a blank canvas


def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, lr_sweep):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no runs found" in error(capsys, empty)
    assert "does not exist" in error(capsys, tmp_path / "nowhere")
    assert "invalid choice" in error(capsys, lr_sweep, "--sort", "test/accuracy")
    assert "unknown key 'optimizer.momentum'" in error(
        capsys, lr_sweep, "--select-best-by", "val/loss", "--over", "optimizer.momentum"
    )
    assert "invalid choice" in error(
        capsys, lr_sweep, "--select-best-by", "test/acc", "--over", "seed"
    )
    assert "go together" in error(capsys, lr_sweep, "--over", "optimizer.lr")
    assert "'val/acc'" in error(
        capsys, lr_sweep, "--plot", tmp_path / "x.png", "--curve", "val/acc"
    )


def python(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python ARGS` from the repository, with `env` added to the environment."""
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, check=False,
        env=os.environ | env,
    )  # fmt: skip


def test_help_explains_metrics_and_examples():
    result = python("-m", "optexp.report", "--help", env={"COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    for text in ("--select-best-by", "--over", "--plot", "mean ± sample std", "examples", "rules"):
        assert text in result.stdout, text


def test_a_corrupt_run_is_listed_as_unreadable_and_the_rest_reported(capsys, lr_sweep):
    broken = fake_run(lr_sweep, ["optimizer.lr=1", "seed=0"])
    (broken / "metrics.json").write_text('{"status": "compl')
    odd = fake_run(lr_sweep, ["optimizer.lr=2", "seed=0"])
    (odd / ".hydra" / "config.yaml").write_text("optimizer: [unclosed\n")
    rows = report_json(capsys, lr_sweep)
    assert sorted(r["settings"]["optimizer.lr"] for r in rows) == ["0.01", "0.1"]
    main([str(lr_sweep)])
    err = capsys.readouterr().err
    assert f"unreadable run {broken}: cannot read {broken / 'metrics.json'}" in err
    assert f"unreadable run {odd}: cannot read {odd / '.hydra' / 'config.yaml'}" in err


def test_a_failed_run_is_listed_as_failed_with_its_reason(capsys, lr_sweep):
    failed = fake_run(lr_sweep, ["optimizer.lr=3", "seed=0"], status="failed")
    (failed / "metrics.json").write_text('{"status": "failed", "error": "disk full"}')
    rows = report_json(capsys, lr_sweep)
    assert [r["status"] for r in rows if r["settings"]["optimizer.lr"] == "3"] == ["1 failed"]
    main([str(lr_sweep)])
    assert f"failed run {failed}: disk full" in capsys.readouterr().err


def test_a_junk_mplbackend_does_not_stop_the_plot_nor_the_confusion_matrix(tmp_path):
    """matplotlib refuses an unknown MPLBACKEND at import; optexp draws with a Figure and
    the Agg canvas only, so it sets the variable aside."""
    fake_run(tmp_path / "runs", ["optimizer.lr=0.1", "seed=0"], curve=[1.0, 0.5])
    png = tmp_path / "c.png"
    confusion = (
        "import torch; from optexp.plotting import confusion_image;"
        "assert confusion_image(torch.eye(3, dtype=torch.long)).shape[2] == 4"
    )
    plot = ["-m", "optexp.report", str(tmp_path / "runs"), "--plot", str(png)]
    for args in (["-c", confusion], plot):  # each in a fresh process, matplotlib not loaded
        result = python(*args, env={"MPLBACKEND": "junk"})
        assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("- 42\n- null\n", "42 (int) is not an override"),
        ("- seed=1\n- null\n", "None (NoneType) is not an override"),
        ("optimizer: {lr: 0.1}\nseed: 0\n", "a mapping, not a list of overrides"),
        ("42\n", "Invalid loaded object type: int"),  # OmegaConf refuses it
    ],
)
def test_overrides_yaml_not_a_list_of_strings_is_one_unreadable_line(
    capsys, lr_sweep, content, reason
):
    odd = fake_run(lr_sweep, ["optimizer.lr=5", "seed=0"])
    (odd / ".hydra" / "overrides.yaml").write_text(content)
    rows = report_json(capsys, lr_sweep)
    assert sorted(r["settings"]["optimizer.lr"] for r in rows) == ["0.01", "0.1"]
    main([str(lr_sweep)])
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "unreadable" in x]
    assert line.startswith(f"optexp-report: unreadable run {odd}: cannot read ")
    assert reason in line


def test_a_file_is_refused_as_a_file_not_as_no_runs(capsys, lr_sweep):
    err = error(capsys, lr_sweep / "optimizer.lr=0.1,seed=0" / "metrics.json")
    assert "is a file, not a folder" in err


TUNE = ("--select-best-by", "val/loss", "--over", "optimizer.lr")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # one type= helper: finite and in range, naming the flag, the value and the range
        ((*TUNE, "--profile", "p.png", "--tau-max", "inf"), "--tau-max 'inf' is not allowed"),
        ((*TUNE, "--study", "st", "--tau-max", "nan"), "Allowed: a number > 1 and <= 1000"),
        ((*TUNE, "--study", "st", "--tau-max", "1"), "--tau-max '1' is not allowed"),
        ((*TUNE, "--study", "st", "--tau-max", "-2"), "--tau-max '-2' is not allowed"),
        ((*TUNE, "--study", "st", "--tau-max", "1e308"), "--tau-max '1e308' is not allowed"),
        ((*TUNE, "--study", "st", "--tau-max", "four"), "--tau-max 'four' is not allowed"),
        (("--target", "val/acc=nan"), "'val/acc=nan': nan is not allowed. Allowed: a finite"),
        (("--target", "val/acc=1e999"), "inf is not allowed. Allowed: a finite number"),
        (("--target", "p:=0.1"), "is not METRIC=VALUE"),
        (("--target", "auto"), "--target auto derives the target from the methods"),
        (("--target", "val/acc=auto"), "needs --study or --profile"),
        ((*TUNE, "--study", "st", "--bootstrap", "0"), "--bootstrap '0' is not allowed"),
        ((*TUNE, "--study", "st", "--bootstrap", "1.5"), "Allowed: an integer >= 1 and <= 100000"),
        ((*TUNE, "--study", "st", "--ci", "1"), "--ci '1' is not allowed. Allowed: a number > 0"),
        ((*TUNE, "--study", "st", "--ci", "95"), "Allowed: a number > 0 and < 1"),
        ((*TUNE, "--study", "st", "--bootstrap-seed", "-1"), "--bootstrap-seed '-1' is not"),
        ((*TUNE, "--study", "st", "--target-tolerance", "-0.1"), "Allowed: a number >= 0 and"),
        ((*TUNE, "--study", "st", "--time-to-target", "slowest"), "invalid choice: 'slowest'"),
        (("--bootstrap", "100"), "--bootstrap needs --profile or --study"),
        (("--ci", "0.9"), "--ci needs --profile or --study"),
        (("--bootstrap-seed", "3"), "--bootstrap-seed needs --profile or --study"),
        (("--time-to-target", "tuned"), "--time-to-target needs --profile or --study"),
        (("--target-tolerance", "0.1"), "--target-tolerance needs --profile or --study"),
        # a flag whose output is not asked for is refused, not ignored
        (("--tau-max", "-3"), "--tau-max '-3' is not allowed"),
        (("--tau-max", "3"), "--tau-max needs --profile or --study"),
        (("--time-unit", "seconds"), "--time-unit needs --profile or --study"),
        (("--score-scale", "log"), "--score-scale needs --profile or --study"),
        (("--profile-metric", "test/acc"), "--profile-metric needs --profile or --study"),
        (("--problem", "optimizer.lr"), "--problem needs --profile or --study"),
        (("--curve", "val/acc"), "--curve needs --plot or --study"),
        (("--band", "std"), "--band needs --plot, --sensitivity or --study"),
        (("--sensitivity", "s.png"), "--sensitivity needs --select-best-by and --over"),
        # a problem's target outside the study would apply to every row
        (("--target", "nope:val/loss=0.1"), "names problem 'nope', which needs --study"),
        (("--target", "a:b:val/loss=0.1"), "names problem 'a:b', which needs --study"),
        # figure files: an image name, not '' (./.png), a bare name (x.png) or a folder
        (("--plot", ""), "--plot '' is not allowed. Allowed: a file name ending in .png"),
        (("--plot", "x"), "--plot 'x' is not allowed"),
        ((*TUNE, "--sensitivity", "{tmp}"), "is a folder. Allowed: a file name"),
        ((*TUNE, "--study", ""), "--study '' is not allowed. Allowed: a folder path"),
    ],
)
def test_bad_flags_are_one_line_naming_flag_value_and_what_is_allowed(
    capsys, lr_sweep, tmp_path, monkeypatch, args, expected
):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    err = error(capsys, lr_sweep, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert expected in err, err
    assert err.startswith("optexp-report: error: ")
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_plot_says_what_it_wrote(capsys, tmp_path):
    fake_run(tmp_path / "runs", ["optimizer.lr=0.1", "seed=0"], curve=[1.0, 0.5])
    main([str(tmp_path / "runs"), "--plot", str(tmp_path / "c.png")])
    assert f"wrote {tmp_path / 'c.png'}" in capsys.readouterr().err


def test_an_error_in_the_runs_prints_the_hint_and_optexp_debug_the_traceback(
    capsys, tmp_path, monkeypatch
):
    from optexp.report.runs import ReportError

    assert error(capsys, tmp_path / "nowhere").splitlines()[1] == (
        "(set OPTEXP_DEBUG=1 for the traceback)"
    )
    for off in ("0", "false", ""):
        monkeypatch.setenv("OPTEXP_DEBUG", off)
        error(capsys, tmp_path / "nowhere")
    monkeypatch.setenv("OPTEXP_DEBUG", "1")
    with pytest.raises(ReportError, match="does not exist"):
        main([str(tmp_path / "nowhere")])


# ---------------------------------------------------------------- the settings object


def settings_of(*argv: str) -> Any:
    """The settings `main` builds from these flags, after check_flags."""
    from optexp.report.flags import check_flags, parser
    from optexp.report.settings import ReportSettings

    p = parser()
    args = p.parse_args(["runs", *argv])
    check_flags(p, args)
    return ReportSettings.from_args(args)


def test_no_flags_give_the_dataclass_defaults_which_argparse_does_not_repeat():
    import dataclasses

    from optexp.report.flags import NEEDS, check_flags, parser
    from optexp.report.settings import DEFAULTS, ReportSettings

    assert settings_of() == ReportSettings() == DEFAULTS
    names = [f.name for f in dataclasses.fields(ReportSettings)]
    assert sorted(NEEDS) == sorted(names)  # every setting has its rule, and only settings
    p = parser()
    args = p.parse_args(["runs", *TUNE, "--study", "st"])
    check_flags(p, args)  # checks only: the Namespace keeps "not given"
    assert [getattr(args, name) for name in names] == [None] * len(names)
    for name in names:  # a flag of its name; None when not given, never a second default
        assert p.get_default(name) is None, name
        flag = "--" + name.replace("_", "-")
        assert flag in p._option_string_actions, flag  # argparse lists its flags nowhere public
        assert p._option_string_actions[flag].dest == name


def test_each_flag_sets_its_field_and_the_help_shows_the_default(tmp_path):
    from optexp.report.flags import parser
    from optexp.report.settings import DEFAULTS

    given = settings_of(
        *TUNE, "--study", str(tmp_path / "st"), "--tau-max", "3", "--time-unit", "seconds",
        "--score-scale", "log", "--profile-metric", "test/acc", "--problem", "dataset",
        "--time-to-target", "tuned", "--target-tolerance", "0.1", "--bootstrap", "7",
        "--ci", "0.9", "--bootstrap-seed", "5", "--curve", "val/acc", "--band", "std",
    )  # fmt: skip
    expected = dict(tau_max=3.0, time_unit="seconds", score_scale="log")
    expected |= dict(profile_metric="test/acc", problem="dataset", time_to_target="tuned")
    expected |= dict(target_tolerance=0.1, bootstrap=7, ci=0.9, bootstrap_seed=5)
    expected |= dict(curve="val/acc", band="std")
    assert vars(given) == expected and given != DEFAULTS
    actions = parser()._option_string_actions
    for name, default in vars(DEFAULTS).items():
        if default is not None:
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert f"default: {shown}" in actions["--" + name.replace("_", "-")].help, name


def test_the_settings_are_frozen():
    import dataclasses

    from optexp.report.settings import DEFAULTS

    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.tau_max = 2.0  # type: ignore[misc]


def test_no_default_of_a_setting_is_written_outside_the_settings_object():
    """A parameter or field default equal to a setting's default is that default written a
    second time (a helper's `unit="epochs"`): the value must come from the settings."""
    import ast

    from optexp.report.settings import DEFAULTS

    defaults = {v for v in vars(DEFAULTS).values() if v not in (None, 0)}
    found = []
    for path in sorted((REPO / "optexp" / "report").glob("*.py")):
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            values: list[ast.expr | None] = []
            if isinstance(node, ast.arguments):
                values = [*node.defaults, *node.kw_defaults]
            elif isinstance(node, ast.AnnAssign):
                values = [node.value]
            for value in values:
                if isinstance(value, ast.Constant) and value.value in defaults:
                    found.append(f"{path.name}:{value.lineno} {value.value!r}")
    assert not found
