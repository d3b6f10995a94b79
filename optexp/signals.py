"""Graceful stop: SIGINT (Ctrl-C) or SIGTERM (SLURM preemption) asks the loop to finish
its current step, checkpoint and report; a second signal stops at once. Inside a submitit
job, so does submitit's SIGUSR2 (SLURM's warning before a time limit or a requeue): the
job hands it back to submitit's handler once last.pt is saved (optexp.cli)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
REQUEUE = signal.SIGUSR2  # submitit's; handled only where submitit installed a handler


def handled() -> tuple[int, ...]:
    """A worker of an elastic agent (optexp's trainer.devices, torchrun) leaves Ctrl-C to
    the agent, which sends every worker SIGTERM: the terminal's SIGINT to the whole process
    group would otherwise be a second signal, which stops at once, before the checkpoint."""
    return (signal.SIGTERM,) if "TORCHELASTIC_RUN_ID" in os.environ else SIGNALS


class StopRequest:
    """Truthy once a stop signal arrived; `signal` holds its number."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}
        self._pid = os.getpid()

    def __bool__(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> StopRequest:
        # Handlers can only be installed from the main thread (not in some launchers' workers).
        if threading.current_thread() is threading.main_thread():
            requeue = (REQUEUE,) if callable(signal.getsignal(REQUEUE)) else ()
            self._previous = {sig: signal.signal(sig, self._handle) for sig in handled() + requeue}
            if signal.SIGINT not in self._previous:  # the agent's worker: it sends SIGTERM
                self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker: the trainer decides
            return
        if self.signal is not None:
            raise KeyboardInterrupt  # the second signal: stop now
        self.signal = signum
        name = signal.Signals(signum).name
        sys.stderr.write(
            f"\noptexp: {name} received: saving a checkpoint after this step "
            "(send it again to stop at once)\n"
        )
