"""What a person sees in TensorBoard for a sweep: a real server on 127.0.0.1, asked through
the same HTTP data API its web page uses."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

READY_WITHIN_S = 180  # generous: a loaded 2-core CI machine starts it slowly


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def sweep(optexp_cli, tmp_path: Path) -> Path:
    result = optexp_cli("-m", "optimizer.lr=0.01,0.001", "trainer.epochs=1", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp_path / "sweep"


@pytest.fixture
def tensorboard(sweep: Path, tmp_path: Path) -> Iterator[str]:
    """Base URL of a TensorBoard serving `sweep`, once it lists both runs."""
    port = free_port()
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"]
    log = tmp_path / "tensorboard.log"  # a file, not a pipe nobody reads while it serves
    with log.open("w") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if len(ask(base, "/data/runs")) == 2:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"TensorBoard did not list the runs: {log.read_text()[-2000:]}")
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_tensorboard_shows_the_sweep_runs_curves_and_hparams(tensorboard):
    runs = ask(tensorboard, "/data/runs")
    assert sorted(runs) == [
        "0_optimizer.lr=0.01,trainer.epochs=1/tb",
        "1_optimizer.lr=0.001,trainer.epochs=1/tb",
    ]

    tags = ask(tensorboard, "/data/plugin/scalars/tags")
    for run in runs:
        for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "lr", "hparams/test_acc"):
            assert tag in tags[run], (run, tag)
    query = urllib.parse.urlencode({"run": runs[0], "tag": "val/acc"})
    points = ask(tensorboard, f"/data/plugin/scalars/scalars?{query}")
    assert [p[1] for p in points] == [1] and 0 < points[0][2] <= 1  # [wall time, step, value]

    experiment = ask(tensorboard, "/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {h["name"]: h for h in experiment["hparamInfos"]}
    assert hparams["optimizer.lr"]["differs"] is True
    assert hparams["optimizer"]["domainDiscrete"] == ["adam"]
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"hparams/best_val_loss", "hparams/best_val_acc", "hparams/test_acc"} <= metrics

    groups = ask(
        tensorboard,
        "/data/plugin/hparams/session_groups",
        {
            "experimentName": "",
            "allowedStatuses": ["STATUS_SUCCESS"],
            "startIndex": 0,
            "sliceSize": 10,
        },
    )["sessionGroups"]
    assert sorted(g["hparams"]["optimizer.lr"] for g in groups) == [0.001, 0.01]

    layout = ask(tensorboard, "/data/plugin/custom_scalars/layout")
    charts = {c["title"]: c["multiline"]["tag"] for c in layout["category"][0]["chart"]}
    assert charts["loss"] == ["^train/loss$", "^val/loss$"]
