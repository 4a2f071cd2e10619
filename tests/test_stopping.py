"""SIGTERM and SIGINT stop a run cleanly: the step under way completes, last.pt is written at it,
the one-line stop names the command that resumes, the exit status is 128 + the signal, and the
resumed run ends with the weights of an uninterrupted one. The signals go to real processes."""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from heatmapnet import stopping
from heatmapnet.ablate import Budget, ablate, runner, runs
from heatmapnet.checkpoint import load_checkpoint
from heatmapnet.cli import build_parser, main
from heatmapnet.commands import train_resume_command
from heatmapnet.engine import Trainer
from heatmapnet.runlock import LOCK_NAME
from heatmapnet.stopping import StoppedBySignal

CONFIG = "synthetic_faces"
STEPS = 16  # about 0.15 s each on one core: a signal sent after the first step arrives well before the end
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
REPO = Path(__file__).resolve().parent.parent  # the processes import heatmapnet from here where it is not installed


@pytest.fixture(autouse=True)
def handlers_back():
    """SIGINT as a terminal's foreground job has it, however the suite was started (a shell's
    ``cmd &`` without job control starts it ignored, and heatmapnet, like any program, leaves an
    ignored signal ignored: nohup's meaning; the processes started here inherit the disposition).
    After a stop in this process, pytest's own SIGINT handler comes back."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    stopping.restore_handlers()
    if ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """``uninterrupted(overrides)``: the final weights of a run of ``overrides`` never stopped."""
    done = {}

    def weights(overrides):
        key = tuple(overrides)
        if key not in done:
            out = tmp_path_factory.mktemp("uninterrupted") / "run"
            assert main(["train", CONFIG, "--out", str(out), "--set", *overrides]) == 0
            done[key] = load_checkpoint(out / "last.pt").model
        return done[key]

    return weights


def start(command):
    """``command`` (a list) as its own process group, like a job a scheduler started."""
    return subprocess.Popen(command, env=ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def train_command(out: Path, overrides):
    return [sys.executable, "-m", "heatmapnet.cli", "train", CONFIG, "--out", str(out), "--set", *overrides]


def logged_steps(out: Path):
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if '"loss"' in line]


def wait_for_step(out: Path, process, after: int = 0, timeout: float = 150.0) -> None:
    """Until metrics.jsonl shows a step beyond ``after``."""
    ends = time.monotonic() + timeout
    while not any(step > after for step in logged_steps(out)):
        if process.poll() is not None:
            pytest.fail(f"the run ended before it logged a step past {after}: {process.communicate()[1][-2000:]}")
        if time.monotonic() > ends:
            pytest.fail("no step logged in time")
        time.sleep(0.05)


def finish(process, timeout: float = 150.0):
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("the stopped run did not exit")


def group_gone(process) -> bool:
    """Whether every process of ``process``'s group (its DataLoader workers, DDP ranks) has ended."""
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return True
    return False


def stop_line(err: str, name: str, out: Path) -> re.Match:
    """The one ``heatmapnet train:`` line, parsed: the step and the resume command."""
    lines = re.findall(r"heatmapnet train: [^\r\n]*", err)
    assert len(lines) == 1, err[-2000:]
    last = re.escape(str(out / "last.pt"))
    match = re.fullmatch(rf"heatmapnet train: stopped by {name} at step (\d+) of {STEPS}: {last} holds that step\. "
                         r"Resume with: (.*)", lines[0])
    assert match, lines[0]
    return match


def assert_same_weights(final: dict, reference: dict) -> None:
    assert final.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(final[name], tensor), name


def assert_stopped_at(out: Path, step: int) -> None:
    """last.pt holds ``step``, no step after it was taken, nothing half-written or locked is left."""
    assert 1 <= step < STEPS
    assert load_checkpoint(out / "last.pt").step == step
    assert max(logged_steps(out)) == step
    assert not (out / "last.pt.tmp").exists() and not (out / LOCK_NAME).exists()


@pytest.mark.slow  # about 25 s on two cores: a process importing torch, then the resume and a reference run here
def test_sigterm_writes_the_last_step_prints_the_resume_command_exits_143_and_resumes_identically(
        tmp_path, tiny_run, uninterrupted):
    # docker stop: SIGTERM to the process alone
    overrides = tiny_run(train__steps=STEPS, train__checkpoint_every=1000)
    out = tmp_path / "run"
    process = start(train_command(out, overrides))
    wait_for_step(out, process)
    process.send_signal(signal.SIGTERM)
    _, err = finish(process)
    assert process.returncode == 143, err[-2000:]
    match = stop_line(err, "SIGTERM", out)
    step = int(match.group(1))
    assert_stopped_at(out, step)
    words = shlex.split(match.group(2))
    assert words == ["heatmapnet", "train", CONFIG, "--set", *overrides, "--out", str(out),
                     "--resume", str(out / "last.pt")]
    assert main(words[1:]) == 0  # the printed command, as given
    final = load_checkpoint(out / "last.pt")
    assert final.step == STEPS
    assert_same_weights(final.model, uninterrupted(overrides))


@pytest.mark.slow  # about 25 s on two cores, as above
def test_ctrl_c_to_the_process_group_twice_exits_130_with_its_worker_and_resumes_identically(
        tmp_path, tiny_run, uninterrupted):
    # a terminal's Ctrl-C: SIGINT to every process of the group (the DataLoader worker too), pressed twice
    base = tiny_run(train__steps=STEPS, train__checkpoint_every=1000)
    overrides = base + ["data.num_workers=1"]
    out = tmp_path / "run"
    process = start(train_command(out, overrides))
    wait_for_step(out, process)
    os.killpg(process.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, err = finish(process)
    assert process.returncode == 130, err[-2000:]
    assert "heatmapnet: SIGINT received: stopping at the end of the current step" in err
    assert "heatmapnet: SIGINT received again" in err
    assert "Traceback" not in err and group_gone(process)
    match = stop_line(err, "SIGINT", out)
    assert_stopped_at(out, int(match.group(1)))
    assert main(shlex.split(match.group(2))[1:]) == 0
    # the worker count changes no batch: the same weights as an uninterrupted run without workers
    assert_same_weights(load_checkpoint(out / "last.pt").model, uninterrupted(base))


def test_a_second_signal_while_last_pt_is_written_neither_interrupts_nor_corrupts_it(tmp_path, tiny_run,
                                                                                      monkeypatch, capfd):
    # SIGTERM during step 2; SIGINT in the middle of the save it causes (written, not yet renamed)
    original_step, original_save = Trainer.train_step, torch.save
    seen = {}

    def step(self, batch):
        loss = original_step(self, batch)
        if self.step == 1:  # step 2 under way
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    def save(state, file, *args, **kwargs):
        original_save(state, file, *args, **kwargs)
        if Path(file.name).name == "last.pt.tmp":
            os.kill(os.getpid(), signal.SIGINT)
            seen["renamed yet"] = (tmp_path / "last.pt").exists()

    monkeypatch.setattr(Trainer, "train_step", step)
    monkeypatch.setattr(torch, "save", save)
    code = main(["train", CONFIG, "--out", str(tmp_path), "--set", *tiny_run(train__steps=6,
                                                                              train__checkpoint_every=1000)])
    err = capfd.readouterr().err
    assert code == 143  # the first signal decides
    assert seen == {"renamed yet": False}
    assert "heatmapnet: SIGINT received again: still stopping cleanly" in err
    assert re.findall(r"heatmapnet train: [^\r\n]*", err)[0].startswith(
        f"heatmapnet train: stopped by SIGTERM at step 2 of 6: {tmp_path / 'last.pt'} holds that step.")
    assert load_checkpoint(tmp_path / "last.pt").step == 2
    assert not (tmp_path / "last.pt.tmp").exists() and not (tmp_path / LOCK_NAME).exists()


def test_handlers_come_back_after_a_run_and_a_signal_after_the_last_step_lets_it_finish(tmp_path, tiny_run,
                                                                                         monkeypatch, capfd):
    before = {signum: signal.getsignal(signum) for signum in stopping.SIGNALS}
    original_evaluate = Trainer.evaluate

    def evaluate(self, codec=None):  # the final evaluation: the run is past its last step
        os.kill(os.getpid(), signal.SIGTERM)
        return original_evaluate(self, codec)

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    assert main(["train", CONFIG, "--out", str(tmp_path), "--set", *tiny_run(train__steps=2)]) == 0
    assert "heatmapnet: SIGTERM arrived as the work finished: nothing was left to stop" in capfd.readouterr().err
    assert (tmp_path / "metrics.json").is_file() and load_checkpoint(tmp_path / "last.pt").step == 2
    assert {signum: signal.getsignal(signum) for signum in stopping.SIGNALS} == before


def test_the_resume_command_keeps_the_config_overrides_and_run_directory():
    args = build_parser().parse_args(["train", CONFIG, "--set", "train.lr=0.01", "data.input_size=[64,64]"])
    stopped = StoppedBySignal(signal.SIGTERM, "stopped", Path("runs") / CONFIG / "last.pt", 3)
    assert train_resume_command(args, stopped) == (f"heatmapnet train {CONFIG} --set train.lr=0.01 "
                                                   f"'data.input_size=[64,64]' --out runs/{CONFIG} --resume "
                                                   f"runs/{CONFIG}/last.pt")
    # a pretrain stage resumes by itself: the command as it was run
    args = build_parser().parse_args(["train", CONFIG, "--out", "d"])
    assert train_resume_command(args, StoppedBySignal(signal.SIGINT, "stopped", Path("d/pretrain/last.pt"), 3)) == \
        f"heatmapnet train {CONFIG} --out d"
    assert StoppedBySignal(signal.SIGINT, "stopped").exit_code == 130


# ----------------------------------------------------------------------------------------------
# an ablation
# ----------------------------------------------------------------------------------------------
STUB_BUDGET = Budget(seeds=2, lr_factors=(1.0,), sweep_fraction=0.5, holdout=6, val_samples=6, name="stub",
                     overrides={"topdown": {"train.steps": 4, "train.eval_every": 2, "train.warmup_steps": 1}})


def test_an_ablation_stopped_by_sigterm_keeps_every_finished_run_and_resumes(tmp_path, monkeypatch, capfd):
    trained, signal_at = [], {"run": 3}

    def fake_execute(spec, device):  # training stood in for; SIGTERM arrives during the third run
        trained.append(spec.run_dir)
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        (spec.run_dir / "last.pt").write_bytes(b"")  # what a cached run must still have
        if len(trained) == signal_at["run"]:
            os.kill(os.getpid(), signal.SIGTERM)
        return runs.RunResult(spec.fingerprint(), spec.config, list(spec.overrides), "nme", False, 0.1, [2, 4],
                              [0.2, 0.1], 4, run_dir=str(spec.run_dir), run_id=str(len(trained)))

    monkeypatch.setattr(runs, "execute", fake_execute)
    monkeypatch.setattr(runner, "example_from_runs", lambda name, arm_runs, path, device: "example.png")
    with pytest.raises(StoppedBySignal) as stopped:
        ablate(CONFIG, tmp_path, design="recipes", budget=STUB_BUDGET, device="cpu", log=lambda line: None)
    assert stopped.value.exit_code == 143
    match = re.fullmatch(r"stopped by SIGTERM before training (\S+); the 3 runs finished so far are cached for "
                         r"--resume\.", str(stopped.value))
    assert match, str(stopped.value)
    cached = sorted(tmp_path.rglob("*.json"))
    assert cached == sorted(Path(f"{run_dir}.json") for run_dir in trained) and len(cached) == 3
    assert Path(match.group(1)) not in trained
    stopping.restore_handlers()
    trained.clear()
    signal_at["run"] = None
    results = ablate(CONFIG, tmp_path, design="recipes", budget=STUB_BUDGET, device="cpu", resume=True,
                     log=lambda line: None)
    assert results["runs"] == {"trained": 5, "reused": 3}  # 2 arms x (2 sweep runs + 2 seeds)

    # on the command line: one line, the command that resumes, exit status 143
    trained.clear()
    signal_at["run"] = 3
    monkeypatch.setattr(runner, "resolve_budgets", lambda budget: [STUB_BUDGET])
    argv = ["ablate", CONFIG, "--design", "recipes", "--out", str(tmp_path / "again"), "--device", "cpu"]
    assert main(argv) == 143
    lines = re.findall(r"heatmapnet ablate: [^\r\n]*", capfd.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("heatmapnet ablate: stopped by SIGTERM before training ")
    assert lines[0].endswith(f"; the 3 runs finished so far are cached for --resume. Resume with: heatmapnet "
                             f"{shlex.join(argv)} --resume")


# ----------------------------------------------------------------------------------------------
# DDP
# ----------------------------------------------------------------------------------------------
def torchrun(words):
    """``heatmapnet train`` ``words`` under torchrun, two gloo ranks on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "heatmapnet.cli", *words]


def rank_pid(agent, rank: int) -> int:
    """The process id of torchrun's worker of ``rank`` (a child of the agent with RANK=rank)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == agent.pid and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    pytest.fail(f"no worker of rank {rank} found")


@pytest.mark.slow  # four two-rank torchrun launches: 90 to 130 s on two busy cores
def test_under_ddp_every_rank_stops_at_the_same_step_and_the_twice_resumed_run_ends_identical(tmp_path, tiny_run):
    overrides = tiny_run(train__steps=STEPS, train__checkpoint_every=1000)
    words = ["train", CONFIG, "--set", *overrides]
    reference = tmp_path / "reference"
    process = start(torchrun([*words, "--out", str(reference)]))
    _, err = finish(process, timeout=300)
    assert process.returncode == 0, err[-2000:]

    # SIGTERM to torchrun, as a scheduler sends it: it passes it to both ranks
    out = tmp_path / "run"
    process = start(torchrun([*words, "--out", str(out)]))
    wait_for_step(out, process)
    holder = json.loads((out / LOCK_NAME).read_text())
    assert holder["pid"] == rank_pid(process, 0)  # rank 0 alone holds the lock
    process.send_signal(signal.SIGTERM)
    _, err = finish(process)
    assert process.returncode != 0 and group_gone(process), err[-2000:]
    match = stop_line(err, "SIGTERM", out)  # one line: rank 0's
    first = int(match.group(1))
    assert_stopped_at(out, first)

    # resumed with the printed command; SIGTERM to rank 1 alone: rank 0 stops at the same step
    resume = shlex.split(match.group(2))
    assert resume[-2:] == ["--resume", str(out / "last.pt")]
    process = start(torchrun(resume[1:]))
    wait_for_step(out, process, after=first)
    os.kill(rank_pid(process, 1), signal.SIGTERM)
    _, err = finish(process)
    assert process.returncode != 0 and group_gone(process), err[-2000:]
    match = stop_line(err, "SIGTERM", out)
    second = int(match.group(1))
    assert second > first
    assert_stopped_at(out, second)

    process = start(torchrun(shlex.split(match.group(2))[1:]))
    _, err = finish(process, timeout=300)
    assert process.returncode == 0, err[-2000:]
    final = load_checkpoint(out / "last.pt")
    assert final.step == STEPS
    assert_same_weights(final.model, load_checkpoint(reference / "last.pt").model)
