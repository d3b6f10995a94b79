"""The optimizer study's trials (optexp.search_space) and their scoring
(optexp.report.trials): quasi-random points that cover each range and differ between
studies, targets that no method moves, bounded costs that a diverged trial's imputed
loss cannot move, and the paired bootstrap."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from optexp.errors import ConfigError
from optexp.report import main, trial_scores, trials
from optexp.report.measures import Hit, Target
from optexp.report.runs import Run
from optexp.report.settings import ReportSettings
from optexp.search_space import specs, trial_values, with_trial

SPACE = {
    "optimizer": {
        "lr": {"low": 1e-4, "high": 1e-2, "scale": "log"},
        "betas": [{"low": 0.5, "high": 0.98, "scale": "one_minus_log"}, {"values": [0.999]}],
        "weight_decay": {"low": 0.0, "high": 0.1, "scale": "linear"},
    },
    "scheduler": {"warmup_epochs": {"values": [0.1], "times": "trainer.epochs"}},
}


def positions(study: int, count: int) -> dict[str, list[float]]:
    searched = [s for s in specs(SPACE) if s.searched]
    found: dict[str, list[float]] = {s.key: [] for s in searched}
    for trial in range(count):
        values = trial_values(SPACE, study, trial)
        for s in searched:
            found[s.key].append(s.position(values[s.key]))
    return found


def test_sixteen_trials_cover_every_quarter_of_each_range_on_its_scale():
    for key, where in positions(study=0, count=16).items():
        assert all(0 <= x <= 1 for x in where), key
        quarters = {min(int(x * 4), 3) for x in where}
        assert quarters == {0, 1, 2, 3}, (key, sorted(where))


def test_studies_draw_different_points_and_a_study_draws_the_same_again():
    first, second = positions(study=0, count=4), positions(study=1, count=4)
    assert first["optimizer.lr"] != second["optimizer.lr"]
    assert positions(study=0, count=4) == first  # reproducible: the scramble is the study's
    assert trial_values(SPACE, 0, 3) == trial_values(SPACE, 0, 3)


def test_a_trial_writes_its_values_into_the_config(make_cfg):
    cfg = make_cfg("optimizer=nadamw", "study.trial=5", "study.index=2", "trainer.epochs=20")
    out = with_trial(cfg)
    drawn = trial_values(cfg.search_space, 2, 5)
    assert out.optimizer.lr == pytest.approx(drawn["optimizer.lr"])
    assert 1e-4 <= out.optimizer.lr <= 1e-2
    assert 0.5 <= out.optimizer.betas[0] <= 0.98 and out.optimizer.betas[1] == 0.999
    assert out.scheduler.warmup_epochs == pytest.approx(0.05 * 20)  # `times: trainer.epochs`
    assert cfg.optimizer.lr == 1e-3  # the composed config is left as it was
    assert with_trial(make_cfg("optimizer=nadamw")).optimizer.lr == 1e-3  # no trial: as is


def test_a_search_space_may_remove_the_schedule(make_cfg):
    cfg = make_cfg("optimizer=prodigy", "scheduler=cosine", "study.trial=0")
    out = with_trial(cfg)
    assert out.scheduler is None and 0.1 <= out.optimizer.d_coef <= 10


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"low": 1e-3, "high": 1e-1, "scale": "cubic"}, "search_space.lr.scale"),
        ({"low": 0.1, "high": 0.01}, "search_space.lr.high"),
        ({"low": 0.0, "high": 1.0, "scale": "log"}, "search_space.lr.low"),
        ({"values": []}, "search_space.lr.values"),
        ({"low": 0.1, "high": 1.0, "step": 2}, "search_space.lr.step"),
    ],
)
def test_a_malformed_spec_names_its_key(spec, key):
    with pytest.raises(ConfigError) as error:
        list(specs({"lr": spec}))
    assert error.value.key == key


def test_a_trial_of_an_optimizer_without_a_search_space_is_refused_in_one_line(optexp_cli):
    result = optexp_cli("optimizer=rmsprop", "study.trial=0", "trainer.epochs=1")
    assert result.returncode == 2
    first = result.stderr.strip().splitlines()[0]
    assert (
        first.startswith("optexp: error: study.trial=0 draws a point") and "search_space/" in first
    )
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- scoring


BOUND = trials.Bound(Target("val/acc", 0.9), chance=0.1)


def trial(
    method: str, study: int, number: int, val: float, epoch: int | None, **kw
) -> trials.Trial:
    hit = None if epoch is None else Hit(epoch, float(epoch))
    fields = {"status": "completed", "test": val, "curve": {}, "wall_s": 1.0} | kw
    return trials.Trial("p", method, study, number, val=val, hit=hit, **fields)


def small_study(extra: list[trials.Trial] = ()) -> trials.TrialStudy:
    found = [
        trial("a", 0, 0, 0.08, 3),
        trial("a", 0, 1, 0.05, 5),
        trial("a", 1, 0, 0.07, 4),
        trial("a", 1, 1, 0.30, None),
        trial("b", 0, 0, 0.09, 6),
        trial("b", 0, 1, 0.20, None),
        trial("b", 1, 0, 0.06, 8),
        trial("b", 1, 1, 0.12, None),
        *extra,
    ]
    return trials.TrialStudy(found, {"p": BOUND}, len(found))


def test_per_study_the_fastest_trial_times_and_the_best_on_validation_is_tuned():
    s = small_study()
    a = trials.cell_of(s, "p", "a")
    assert a.time == [3.0, 4.0]  # study 0: trials at 3 and 5 -> 3; study 1: 4 (and never)
    assert a.val == [0.05, 0.07] and [t.trial for t in a.tuned] == [1, 0]
    assert a.median_time == 3.5
    b = trials.cell_of(s, "p", "b")
    assert b.time == [6.0, 8.0] and b.median_time == 7.0


def test_removing_a_method_moves_no_target_and_no_other_methods_time():
    with_c = small_study([trial("c", 0, 0, 0.01, 1), trial("c", 1, 0, 0.01, 1)])
    without_c = small_study()
    assert with_c.bounds == without_c.bounds  # the problem file's target, not the methods'
    for m in ("a", "b"):
        assert trials.cell_of(with_c, "p", m).time == trials.cell_of(without_c, "p", m).time


def test_a_diverged_trials_imputed_loss_cannot_move_the_budget_curves_or_the_scores(tmp_path):
    def study_with(logged_loss: float) -> trials.TrialStudy:
        config = {"study": {"index": 0, "trial": 2}}
        overrides = {"+problem": "p", "optimizer": "b", "study.trial": "2"}
        run = Run(
            tmp_path, overrides, "diverged", {"val/loss": logged_loss, "val/acc": 0.5}, config
        )
        return small_study([trials.trial_of(run, "p", BOUND, lambda _: {})])

    one, other = study_with(5721.0), study_with(1237.0)
    assert trials.budget_curves(one, "p", "b") == trials.budget_curves(other, "p", "b")
    assert trials.budget_curves(one, "p", "b")[0] == [0.09, 0.09, 0.09]  # counted as chance
    settings = ReportSettings(bootstrap=50)
    assert trial_scores.score(one, settings, "a").profiles[1].scores == (
        trial_scores.score(other, settings, "a").profiles[1].scores
    )
    assert BOUND.cost(None) == pytest.approx(0.9)  # chance: 1 - 0.1


def test_costs_are_errors_or_losses_capped_at_chance():
    assert BOUND.cost(0.97) == pytest.approx(0.03)
    assert BOUND.cost(0.02) == pytest.approx(0.9)  # worse than chance counts as chance
    loss = trials.Bound(Target("val/loss", 0.1), chance=1.0)
    assert loss.cost(0.5) == 0.5 and loss.cost(40.0) == 1.0 and loss.cost(math.nan) == 1.0


def test_the_budget_curve_is_the_best_of_the_first_k_trials():
    found = [trial("a", 0, i, v, None) for i, v in enumerate([0.3, 0.5, 0.1, 0.2])]
    assert trials.budget_curve(found) == [0.3, 0.3, 0.1, 0.1]


def test_the_bootstrap_is_paired_and_its_intervals_hold_the_estimate():
    s = small_study()
    scores = trial_scores.score(s, ReportSettings(bootstrap=200), "a")
    time = scores.intervals[0]
    for m, i in time.items():
        assert i.low <= i.estimate <= i.high, m
    # a is faster than b in every study: every resample ranks it first
    assert scores.ranks[0]["a"][0] == 1.0 and scores.beats[0]["b"] == 0.0


def test_a_planted_difference_is_found_and_an_absent_one_is_not_resolved():
    """Four problems, three studies: method `fast` reaches every target in half the epochs
    of `slow`, `twin` is `slow` again; the intervals separate fast from slow, never twin."""
    found = []
    for problem in ("p1", "p2", "p3", "p4"):
        for study, noise in enumerate((0, 1, 2)):
            for method, epoch in (("fast", 4 + noise), ("slow", 9 + noise), ("twin", 9 + noise)):
                found.append(
                    trials.Trial(
                        problem,
                        method,
                        study,
                        0,
                        "completed",
                        0.05,
                        0.05,
                        Hit(epoch, epoch),
                        {},
                        1.0,
                    )
                )
    s = trials.TrialStudy(found, dict.fromkeys(("p1", "p2", "p3", "p4"), BOUND), len(found))
    time = trial_scores.score(s, ReportSettings(bootstrap=300), "slow").intervals[0]
    assert time["fast"].low > time["slow"].high
    assert time["twin"].overlaps(time["slow"])


# ---------------------------------------------------------------- the commands


def run_of(tmp: Path, problem: str, method: str, study: int, number: int, acc: float) -> Run:
    """A reference trial of 4 epochs whose val/acc is `acc` at its middle one (epoch 2)."""
    from torch.utils.tensorboard import SummaryWriter

    config = {"study": {"index": study, "trial": number, "target": {"metric": "val/acc"}}}
    overrides = {"+problem": problem, "optimizer": method, "study.trial": str(number)}
    path = tmp / f"{problem}-{method}-{study}-{number}"
    with SummaryWriter(str(path / "tb")) as writer:
        for epoch, value in enumerate([acc - 0.1, acc, acc + 0.02, acc + 0.03], start=1):
            writer.add_scalar("val/acc", value, epoch)
    (path / "metrics.json").write_text(json.dumps({"status": "completed"}))
    return Run(path, overrides, "completed", {"val/acc": acc + 0.03}, config)


def test_the_target_is_the_best_baselines_median_over_studies_at_half_the_budget(tmp_path):
    from optexp.report.targets import reference_targets

    runs = [
        run_of(tmp_path, "p", "nadamw", 10, 0, 0.90),
        run_of(tmp_path, "p", "nadamw", 10, 1, 0.95),  # study 10's best: 0.95
        run_of(tmp_path, "p", "nadamw", 11, 0, 0.93),
        run_of(tmp_path, "p", "nadamw", 12, 0, 0.91),  # median of 0.95, 0.93, 0.91
        run_of(tmp_path, "p", "nesterov", 10, 0, 0.92),
        run_of(tmp_path, "p", "nesterov", 11, 0, 0.92),
        run_of(tmp_path, "p", "nesterov", 12, 0, 0.92),
    ]
    (t,) = reference_targets(runs)
    assert (t.method, t.metric, t.studies) == ("nadamw", "val/acc", 3)
    assert t.value == pytest.approx(0.93)  # float32 in TensorBoard


def test_set_targets_rewrites_only_the_study_block_of_the_problem_file(tmp_path):
    from optexp.report.targets import SetTarget, write_target

    path = tmp_path / "mine.yaml"
    path.write_text(
        "# @package _global_\n# my problem\ntrainer:\n  epochs: 3\n"
        "study:   # old\n  target: {metric: val/acc, chance: 0.25}\n"
    )
    write_target(path, SetTarget("mine", "val/acc", 0.875, "nadamw", 3, 32, None))
    text = path.read_text()
    assert text.startswith("# @package _global_\n# my problem\ntrainer:\n  epochs: 3\n")
    node = OmegaConf.create(text).study.target
    assert (node.value, node.chance, node.metric) == (0.875, 0.25, "val/acc")
    assert text.count("study:") == 1


def test_study_alone_on_runs_that_are_not_trials_says_what_it_needs(tmp_path, capsys):
    from tests.test_report import fake_run

    fake_run(tmp_path / "sweep", ["optimizer.lr=0.1"], "completed")
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "sweep"), "--study", str(tmp_path / "page")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "study.trial" in err and "--over" in err
    assert not (tmp_path / "page").exists()


def test_a_slice_of_the_small_preset_runs_and_its_page_is_written_by_study_alone(
    optexp_cli, tmp_path
):
    result = optexp_cli(
        "-m",
        "experiment=study_optimizers_small",
        "+problem=digits_mlp",
        "optimizer=nadamw,lion",
        "study.index=0,1",
        "study.trial=defaults,0,1",
        "trainer.epochs=2",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "study 1, trial 1: optimizer.lr=" in result.stdout
    main([str(tmp_path / "sweep"), "--study", str(tmp_path / "page"), "--bootstrap", "50"])
    page = (tmp_path / "page" / "README.md").read_text()
    for method in ("nadamw", "lion"):
        assert f"| {method} |" in page
    rows = list(csv.DictReader((tmp_path / "page" / "trials.csv").open()))
    assert len(rows) == 12 and sum(r["trial"] == "defaults" for r in rows) == 4
    searched = [r for r in rows if r["trial"] != "defaults"]
    assert all(1e-5 <= float(r["point.optimizer.lr"]) <= 1e-2 for r in searched)
    lrs = {
        (r["study"], r["trial"]): r["point.optimizer.lr"] for r in searched if r["method"] == "lion"
    }
    assert lrs["0", "0"] != lrs["1", "0"]  # each study its own scramble
    for figure in ("profile_time.png", "profile_quality.png", "budget.png", "curves.png"):
        assert (tmp_path / "page" / figure).stat().st_size > 0


def test_the_verdict_reads_the_paired_difference_not_two_overlapping_intervals():
    """Four problems on which `b` is always 1.5x slower than `a`: the paired difference of
    the scores excludes 0, whatever each score's own interval."""
    found = []
    for problem, epochs in (("p1", 3), ("p2", 10), ("p3", 30), ("p4", 90)):
        for study in range(3):
            for method, factor in (("a", 1.0), ("b", 1.5)):
                e = round(epochs * factor) + study
                found.append(
                    trials.Trial(
                        problem, method, study, 0, "completed", 0.05, 0.05, Hit(e, e), {}, 1.0
                    )
                )
    s = trials.TrialStudy(found, dict.fromkeys(("p1", "p2", "p3", "p4"), BOUND), len(found))
    scores = trial_scores.score(s, ReportSettings(bootstrap=300), "a")
    difference = scores.versus[0]["b"]
    assert difference.high < 0 and difference.estimate == pytest.approx(
        scores.profiles[0].scores["b"] - scores.profiles[0].scores["a"]
    )
