"""One run per run directory: a second run refuses in one line naming the first's process and
start time; a lock whose process is gone is taken over with a message; the lock goes with the run."""
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from heatmapnet.cli import main
from heatmapnet.runlock import LOCK_NAME, LockHolder, RunDirectoryInUse, RunLock, read_holder

CONFIG = "synthetic_faces"
REPO = Path(__file__).resolve().parent.parent

# holds the lock of argv[1] (as a run does) and sleeps until killed
HOLDER = textwrap.dedent("""
    import sys, time
    from heatmapnet.runlock import RunLock
    RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def held(tmp_path):
    """A run directory whose lock another live process holds: (directory, holder)."""
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        holder = read_holder(out / LOCK_NAME)
        assert holder == LockHolder(process.pid, socket.gethostname(), holder.started)
        yield out, holder
    finally:
        process.kill()
        process.wait()


def one_line(err: str, command: str) -> str:
    lines = re.findall(rf"heatmapnet {command}: [^\r\n]*", err)
    assert len(lines) == 1, err
    return lines[0]


def test_a_second_run_in_a_held_directory_refuses_in_one_line_naming_the_first(held, tiny_run, capsys):
    out, holder = held
    assert main(["train", CONFIG, "--out", str(out), "--set", *tiny_run()]) == 2
    line = one_line(capsys.readouterr().err, "train")
    assert line == (f"heatmapnet train: run directory {out} is in use by process {holder.pid} on {holder.host}, "
                    f"started {holder.started} ({out / LOCK_NAME}): wait for that run to end or stop it, or choose "
                    "another --out")
    assert sorted(path.name for path in out.iterdir()) == [LOCK_NAME]  # nothing written, the lock left as it was
    assert read_holder(out / LOCK_NAME) == holder
    # the pre-flight check says so too
    assert main(["check", CONFIG, "--out", str(out), "--set", *tiny_run()]) == 2
    assert f"is in use by process {holder.pid} on {holder.host}, started {holder.started}" in \
        one_line(capsys.readouterr().err, "check")


def test_a_stale_lock_is_taken_over_with_a_message_and_released_when_the_run_ends(tmp_path, tiny_run, capsys):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = LockHolder(int(gone.stdout), socket.gethostname(), "2024-01-02 03:04:05")  # a kill -9 left its lock
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps(asdict(dead)))
    assert main(["train", CONFIG, "--out", str(out), "--set", *tiny_run(train__steps=1)]) == 0
    messages = [line for line in capsys.readouterr().out.splitlines() if "taking over" in line]
    assert messages == [f"{out / LOCK_NAME}: taking over the stale lock of process {dead.pid} on {dead.host}, "
                        f"started 2024-01-02 03:04:05, which no longer runs"]
    assert not (out / LOCK_NAME).exists() and (out / "last.pt").is_file()


def test_the_lock_goes_also_when_the_run_stops_on_an_error(tmp_path, tiny_run, capsys):
    assert main(["train", CONFIG, "--out", str(tmp_path), "--resume", str(tmp_path / "missing.pt"),
                 "--set", *tiny_run()]) == 2
    assert "checkpoint not found" in one_line(capsys.readouterr().err, "train")
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_is_exclusive_in_one_process_too_and_released_only_by_its_holder(tmp_path):
    with RunLock(tmp_path) as first:
        with pytest.raises(RunDirectoryInUse, match=rf"is in use by process {first.holder.pid} on "):
            RunLock(tmp_path).acquire()
        RunLock(tmp_path).release()  # not its lock: left alone
        assert read_holder(tmp_path / LOCK_NAME) == first.holder
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_from_another_host_is_refused_naming_the_file_to_remove(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "2024-01-02 03:04:05"}))
    with pytest.raises(RunDirectoryInUse) as refused:
        RunLock(tmp_path).acquire()
    assert str(refused.value) == (
        f"run directory {tmp_path} is in use by process 1 on elsewhere, started 2024-01-02 03:04:05 "
        f"({tmp_path / LOCK_NAME}); this host cannot tell whether that run still goes on: if it has ended, remove "
        f"{tmp_path / LOCK_NAME}, else choose another --out")


def test_an_empty_lock_left_by_a_run_that_stopped_while_starting_is_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    old = time.time() - 60
    os.utime(tmp_path / LOCK_NAME, (old, old))
    messages = []
    lock = RunLock(tmp_path, log=messages.append).acquire()
    assert messages == [f"{tmp_path / LOCK_NAME}: taking over an empty lock left by a run that stopped while starting"]
    assert read_holder(tmp_path / LOCK_NAME) == lock.holder
    lock.release()
