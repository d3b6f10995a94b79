"""The study's verdict against answers worked out by hand: the bootstrap over seeds (the
lr re-tuned inside every resample), its intervals' coverage on a known distribution,
rank probabilities, the expected best of k trials against enumeration, AlgoPerf's
fastest time, and targets derived from the runs."""

from __future__ import annotations

import itertools
import json
import math
import statistics

import numpy as np
import pytest

from optexp.report import bootstrap, budget, main, measures, study, uncertainty
from optexp.report.settings import ReportSettings
from tests.test_study import built, events_run, two_problems  # noqa: F401 (a fixture)

INF = math.inf
nan = math.nan


# ---------------------------------------------------------------- the bootstrap, by hand


def hand_grid() -> bootstrap.Grid:
    """Two lrs (rows) x two seeds (columns), val loss lower is better:
    lr0 [0.1, 0.5], lr1 [0.3, 0.35]; test acc lr0 [0.9, 0.5], lr1 [0.7, 0.8];
    epochs to target lr0 [4, inf], lr1 [2, 6]."""
    return bootstrap.Grid(
        select=np.array([[0.1, 0.5], [0.3, 0.35]]),
        higher_is_better=False,
        metrics={"test/acc": np.array([[0.9, 0.5], [0.7, 0.8]])},
        time=np.array([[4.0, INF], [2.0, 6.0]]),
    )


EVERY_DRAW = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])  # all four resamples of 2 seeds


def test_the_lr_is_tuned_again_inside_every_resample():
    grid = hand_grid()
    rows = bootstrap.choose(grid.select, EVERY_DRAW, higher_is_better=False)
    # (0, 0): lr0 0.1 < lr1 0.3; (0, 1) and (1, 0): lr0 0.3 < lr1 0.325; (1, 1): lr1 0.35 < 0.5
    assert rows.tolist() == [0, 0, 0, 1]
    acc = bootstrap.mean_at(grid.metrics["test/acc"], rows, EVERY_DRAW)
    assert acc.tolist() == pytest.approx([0.9, 0.7, 0.7, 0.8])
    # tuned: the median epochs at the chosen lr; fastest: per seed min over lrs = [2, 6]
    assert bootstrap.tuned_time(grid, rows, EVERY_DRAW).tolist() == [4.0, INF, INF, 6.0]
    assert bootstrap.fastest_time(grid, EVERY_DRAW).tolist() == [2.0, 4.0, 4.0, 6.0]
    # the percentile interval: order statistics, no interpolation
    # sorted [0.7, 0.7, 0.8, 0.9]: level 0.3 takes indices floor(0.35 * 3) = 1 and
    # ceil(0.65 * 3) = 2; level 0.99 the ends
    assert bootstrap.interval(0.8, acc, 0.3) == bootstrap.Interval(0.8, 0.7, 0.8)
    assert bootstrap.interval(0.8, acc, 0.99) == bootstrap.Interval(0.8, 0.7, 0.9)


def test_a_drawn_seed_that_diverged_loses_the_lr_as_select_best_does():
    select = np.array([[0.1, nan], [0.3, 0.35]])  # lr0's second seed diverged
    rows = bootstrap.choose(select, EVERY_DRAW, higher_is_better=False)
    assert rows.tolist() == [0, 1, 1, 1]  # only the draw without the diverged seed keeps lr0
    higher = bootstrap.choose(np.array([[0.9, 0.5], [0.7, 0.8]]), EVERY_DRAW, True)
    assert higher.tolist() == [0, 1, 1, 1]  # accuracy, highest best: 0.9 > 0.7, 0.7 < 0.75


def test_rank_probabilities_share_ties_and_sum_to_one():
    resampled = [{"a": 1.0, "b": 0.5, "c": 0.2}, {"a": 0.4, "b": 0.5, "c": 0.5}]
    assert bootstrap.ranks(resampled[1]) == {"a": 3, "b": 1, "c": 1}
    p = bootstrap.rank_probabilities(resampled)
    assert p == {"a": [0.5, 0.0, 0.5], "b": [0.5, 0.5, 0.0], "c": [0.5, 0.0, 0.5]}


def test_percentile_intervals_cover_a_known_mean_at_about_their_level():
    # 200 samples of 40 draws from N(1, 1); each sample's 90 % interval of the mean from
    # 500 resamples. The percentile bootstrap covers slightly below its level at n = 40.
    rng = np.random.default_rng(7)
    covered = []
    for _ in range(200):
        values = rng.normal(1.0, 1.0, size=(1, 40))
        index = bootstrap.draws(rng, 40, 500)
        means = bootstrap.mean_at(values, np.zeros(500, dtype=int), index)
        i = bootstrap.interval(float(values.mean()), means, 0.9)
        covered.append(i.low <= 1.0 <= i.high)
    assert 0.84 <= statistics.fmean(covered) <= 0.95


def test_the_study_bootstrap_recomputes_tuning_and_scores(two_problems):  # noqa: F811
    s = built(two_problems, "val/loss=0.4")
    settings = ReportSettings(bootstrap=200, bootstrap_seed=3)
    shown = study.profiles(s, settings)
    u = uncertainty.bootstrap_study(s, shown, settings)
    # p1 sgd: lr 0.01 has a diverged seed; a resample drawing seed 0 twice tunes it to
    # 0.01 (val 0.1 beats 0.25), which happens in about a quarter of the resamples
    shares = u.chosen[("p1", "sgd")]
    assert shares["0.01"] == pytest.approx(0.25, abs=0.1) and sum(shares.values()) == 1
    loss = u.tuned[("p1", "sgd")]["test/loss"]
    assert [loss.estimate, loss.low, loss.high] == pytest.approx([0.25, 0.1, 0.25])
    # both seeds of every other setting are equal: nothing to resample
    adam = u.tuned[("p1", "adam")]
    assert [adam["test/loss"].low, adam["test/loss"].high] == pytest.approx([0.2, 0.2])
    assert (adam[uncertainty.TIME].low, adam[uncertainty.TIME].high) == (2.0, 2.0)
    assert u.scores[0]["adam"] == bootstrap.Interval(1.0, 1.0, 1.0)
    assert u.ranks[0]["adam"] == [1.0, 0.0]
    again = uncertainty.bootstrap_study(s, shown, settings)
    assert again.scores == u.scores and again.chosen == u.chosen  # seeded


# ---------------------------------------------------------------- the tuning budget


@pytest.mark.parametrize("higher", [True, False])
@pytest.mark.parametrize("values", [[3.0, 1.0, 4.0, 1.0, 5.0], [0.2, 0.7], [2.0]])
def test_expected_best_of_k_is_the_mean_over_every_draw(values, higher):
    best = max if higher else min
    for k in range(1, 4):
        draws = list(itertools.product(values, repeat=k))  # each equally likely
        exact = statistics.fmean(best(d) for d in draws)
        assert measures.expected_best(values, k, higher) == pytest.approx(exact)
    curve = measures.budget_curve(values, higher)
    assert len(curve) == len(values) and curve[0] == pytest.approx(statistics.fmean(values))


def test_budget_curves_count_a_diverged_trial_as_the_worst_finished_value(two_problems):  # noqa: F811
    s = built(two_problems)
    curves = {(c.problem, c.method): c for c in budget.budget_curves(s)}
    sgd = curves[("p1", "sgd")]
    # seed 0: lr 0.01 -> 0.1, lr 0.1 -> 0.25; seed 1: 0.01 diverged -> the worst finished
    # value on p1 (0.3, adam at 0.1), 0.1 -> 0.25
    assert sgd.per_seed["0"] == pytest.approx([0.175, 0.1 * 0.75 + 0.25 * 0.25])
    assert sgd.per_seed["1"] == pytest.approx([0.275, 0.25 * 0.75 + 0.3 * 0.25])
    assert sgd.mean()[0] == pytest.approx(0.225) and sgd.low()[0] == pytest.approx(0.175)
    profiles = budget.budget_profiles(list(curves.values()), "val/loss", ReportSettings())
    assert sorted(profiles) == [1, 2]  # 1, 2, 4 and the grid's size, up to the grid's size


# ---------------------------------------------------------------- time and targets


def test_fastest_time_takes_per_seed_the_fastest_lr_then_the_median(tmp_path):
    # One problem pair, one method: lr 0.1 tuned (val 0.2), but lr 0.01 reaches 0.5 first
    curves = {
        ("0.1", 0): [0.9, 0.6, 0.4],
        ("0.1", 1): [0.9, 0.8, 0.45],
        ("0.01", 0): [0.45, 0.4, 0.3],
        ("0.01", 1): [0.9, 0.9, 0.9],
    }
    for problem in ("p1", "p2"):
        for (lr, seed), curve in curves.items():
            val = 0.2 if lr == "0.1" else 0.3
            overrides = [f"+problem={problem}", "optimizer=adam", f"optimizer.lr={lr}"]
            events_run(tmp_path, [*overrides, f"seed={seed}"], {"val/loss": curve}, val_loss=val)
    s = built(tmp_path, "val/loss=0.5")
    e = next(e for e in s.entries if e.problem == "p1")
    assert e.choice.chosen == "0.1" and e.reach.cost("epochs") == 3.0  # the tuned lr: 3, 3
    assert [h.epoch for h in e.fastest("epochs").hits] == [1, 3]  # seed 0 at 0.01, 1 at 0.1
    assert e.fastest("epochs").cost("epochs") == 2.0
    assert e.fastest_values("epochs") == ["0.01", "0.1"]
    tuned, fastest = (ReportSettings(time_to_target=m) for m in ("tuned", "fastest"))
    assert list(study.ttt_costs(s, tuned)["p1"].values()) == [3.0]
    assert list(study.ttt_costs(s, fastest)["p1"].values()) == [2.0]


def test_targets_are_derived_from_the_best_methods_median_and_loosened():
    assert measures.loosen(0.2, 0.1, higher_is_better=False) == pytest.approx(0.22)
    assert measures.loosen(0.96, 0.5, higher_is_better=True) == pytest.approx(0.94)
    d = measures.derive_target({"a": 0.9, "b": 0.95, "c": nan}, "val/acc", 0.2, "p")
    assert (d.method, d.median) == ("b", 0.95)
    assert d.target == measures.Target("val/acc", pytest.approx(0.94), "p")
    assert measures.derive_target({"a": nan}, "val/loss", 0.1) is None
    assert measures.parse_target("auto").auto and measures.parse_target("p:auto").problem == "p"
    assert measures.parse_target("val/loss=auto") == measures.Target("val/loss", nan)


def test_target_auto_in_a_study(two_problems):  # noqa: F811
    s = built(two_problems, "auto")
    # val/loss curves only (no val/acc logged): the final val/loss at the tuned lr,
    # median over seeds. p1: adam 0.2, sgd (lr 0.1) 0.25 -> 0.2 x 1.05; p2: adam 0.3
    assert {p: d.method for p, d in s.derived.items()} == {"p1": "adam", "p2": "adam"}
    assert [s.derived[p].median for p in ("p1", "p2")] == pytest.approx([0.2, 0.3])
    assert s.derived["p1"].target.value == pytest.approx(0.21)
    e = next(e for e in s.entries if (e.problem, e.method) == ("p1", "adam"))
    assert e.target.value == pytest.approx(0.21) and e.fastest("epochs").cost("epochs") == 3.0


def test_the_page_prints_derived_targets_and_intervals(capsys, two_problems, tmp_path):  # noqa: F811
    out = tmp_path / "page"
    tune = ["--select-best-by", "val/loss", "--over", "optimizer.lr"]
    main([str(two_problems), *tune, "--target", "auto", "--study", str(out), "--bootstrap", "50"])
    page = (out / "README.md").read_text()
    assert "| p1 | p1:val/loss=0.21 | adam | 0.2 | 5 % |" in page
    assert "## Verdict" in page and "P(rank 1)" in page and "## Tuning budget" in page
    result = json.loads((out / "study.json").read_text())
    assert result["bootstrap"] == {"resamples": 50, "level": 0.95, "seed": 0}
    assert result["targets"]["p2"]["method"] == "adam"
    for name in ("budget_p1.png", "budget.csv", "scores.csv", "tuned.csv"):
        assert (out / name).stat().st_size > 0
