"""configs/body14.yaml and datasets/body14.yaml: a new 14-point body scheme for the small-data
fine-tuning experiment. It must be LSPET's joints under new names (same order, mirror and torso as
lsp14, so scores mean what LSP's mean), share no name with lsp14 (so ``model.init_from`` an lsp14
model maps no classifier row), and train, choose and test on people configs/lsp.yaml never trains on."""
import numpy as np

from heatmapnet.config import load_config
from heatmapnet.data.build import read_split
from heatmapnet.metadata import load_scheme
from heatmapnet.transfer import names_in_source

#: lsp14's joints (joints.mat order) and the body14 name each one gets, written out by hand
RENAMED = {"right_ankle": "ankle_r", "right_knee": "knee_r", "right_hip": "hip_r", "left_hip": "hip_l",
           "left_knee": "knee_l", "left_ankle": "ankle_l", "right_wrist": "wrist_r", "right_elbow": "elbow_r",
           "right_shoulder": "shoulder_r", "left_shoulder": "shoulder_l", "left_elbow": "elbow_l",
           "left_wrist": "wrist_l", "neck": "throat", "head_top": "crown"}


def _span(subset):
    start, _, stop = subset.partition(":")
    return range(int(start or 0), int(stop) if stop else 3000)


def test_body14_is_lsp14_renamed_point_for_point():
    lsp, body = load_scheme("lsp14"), load_scheme("body14")
    assert list(body.keypoint_names) == [RENAMED[name] for name in lsp.keypoint_names]
    assert not set(body.keypoint_names) & set(lsp.keypoint_names)
    assert not set(names_in_source(lsp, body)) & set(lsp.keypoint_names)  # no classifier row maps
    # the mirror: ankle_r (0) <-> ankle_l (5), wrist_r (6) <-> wrist_l (11); throat, crown stay
    assert list(body.flip_permutation) == [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13]
    assert list(body.flip_permutation) == list(lsp.flip_permutation)
    assert tuple(body.torso) == tuple(lsp.torso) == (8, 3)
    np.testing.assert_array_equal(body.oks_sigmas, lsp.oks_sigmas)
    assert sorted(tuple(sorted(edge)) for edge in body.skeleton) == \
        sorted(tuple(sorted(edge)) for edge in lsp.skeleton)


def test_body14_splits_are_people_the_lsp_model_never_trains_on():
    lsp, body = load_config("lsp"), load_config("body14")
    source = set(_span(lsp.data.train.subset))
    train, val = set(_span(body.data.train.subset)), set(_span(body.data.val.subset))
    test = set(_span("2800:"))  # the test split of the config's header
    assert (len(train), len(val), len(test)) == (250, 50, 200)
    assert not (train | val | test) & source
    assert not train & val and not train & test and not val & test


def test_body14_reads_the_lsp_joints_of_its_people(shared_data, monkeypatch):
    """Record 2500 of body14's training split is LSPET image 2501 with joints.mat's column 2500."""
    import scipy.io

    monkeypatch.setenv("HEATMAPNET_DATA", str(shared_data))
    config = load_config("body14")
    records = read_split(config.data.train)
    assert len(records) == 250
    joints = scipy.io.loadmat(shared_data / "lsp_extended" / "joints.mat")["joints"]  # 14 x 3 x N
    first = records[0]
    assert first.image_path.endswith("im02501.jpg")
    np.testing.assert_allclose(first.instances[0].keypoints[:, :2], joints[:, :2, 2500], atol=1e-6)
