"""The study measures against answers worked out by hand, on run folders the tests write:
time-to-target, the tuned learning rate, performance profiles and their score, and the
data the study's figures are drawn from."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from optexp.report import main, measures, study
from optexp.report.settings import ReportSettings
from tests.test_report import fake_run, one_error

INF = math.inf


def events_run(
    root: Path,
    overrides: list[str],
    curve: dict[str, list[float]],
    status: str = "completed",
    val_loss: float | None = 0.5,
    test_loss: float = 0.5,
) -> Path:
    """A run whose tb/ holds per-epoch scalars (epochs 1, 2, ...) and time/epoch_s = 1.5."""
    run = fake_run(root, overrides, status, test_acc=1 - test_loss, val_loss=val_loss)
    from torch.utils.tensorboard import SummaryWriter

    epochs = len(next(iter(curve.values())))
    with SummaryWriter(str(run / "tb")) as writer:
        for epoch in range(1, epochs + 1):
            for tag, values in curve.items():
                writer.add_scalar(tag, values[epoch - 1], epoch)
            writer.add_scalar("time/epoch_s", 1.5, epoch)
    return run


# ---------------------------------------------------------------- time-to-target


def test_time_to_target_is_the_first_epoch_reaching_it_and_the_summed_seconds():
    curves = {"val/loss": {1: 0.9, 2: 0.45, 3: 0.3, 4: 0.5}, "time/epoch_s": {1: 1, 2: 2, 3: 4}}
    hit = measures.time_to_target(curves, measures.Target("val/loss", 0.4))
    assert hit == measures.Hit(epoch=3, seconds=7.0)  # 0.3 <= 0.4 first at epoch 3; 1 + 2 + 4
    acc = {"val/acc": {1: 0.5, 2: 0.91}, "time/epoch_s": {1: 1, 2: 1}}
    assert measures.time_to_target(acc, measures.Target("val/acc", 0.9)) == measures.Hit(2, 2.0)
    assert measures.time_to_target(curves, measures.Target("val/loss", 0.1)) is None
    nan = {"val/loss": {1: math.nan}, "time/epoch_s": {1: 1.0}}  # a diverged epoch
    assert measures.time_to_target(nan, measures.Target("val/loss", 10)) is None


def test_runs_that_never_reach_the_target_are_counted_not_averaged():
    reach = measures.Reach((measures.Hit(4, 6.0), None, measures.Hit(2, 3.0)))
    assert reach.show() == "2 of 3"
    assert reach.epochs() == [4.0, 2.0] and reach.seconds() == [6.0, 3.0]
    assert reach.cost("epochs") == 4.0  # median of 2, 4, inf
    assert measures.Reach((measures.Hit(4, 6.0), None, None)).cost("epochs") == INF


def test_parse_target_takes_an_optional_problem():
    assert measures.parse_target("val/acc=0.9") == measures.Target("val/acc", 0.9)
    assert measures.parse_target("sine:val/loss=2e-2") == measures.Target("val/loss", 0.02, "sine")
    for bad in ("val/acc", "val/acc=high", "=3"):
        with pytest.raises(ValueError):
            measures.parse_target(bad)


def test_report_target_columns_per_group(capsys, tmp_path):
    losses = {0: [0.9, 0.5, 0.2], 1: [0.9, 0.8, 0.35], 2: [0.9, 0.8, 0.7]}
    for seed, curve in losses.items():
        events_run(tmp_path, ["optimizer.lr=0.1", f"seed={seed}"], {"val/loss": curve})
    main([str(tmp_path), "--target", "val/loss=0.4", "--format", "json"])
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["reached val/loss=0.4"] == "2 of 3"
    epochs = row["metrics"]["epochs to val/loss=0.4"]
    assert epochs == {"mean": 3.0, "std": 0.0, "n": 2}  # seed 2 never reached: left out
    assert row["metrics"]["s to val/loss=0.4"]["mean"] == pytest.approx(4.5)  # 3 x 1.5 s


# ---------------------------------------------------------------- profiles and score


def test_profile_and_score_on_a_case_worked_out_on_paper():
    # Epochs to target on three problems. Best per problem: p1 A (10), p2 B (20), p3 A (5).
    costs = {
        "p1": {"A": 10, "B": 20},
        "p2": {"A": 30, "B": 20},
        "p3": {"A": 5, "B": INF},  # B never reached the target on p3
    }
    r = measures.ratios(costs)
    assert r == {"A": {"p1": 1.0, "p2": 1.5, "p3": 1.0}, "B": {"p1": 2.0, "p2": 1.0, "p3": INF}}
    assert measures.profile(r, [1, 1.5, 2, 4]) == {
        "A": [2 / 3, 1, 1, 1],
        "B": [1 / 3, 1 / 3, 2 / 3, 2 / 3],
    }
    # Area over [1, 4], divided by 3: A = (3 + 2.5 + 3) / 3 / 3; B = (2 + 3 + 0) / 3 / 3.
    assert measures.score(r["A"], 4, "linear") == pytest.approx(8.5 / 9)
    assert measures.score(r["B"], 4, "linear") == pytest.approx(5 / 9)
    # Over log tau: A = (ln 4 + ln(4/1.5) + ln 4) / ln 4 / 3
    expected = (2 * math.log(4) + math.log(4 / 1.5)) / math.log(4) / 3
    assert measures.score(r["A"], 4, "log") == pytest.approx(expected)
    assert measures.score({"p": 1.0}, 4, "linear") == 1.0
    assert measures.score({"p": INF}, 4, "linear") == 0.0


def test_final_metric_costs_make_lower_better():
    assert measures.final_cost(0.98, higher_is_better=True) == pytest.approx(0.02)
    assert measures.final_cost(0.3, higher_is_better=False) == 0.3
    assert measures.ratios({"p": {"A": INF, "B": INF}}) == {"A": {"p": INF}, "B": {"p": INF}}


def test_a_best_cost_of_zero_leaves_the_others_finite():
    # Bug (before): C's test error 0 made A and B infinitely worse, a score of 0 on p for
    # one mistake. The reference is now the smallest cost above 0; 0 counts as 1.
    r = measures.ratios({"p": {"A": 0.02, "B": 0.04, "C": 0.0}, "q": {"A": 1.0, "B": 2.0}})
    assert r == {"A": {"p": 1.0, "q": 1.0}, "B": {"p": 2.0, "q": 2.0}, "C": {"p": 1.0, "q": INF}}
    assert measures.ratios({"p": {"A": 0.0, "B": 0.0}}) == {"A": {"p": 1.0}, "B": {"p": 1.0}}
    assert measures.score(r["B"], 4, "linear") == pytest.approx((2 / 3) / 1)


# ---------------------------------------------------------------- a problem without the metric


def regression_run(root: Path, overrides: list[str], loss: float) -> None:
    """A finished run of a regression problem: a test loss and no test accuracy."""
    run = events_run(root, overrides, {"val/loss": [loss]}, val_loss=loss, test_loss=loss)
    summary = json.loads((run / "metrics.json").read_text())
    summary["test"].pop("acc")
    (run / "metrics.json").write_text(json.dumps(summary))


def test_a_problem_without_the_profile_metric_is_left_out(tmp_path):
    # Bug (before): test/acc of a regression problem counted as a failure of every method,
    # capping every score at 1/2 here. Now the problem is left out of that profile.
    for seed in (0, 1):
        for optimizer, loss in (("adam", 0.2), ("sgd", 0.4)):
            for lr in ("0.1", "0.01"):
                common = [f"optimizer={optimizer}", f"optimizer.lr={lr}", f"seed={seed}"]
                regression_run(tmp_path, ["+problem=sine", *common], loss)
                events_run(
                    tmp_path,
                    ["+problem=digits", *common],
                    {"val/loss": [loss]},
                    val_loss=loss,
                    test_loss=loss,
                )
    s = built(tmp_path)
    (acc,) = study.profiles(s, ReportSettings(profile_metric="test/acc"))
    assert acc.ratios == {"adam": {"digits": 1.0}, "sgd": {"digits": pytest.approx(2.0)}}
    assert acc.scores["adam"] == 1.0  # best on every problem that has test/acc
    (loss,) = study.profiles(s, ReportSettings(profile_metric="test/loss"))
    assert set(loss.ratios["sgd"]) == {"digits", "sine"}  # a loss every problem has


# ---------------------------------------------------------------- tuning and sensitivity


def test_sensitivity_points_keep_diverged_runs_apart():
    runs = [(0.1, "completed", 0.5), (0.1, "completed", 0.7), (1.0, "diverged", None)]
    runs += [(1.0, "completed", 0.9), (0.01, "running/incomplete", None)]
    points = measures.sensitivity(runs, "minmax")
    assert [p.x for p in points] == [0.01, 0.1, 1.0]
    assert (points[0].mean, points[0].n) == (None, 0)
    assert (points[1].mean, points[1].low, points[1].high) == (pytest.approx(0.6), 0.5, 0.7)
    assert (points[2].mean, points[2].n, points[2].diverged) == (0.9, 1, 1)


def test_grid_edge():
    assert measures.at_edge("1.0", ["0.01", "0.1", "1.0"])
    assert not measures.at_edge("0.1", ["0.01", "0.1", "1.0"])


@pytest.fixture
def two_problems(tmp_path: Path) -> Path:
    """Two problems x two optimizers x lr {0.01, 0.1} x seeds {0, 1}.

    val/loss curves (epochs 1-3) fall to the run's final val_loss. On p1, adam is tuned at
    0.01 (val 0.2 vs 0.3), sgd at 0.1 (val 0.25 vs a diverged seed at 0.01). On p2, adam
    at 0.1, sgd at 0.1. Target val/loss=0.4 for both problems.
    """
    table = {
        # (problem, optimizer, lr): [(status, best val loss, val/loss curve), per seed]
        ("p1", "adam", "0.01"): [("completed", 0.2, [0.8, 0.3, 0.2])] * 2,
        ("p1", "adam", "0.1"): [("completed", 0.3, [0.5, 0.4, 0.3])] * 2,
        ("p1", "sgd", "0.01"): [("completed", 0.1, [0.9, 0.5, 0.1]), ("diverged", 0.15, [0.9])],
        ("p1", "sgd", "0.1"): [("completed", 0.25, [0.9, 0.6, 0.25])] * 2,
        ("p2", "adam", "0.01"): [("completed", 0.6, [0.9, 0.8, 0.6])] * 2,
        ("p2", "adam", "0.1"): [("completed", 0.3, [0.9, 0.3, 0.3])] * 2,
        ("p2", "sgd", "0.01"): [("completed", 0.9, [1.0, 0.95, 0.9])] * 2,
        ("p2", "sgd", "0.1"): [("completed", 0.35, [0.9, 0.5, 0.35])] * 2,
    }
    for (problem, optimizer, lr), seeds in table.items():
        for seed, (status, val, curve) in enumerate(seeds):
            overrides = [f"+problem={problem}", f"optimizer={optimizer}", f"optimizer.lr={lr}"]
            events_run(
                tmp_path, [*overrides, f"seed={seed}"], {"val/loss": curve}, status, val, val
            )
    return tmp_path


def built(root: Path, *targets: str) -> study.Study:
    from optexp.report.runs import find_runs

    wanted = [measures.parse_target(t) for t in targets]
    return study.build(find_runs(root), "optimizer.lr", "val/loss", wanted, ReportSettings())


def test_lr_is_tuned_per_problem_and_a_diverged_seed_loses(two_problems):
    s = built(two_problems, "val/loss=0.4")
    tuned = {(e.problem, e.method): e.choice.chosen for e in s.entries}
    # p1 sgd: 0.01 has the lower val loss on its finished seed, but the other diverged
    assert tuned == {
        ("p1", "adam"): "0.01",
        ("p1", "sgd"): "0.1",
        ("p2", "adam"): "0.1",
        ("p2", "sgd"): "0.1",
    }
    reach = {(e.problem, e.method): e.reach.cost("epochs") for e in s.entries}
    # first epoch with val/loss <= 0.4: p1 adam 2, p1 sgd 3, p2 adam 2, p2 sgd 3
    assert reach == {("p1", "adam"): 2, ("p1", "sgd"): 3, ("p2", "adam"): 2, ("p2", "sgd"): 3}


def test_study_folder_holds_what_its_figures_are_drawn_from(capsys, two_problems, tmp_path):
    out = tmp_path / "study_out"
    args = [str(two_problems), "--select-best-by", "val/loss", "--over", "optimizer.lr"]
    main([*args, "--target", "val/loss=0.4", "--study", str(out)])
    assert "wrote" in capsys.readouterr().err
    page = (out / "README.md").read_text()
    for figure in ("curves_p1.png", "sensitivity_p2.png", "profile_epochs_to_target.png"):
        assert f"]({figure})" in page and (out / figure).stat().st_size > 0
    result = json.loads((out / "study.json").read_text())
    ttt, final = result["profiles"]
    # epochs: adam best on both (2 vs 3): adam ratios 1, 1; sgd 1.5, 1.5
    assert ttt["ratios"] == {"adam": {"p1": 1.0, "p2": 1.0}, "sgd": {"p1": 1.5, "p2": 1.5}}
    assert ttt["scores"]["adam"] == 1.0 and ttt["scores"]["sgd"] == pytest.approx(2.5 / 3)
    # final test loss (= val loss here): p1 adam 0.2, sgd 0.25; p2 adam 0.3, sgd 0.35
    assert final["ratios"]["sgd"] == pytest.approx({"p1": 1.25, "p2": 0.35 / 0.3})
    with (out / "sensitivity_p1.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == "sgd"]
    assert [(r["optimizer.lr"], r["mean"], r["n"], r["diverged"]) for r in rows] == [
        ("0.01", "0.1", "1", "1"),
        ("0.1", "0.25", "2", "0"),
    ]
    with (out / "profile_epochs_to_target.csv").open() as f:
        profile = list(csv.DictReader(f))
    assert [(r["tau"], r["adam"], r["sgd"]) for r in profile] == [
        ("1.0", "1.0", "0.0"),
        ("1.5", "1.0", "1.0"),
        ("4.0", "1.0", "1.0"),
    ]
    with (out / "time_to_target.csv").open() as f:
        every = list(csv.DictReader(f))  # every run: 2 problems x 2 methods x 2 lrs x 2 seeds
    assert len(every) == 16 and sum(r["tuned"] == "True" for r in every) == 8


def test_sensitivity_plot_series(two_problems):
    from optexp.report.grouping import without_diverged_values
    from optexp.report.runs import find_runs

    runs = without_diverged_values(find_runs(two_problems))
    s = built(two_problems)
    series = study.sensitivity_series(s, "p2", "val/loss", "minmax")
    assert {m: [(p.x, p.mean) for p in points] for m, points in series.items()} == {
        "adam": [(0.01, 0.6), (0.1, 0.3)],
        "sgd": [(0.01, 0.9), (0.1, 0.35)],
    }
    assert [r.values for r in runs if r.status == "diverged"] == [{}]  # its 0.15 is dropped


# ---------------------------------------------------------------- bad input


def one_line_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit:
        main([str(a) for a in args])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert one_error(err), err
    return err


def test_bad_study_input_is_one_line_and_exit_2(capsys, two_problems, tmp_path):
    tune = ["--select-best-by", "val/loss", "--over", "optimizer.lr"]
    root = str(two_problems)
    err = one_line_error(capsys, root, "--target", "val/acc=0.9")
    assert "no run logs 'val/acc'" in err
    err = one_line_error(capsys, root, *tune, "--target", "val/acc=0.9", "--study", "x")
    assert "do not log 'val/acc'" in err
    assert "not METRIC=VALUE" in one_line_error(capsys, root, "--target", "val/loss")
    assert "names problem 'p9'" in one_line_error(
        capsys, root, *tune, "--target", "p9:val/loss=1", "--profile", "x.png"
    )
    one_problem = tmp_path / "one"
    for seed in (0, 1):
        for lr in ("0.1", "0.01"):
            events_run(
                one_problem,
                ["+problem=p1", f"optimizer.lr={lr}", f"seed={seed}"],
                {"val/loss": [1.0]},
            )
    err = one_line_error(capsys, one_problem, *tune, "--profile", "x.png")
    assert "problem does not vary" in err and "two or more problems" in err
    flat = tmp_path / "flat"
    for p in ("p1", "p2"):
        events_run(flat, [f"+problem={p}", "optimizer.lr=0.1", "seed=0"], {"val/loss": [1.0]})
    assert "optimizer.lr does not vary" in one_line_error(capsys, flat, *tune, "--study", "x")
    assert "--study without --over reads a study's trials" in one_line_error(
        capsys, root, "--study", "x"
    )


def test_a_study_refused_half_way_leaves_nothing_behind(capsys, two_problems, tmp_path):
    out = tmp_path / "half"
    tune = ["--select-best-by", "val/loss", "--over", "optimizer.lr"]
    err = one_line_error(capsys, two_problems, *tune, "--study", out, "--curve", "train/acc")
    assert "'train/acc'" in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_study_never_writes_over_a_folder_of_the_users(capsys, two_problems, tmp_path, monkeypatch):
    tune = [str(two_problems), "--select-best-by", "val/loss", "--over", "optimizer.lr"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("MY PROJECT README\n")
    monkeypatch.chdir(mine)
    for folder in ("", ".", str(mine)):
        err = one_line_error(capsys, *tune, "--study", folder)
        assert "--study" in err and "Allowed:" in err, err
    assert [p.name for p in mine.iterdir()] == ["README.md"]
    assert (mine / "README.md").read_text() == "MY PROJECT README\n"
    afile = mine / "README.md"
    assert "is a file" in one_line_error(capsys, *tune, "--study", afile)
    # an earlier study's folder (its marker file) is rewritten; an empty one is used
    out = tmp_path / "out"
    out.mkdir()
    main([*tune, "--study", str(out)])
    assert (out / ".optexp-study").exists() and (out / "README.md").exists()
    main([*tune, "--study", str(out), "--tau-max", "3"])
    assert "[1, 3]" in (out / "README.md").read_text()


def test_sensitivity_and_study_need_a_numeric_over_key(capsys, two_problems, tmp_path):
    tune = [str(two_problems), "--select-best-by", "val/loss", "--over", "optimizer"]
    err = one_line_error(capsys, *tune, "--sensitivity", tmp_path / "s.png")
    assert "--sensitivity needs a numeric --over key" in err and "values adam, sgd" in err
    err = one_line_error(capsys, *tune, "--problem", "optimizer.lr", "--study", tmp_path / "stz")
    assert "--study needs a numeric --over key" in err
    assert not (tmp_path / "stz").exists() and not (tmp_path / "s.png").exists()


def test_a_problems_target_is_not_applied_to_every_row_of_the_table(capsys, two_problems):
    tune = [str(two_problems), "--select-best-by", "val/loss", "--over", "optimizer.lr"]
    out = two_problems.parent / "scoped"
    main([*tune, "--target", "p1:val/loss=0.4", "--study", str(out), "--format", "json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert not any("reached p1:val/loss=0.4" in r for r in rows)
    tuned = json.loads((out / "study.json").read_text())["tuned"]
    assert {r["problem"]: r["target"] for r in tuned} == {"p1": "p1:val/loss=0.4", "p2": ""}
