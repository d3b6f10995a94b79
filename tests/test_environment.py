"""What a run's numbers depend on beside code and seeds, as metrics.json records it
(`environment`): torch's threads, the processor, the deterministic-algorithm and cudnn
benchmark switches; and metrics.json files written before it still read."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest
import torch

from optexp import provenance, rundir
from optexp.report.runs import read_run
from optexp.train import run

QUICK = ("+problem=wine_mlp", "trainer.epochs=1", "trainer.tensorboard=false")


def cpu_model() -> str:
    """The CPU's model as /proc/cpuinfo names it, read here independently of optexp."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@pytest.fixture
def torch_settings():
    """Changed by a test, put back after it: the rest of the suite runs as it was."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = cudnn_benchmark


@pytest.mark.parametrize(
    ("threads", "deterministic", "cudnn_benchmark"), [(1, False, False), (2, True, True)]
)
def test_metrics_json_records_what_torch_reports(
    make_cfg, tmp_path, torch_settings, threads, deterministic, cudnn_benchmark
):
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    run(make_cfg(*QUICK, "trainer.device=cpu"), tmp_path)

    environment = json.loads((tmp_path / "metrics.json").read_text())["environment"]
    assert environment == {
        "torch_threads": torch.get_num_threads(),
        "processor": cpu_model(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    assert (environment["torch_threads"], environment["deterministic_algorithms"]) == (
        threads,
        deterministic,
    )


def test_the_processor_of_a_cuda_run_is_the_gpus_name(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert provenance.processor(torch.device("cuda:0")) == "NVIDIA H100 80GB HBM3"
    assert provenance.processor(torch.device("cpu")) == cpu_model()


def test_a_metrics_json_older_than_the_field_still_reads(make_cfg, tmp_path):
    new, old = tmp_path / "new", tmp_path / "old"
    run(make_cfg(*QUICK), new)
    summary = json.loads(rundir.metrics_file(new).read_text())
    del summary["environment"]
    old.mkdir()
    rundir.metrics_file(old).write_text(json.dumps(summary))

    assert rundir.finished_status(rundir.load_summary(old)) == rundir.Status.COMPLETED
    assert read_run(old).values == read_run(new).values
