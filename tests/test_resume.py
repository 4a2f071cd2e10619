"""``--resume`` applies the settings it may change and refuses the others by name; a checkpoint
is written only from sane weights; the NaN stop's advice works when followed."""
import json
import math
import re

import pytest
import torch
from omegaconf import OmegaConf

from heatmapnet import engine
from heatmapnet.checkpoint import load_checkpoint
from heatmapnet.cli import main
from heatmapnet.config import ConfigError, load_config
from heatmapnet.engine import NonFiniteLossError, SavedCheckpoint, Trainer, weight_problem
from heatmapnet.resume import ConfigChange, config_changes

CONFIG = "synthetic_faces"  # synthetic data: no files needed


#: this file's run differs from the shared tiny run (conftest.TINY_RUN) in these: more samples, 6
#: steps with a 2-step warm-up and a checkpoint every 3 (a kill after step 3 leaves step 3's)
RESUME_RUN = {"data.train.num_samples": 48, "data.val.num_samples": 16, "train.steps": 6, "train.warmup_steps": 2,
              "train.checkpoint_every": 3, "eval.batch_size": 16}


@pytest.fixture(scope="module")
def tiny(tiny_run):
    """``tiny(**changes)``: synthetic faces, 64 px crops, a small backbone (well under a second per
    step on two cores), as :data:`RESUME_RUN` sets them, with ``changes``."""
    return lambda **changes: tiny_run(**{**RESUME_RUN, **changes})


def _stop_after(monkeypatch, steps: int) -> None:
    """Trainer.train_step raises KeyboardInterrupt on its call number ``steps + 1`` (a kill)."""
    original, calls = Trainer.train_step, {"n": 0}

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] > steps:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", interrupted)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, tiny):
    """A 6-step run at lr 0.01 killed after step 3: its last.pt holds step 3."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    with pytest.MonkeyPatch.context() as patch:
        _stop_after(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            Trainer(load_config(CONFIG, tiny()), out).run()
    assert load_checkpoint(out / "last.pt").step == 3
    return out


# ----------------------------------------------------------------------------------------------
# comparing configs
# ----------------------------------------------------------------------------------------------
def test_config_changes_lists_the_resumable_differences_and_skips_keys_only_one_side_has():
    saved = {"train": {"lr": 0.01, "steps": 6, "seed": 0}, "eval": {"refine": "dark"}, "data": {"num_workers": 2}}
    new = {"train": {"lr": 0.001, "steps": 12, "seed": 0, "added_later": 1}, "eval": {"refine": "none"},
           "data": {"num_workers": 0}}
    assert config_changes(saved, new, "x.pt") == [ConfigChange("data.num_workers", 2, 0),
                                                  ConfigChange("eval.refine", "dark", "none"),
                                                  ConfigChange("train.lr", 0.01, 0.001),
                                                  ConfigChange("train.steps", 6, 12)]
    assert str(ConfigChange("train.lr", 0.01, 0.001)) == "train.lr 0.01 -> 0.001"


def test_config_changes_refuses_every_other_difference_by_name_with_both_values():
    saved = {"model": {"backbone": "a", "head_channels": 16}, "train": {"batch_size": 8, "lr": 0.01},
             "data": {"input_size": [64, 64]}}
    new = {"model": {"backbone": "a", "head_channels": 32}, "train": {"batch_size": 16, "lr": 0.001},
           "data": {"input_size": [96, 96]}}
    with pytest.raises(ConfigError) as caught:
        config_changes(saved, new, "runs/x/last.pt")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("runs/x/last.pt: --resume cannot change data.input_size (checkpoint [64, 64], now "
                              "[96, 96]); model.head_channels (checkpoint 16, now 32); train.batch_size (checkpoint 8, "
                              "now 16). A resumed run may change only train.lr, ")
    assert "train.lr (checkpoint" not in message  # the learning rate may change


# ----------------------------------------------------------------------------------------------
# resuming with new settings
# ----------------------------------------------------------------------------------------------
def test_resume_applies_a_new_learning_rate_and_weight_decay_and_records_them(stopped_run, tmp_path, capsys, tiny):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes((stopped_run / "last.pt").read_bytes())
    trainer = Trainer(load_config(CONFIG, tiny(**{"train.lr": 0.001, "train.weight_decay": 0.05})), out)
    trainer.resume(out / "last.pt")
    assert (f"resuming {out / 'last.pt'} at step 3 with new settings: train.lr 0.01 -> 0.001, "
            "train.weight_decay 0.0001 -> 0.05") in capsys.readouterr().out
    # step 3 of 6 after 2 warm-up steps: the cosine is at (3 - 2) / (6 - 2) = 1/4 of its way,
    # 0.5 (1 + cos(pi / 4)) = 0.853553
    for group in trainer.optimizer.param_groups:
        assert group["lr"] == pytest.approx(0.001 * 0.853553, rel=1e-6)
        assert group["initial_lr"] == 0.001 and group["weight_decay"] == 0.05
    assert trainer.scheduler.base_lrs == [0.001]
    trainer.run()
    # the scheduler steps after each update: the rate logged at step 4 is the one of step 5,
    # 0.001 x 0.5 (1 + cos(pi / 2)) = 0.0005 (it was 0.005 before: the checkpoint's 0.01 kept)
    logged = {record["step"]: record for record in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if "lr" in record}
    assert logged[4]["lr"] == pytest.approx(0.0005, rel=1e-6)
    assert OmegaConf.load(out / "config.yaml").train.lr == 0.001
    final = load_checkpoint(out / "last.pt")
    assert final.step == 6 and final.config["train"]["lr"] == 0.001
    assert final.training["optimizer"]["param_groups"][0]["weight_decay"] == 0.05


def test_resume_extends_the_run_and_stretches_the_schedule_to_the_new_step_count(stopped_run, tmp_path, tiny):
    trainer = Trainer(load_config(CONFIG, tiny(**{"train.steps": 10})), tmp_path)
    trainer.resume(stopped_run / "last.pt")
    # step 3 of 10: (3 - 2) / (10 - 2) = 1/8 of the cosine, 0.5 (1 + cos(pi / 8)) = 0.961940
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.961940, rel=1e-6)
    assert trainer.run()["steps"] == 10


def test_resume_refuses_a_model_or_batch_change_before_loading_anything(stopped_run, tmp_path, tiny):
    trainer = Trainer(load_config(CONFIG, tiny(**{"model.head_channels": 32, "train.batch_size": 16})), tmp_path)
    initial = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    with pytest.raises(ConfigError, match=r"last.pt: --resume cannot change model.head_channels \(checkpoint 16, now "
                                          r"32\); train.batch_size \(checkpoint 8, now 16\)\. A resumed run"):
        trainer.resume(stopped_run / "last.pt")
    assert trainer.step == 0
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, initial[name]), name


def test_resume_refuses_a_step_count_below_the_checkpoints_step(stopped_run, tmp_path, tiny):
    trainer = Trainer(load_config(CONFIG, tiny(**{"train.steps": 2})), tmp_path)
    with pytest.raises(ConfigError, match=r"last.pt: holds step 3, so train.steps=2 would end before it"):
        trainer.resume(stopped_run / "last.pt")


def test_the_command_line_refuses_a_resume_change_in_one_line(stopped_run, tmp_path, capsys, tiny):
    code = main(["train", CONFIG, "--out", str(tmp_path), "--resume", str(stopped_run / "last.pt"),
                 "--set", *tiny(**{"train.seed": 1})])
    assert code == 2
    lines = re.findall(r"heatmapnet train: [^\r\n]*", capsys.readouterr().err)
    assert len(lines) == 1 and "--resume cannot change train.seed (checkpoint 0, now 1)" in lines[0]


# ----------------------------------------------------------------------------------------------
# the NaN stop and its advice
# ----------------------------------------------------------------------------------------------
def _diverges_above(monkeypatch, limit: float) -> None:
    """A model of divergence: the loss turns NaN at any step whose learning rate exceeds ``limit``."""
    real_step = engine.training_step

    def step(net, criterion, optimizer, *args, **kwargs):
        if optimizer.param_groups[0]["lr"] > limit:
            raise NonFiniteLossError("the loss is nan")
        return real_step(net, criterion, optimizer, *args, **kwargs)

    monkeypatch.setattr(engine, "training_step", step)


def test_the_nan_stops_advice_to_lower_the_learning_rate_works_when_followed(tmp_path, monkeypatch, capsys, tiny):
    # lr 0.01 with 4 warm-up steps: 0.0025, 0.005, 0.0075, ... so a run that diverges above 0.006
    # stops at step 3 with last.pt of step 2; resumed at lr 0.001 its rates stay below 0.001
    overrides = tiny(**{"train.steps": 8, "train.warmup_steps": 4, "train.checkpoint_every": 1})
    _diverges_above(monkeypatch, 0.006)
    out = tmp_path / "run"
    assert main(["train", CONFIG, "--out", str(out), "--set", *overrides]) == 2  # a one-line stop, no traceback
    lines = re.findall(r"heatmapnet train: [^\r\n]*", capsys.readouterr().err)  # the rest is the progress bar
    assert len(lines) == 1
    message = lines[0]
    last = re.escape(str(out / "last.pt"))
    assert re.fullmatch(rf"heatmapnet train: training stopped at step 3: the loss is nan\. Nothing was updated or "
                        rf"saved after the last finite step\. The last checkpoint is {last} \(left as it was\), "
                        rf"written at step 2, whose loss was [0-9.]+\. Resume from it with a lower learning rate: "
                        rf"--resume {last} --set train\.lr=0\.001 \(or set train\.clip_grad\)\.", message), message
    assert load_checkpoint(out / "last.pt").step == 2
    advice = re.search(r"--resume (\S+) --set (\S+)", message)
    assert main(["train", CONFIG, "--out", str(out), "--resume", advice.group(1),
                 "--set", *overrides, advice.group(2)]) == 0
    assert "train.lr 0.01 -> 0.001" in capsys.readouterr().out
    assert load_checkpoint(out / "last.pt").step == 8
    assert OmegaConf.load(out / "config.yaml").train.lr == 0.001


def _breaks_weights_at(monkeypatch, call: int, name: str, value: float) -> None:
    """After Trainer.train_step's call number ``call``, set the first element of the model's
    ``name`` (a parameter or buffer) to ``value``."""
    original, calls = Trainer.train_step, {"n": 0}

    def step(self, batch):
        loss = original(self, batch)
        calls["n"] += 1
        if calls["n"] == call:
            with torch.no_grad():
                self.model.state_dict()[name].view(-1)[0] = value
        return loss

    monkeypatch.setattr(Trainer, "train_step", step)


@pytest.mark.parametrize("value, problem", [(float("nan"), "holds nan values"),
                                            (1e28, "holds values up to 1e+28, beyond the 1e+10 no converging run "
                                                   "reaches")])
def test_a_checkpoint_is_written_only_from_sane_weights(value, problem, tmp_path, monkeypatch, tiny):
    trainer = Trainer(load_config(CONFIG, tiny(**{"train.checkpoint_every": 1})), tmp_path)
    name = next(name for name, tensor in trainer.model.state_dict().items() if name.endswith("running_var"))
    _breaks_weights_at(monkeypatch, 3, name, value)
    with pytest.raises(NonFiniteLossError) as stopped:
        trainer.run()
    last = tmp_path / "last.pt"
    assert str(stopped.value).startswith(f"training stopped at step 3: {last} was not written, because {name} "
                                         f"{problem}. The last checkpoint is {last} (left as it was), written at "
                                         "step 2, whose loss was ")
    state = load_checkpoint(last)
    assert state.step == 2 and weight_problem(state.model) is None


def test_weight_problem_names_the_first_insane_floating_tensor_and_ignores_integer_counters():
    sane = {"w": torch.tensor([1.0, -3.0]), "counter": torch.tensor(10 ** 12), "empty": torch.zeros(0)}
    assert weight_problem(sane) is None
    assert weight_problem({**sane, "big": torch.tensor([2.0, -2e10])}) == \
        "big holds values up to 2e+10, beyond the 1e+10 no converging run reaches"
    at_limit_then_inf = {**sane, "x": torch.tensor([1e10]), "y": torch.tensor([0.0, -math.inf])}
    assert weight_problem(at_limit_then_inf) == "y holds inf values"


def test_the_advice_warns_when_the_checkpoints_loss_was_far_above_the_runs_lowest(tmp_path, tiny):
    trainer = Trainer(load_config(CONFIG, tiny()), tmp_path)
    trainer.saved, trainer.lowest_loss = SavedCheckpoint(tmp_path / "last.pt", 40, 50.0), 0.1
    assert trainer.resume_advice() == (
        f"The last checkpoint is {tmp_path / 'last.pt'} (left as it was), written at step 40, whose loss was 50, 500 "
        "times the run's lowest (0.1): it may have been diverging already. Resume from it with a lower learning rate: "
        f"--resume {tmp_path / 'last.pt'} --set train.lr=0.001 (or set train.clip_grad).")
    trainer.saved = None
    assert trainer.resume_advice() == ("No checkpoint of this run was written yet: run again with a lower learning "
                                       "rate (--set train.lr=0.001) or with train.clip_grad.")
