"""tools/make_face14.py: a new 14-point face scheme from ytf68's held-out identities, split by
identity. Ground truth is read here from the files themselves (sorted .pts names, the .pts text),
not through heatmapnet's reader."""
import contextlib
import importlib.util
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from heatmapnet.config import load_config
from heatmapnet.data import read
from heatmapnet.data.build import resolve_scheme
from heatmapnet.metadata import load_scheme

REPO = Path(__file__).resolve().parent.parent
#: The 14 points in the tool's order and the 0-based ibug68 index each is (datasets/ibug68.yaml).
EXPECTED_POINTS = {
    "right_brow_outer": 17, "left_brow_outer": 26, "right_eye_outer": 36, "right_eye_inner": 39,
    "left_eye_inner": 42, "left_eye_outer": 45, "nose_tip": 30, "right_nostril": 31, "left_nostril": 35,
    "right_mouth_corner": 48, "left_mouth_corner": 54, "upper_lip_top": 51, "lower_lip_bottom": 57, "chin": 8,
}
#: The mirror pairs of the 14 points, by hand.
EXPECTED_PAIRS = {frozenset(p) for p in [
    ("left_brow_outer", "right_brow_outer"), ("left_eye_outer", "right_eye_outer"),
    ("left_eye_inner", "right_eye_inner"), ("left_nostril", "right_nostril"),
    ("left_mouth_corner", "right_mouth_corner")]}
SPLITS = ("train", "val", "test")
FIRST_HELD_OUT = 2949  # configs/ytf68_val.yaml: the pretrained model trained on records 0:2949


def identity(file_name: str) -> str:
    return re.fullmatch(r"(.+)_\d+", Path(file_name).stem).group(1)


def pts_points(path: Path) -> np.ndarray:
    """(68, 2) points of a .pts file as written (1-based)."""
    text = path.read_text()
    body = text[text.index("{") + 1:text.index("}")]
    return np.array([[float(v) for v in line.split()] for line in body.strip().splitlines()])


@pytest.fixture(scope="module")
def face14(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("face14")
    spec = importlib.util.spec_from_file_location("make_face14", REPO / "tools" / "make_face14.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert tool.main(["--data-root", str(shared_data), "--out", str(out)]) == 0
    jsons = {split: json.loads((out / f"{split}.json").read_text()) for split in SPLITS}
    return out, jsons, printed.getvalue()


@pytest.fixture(scope="module")
def ytf68_names(shared_data):
    """The sorted .pts names of ytf68/train and ytf68/test: the order of the records."""
    return {folder: sorted(p.name for p in (shared_data / "ytf68" / folder).glob("*.pts")) for folder in ("train", "test")}


def split_identities(data) -> set:
    return {identity(image["file_name"]) for image in data["images"]}


def test_splits_are_identity_disjoint_and_from_identities_the_pretrained_model_never_saw(face14, ytf68_names):
    _, jsons, printed = face14
    train_names = ytf68_names["train"]
    assert len(train_names) == 3462
    pretrained = {identity(n) for n in train_names[:FIRST_HELD_OUT]}
    held_out = {identity(n) for n in train_names[FIRST_HELD_OUT:]}
    assert len(pretrained) == 295 and len(held_out) == 52 and not pretrained & held_out
    ids = {split: split_identities(jsons[split]) for split in SPLITS}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not ids[a] & ids[b], (a, b, sorted(ids[a] & ids[b]))
    assert ids["train"] | ids["val"] | ids["test"] == held_out
    assert not (ids["train"] | ids["val"]) & pretrained
    assert [len(ids[s]) for s in SPLITS] == [32, 4, 16]
    # every ytf68/train image of the splits is one of records 2949:, named by its record index
    position = {name[:-4]: i for i, name in enumerate(train_names)}
    for split in SPLITS:
        for image in jsons[split]["images"]:
            folder, name = image["file_name"].split("/")
            assert image["identity"] == identity(name)
            if folder == "train":
                assert position[Path(name).stem] >= FIRST_HELD_OUT
                assert image["ytf68_record"] == f"train[{position[Path(name).stem]}]"
            else:
                assert folder == "test" and split == "test"
    # test: every ytf68/train and ytf68/test image of its identities; train and val: their ytf68/train images
    def images_of(names, folder, start=0):
        return sorted(f"{folder}/{n[:-4]}.jpg" for n in ytf68_names[folder][start:] if identity(n) in names)
    assert sorted(i["file_name"] for i in jsons["test"]["images"]) == sorted(
        images_of(ids["test"], "train", FIRST_HELD_OUT) + images_of(ids["test"], "test"))
    for split in ("train", "val"):
        assert sorted(i["file_name"] for i in jsons[split]["images"]) == images_of(ids[split], "train", FIRST_HELD_OUT)
    counts = [len(jsons[s]["images"]) for s in SPLITS]
    assert counts == [315, 39, 195] and sum(1 for i in jsons["test"]["images"] if i["file_name"].startswith("test/")) == 36
    for split, count in zip(SPLITS, counts):
        assert re.search(rf"{split}\s+{len(ids[split])} identities\s+{count} images", printed)
    # the first identities train, the last of the first 36 validate (identities in file-name order)
    order = list(dict.fromkeys(identity(n) for n in train_names[FIRST_HELD_OUT:]))
    assert set(order[:32]) == ids["train"] and set(order[32:36]) == ids["val"]


def test_points_are_the_chosen_ibug68_points_of_the_pts_files_and_boxes_the_68_point_box(face14, shared_data):
    _, jsons, _ = face14
    for split in SPLITS:
        (category,) = jsons[split]["categories"]
        assert category["keypoints"] == list(EXPECTED_POINTS)
    chosen = list(EXPECTED_POINTS.values())
    checked = 0
    for split, picks in (("train", (0, 100, -1)), ("val", (0,)), ("test", (0, -1))):
        data = jsons[split]
        for n in picks:
            image = data["images"][n]
            (annotation,) = [a for a in data["annotations"] if a["image_id"] == image["id"]]
            pts = pts_points(shared_data / "ytf68" / Path(image["file_name"]).with_suffix(".pts")) - 1.0  # 0-based
            triples = np.array(annotation["keypoints"]).reshape(14, 3)
            np.testing.assert_array_equal(triples[:, :2], pts[chosen])
            assert (triples[:, 2] == 2).all() and annotation["num_keypoints"] == 14
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
            np.testing.assert_allclose(annotation["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=1e-9)
            checked += 1
    assert checked == 6
    assert jsons["test"]["images"][-1]["file_name"].startswith("test/")  # a ytf68/test record among them


def test_names_are_new_and_heatmapnet_derives_the_14_point_mirror_pairs(face14):
    out, jsons, _ = face14
    ibug_names = set(yaml.safe_load((REPO / "datasets" / "ibug68.yaml").read_text())["keypoints"])
    assert len(ibug_names) == 68 and not ibug_names & set(EXPECTED_POINTS)
    overrides = [f"data.{split}.ann_file={out / f'{split}.json'}" for split in ("train", "val")]
    for scheme_setting in ("coco", str(out / "face14.yaml")):  # the json's category; the tool's scheme file
        config = load_config("face14", overrides + [f"data.scheme={scheme_setting}"])
        scheme = resolve_scheme(config.data, config.data.train)
        assert scheme.keypoint_names == tuple(EXPECTED_POINTS)
        names = scheme.keypoint_names
        assert {frozenset((names[a], names[b])) for a, b in scheme.flip_pairs} == EXPECTED_PAIRS
        # the same pairing as ibug68's hand-written pairs of the source points
        ibug = load_scheme("ibug68").flip_permutation
        source = np.array(list(EXPECTED_POINTS.values()))
        np.testing.assert_array_equal(ibug[source], source[scheme.flip_permutation])
    # inter-ocular NME on the outer eye corners, ibug68's 36 and 45 (the coco route has none)
    assert scheme.interocular == (names.index("right_eye_outer"), names.index("left_eye_outer"))
    assert source[list(scheme.interocular)].tolist() == list(load_scheme("ibug68").interocular)


def test_sides_are_the_subjects_and_the_jsons_read_with_the_configs_image_folder(face14, shared_data):
    out, jsons, _ = face14
    records = read(out / "train.json", format="coco", image_root=shared_data / "ytf68")
    assert len(records) == 315
    points = np.stack([r.instances[0].keypoints for r in records])
    names = list(EXPECTED_POINTS)
    for pair in EXPECTED_PAIRS:  # the subject's left is the image right of these (mostly frontal) faces
        left, right = sorted(pair)
        assert points[:, names.index(left), 0].mean() > points[:, names.index(right), 0].mean() + 10
    test = read(out / "test.json", format="coco", image_root=shared_data / "ytf68")
    assert len(test) == 195 and sum("/ytf68/test/" in r.image_path for r in test) == 36
