"""Tests for heatmapnet.metadata and the scheme files in datasets/."""
import dataclasses
import glob
import json
import re
from pathlib import Path

import numpy as np
import pytest

from heatmapnet.metadata import (COCO17_KEYPOINTS, KeypointScheme, available_schemes, infer_flip_pairs,
                                 load_scheme, scheme_from_coco_category)

REPO = Path(__file__).resolve().parent.parent
SCHEMES = ["coco17", "ibug68", "lsp14", "mtfl5", "wflw98"]

# COCO's published keypoint names and OKS sigmas (cocodataset.org / pycocotools COCOeval).
PUBLISHED_COCO_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]
PUBLISHED_COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                                  .87, .87, .89, .89]) / 10.0
COCO_SKELETON_1BASED = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
                        [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]

GOOD_YAML = """\
name: tiny
sides: person
keypoints: [nose, left_eye, right_eye]
flip_pairs:
  - [left_eye, right_eye]
skeleton:
  - [nose, left_eye]
oks_sigmas: [0.1, 0.2, 0.2]
"""


def write(tmp_path, text, name="scheme.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------ loading


def test_every_scheme_file_loads_and_is_listed():
    assert set(SCHEMES) <= set(available_schemes())
    sizes = {"coco17": 17, "ibug68": 68, "lsp14": 14, "mtfl5": 5, "wflw98": 98}
    for name in SCHEMES:
        scheme = load_scheme(name)
        assert scheme.name == name
        assert scheme.num_keypoints == sizes[name]
        assert scheme.oks_sigmas.shape == (sizes[name],)
        assert scheme.sides in ("person", "image")
        assert scheme.source.endswith(f"{name}.yaml")


def test_datasets_folder_is_data_not_a_package():
    assert not (REPO / "datasets" / "__init__.py").exists()
    assert (REPO / "datasets" / "README.md").is_file()


def test_load_scheme_by_path_equals_by_name():
    assert load_scheme(REPO / "datasets" / "lsp14.yaml") == load_scheme("lsp14")
    assert load_scheme(str(REPO / "datasets" / "lsp14.yaml")) == load_scheme("lsp14")


def test_unknown_scheme_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="coco17"):
        load_scheme("no_such_scheme")


def test_missing_scheme_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_scheme(tmp_path / "nope.yaml")


def test_an_installed_copy_reads_the_schemes_shipped_inside_the_package(tmp_path, monkeypatch):
    from heatmapnet import resources

    shipped = tmp_path / "site-packages" / "heatmapnet" / "datasets"
    shipped.mkdir(parents=True)
    write(shipped, GOOD_YAML, "tiny.yaml")
    monkeypatch.setattr(resources, "packaged_dir", lambda kind: shipped if kind == resources.DATASETS else None)
    assert available_schemes() == ["tiny"]
    assert load_scheme("tiny").keypoint_names == ("nose", "left_eye", "right_eye")


# ------------------------------------------------------------------------------------ flips


@pytest.mark.parametrize("name", SCHEMES)
def test_flip_permutation_is_an_involution_that_swaps_each_pair(name):
    scheme = load_scheme(name)
    perm = scheme.flip_permutation
    assert sorted(perm.tolist()) == list(range(scheme.num_keypoints))
    np.testing.assert_array_equal(perm[perm], np.arange(scheme.num_keypoints))
    for a, b in scheme.flip_pairs:
        assert perm[a] == b and perm[b] == a
    paired = {i for p in scheme.flip_pairs for i in p}
    for i in set(range(scheme.num_keypoints)) - paired:
        assert perm[i] == i


@pytest.mark.parametrize("name", SCHEMES)
def test_named_flip_pairs_swap_left_and_right_in_the_name(name):
    scheme = load_scheme(name)
    for a, b in scheme.flip_pairs:
        left, right = scheme.keypoint_names[a], scheme.keypoint_names[b]
        if "left" in left or "right" in right:
            # the side swaps; the region matches (index suffixes run image-left to right)
            assert re.sub(r"_\d+$", "", left).replace("left", "right") == re.sub(r"_\d+$", "", right), \
                (left, right)


def test_coco17_names_and_sigmas_are_the_published_ones():
    scheme = load_scheme("coco17")
    assert list(scheme.keypoint_names) == PUBLISHED_COCO_NAMES
    np.testing.assert_allclose(scheme.oks_sigmas, PUBLISHED_COCO_SIGMAS, atol=1e-12)
    edges = {frozenset((a - 1, b - 1)) for a, b in COCO_SKELETON_1BASED}
    assert {frozenset(e) for e in scheme.skeleton} == edges
    assert scheme.index("left_shoulder") == 5 and scheme.flip_permutation[5] == 6


def test_ibug68_flip_pairs_mirror_the_face():
    perm = load_scheme("ibug68").flip_permutation
    for i in range(17):
        assert perm[i] == 16 - i  # jaw
    for a, b in [(17, 26), (21, 22), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46), (31, 35),
                 (32, 34), (48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]:
        assert perm[a] == b and perm[b] == a, (a, b)
    for i in [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]:
        assert perm[i] == i


def test_wflw98_flip_pairs_mirror_the_face():
    perm = load_scheme("wflw98").flip_permutation
    for i in range(33):
        assert perm[i] == 32 - i  # contour, 16 = chin
    for a, b in [(60, 72), (64, 68), (65, 75), (67, 73), (33, 46), (37, 42), (38, 50), (41, 47), (55, 59),
                 (76, 82), (83, 87), (88, 92), (93, 95), (96, 97)]:
        assert perm[a] == b and perm[b] == a, (a, b)
    for i in [16, 51, 52, 53, 54, 57, 79, 85, 90, 94]:
        assert perm[i] == i


def test_normalisation_points_match_the_published_protocols():
    assert load_scheme("ibug68").interocular == (36, 45)
    assert load_scheme("wflw98").interocular == (60, 72)
    assert load_scheme("wflw98").pupils == ((96,), (97,))
    assert load_scheme("ibug68").pupils == (tuple(range(36, 42)), tuple(range(42, 48)))
    assert load_scheme("mtfl5").interocular == (0, 1)
    lsp = load_scheme("lsp14")
    assert lsp.torso == (8, 3)  # right shoulder to left hip
    assert lsp.head == (12, 13)
    assert load_scheme("coco17").head is None


def test_mirroring_a_synthetic_symmetric_face_and_permuting_gives_it_back():
    # A face symmetric about x = 0 built from the scheme's own pairs: random points for one side
    # of every pair, their mirror images for the other, x = 0 for unpaired points.
    rng = np.random.default_rng(0)
    for name in ["ibug68", "wflw98", "mtfl5", "coco17", "lsp14"]:
        scheme = load_scheme(name)
        pts = np.zeros((scheme.num_keypoints, 2))
        pts[:, 1] = rng.uniform(0, 100, scheme.num_keypoints)
        for a, b in scheme.flip_pairs:
            pts[a] = [rng.uniform(1, 50), rng.uniform(0, 100)]
            pts[b] = [-pts[a, 0], pts[a, 1]]
        mirrored = pts * [-1, 1]
        np.testing.assert_allclose(mirrored[scheme.flip_permutation], pts)
        assert not np.allclose(mirrored, pts)


def _ytf68_mean_shape(shared_data):
    from heatmapnet.data.readers import parse_pts

    files = sorted(glob.glob(str(shared_data / "ytf68" / "*" / "*.pts")))[:800]
    shapes = np.stack([parse_pts(f) for f in files])
    shapes = shapes - shapes.mean(axis=1, keepdims=True)
    shapes /= np.sqrt((shapes ** 2).sum(axis=(1, 2), keepdims=True))
    return shapes.mean(axis=0)


def test_ibug68_flip_matches_the_mirror_of_the_real_mean_face(shared_data):
    scheme = load_scheme("ibug68")
    mean = _ytf68_mean_shape(shared_data)
    mirrored = mean * [-1, 1]
    mirrored[:, 0] += (mean[:, 0] - mirrored[scheme.flip_permutation, 0]).mean()
    # every point's nearest mirrored point is its flip partner
    dist = np.linalg.norm(mean[:, None] - mirrored[None], axis=2)
    np.testing.assert_array_equal(dist.argmin(axis=0)[scheme.flip_permutation], np.arange(68))
    # and the first name of each pair (the subject's left) lies on the image right
    for a, b in scheme.flip_pairs:
        assert mean[a, 0] > mean[b, 0], (scheme.keypoint_names[a], scheme.keypoint_names[b])


def _procrustes(target, moving):
    """``moving`` aligned to ``target`` by the best rotation, scale and shift (no reflection)."""
    t = target - target.mean(0)
    m = moving - moving.mean(0)
    u, s, vt = np.linalg.svd(m.T @ t)
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, d]) @ vt
    return (s[0] + d * s[1]) / (m ** 2).sum() * m @ rotation + target.mean(0)


def test_wflw98_flip_matches_the_mirror_of_real_faces(shared_data):
    scheme = load_scheme("wflw98")
    data = json.loads((shared_data / "fixtures" / "wflw" / "test_wflw.json").read_text())
    for ann in data["annotations"]:
        face = np.array(ann["keypoints"], dtype=float).reshape(-1, 3)[:, :2]
        iod = np.linalg.norm(face[60] - face[72])
        mirrored = face * [-1, 1]
        err = np.linalg.norm(face - _procrustes(face, mirrored[scheme.flip_permutation]), axis=1) / iod
        err_unpermuted = np.linalg.norm(face - _procrustes(face, mirrored), axis=1).mean() / iod
        # Every point lands near its partner (a wrongly paired eye or brow point is off by > 0.3).
        assert err.max() < 0.25 and err_unpermuted > 3 * err.mean(), (ann["id"], err.max(), err_unpermuted)
        for a, b in scheme.flip_pairs:  # subject's left is on the image right
            assert face[a, 0] > face[b, 0], (ann["id"], scheme.keypoint_names[a])


def test_mtfl5_names_are_image_sides(shared_data):
    from heatmapnet.data import read

    scheme = load_scheme("mtfl5")
    assert scheme.sides == "image"
    records = read(shared_data / "mtfl5" / "test.txt")
    pts = np.stack([r.instances[0].keypoints for r in records[:500]])
    mean = pts.mean(axis=0)
    assert mean[scheme.index("left_eye"), 0] < mean[scheme.index("right_eye"), 0]
    assert mean[scheme.index("left_mouth_corner"), 0] < mean[scheme.index("right_mouth_corner"), 0]


# ------------------------------------------------------------------------------------ validation


def test_a_valid_minimal_file_loads(tmp_path):
    scheme = load_scheme(write(tmp_path, GOOD_YAML))
    assert scheme.flip_pairs == ((1, 2),)
    assert scheme.skeleton == ((0, 1),)
    assert scheme.torso is None and scheme.nme_normalisation == {}


@pytest.mark.parametrize("field", ["name", "keypoints", "flip_pairs", "skeleton", "oks_sigmas"])
def test_a_missing_field_is_an_error_naming_file_and_field(tmp_path, field):
    lines = GOOD_YAML.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(field + ":"))
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    path = write(tmp_path, "\n".join(lines[:start] + lines[end:]) + "\n")
    with pytest.raises(ValueError) as info:
        load_scheme(path)
    assert str(path) in str(info.value) and repr(field) in str(info.value)


@pytest.mark.parametrize("replace, field, detail", [
    ("- [left_eye, right_eye]", "flip_pairs", "left_ey"),
    ("- [nose, left_eye]", "skeleton", "chin"),
    ("oks_sigmas: [0.1, 0.2, 0.2]", "oks_sigmas", "2 values"),
])
def test_bad_references_and_sigma_count_are_errors_naming_the_field(tmp_path, replace, field, detail):
    new = {"flip_pairs": "- [left_ey, right_eye]", "skeleton": "- [nose, chin]",
           "oks_sigmas": "oks_sigmas: [0.1, 0.2]"}[field]
    path = write(tmp_path, GOOD_YAML.replace(replace, new))
    with pytest.raises(ValueError) as info:
        load_scheme(path)
    message = str(info.value)
    assert str(path) in message and repr(field) in message and detail in message


def test_other_broken_files_are_errors(tmp_path):
    cases = {
        "torso: [nose, knee]\n": "'torso'",
        "nme_normalisation:\n  interocular: [left_eye]\n": "nme_normalisation.interocular",
        "sides: mirror\n": "'sides'",
        "colour: red\n": "unknown field",
        "pupils: [[left_eye]]\n": "'pupils'",
    }
    for extra, expected in cases.items():
        text = GOOD_YAML.replace("sides: person\n", "") + extra
        with pytest.raises(ValueError, match=expected):
            load_scheme(write(tmp_path, text))
    with pytest.raises(ValueError, match="more than one pair"):
        load_scheme(write(tmp_path, GOOD_YAML.replace("  - [left_eye, right_eye]",
                                                      "  - [left_eye, right_eye]\n  - [nose, left_eye]")))
    with pytest.raises(ValueError, match="not valid YAML"):
        load_scheme(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ValueError, match="duplicate"):
        load_scheme(write(tmp_path, GOOD_YAML.replace("[nose, left_eye, right_eye]", "[nose, nose, right_eye]")))


def test_scheme_is_frozen_and_its_sigmas_read_only():
    scheme = load_scheme("coco17")
    with pytest.raises(dataclasses.FrozenInstanceError):
        scheme.name = "x"
    with pytest.raises(ValueError):
        scheme.oks_sigmas[0] = 1.0
    assert isinstance(hash(scheme), int)


def test_direct_construction_validates_indices():
    with pytest.raises(ValueError, match="out of range"):
        KeypointScheme("bad", ("a", "b"), flip_pairs=((0, 2),), oks_sigmas=[0.1, 0.1])
    with pytest.raises(ValueError, match="oks_sigmas"):
        KeypointScheme("bad", ("a", "b"), oks_sigmas=[0.1])


# ------------------------------------------------------------------------------------ COCO categories


def test_scheme_from_the_coco_category_matches_coco17(shared_data):
    category = json.loads((shared_data / "fixtures" / "coco" / "test_coco.json").read_text())["categories"][0]
    scheme = scheme_from_coco_category(category)
    coco17 = load_scheme("coco17")
    assert scheme.keypoint_names == COCO17_KEYPOINTS == coco17.keypoint_names
    np.testing.assert_allclose(scheme.oks_sigmas, PUBLISHED_COCO_SIGMAS)
    assert set(scheme.flip_pairs) == set(coco17.flip_pairs)
    assert {frozenset(e) for e in scheme.skeleton} == {frozenset(e) for e in coco17.skeleton}
    np.testing.assert_array_equal(scheme.flip_permutation, coco17.flip_permutation)
    assert scheme.notes == ()


def test_crowdpose_category_with_a_foreign_skeleton_drops_bad_edges_with_a_note(shared_data):
    data = json.loads((shared_data / "fixtures" / "crowdpose" / "test_crowdpose.json").read_text())
    scheme = scheme_from_coco_category(data["categories"][0])
    assert scheme.num_keypoints == 14
    assert all(0 <= i < 14 for edge in scheme.skeleton for i in edge)
    assert any("out of range" in n for n in scheme.notes)
    assert any("uniform 0.025" in n for n in scheme.notes)
    np.testing.assert_allclose(scheme.oks_sigmas, 0.025)
    names = scheme.keypoint_names
    assert {(names[a], names[b]) for a, b in scheme.flip_pairs} == {
        (f"left_{j}", f"right_{j}") for j in ["shoulder", "elbow", "wrist", "hip", "knee", "ankle"]}


def test_flip_pairs_are_inferred_from_several_naming_styles():
    names = ["l_eye", "r_eye", "hand_left", "hand_right", "LeftFoot", "RightFoot", "medial_right_hip",
             "medial_left_hip", "nose", "left_only"]
    pairs = {(names[a], names[b]) for a, b in infer_flip_pairs(names)}
    assert pairs == {("l_eye", "r_eye"), ("hand_left", "hand_right"), ("LeftFoot", "RightFoot"),
                     ("medial_left_hip", "medial_right_hip")}


def test_a_category_without_keypoint_names_is_an_error():
    with pytest.raises(ValueError, match="'keypoints'"):
        scheme_from_coco_category({"id": 1, "name": "face", "keypoints": [], "skeleton": []})
