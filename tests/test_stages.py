"""pretrain: a stage trained into <run>/pretrain first, reused when finished, resumed when stopped,
refused when its folder holds another config; the run starts from the stage's last.pt."""
import hashlib
import json

import pytest
import torch

from heatmapnet.checkpoint import load_checkpoint
from heatmapnet.config import load_config
from heatmapnet.engine import Trainer, train_from_config
from heatmapnet.errors import ConfigError

CONFIG = "synthetic_faces"


def recipe(tiny_run, stage_steps=4, **main):
    config = load_config(CONFIG, tiny_run(**main))
    config.pretrain.config = CONFIG
    config.pretrain.set = tiny_run(**{"train.steps": stage_steps})
    return config


def test_the_run_trains_its_stage_first_and_starts_from_its_last_checkpoint(tmp_path, tiny_run, capsys):
    summary = train_from_config(recipe(tiny_run), tmp_path / "run")
    stage = tmp_path / "run" / "pretrain" / "last.pt"
    assert load_checkpoint(stage).step == 4
    assert summary["pretrain"]["trained_now"] == 4 and summary["pretrain"]["checkpoint"] == str(stage)
    assert summary["total_wall_time_s"] >= summary["wall_time_s"] + summary["pretrain"]["wall_time_s"] - 0.11
    saved = load_checkpoint(tmp_path / "run" / "last.pt").config["model"]
    assert saved["init_from"] == str(stage)
    assert saved["init_from_sha256"] == hashlib.sha256(stage.read_bytes()).hexdigest()
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert recorded["pretrain"] == summary["pretrain"]
    out = capsys.readouterr().out
    assert f"pretrain: trained 4 steps into {stage}" in out


def test_a_finished_stage_is_reused_and_its_weights_start_the_run(tmp_path, tiny_run, capsys):
    train_from_config(recipe(tiny_run), tmp_path / "run")
    stage = tmp_path / "run" / "pretrain" / "last.pt"
    before = stage.read_bytes()
    capsys.readouterr()
    config = recipe(tiny_run, **{"train.steps": 1})
    trainer_weights = {}
    original = Trainer.start_from

    def spy(self, path):
        original(self, path)
        trainer_weights.update({k: v.clone() for k, v in self.model.state_dict().items()})

    Trainer.start_from = spy
    try:
        summary = train_from_config(config, tmp_path / "run")
    finally:
        Trainer.start_from = original
    assert stage.read_bytes() == before  # not trained again
    assert summary["pretrain"]["trained_now"] == 0 and summary["pretrain"]["wall_time_s"] == 0.0
    assert f"pretrain: reusing the finished stage {stage} (4 steps)" in capsys.readouterr().out
    stage_weights = load_checkpoint(stage).model
    assert stage_weights.keys() == trainer_weights.keys()
    assert all(torch.equal(stage_weights[k], trainer_weights[k]) for k in stage_weights)


def test_a_stopped_stage_resumes_where_it_stopped(tmp_path, tiny_run, interrupted_run):
    stage_dir = tmp_path / "run" / "pretrain"
    stage_config = load_config(CONFIG, tiny_run())
    trainer = Trainer(stage_config, stage_dir)
    interrupted_run(trainer, steps=2)
    assert load_checkpoint(stage_dir / "last.pt").step == 2
    summary = train_from_config(recipe(tiny_run), tmp_path / "run")
    assert summary["pretrain"]["trained_now"] == 2 and summary["pretrain"]["steps"] == 4
    assert load_checkpoint(stage_dir / "last.pt").step == 4


def test_a_stage_folder_of_another_config_is_refused_by_name(tmp_path, tiny_run):
    train_from_config(recipe(tiny_run), tmp_path / "run")
    with pytest.raises(ConfigError) as error:
        train_from_config(recipe(tiny_run, stage_steps=6), tmp_path / "run")
    message = str(error.value)
    assert str(tmp_path / "run" / "pretrain") in message and "train.steps=6 (the stage holds 4)" in message
    assert "\n" not in message


def test_a_mistake_in_the_run_is_found_before_the_stage_trains(tmp_path, tiny_run):
    config = recipe(tiny_run, **{"loss.name": "nonsense"})
    with pytest.raises(Exception, match="nonsense"):
        train_from_config(config, tmp_path / "run")
    assert not (tmp_path / "run" / "pretrain").exists()


def test_a_stage_with_init_from_or_set_alone_is_one_line(tmp_path, tiny_run):
    config = recipe(tiny_run)
    config.model.init_from = str(tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="both say where the run's first weights come from"):
        train_from_config(config, tmp_path / "run")
    config = load_config(CONFIG, tiny_run())
    config.pretrain.set = ["train.steps=2"]
    with pytest.raises(ConfigError, match="without pretrain.config"):
        train_from_config(config, tmp_path / "run")
