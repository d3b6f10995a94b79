"""A sweep runs its jobs one after another in one process (Hydra's basic launcher), so
nothing may leak from one job into the next: seeds, global RNG state, open writers."""

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# Dropout draws from the global RNG every step: a leaked or unseeded RNG changes the result.
SHORT = ("experiment=digits_mlp_bench", "trainer.epochs=2", "dataset.test_fraction=0.2")
SHORT += ("model.dropout=0.2",)


def results(run_dir):
    """What a job found: test metrics, best-epoch metrics (minus timings), best epoch."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = {k: v for k, v in metrics["best"].items() if not k.startswith(("time/", "throughput/"))}
    return metrics["test"], best, metrics["best_epoch"]


def test_a_sweep_job_equals_the_same_job_run_alone(optexp_cli, tmp_path):
    sweep = optexp_cli("-m", *SHORT, "seed=0,1")
    assert sweep.returncode == 0, sweep.stderr
    alone = optexp_cli(*SHORT, "seed=1")
    assert alone.returncode == 0, alone.stderr

    job_dirs = [next((tmp_path / "sweep").glob(f"{k}_*")) for k in range(2)]  # k_<overrides>
    jobs = [results(job_dir) for job_dir in job_dirs]
    assert jobs[1] == results(tmp_path / "run")  # exactly: same floats, not approximately
    assert jobs[0] != jobs[1]  # each job got its own seed
    for job_dir in job_dirs:  # each job's curves went to its own directory, none to another's
        events = EventAccumulator(str(job_dir / "tb"))
        events.Reload()
        assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
