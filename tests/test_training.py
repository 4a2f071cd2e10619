"""Training engine, configs, evaluation and prediction on a tiny slice of real MTFL data."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from heatmapnet.cli import main
from heatmapnet.config import ConfigError, load_config
from heatmapnet.engine import NonFiniteLossError, StepBatchSampler, Trainer, learning_rate_factor
from heatmapnet.distributed import DistInfo
from heatmapnet.predict import Predictor

REPO = Path(__file__).resolve().parent.parent


def tiny_overrides(steps=4, **extra):
    """MTFL5, 64 px crops, a small backbone: a few seconds per run on two cores."""
    settings = {
        "data.train.subset": "0:48", "data.val.subset": "0:16", "data.input_size": "[64,64]",
        "data.num_workers": 0, "model.backbone": "mobilenetv3_small_050", "model.head_channels": 16,
        "train.steps": steps, "train.batch_size": 8, "train.warmup_steps": 2, "train.eval_every": 1000,
        "train.checkpoint_every": 1000, "train.log_every": 1, "eval.batch_size": 16, "train.threads": 1,
    }
    settings.update(extra)
    return [f"{key}={value}" for key, value in settings.items()]


@pytest.fixture
def mtfl(shared_data):
    os.environ["HEATMAPNET_DATA"] = str(shared_data)
    return shared_data


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


# ----------------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------------
def test_an_unknown_config_key_is_an_error_listing_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.stepz'.*'steps'"):
        load_config(None, ["train.stepz=3"])
    with pytest.raises(ConfigError, match=r"could not be converted to Integer \(key 'train.steps'\)"):
        load_config(None, ["train.steps=many"])
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        load_config(None, ["train.steps"])


def test_every_shipped_config_loads():
    names = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
    assert {"synthetic_faces", "synthetic_people", "ytf68", "mtfl5", "lsp", "coco", "coco_custom"} <= set(names)
    for name in names:
        assert load_config(name).train.steps > 0


def test_the_command_line_reports_config_errors_without_a_traceback(capsys, tmp_path):
    assert main(["train", "--set", "model.backbon=resnet18", "--out", str(tmp_path)]) == 2
    assert "unknown config key 'model.backbon'" in capsys.readouterr().err


def test_coco_custom_names_the_missing_annotation_file(tmp_path):
    config = load_config("coco_custom", ["data.num_workers=0"])
    with pytest.raises(ValueError, match=r"data.train.ann_file is not set"):
        Trainer(config, tmp_path)


# ----------------------------------------------------------------------------------------------
# schedule and sampling
# ----------------------------------------------------------------------------------------------
def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_zero():
    assert learning_rate_factor(0, 10, 110) == pytest.approx(0.1)
    assert learning_rate_factor(9, 10, 110) == pytest.approx(1.0)
    assert learning_rate_factor(60, 10, 110) == pytest.approx(0.5)
    assert learning_rate_factor(110, 10, 110) == pytest.approx(0.0)


def test_two_ranks_split_each_global_batch_exactly_as_one_process_sees_it():
    whole = list(StepBatchSampler(10, 4, DistInfo(0, 1), seed=3, start_step=0, total_steps=6))
    halves = [list(StepBatchSampler(10, 4, DistInfo(r, 2), seed=3, start_step=0, total_steps=6)) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves)] == whole
    resumed = list(StepBatchSampler(10, 4, DistInfo(0, 1), seed=3, start_step=4, total_steps=6))
    assert resumed == whole[4:]
    first_epoch = [index for batch in whole for index, epoch in batch if epoch == 0]
    assert sorted(first_epoch) == list(range(10))  # each epoch is a permutation


# ----------------------------------------------------------------------------------------------
# training behaviour
# ----------------------------------------------------------------------------------------------
def test_training_writes_the_run_and_its_final_metrics(mtfl, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "mtfl5", "--out", str(out), "--set", *tiny_overrides(steps=3)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and 0 < metrics["final"]["nme"] < 5
    assert {"nme", "failure_rate@0.1", "auc@0.1"} <= set(metrics["final"])
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert load_config(str(out / "config.yaml")).train.steps == 3  # the resolved config reloads
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 3
    assert any((out / "tensorboard").iterdir())


def test_resume_continues_exactly_like_an_uninterrupted_run(mtfl, tmp_path, monkeypatch):
    overrides = tiny_overrides(steps=6, **{"train.checkpoint_every": 3})
    straight = Trainer(load_config("mtfl5", overrides), tmp_path / "straight")
    straight.run()

    interrupted = Trainer(load_config("mtfl5", overrides), tmp_path / "interrupted")
    original_step = Trainer.train_step
    calls = {"n": 0}

    def dies_after_three(self, batch):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return original_step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    monkeypatch.setattr(Trainer, "train_step", original_step)
    resumed = Trainer(load_config("mtfl5", overrides), tmp_path / "interrupted")
    resumed.resume(tmp_path / "interrupted" / "last.pt")
    assert resumed.step == 3
    resumed.run()
    a, b = _weights(tmp_path / "straight" / "last.pt"), _weights(tmp_path / "interrupted" / "last.pt")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(mtfl, tmp_path):
    trainer = Trainer(load_config("mtfl5", tiny_overrides(steps=5, **{"train.checkpoint_every": 1})), tmp_path)
    real_loss = trainer.loss_fn
    calls = {"n": 0}

    def turns_nan(*args):
        calls["n"] += 1
        value = real_loss(*args)
        return value * float("nan") if calls["n"] == 3 else value

    trainer.loss_fn = turns_nan
    with pytest.raises(NonFiniteLossError, match=r"step 3: the loss is nan.*last.pt \(left as it was\)"):
        trainer.run()
    state = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_two_cpu_processes_agree_with_one_on_the_same_global_batch(mtfl, tmp_path):
    # GroupNorm head and a LayerNorm backbone: no batch statistics, so the split cannot matter.
    overrides = tiny_overrides(steps=2, **{"model.backbone": "convnext_atto", "model.head_norm": "group",
                                           "loss.name": "mse", "data.input_size": "[32,32]"})
    env = {**os.environ, "HEATMAPNET_DATA": str(mtfl), "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "heatmapnet", "train", "mtfl5", "--out", str(tmp_path / "one"),
                             "--set", *overrides], env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             "--master_port=29513", "-m", "heatmapnet", "train", "mtfl5",
                             "--out", str(tmp_path / "two"), "--set", *overrides],
                            env=env, capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-2000:]
    a, b = _weights(tmp_path / "one" / "last.pt"), _weights(tmp_path / "two" / "last.pt")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())["final"]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())["final"]
    assert one["nme"] == pytest.approx(two["nme"], rel=1e-3)
    assert two["num_samples"] == 16  # every validation sample, gathered from both ranks


# ----------------------------------------------------------------------------------------------
# evaluation and prediction from a checkpoint
# ----------------------------------------------------------------------------------------------
def test_eval_and_predict_on_real_images_in_original_coordinates(mtfl, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "mtfl5", "--out", str(out), "--set", *tiny_overrides(steps=2)]) == 0
    assert main(["eval", "mtfl5", "--checkpoint", str(out / "last.pt"), "--out", str(tmp_path / "eval"),
                 "--set", *tiny_overrides()]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    predictions = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    assert len(predictions) == 16 and len(predictions[0]["keypoints"]) == 5 * 3
    assert metrics["num_samples"] == 16

    image = mtfl / "mtfl5" / "AFLW" / sorted(os.listdir(mtfl / "mtfl5" / "AFLW"))[0]
    predictor = Predictor(out / "last.pt")
    whole = predictor(str(image))
    assert len(whole) == 1 and np.asarray(whole[0]["keypoints"]).shape == (5, 2)
    boxed = predictor(str(image), boxes=[[10, 10, 40, 40], [30, 20, 30, 40]])
    assert len(boxed) == 2
    points = np.asarray(boxed[0]["keypoints"])
    assert np.all(points > -20) and np.all(points < 80 + 20)  # near the 80 x 80 image
    assert all(0 <= s <= 1 for s in boxed[0]["scores"])
    assert main(["predict", str(image), "--checkpoint", str(out / "last.pt"), "--out", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())[0]["image_path"] == str(image)
    with pytest.raises(FileNotFoundError, match="no_such.jpg"):
        predictor(str(tmp_path / "no_such.jpg"))
