"""Stopping a run cleanly when the scheduler asks: SIGTERM (SLURM preemption, ``docker stop``,
``kill``) or SIGINT (Ctrl-C) arrive before any kill.

Inside :func:`deferred_signals` either signal only records itself (and says so in one line on
rank 0's stderr): nothing is interrupted half-way, a checkpoint being written included. The code
that runs there asks :func:`requested` at its safe points (the trainer after each completed
step: :meth:`heatmapnet.engine.Trainer.stop_if_signalled`), writes what resumes the work and
raises :class:`StoppedBySignal`, which the command line reports in one line with the command that
resumes, and exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM). Further
signals are deferred the same way; SIGKILL (``kill -9``) still stops at once, leaving the last
checkpoint written as it was.

The contexts nest (an ablation around each of its runs): the outermost installs the handlers and
restores the previous ones when it ends; after a stop they stay, so that a second signal (torchrun
sends SIGTERM to every rank once one exited) cannot end the process before it reported the stop
with its exit status, until the next outermost context or :func:`restore_handlers`. A signal that arrived after the last safe point (the
work finished meanwhile) is reported and dropped: the work it would have stopped is done.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional

from .errors import UserError

#: the signals that stop a run cleanly
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StoppedBySignal(UserError):
    """A run that stopped cleanly on SIGTERM or SIGINT. ``checkpoint`` is the file that resumes it
    (None where the work resumes otherwise, e.g. an ablation's cache); the command line exits with
    :attr:`exit_code`."""

    def __init__(self, signum: int, message: str, checkpoint: Optional[Path] = None, step: Optional[int] = None):
        super().__init__(message)
        self.signum, self.checkpoint, self.step = int(signum), checkpoint, step

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process the signal ended."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    """``SIGTERM``, ``SIGINT``, or ``signal N`` for a number without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _State:
    depth = 0  # nested deferred_signals contexts now open
    received: Optional[int] = None  # the first signal since the outermost one opened
    count = 0  # signals received since then
    kept: Dict[int, object] = {}  # the handlers to restore after a stop (restore_handlers)


_state = _State()


def _record(signum, frame) -> None:
    """The handler: remember the first signal and say so in one line (os.write: a print could run
    inside another print of the interrupted code)."""
    _state.count += 1
    if _state.received is None:
        _state.received = signum
    if os.environ.get("RANK", "0") == "0":
        name = signal_name(signum)
        line = (f"\nheatmapnet: {name} received: stopping at the end of the current step, once its checkpoint "
                "is written\n" if _state.count == 1 else
                f"\nheatmapnet: {name} received again: still stopping cleanly (kill -9 stops at once, without "
                "saving)\n")
        try:
            os.write(2, line.encode())
        except OSError:
            pass


def requested() -> Optional[int]:
    """The number of the first SIGTERM or SIGINT received inside :func:`deferred_signals`, or None."""
    return _state.received


@contextmanager
def deferred_signals() -> Iterator[None]:
    """SIGTERM and SIGINT only record themselves (:func:`requested`) while the context is open; the
    previous handlers come back when the outermost context ends. Outside the main thread (where no
    handler can be installed) and for a signal the process ignores (``nohup``), nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outermost = _state.depth == 0
    previous: Dict[int, object] = {}
    if outermost:
        restore_handlers()
        _state.received, _state.count = None, 0
        for signum in SIGNALS:
            handler = signal.getsignal(signum)
            if handler is signal.SIG_IGN or handler is None:  # ignored, or a handler installed outside Python
                continue
            previous[signum] = signal.signal(signum, _record)
    _state.depth += 1
    finished = stopped = False
    try:
        yield
        finished = True
    except StoppedBySignal:
        stopped = True
        raise
    finally:
        _state.depth -= 1
        if outermost and stopped:  # until the stop is reported: a launcher's SIGTERM must not cut it short
            _state.kept = previous
        elif outermost:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if finished and _state.received is not None and os.environ.get("RANK", "0") == "0":
                try:
                    os.write(2, f"\nheatmapnet: {signal_name(_state.received)} arrived as the work finished: "
                                "nothing was left to stop\n".encode())
                except OSError:
                    pass
            _state.received, _state.count = None, 0  # (after a stop they stay: a further signal is "again")


def restore_handlers() -> None:
    """Put back the handlers a :class:`StoppedBySignal` left deferring SIGTERM and SIGINT (the
    command line leaves them until the process exits; code that goes on after a stop calls this)."""
    kept, _state.kept = _state.kept, {}
    for signum, handler in kept.items():
        signal.signal(signum, handler)


def shelter_worker(worker_id: int) -> None:
    """A DataLoader worker's ``worker_init_fn``: the worker ignores SIGTERM and SIGINT, which a
    terminal's Ctrl-C and SLURM send to every process of the job, so that the main process can
    finish its step and write its checkpoint; the worker ends when the main process shuts the
    loader down, or (PyTorch's watchdog) once the main process is gone."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
