"""Preemption: stop cleanly when the scheduler asks (SIGTERM, SIGUSR1), at a step every rank agrees on.

SLURM (``--signal``, preemption, ``scancel``) and Kubernetes (pod eviction) send SIGTERM or SIGUSR1 some time
before they kill a job. :class:`PreemptionGuard` turns those signals into a flag; the runner folds the flag into
the all-reduce it already does every iteration (the non-finite-loss check), so under torchrun every rank learns
of a signal that reached any one of them in the same iteration, at no extra collective. The runner then finishes
the optimizer step it is in, writes a step checkpoint (the whole training state, atomically) and raises
:class:`Preempted`, which exits the process with :data:`PREEMPTED_EXIT_CODE`. Restarting the same command with
``run.auto_resume=True`` continues exactly where it stopped.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

#: the exit status of a run stopped by a preemption signal (EX_TEMPFAIL of sysexits.h: "try again later")
PREEMPTED_EXIT_CODE = 75
#: the signals that ask the runner to checkpoint and stop
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(SystemExit):
    """The run stopped on a preemption signal after writing a checkpoint; exits with :data:`PREEMPTED_EXIT_CODE`.

    Args:
        message: what happened, for the log and for callers that catch it.
        checkpoint: the checkpoint written before stopping.
        global_step: the last completed step.
    """

    def __init__(self, message: str, checkpoint: str | None, global_step: int) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.message, self.checkpoint, self.global_step = message, checkpoint, global_step

    def __str__(self) -> str:
        return self.message


class PreemptionGuard:
    """Records SIGTERM / SIGUSR1 while installed (a context manager); the previous handlers come back on exit.

    The handler only records the signal (no logging, no I/O: it may interrupt anything). Outside the main thread
    signal handlers cannot be installed; the guard then stays inert and says so.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = PREEMPTION_SIGNALS) -> None:
        self.signals = signals
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a preemption signal reached this process."""
        return self.received is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is not threading.main_thread():
            logger.warning("not in the main thread: SIGTERM/SIGUSR1 will not checkpoint before stopping")
            return self
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
