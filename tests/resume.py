"""A run stopped mid-way by a SIGTERM the test sends, then resumed: it must end exactly
where the uninterrupted run ends (the loop's `StopRequest` replaced for the stop)."""

from __future__ import annotations

import signal

import torch

from optexp import train
from optexp.signals import StopRequest


class StopAfter(StopRequest):
    """A SIGTERM after `count` batches have been asked whether to stop."""

    count = 0

    def __bool__(self) -> bool:
        StopAfter.count -= 1
        if StopAfter.count == 0:
            self.signal = signal.SIGTERM
        return super().__bool__()


def assert_resumes_exactly(cfg, run_dir, monkeypatch, stop_at):
    """The run stopped after `stop_at` checks of the stop signal and resumed ends with the
    very weights and metrics of the uninterrupted run. Returns the stopped run's last.pt."""
    whole = train.run(cfg, run_dir / "whole")
    monkeypatch.setattr(train, "StopRequest", StopAfter)
    StopAfter.count = stop_at
    assert train.run(cfg, run_dir / "stopped")["status"] == "interrupted"
    stopped = torch.load(run_dir / "stopped" / "checkpoints" / "last.pt", weights_only=True)
    monkeypatch.setattr(train, "StopRequest", StopRequest)
    resumed = train.run(cfg, run_dir / "stopped")
    assert resumed["final"]["train/loss"] == whole["final"]["train/loss"]
    assert resumed["test"] == whole["test"] and resumed["global_step"] == whole["global_step"]
    ours = torch.load(run_dir / "stopped" / "checkpoints" / "last.pt", weights_only=True)
    theirs = torch.load(run_dir / "whole" / "checkpoints" / "last.pt", weights_only=True)
    for key, value in theirs["model"].items():
        assert torch.equal(ours["model"][key], value), key
    return stopped
