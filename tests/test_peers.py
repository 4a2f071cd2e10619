"""tools/peers.py's BlazePose peer without mediapipe: the 33 -> LSP joint map, the pixel
convention, the detected / fallback / misses-wrong accounting, and the one-line error when the
interpreter has no mediapipe."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from heatmapnet.data.records import Instance, Record
from heatmapnet.metadata import load_scheme

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("tools_peers", REPO / "tools" / "peers.py")
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool  # its dataclasses look their module up there
    spec.loader.exec_module(tool)
    yield tool
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def lsp14():
    return load_scheme("lsp14")


# Written out from MediaPipe's PoseLandmark list, not computed: LSP joint -> BlazePose landmark.
EXPECTED_LANDMARK = {
    "right_ankle": 28, "right_knee": 26, "right_hip": 24, "left_hip": 23, "left_knee": 25, "left_ankle": 27,
    "right_wrist": 16, "right_elbow": 14, "right_shoulder": 12, "left_shoulder": 11, "left_elbow": 13,
    "left_wrist": 15,
}


def test_blazepose_landmarks_land_in_the_lsp_joints_of_the_same_name(peers, lsp14):
    joints = peers.joint_map(lsp14)
    assert set(joints.names) == set(EXPECTED_LANDMARK) and len(joints.names) == 12
    landmarks = np.array([[(i, 10 * i) for i in range(33)]], dtype=np.float64)  # landmark i at (i, 10 i)
    points = peers.landmarks_to_scheme(landmarks, joints, lsp14.num_keypoints)
    assert points.shape == (1, 14, 2)
    for name, landmark in EXPECTED_LANDMARK.items():
        assert points[0, lsp14.keypoint_names.index(name)].tolist() == [landmark, 10 * landmark], name
    for name in ("neck", "head_top"):  # no BlazePose landmark: left out, never scored
        assert np.isnan(points[0, lsp14.keypoint_names.index(name)]).all()


def test_blazepose_needs_a_person_sided_scheme(peers, lsp14):
    import dataclasses
    with pytest.raises(ValueError, match="image's sides"):
        peers.joint_map(dataclasses.replace(lsp14, sides="image"))


def test_normalised_landmarks_become_reader_pixels(peers):
    # MediaPipe: the image's edges at 0 and 1; the readers: pixel centres on integers
    normalised = np.array([[[0.0, 0.0], [1.0, 1.0], [0.5, 0.25]]])
    pixels = peers.normalised_to_pixels(normalised, np.array([[200.0, 100.0]]))
    assert pixels.tolist() == [[[-0.5, -0.5], [199.5, 99.5], [99.5, 24.5]]]


def _record(gt: np.ndarray, visible: np.ndarray) -> Record:
    box = np.array([0.0, 0.0, 100.0, 100.0])
    return Record(image_path="synthetic.png", width=120, height=120,
                  instances=[Instance(keypoints=gt, visible=visible, bbox=box)],
                  image=np.zeros((120, 120, 3), np.uint8))


def test_detected_fallback_and_misses_wrong_accounting(peers, lsp14):
    names = lsp14.keypoint_names
    j = {name: i for i, name in enumerate(names)}
    gt = np.stack([np.arange(14) * 7.0, np.full(14, 60.0)], axis=1)
    gt[j["right_shoulder"]] = (0.0, 0.0)
    gt[j["left_hip"]] = (0.0, 50.0)  # torso 50: PCK@0.2 counts an error up to 10 px
    every = np.ones(14, bool)
    no_left_wrist = every.copy()
    no_left_wrist[j["left_wrist"]] = False
    no_torso = every.copy()
    no_torso[j["right_shoulder"]] = False

    # A, detected: the 12 limb joints exact; neck and head top far off, which must not count
    a = gt.copy()
    a[[j["neck"], j["head_top"]]] += 500.0
    # B, detected: three joints 20 px off, the left wrist unlabelled (and off): 8 of 11 correct
    b = gt.copy()
    b[[j["right_ankle"], j["right_knee"], j["right_hip"], j["left_wrist"]]] += (20.0, 0.0)
    # C, missed: its fallback 5 px off everywhere (correct) but the left ankle 15 px off: 11 of 12
    c = gt + (3.0, 4.0)
    c[j["left_ankle"]] = gt[j["left_ankle"]] + (9.0, 12.0)
    # D, detected but its right shoulder unlabelled: no torso, skipped everywhere
    d = gt + 100.0
    records = [_record(gt, every), _record(gt, no_left_wrist), _record(gt, every), _record(gt, no_torso)]
    test = peers.TestSet("lsp", records, lsp14, None, np.arange(4))
    output = peers.PeerOutput(np.stack([a, b, c, d]), np.array([True, True, False, True]), 0.0)

    summary = peers.pose_summary(peers.pose_truth(test), output, peers.joint_map(lsp14), 0.2)
    assert (summary.detected_only.correct, summary.detected_only.counted) == (20, 23)  # A 12/12 + B 8/11
    assert summary.detected_only.pck == pytest.approx(20 / 23)
    assert (summary.detected_only.images, summary.detected_only.skipped) == (3, 1)
    assert (summary.with_fallback.correct, summary.with_fallback.counted) == (31, 35)  # + C 11/12
    assert summary.with_fallback.pck == pytest.approx(31 / 35)
    assert (summary.with_fallback.images, summary.with_fallback.skipped) == (4, 1)
    assert (summary.misses_wrong.correct, summary.misses_wrong.counted) == (20, 35)  # C's 12 all wrong
    assert summary.misses_wrong.pck == pytest.approx(20 / 35)
    assert summary.detected_only.per_joint["right_ankle"] == pytest.approx(1 / 2)
    assert summary.detected_only.per_joint["left_wrist"] == pytest.approx(1.0)  # only A's counted
    assert "neck" not in summary.detected_only.per_joint

    json_row = summary.with_fallback.as_json(0.2)
    assert json_row["pck@0.2"] == pytest.approx(31 / 35) and json_row["skipped_no_torso"] == 1

    # the side check: with left and right swapped the joints land on their mirror partners, far off
    swapped = peers.joints_pck(peers.pose_truth(test), output.points[:, lsp14.flip_permutation],
                               output.detected, peers.joint_map(lsp14), 0.2)
    assert swapped.pck < summary.detected_only.pck


def test_a_missing_mediapipe_is_one_line_naming_the_install(peers, lsp14, tmp_path):
    gt = np.zeros((14, 2))
    test = peers.TestSet("lsp", [_record(gt, np.ones(14, bool))], lsp14, None, np.arange(1))
    with pytest.raises(peers.MissingPeer, match=r"pip install mediapipe==0\.10\.21"):
        peers.run_blazepose(test, str(tmp_path / "no_python"), 1, 1)
    if importlib.util.find_spec("mediapipe") is not None:
        return  # this interpreter has it: the worker would run
    with pytest.raises(peers.MissingPeer, match=r"mediapipe cannot be imported.*pip install mediapipe==0\.10\.21"):
        peers.run_blazepose(test, sys.executable, 1, 1)


def test_the_mediapipe_peer_is_registered(peers):
    assert "mediapipe" in peers.PEERS
    args = peers.parse_args(["mediapipe", "--limit", "2", "--mediapipe-python", "/work/venv_mp/bin/python"])
    assert (args.peer, args.limit, args.model_complexity, args.ours_checkpoint) == ("mediapipe", 2, 1, None)
