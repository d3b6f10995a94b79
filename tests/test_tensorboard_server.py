"""What a person sees in TensorBoard for a sweep: a real server on 127.0.0.1, asked through
the same HTTP data API its web page uses."""

from __future__ import annotations

import json
import signal
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

from optexp import train
from optexp.diagnostics import LAYER_KINDS
from optexp.signals import StopRequest

RESUMED = "2_resumed"
RUNS = [
    "0_augmentation=flip_rotate_jitter,optimizer.lr=0.01,trainer.epochs=1/tb",
    "1_augmentation=flip_rotate_jitter,optimizer.lr=0.001,trainer.epochs=1/tb",
    f"{RESUMED}/tb",
]
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


class StopInEpochTwo(StopRequest):
    """A SIGTERM that arrives after 30 optimizer steps: 20 make the first epoch here."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def __bool__(self) -> bool:
        self.asked += 1  # before the first epoch, then once per step
        if self.asked > 31:
            self.signal = signal.SIGTERM
        return super().__bool__()


@pytest.fixture
def sweep(optexp_cli, make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two runs of a sweep, and a third stopped in its second epoch and resumed."""
    args = ("augmentation=flip_rotate_jitter", "trainer.epochs=1")
    result = optexp_cli("-m", "optimizer.lr=0.01,0.001", *args, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    sweep = tmp_path / "sweep"
    cfg = make_cfg("augmentation=flip_rotate_jitter", "trainer.epochs=2")
    monkeypatch.setattr(train, "StopRequest", StopInEpochTwo)
    assert train.run(cfg, sweep / RESUMED)["status"] == "interrupted"
    monkeypatch.undo()
    assert train.run(cfg, sweep / RESUMED)["status"] == "completed"
    return sweep


@pytest.fixture
def tensorboard(sweep: Path, tmp_path: Path) -> Iterator[str]:
    """Base URL of a TensorBoard serving `sweep`, once it lists every run."""
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
                if len(ask(base, "/data/runs")) == len(RUNS):
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


def series(base: str, plugin: str, run: str, tag: str, **more: Any) -> list[dict[str, Any]]:
    """The points of one time series of `plugin`, e.g. the text of a tag in a run."""
    query = urllib.parse.urlencode({"run": run, "tag": tag, **more})
    route = {"scalars": "scalars", "text": "text", "images": "images"}[plugin]
    return ask(base, f"/data/plugin/{plugin}/{route}?{query}")


def test_tensorboard_shows_what_each_run_was_and_how_it_trained(tensorboard):
    runs = ask(tensorboard, "/data/runs")
    assert sorted(runs) == RUNS
    resumed = RUNS[2]

    tags = ask(tensorboard, "/data/plugin/scalars/tags")
    layers = [f"{kind}/{name}" for kind in LAYER_KINDS for name in ("1.weight", "5.bias")]
    for run in runs:
        for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "lr", "hparams/test_acc"):
            assert tag in tags[run], (run, tag)
        assert set(layers) <= set(tags[run]), run
    # [wall time, step, value]; the resumed run: each epoch once, hparams at its last step
    points = series(tensorboard, "scalars", runs[0], "val/acc")
    assert [p[1] for p in points] == [1] and 0 < points[0][2] <= 1
    for tag in layers:
        points = series(tensorboard, "scalars", resumed, tag)
        assert [p[1] for p in points] == [1, 2] and all(p[2] > 0 for p in points), tag
    assert [p[1] for p in series(tensorboard, "scalars", resumed, "hparams/test_acc")] == [2]

    texts = ask(tensorboard, "/data/plugin/text/tags")  # torch's add_text adds /text_summary
    for run in runs:
        ends = {"run/config/text_summary", "run/environment/text_summary"}
        assert ends | {"run/test_confusion_matrix/text_summary"} <= set(texts[run])
        for tag in texts[run]:
            assert len(series(tensorboard, "text", run, tag)) == 1, (run, tag)
    config = series(tensorboard, "text", runs[0], "run/config/text_summary")[0]["text"]
    assert "torch.optim.Adam" in config and "lr: 0.01" in config
    launch = series(tensorboard, "text", runs[0], "run/launch/text_summary")[0]["text"]
    assert "optexp -m optimizer.lr=0.01,0.001" in launch and "optimizer.lr=0.01" in launch
    assert "run/launch/text_summary" not in texts[resumed]  # started by train.run, not by Hydra

    images = ask(tensorboard, "/data/plugin/images/tags")
    shown = ("images/train_batch", "images/train_batch_augmented", "images/test_confusion_matrix")
    for run in runs:
        assert set(images[run]) == set(shown), run
        for tag in shown:
            assert len(series(tensorboard, "images", run, tag, sample=0)) == 1, (run, tag)
    (confusion,) = series(tensorboard, "images", resumed, shown[2], sample=0)
    assert confusion["step"] == 2
    with urllib.request.urlopen(
        f"{tensorboard}/data/plugin/images/individualImage?{confusion['query']}"
    ) as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"

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
    assert sorted(g["name"] for g in groups) == RUNS  # named by the run's overrides
    assert all(len(g["sessions"]) == 1 for g in groups)
    by_run = {g["name"]: g for g in groups}
    assert by_run[resumed]["hparams"]["trainer.epochs"] == 2
    assert sorted(g["hparams"]["optimizer.lr"] for g in groups) == [0.001, 0.001, 0.01]

    layout = ask(tensorboard, "/data/plugin/custom_scalars/layout")
    charts = {c["title"]: c["multiline"]["tag"] for c in layout["category"][0]["chart"]}
    assert charts["training loss"] == ["^train/loss$"]
    assert charts["validation loss"] == ["^val/loss$"]
