"""The command line: every user error is one line ``heatmapnet COMMAND: ...`` and exit status 2
(the traceback only with --debug), ``--set`` given twice keeps both groups, ``heatmapnet check``
prints its summary, checkpoints that cannot be read or written are named."""
import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from heatmapnet import engine
from heatmapnet.build import build_model
from heatmapnet.checkpoint import (CheckpointError, CheckpointWriteError, load_checkpoint, rng_states,
                                   save_checkpoint)
from heatmapnet.cli import build_parser, main
from heatmapnet.config import ConfigError, load_config, resolve_config_path
from heatmapnet.metadata import load_scheme

SYNTHETIC = ["train.steps=2", "model.backbone=mobilenetv3_small_050", "model.head_channels=16",
             "data.input_size=[64,64]", "data.train.num_samples=8", "data.val.num_samples=4", "train.batch_size=4",
             "data.num_workers=0", "train.threads=1"]
DEFAULT = resolve_config_path("synthetic_faces")
MTFL5_POINTS = [[20, 24], [44, 24], [32, 34], [24, 46], [40, 46]]


def _one_line(capsys, command: str) -> str:
    """The one line a user error prints to stderr, without a traceback."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"heatmapnet {command}: ") and "Traceback" not in captured.err
    return lines[0]


def _train(tmp_path, *overrides, out=None) -> int:
    return main(["train", "--set", *SYNTHETIC, *overrides, "--out", str(out or tmp_path / "run")])


def _coco_json(folder: Path, images, points=MTFL5_POINTS) -> Path:
    """A COCO json of 64 x 64 images: ``images`` maps a file name to its bytes (None: a good JPEG)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, data) in enumerate(images.items()):
        if data is None:
            pixels = np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)
            data = cv2.imencode(".jpg", pixels)[1].tobytes()
        (folder / name).write_bytes(data)
    keypoints = [v for x, y in points for v in (x, y, 2)]
    coco = {"images": [{"id": i + 1, "file_name": n, "width": 64, "height": 64} for i, n in enumerate(images)],
            "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": keypoints,
                             "bbox": [14, 18, 36, 34], "iscrowd": 0} for i in range(len(images))],
            "categories": [{"id": 1, "name": "face", "keypoints": [f"p{k}" for k in range(len(points))]}]}
    (folder / "ann.json").write_text(json.dumps(coco))
    return folder / "ann.json"


def _files(train_json: Path, val_json: Path) -> list:
    return ["data.scheme=mtfl5", "data.train.source=files", "data.train.format=coco",
            f"data.train.ann_file={train_json}",
            "data.val.source=files", "data.val.format=coco", f"data.val.ann_file={val_json}"]


# ----------------------------------------------------------------------------------------------
# --set given twice (item 3)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["train"], ["check"], ["eval", "ytf68", "--checkpoint", "c.pt", "--out", "o"],
                                     ["viz", "--out", "o"], ["ablate"]], ids=lambda c: c[0])
def test_set_given_twice_keeps_both_groups(command):
    args = build_parser().parse_args(command + ["--set", "a.b=1", "c.d=2", "--set", "e.f=3"])
    assert args.set == ["a.b=1", "c.d=2", "e.f=3"]
    assert build_parser().parse_args(command).set == []  # the default list is not shared between parses


def test_the_first_set_group_is_applied_too(tmp_path, capsys):
    # before: the first group was dropped silently, and this trained 2 steps evaluating every 225
    assert main(["train", "--set", "train.eval_every=0", "--set", *SYNTHETIC, "--out", str(tmp_path / "run")]) == 2
    assert _one_line(capsys, "train") == f"heatmapnet train: {DEFAULT}: train.eval_every=0: must be >= 1"
    assert load_config(None, build_parser().parse_args(["train", "--set", "train.steps=7", "--set",
                                                        "train.lr=0.5"]).set).train.steps == 7


# ----------------------------------------------------------------------------------------------
# values no run can use (item 7): one line, exit 2, nothing written
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, problem", [
    ("train.batch_size=0", "train.batch_size=0: must be >= 1"),
    ("train.eval_every=0", "train.eval_every=0: must be >= 1"),
    ("train.checkpoint_every=0", "train.checkpoint_every=0: must be >= 1"),
    ("data.input_size=[64]", "data.input_size=[64]: expected [width, height], two positive integers"),
    ("train.steps=0", "train.steps=0: must be >= 1"),
    ("train.steps=-5", "train.steps=-5: must be >= 1"),
])
def test_a_value_no_run_can_use_is_one_line(tmp_path, capsys, override, problem):
    assert _train(tmp_path, override) == 2
    assert _one_line(capsys, "train") == f"heatmapnet train: {DEFAULT}: {problem}"
    assert not (tmp_path / "run").exists()


def test_an_evaluation_option_is_checked_before_the_first_step(tmp_path, capsys):
    # before: the run trained, then died at its first evaluation with no checkpoint written
    assert _train(tmp_path, "eval.refine=darkk") == 2
    assert _one_line(capsys, "train") == "heatmapnet train: eval.refine='darkk': choose one of ['none', 'quarter', " \
                                         "'dark']"
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()


def test_eval_checks_its_options_before_evaluating(tmp_path, capsys):
    # before: the evaluation started and died in the decoder with a traceback
    config = load_config("synthetic_faces", SYNTHETIC)
    scheme = load_scheme("ibug68")
    save_checkpoint(tmp_path / "weights.pt", config=OmegaConf.to_container(config), scheme=scheme,
                    model=build_model(config, scheme).state_dict(), step=2)
    assert main(["eval", "synthetic_faces", "--checkpoint", str(tmp_path / "weights.pt"), "--out",
                 str(tmp_path / "eval"), "--set", *SYNTHETIC, "eval.refine=Dark"]) == 2
    assert _one_line(capsys, "eval") == "heatmapnet eval: eval.refine='Dark': choose one of ['none', 'quarter', 'dark']"
    assert not (tmp_path / "eval").exists()


def test_an_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep")
    assert _train(tmp_path, out=tmp_path / "notes.txt") == 2
    assert _one_line(capsys, "train") == (f"heatmapnet train: run directory {tmp_path / 'notes.txt'} is an existing "
                                          "file, not a folder: choose another --out")
    assert (tmp_path / "notes.txt").read_text() == "keep"


DETECTIONS = [{"image_id": 1, "category_id": 1, "bbox": [10.0, 12.0, 40.0, 44.0], "score": 0.93}]


def test_a_detections_json_given_as_the_config(tmp_path, capsys):
    (tmp_path / "dets.json").write_text(json.dumps(DETECTIONS))
    assert main(["train", str(tmp_path / "dets.json"), "--out", str(tmp_path / "run")]) == 2
    line = _one_line(capsys, "train")
    assert line.startswith(f"heatmapnet train: {tmp_path / 'dets.json'}: not a heatmapnet config: expected a YAML "
                           "mapping of sections ['model', 'data', 'target', 'loss', 'train', 'eval', 'bottomup', 'pretrain'], "
                           "found a list")
    assert "data.train.ann_file" in line


def test_a_detections_json_given_as_annotations(tmp_path, capsys):
    (tmp_path / "dets.json").write_text(json.dumps(DETECTIONS))
    assert _train(tmp_path, "data.scheme=mtfl5", "data.train.source=files", "data.val.source=synthetic_faces5",
                  f"data.train.ann_file={tmp_path / 'dets.json'}") == 2
    assert _one_line(capsys, "train") == (f"heatmapnet train: data.train: {tmp_path / 'dets.json'}: looks like "
                                          "detection results (a list of boxes with scores), not keypoint annotations")


# ----------------------------------------------------------------------------------------------
# data errors (item 8): one line, whichever command meets them
# ----------------------------------------------------------------------------------------------
def test_a_bad_image_stops_train_before_its_first_step(tmp_path, capsys):
    train = _coco_json(tmp_path / "train", {"a.jpg": None, "b.jpg": None, "zero.jpg": b""})
    val = _coco_json(tmp_path / "val", {"c.jpg": None})
    assert _train(tmp_path, *_files(train, val)) == 2
    assert _one_line(capsys, "train") == (f"heatmapnet train: data.train: {tmp_path / 'train' / 'zero.jpg'}: empty "
                                          "file (0 bytes), not an image; data.skip_invalid=true trains without such "
                                          "images")


def test_reader_errors_are_one_line_in_viz(tmp_path, capsys):
    # the readers' InvalidAnnotationError (a bad sample) and their ValueError about a whole file
    val = _coco_json(tmp_path / "val", {"a.jpg": None})
    coco = json.loads(val.read_text())
    coco["annotations"][0]["keypoints"] = coco["annotations"][0]["keypoints"][:-3]  # 4 points, the category has 5
    val.write_text(json.dumps(coco))
    common = ["viz", "--out", str(tmp_path / "viz"), "--set", *SYNTHETIC, *_files(val, val)]
    assert main(common) == 2
    line = _one_line(capsys, "viz")
    assert str(val) in line and "keypoints" in line and "wrong number of points: 4, expected 5" in line
    (tmp_path / "broken.json").write_text("{\"images\": [")
    assert main(common + [f"data.val.ann_file={tmp_path / 'broken.json'}"]) == 2
    assert _one_line(capsys, "viz").startswith(f"heatmapnet viz: data.val: {tmp_path / 'broken.json'}: not valid JSON")


def test_debug_shows_the_traceback_instead(tmp_path):
    with pytest.raises(ConfigError, match="train.batch_size=0: must be >= 1"):
        main(["--debug", "train", "--set", *SYNTHETIC, "train.batch_size=0", "--out", str(tmp_path / "run")])
    with pytest.raises(ConfigError, match="train.batch_size=0: must be >= 1"):
        main(["train", "--set", *SYNTHETIC, "train.batch_size=0", "--out", str(tmp_path / "run"), "--debug"])


def test_a_programming_error_keeps_its_traceback(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("a bug, not the user's input")

    monkeypatch.setattr(engine, "train_from_config", broken)
    with pytest.raises(KeyError, match="a bug"):
        _train(tmp_path)


# ----------------------------------------------------------------------------------------------
# heatmapnet check
# ----------------------------------------------------------------------------------------------
def test_check_on_a_good_config_prints_the_summary_and_creates_nothing(tmp_path, capsys):
    assert main(["check", "--set", *SYNTHETIC, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"heatmapnet check synthetic_faces (run directory {tmp_path / 'run'}):\n")
    assert "  data.train  8 generated samples (synthetic_faces, no files)\n" in out
    assert "  data.val    4 generated samples (synthetic_faces, no files)\n" in out
    assert "  skipped     none\n" in out and "  would fail  nothing\n" in out
    assert not (tmp_path / "run").exists()


def test_check_lists_every_problem_and_exits_2(tmp_path, capsys):
    train = _coco_json(tmp_path / "train", {"a.jpg": None, "zero.jpg": b"", "junk.jpg": b"not an image" * 9})
    val = _coco_json(tmp_path / "val", {"c.jpg": None})
    assert main(["check", "--set", *SYNTHETIC, *_files(train, val), "eval.refine=darkk",
                 "--out", str(tmp_path / "run")]) == 2
    captured = capsys.readouterr()
    assert "  would fail  3:\n" in captured.out
    assert f"data.train: {tmp_path / 'train' / 'zero.jpg'}: empty file (0 bytes)" in captured.out
    assert f"data.train: image file is corrupt or not an image: {tmp_path / 'train' / 'junk.jpg'}" in captured.out
    assert captured.err.strip() == ("heatmapnet check: eval.refine='darkk': choose one of ['none', 'quarter', 'dark'] "
                                    "(and 2 more problem(s): listed above)")
    # with skip_invalid the same data passes: the two bad images are listed as skipped
    assert main(["check", "--set", *SYNTHETIC, *_files(train, val), "data.skip_invalid=true",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "  data.train  1 images, 1 instances; 3 image files opened and decoded\n" in out
    assert "  skipped     2:\n" in out and "  would fail  nothing\n" in out


@pytest.mark.slow
def test_check_reads_and_decodes_all_of_ytf68(shared_data, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HEATMAPNET_DATA", str(shared_data))
    assert main(["check", "ytf68", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    # 3,462 training and 770 test frames, one face each (the data's README)
    assert "  data.train  3462 images, 3462 instances; 3462 image files opened and decoded\n" in out
    assert "  data.val    770 images, 770 instances; 770 image files opened and decoded\n" in out


# ----------------------------------------------------------------------------------------------
# checkpoints (item 7): named when they cannot be read or written
# ----------------------------------------------------------------------------------------------
def _save(path: Path, model=None, step: int = 1, training=None) -> None:
    save_checkpoint(path, config={"model": {"backbone": "resnet18", "head": "fpn"}}, scheme=load_scheme("mtfl5"),
                    model=model or {"w": torch.ones(2)}, step=step, training=training)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to fill a disk")
def test_a_full_disk_while_saving_keeps_the_old_checkpoint(tmp_path):
    _save(tmp_path / "last.pt", step=1)
    os.symlink("/dev/full", tmp_path / "last.pt.tmp")  # the temporary file lands on a device that is always full
    with pytest.raises(CheckpointWriteError) as caught:
        _save(tmp_path / "last.pt", model={"w": torch.zeros(50_000)}, step=2)
    assert str(caught.value) == f"no space left on device writing {tmp_path / 'last.pt'}; the previous last.pt is kept"
    assert load_checkpoint(tmp_path / "last.pt").step == 1  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the temporary file is gone
    assert os.path.exists("/dev/full")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to fill a disk")
def test_a_full_disk_during_training_is_one_line(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    os.symlink("/dev/full", tmp_path / "run" / "last.pt.tmp")
    assert _train(tmp_path, "train.eval_every=2", "train.checkpoint_every=2") == 2
    err = capsys.readouterr().err  # the training progress bar, then the error
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == \
        f"heatmapnet train: no space left on device writing {tmp_path / 'run' / 'last.pt'}"
    assert (tmp_path / "run" / "best.pt").is_file() and not (tmp_path / "run" / "last.pt").exists()


def test_a_file_that_is_no_torch_file_names_itself(tmp_path):
    with open(tmp_path / "old.pt", "wb") as file:
        pickle.dump([1, 2, 3], file, protocol=2)  # torch's reader says "Invalid magic number; corrupt file?"
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "old.pt")
    assert str(caught.value) == (f"{tmp_path / 'old.pt'}: cannot be read as a checkpoint (truncated, corrupt or not a "
                                 "torch file)")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path)
    assert str(caught.value) == f"checkpoint not found: {tmp_path} is a folder, not a checkpoint file"


def test_weights_of_another_model_are_refused_naming_the_file(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 2, 1))
    _save(tmp_path / "other.pt", model={"0.weight": torch.ones(8, 3, 3, 3), "0.bias": torch.ones(8),
                                        "2.weight": torch.ones(2)})
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "other.pt").load_weights(net)
    assert str(caught.value) == (
        f"{tmp_path / 'other.pt'}: its weights do not fit this config's model (the checkpoint was made for backbone "
        "'resnet18', head 'fpn'): 2 missing, 1 unexpected and 2 reshaped tensors; '0.weight' is (8, 3, 3, 3), "
        "the model's (4, 3, 3, 3)")
    fitting = {name: torch.full_like(value, 0.5) for name, value in net.state_dict().items()}
    _save(tmp_path / "same.pt", model=fitting)
    load_checkpoint(tmp_path / "same.pt").load_weights(net)
    assert all(torch.equal(value, fitting[name]) for name, value in net.state_dict().items())


def test_a_corrupt_checkpoint_given_to_resume_is_one_line(tmp_path, capsys):
    _save(tmp_path / "whole.pt", training={"optimizer": {}, "scheduler": {}, "rng": rng_states()})
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    assert main(["train", "--set", *SYNTHETIC, "--out", str(tmp_path / "run"),
                 "--resume", str(tmp_path / "cut.pt")]) == 2
    assert _one_line(capsys, "train") == (f"heatmapnet train: {tmp_path / 'cut.pt'}: cannot be read as a checkpoint "
                                          "(truncated or corrupt)")
