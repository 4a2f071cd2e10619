"""One run per run directory: ``RUN_DIR/.lock``.

``heatmapnet train`` holds the lock of its ``--out`` for the whole run (a pretrain stage's
folder gets its own), under DDP on rank 0 only. The file is created with ``O_CREAT | O_EXCL``,
so of two runs started at once exactly one gets it, and holds one line of JSON: the process id,
the host and the start time. A second run refuses in one line naming them
(:class:`RunDirectoryInUse`); a lock whose process is gone (this host, no such process: a kill
-9, a crash, a machine that rebooted) is taken over with a one-line message. A lock from another
host cannot be checked from here: it is refused, and the message says which file to remove if
that run is over. The lock goes when the run ends, also on an error or a signal.

The pre-flight check (:func:`heatmapnet.preflight.check_run_directory`) reports a run directory
another live run holds, so ``heatmapnet check`` and a trainer built without the lock say so too.
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from .errors import UserError

LOCK_NAME = ".lock"
#: how long a lock file may stay empty (its writer between creating and filling it) before it counts as stale
EMPTY_GRACE_S = 2.0
ATTEMPTS = 5


class RunDirectoryInUse(UserError):
    """Another run holds the run directory's lock."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock: what its file says."""

    pid: int
    host: str
    started: str  # local time, YYYY-mm-dd HH:MM:SS

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}, started {self.started}"

    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> Optional[bool]:
        """Whether its process still runs: None where it runs on another host (no way to tell)."""
        if not self.on_this_host():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
        return True

    def is_this_process(self) -> bool:
        return self.on_this_host() and self.pid == os.getpid()


def lock_path(run_dir) -> Path:
    return Path(run_dir) / LOCK_NAME


def read_holder(path: Path) -> Optional[LockHolder]:
    """The holder a lock file names; None where the file is gone, empty or unreadable."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(int(record["pid"]), str(record["host"]), str(record["started"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def other_live_holder(run_dir) -> Optional[LockHolder]:
    """The holder of ``run_dir``'s lock where it is another run that runs (or may run: another
    host's); None where there is no lock, the lock is this process's or its process is gone."""
    holder = read_holder(lock_path(run_dir))
    if holder is None or holder.is_this_process() or holder.alive() is False:
        return None
    return holder


def in_use_message(run_dir, holder: LockHolder) -> str:
    """The one line that refuses a run directory ``holder`` holds."""
    path = lock_path(run_dir)
    if holder.alive() is None:
        return (f"run directory {run_dir} is in use by {holder.describe()} ({path}); this host cannot tell whether "
                f"that run still goes on: if it has ended, remove {path}, else choose another --out")
    return (f"run directory {run_dir} is in use by {holder.describe()} ({path}): wait for that run to end or stop it, "
            "or choose another --out")


class RunLock:
    """The lock of one run directory, held from :meth:`acquire` to :meth:`release`. ``log`` gets the
    one-line message of a stale lock taken over."""

    def __init__(self, run_dir, log: Callable[[str], None] = print):
        self.run_dir, self.path, self.log = Path(run_dir), lock_path(run_dir), log
        self.holder: Optional[LockHolder] = None  # this process, while it holds the lock

    def acquire(self) -> "RunLock":
        """Create the lock, taking over a stale one; :class:`RunDirectoryInUse` where a live run
        holds it. The run directory is created first."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        mine = LockHolder(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S"))
        for _ in range(ATTEMPTS):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            try:
                os.write(descriptor, (json.dumps(asdict(mine)) + "\n").encode())
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            self.holder = mine
            return self
        holder = read_holder(self.path)
        if holder is None:
            raise RunDirectoryInUse(f"run directory {self.run_dir}: its lock {self.path} keeps changing; another run "
                                    "is starting there: choose another --out")
        raise RunDirectoryInUse(in_use_message(self.run_dir, holder))

    def _take_over_if_stale(self) -> None:
        """Remove the lock file where its process is gone (or it stayed empty past
        :data:`EMPTY_GRACE_S`); :class:`RunDirectoryInUse` where its run goes on."""
        holder = read_holder(self.path)
        if holder is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return  # released meanwhile: try again
            if age < EMPTY_GRACE_S:  # its writer is between creating and filling it
                time.sleep(0.1)
                return
            reason = f"{self.path}: taking over an empty lock left by a run that stopped while starting"
        elif holder.alive() is False:
            reason = f"{self.path}: taking over the stale lock of {holder.describe()}, which no longer runs"
        else:
            raise RunDirectoryInUse(in_use_message(self.run_dir, holder))
        # moved aside first, atomically: of two runs taking over at once only one moves the stale file
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if read_holder(aside) != holder:  # a live run's new lock replaced the stale one meanwhile: back it goes
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink()
            return
        aside.unlink()
        self.log(reason)

    def release(self) -> None:
        """Remove the lock, where it is still this run's."""
        if self.holder is not None and read_holder(self.path) == self.holder:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.holder = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def holding_run_directory(run_dir, dist=None, log: Callable[[str], None] = print) -> Iterator[Optional[RunLock]]:
    """``run_dir``'s lock for the body, taken by rank 0 alone; under DDP every rank learns whether
    rank 0 got it, so that all refuse with its line. A run directory that cannot be created holds
    no lock: the pre-flight check reports why in its own words, and the run stops there."""
    from .distributed import DistInfo, gather_objects

    dist = dist or DistInfo()
    lock, refusal = None, None
    if dist.is_main:
        path = Path(run_dir)
        if not path.exists() or path.is_dir():
            try:
                lock = RunLock(run_dir, log).acquire()
            except RunDirectoryInUse as error:
                refusal = str(error)
            except OSError:  # cannot be created or written: the pre-flight's problem to report
                lock = None
    refusal = gather_objects(refusal, dist)[0]
    if refusal is not None:
        raise RunDirectoryInUse(refusal)
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
