"""Label noise of training labels (heatmapnet.data.label_noise, ``data.label_noise``): a function of
(seed, index), jitter of the stated size in units of the scheme's normaliser, the stated swap rate,
validation labels untouched, bad settings one line naming the key."""
import dataclasses

import numpy as np
import pytest

from heatmapnet.build import build_codec, build_dataset, build_scheme, read_records
from heatmapnet.config import load_config
from heatmapnet.data.label_noise import LabelNoise
from heatmapnet.data.records import Instance
from heatmapnet.data.transforms import invert_matrix, transform_points
from heatmapnet.errors import ConfigError
from heatmapnet.metadata import load_scheme

MTFL5 = load_scheme("mtfl5")  # eyes 0 and 1 (the inter-ocular pair), nose 2, mouth corners 3 and 4
LSP14 = load_scheme("lsp14")  # torso: right shoulder 8 to left hip 3


def _face(interocular: float, x: float = 10.0) -> Instance:
    points = np.array([[x, 20.0], [x + interocular, 20.0], [x + interocular / 2, 30.0],
                       [x + 0.2 * interocular, 40.0], [x + 0.8 * interocular, 40.0]])
    return Instance(points, np.ones(5, bool), [x - 5, 10, interocular + 10, 40])


def test_the_noise_is_a_function_of_the_seed_and_the_index():
    noise = LabelNoise(0.05, 0.5, MTFL5, seed=3)
    face = [_face(20.0)]
    first = noise.apply(face, 7)[0]
    again = LabelNoise(0.05, 0.5, MTFL5, seed=3).apply(face, 7)[0]  # a fresh object: what a resumed run builds
    np.testing.assert_array_equal(first.keypoints, again.keypoints)
    np.testing.assert_array_equal(first.visible, again.visible)
    assert not np.array_equal(noise.apply(face, 8)[0].keypoints, first.keypoints)
    assert not np.array_equal(LabelNoise(0.05, 0.5, MTFL5, seed=4).apply(face, 7)[0].keypoints, first.keypoints)
    np.testing.assert_array_equal(first.bbox, face[0].bbox)  # the box the crop starts from stays
    np.testing.assert_array_equal(face[0].keypoints, _face(20.0).keypoints)  # the record is not changed


def test_the_jitter_std_is_sigma_times_the_inter_ocular_distance():
    # x and y of each point get independent N(0, (sigma d)^2). Over n = 5000 faces x 5 points x 2
    # coordinates = 50000 draws the sample std of (moved - clean) / (sigma d) has standard error
    # 1 / sqrt(2 n) = 0.0032 and the mean 1 / sqrt(n) = 0.0045: 4 standard errors are allowed.
    sigma, items = 0.02, 5000
    for interocular in (20.0, 80.0):
        noise = LabelNoise(sigma, 0.0, MTFL5, seed=0)
        face = _face(interocular)
        moved = np.stack([noise.apply([face], index)[0].keypoints for index in range(items)])
        unit = (moved - face.keypoints) / (sigma * interocular)
        n = unit.size
        assert abs(unit.std() - 1.0) < 4 / np.sqrt(2 * n)
        assert abs(unit.mean()) < 4 / np.sqrt(n)
        assert abs(np.corrcoef(unit[..., 0].ravel(), unit[..., 1].ravel())[0, 1]) < 4 / np.sqrt(n / 2)


def test_every_sigma_scales_the_same_draws():
    face = [_face(30.0)]
    small = LabelNoise(0.01, 0.0, MTFL5).apply(face, 5)[0].keypoints - face[0].keypoints
    large = LabelNoise(0.04, 0.0, MTFL5).apply(face, 5)[0].keypoints - face[0].keypoints
    np.testing.assert_allclose(large, 4.0 * small, rtol=1e-12, atol=1e-12)


def test_bodies_jitter_in_torso_units_and_only_labelled_joints():
    rng = np.random.default_rng(0)
    joints = rng.uniform(20, 120, size=(14, 2))
    visible = np.ones(14, bool)
    visible[5] = False
    body = Instance(joints, visible, [10, 10, 120, 120])
    torso = np.linalg.norm(joints[8] - joints[3])
    noise = LabelNoise(0.05, 0.0, LSP14)
    moved = np.stack([noise.apply([body], index)[0].keypoints for index in range(2000)])
    np.testing.assert_array_equal(moved[:, 5], np.broadcast_to(joints[5], (2000, 2)))  # unlabelled: unchanged
    offsets = np.delete(moved - joints, 5, axis=1) / (0.05 * torso)
    # 2000 x 13 x 2 = 52000 draws: std within 4 / sqrt(2 n) = 0.0124 of 1
    assert abs(offsets.std() - 1.0) < 4 / np.sqrt(2 * offsets.size)
    # no torso (its right shoulder unlabelled), as PCK skips it: left where it is
    visible[8] = False
    headless = Instance(joints, visible, [10, 10, 120, 120])
    np.testing.assert_array_equal(noise.apply([headless], 0)[0].keypoints, joints)


def test_the_swap_rate_matches_and_a_swap_exchanges_the_left_and_right_labels():
    # 20000 faces at swap 0.05: the count is Binomial(20000, 0.05), mean 1000, sd 30.8; 4 sd allowed
    face = _face(20.0)
    noise = LabelNoise(0.0, 0.05, MTFL5, seed=1)
    swapped = 0
    for index in range(20000):
        found = noise.apply([face], index)[0].keypoints
        if np.array_equal(found, face.keypoints):
            continue
        # the left eye's label on the right eye's point and so on; the nose stays
        np.testing.assert_array_equal(found, face.keypoints[[1, 0, 2, 4, 3]])
        swapped += 1
    assert abs(swapped - 1000) < 4 * np.sqrt(20000 * 0.05 * 0.95)


def test_multi_instance_items_draw_for_each_of_their_instances():
    faces = [_face(20.0), _face(40.0, x=60.0)]
    noisy = LabelNoise(0.05, 0.0, MTFL5).apply(faces, 2)
    assert len(noisy) == 2
    for clean, found in zip(faces, noisy):
        assert not np.array_equal(found.keypoints, clean.keypoints)
    assert not np.allclose((noisy[0].keypoints - faces[0].keypoints) / 20.0,
                           (noisy[1].keypoints - faces[1].keypoints) / 40.0)
    assert LabelNoise(0.05, 0.0, MTFL5).apply([], 0) == []


TINY = ["model.backbone=mobilenetv3_small_050", "data.input_size=[64,64]", "data.num_workers=0",
        "data.train.num_samples=6", "data.val.num_samples=3", "data.augmentation.flip_probability=0"]


def _labels_in_original_pixels(sample) -> np.ndarray:
    return transform_points(sample["keypoints"].numpy().astype(np.float64), invert_matrix(sample["matrix"].numpy()))


def test_training_sets_get_the_noise_every_epoch_alike_and_validation_stays_clean():
    config = load_config("synthetic_faces", TINY + ["data.label_noise.sigma=0.04"])
    scheme = build_scheme(config)
    codec = build_codec(config, scheme)
    train = read_records(config, "train")
    noisy = build_dataset(config, train, codec, scheme, train=True)
    assert noisy.label_noise == LabelNoise(0.04, 0.0, scheme, config.train.seed)
    clean = [instance.keypoints for record in [train[i] for i in range(len(train))] for instance in record.instances]
    expected = LabelNoise(0.04, 0.0, scheme, config.train.seed)
    for index in (0, 3):
        want = expected.apply([train[index].instances[0]], index)[0].keypoints
        # float32 input pixels mapped back: within 1e-3 px of the noisy labels, in epochs 0 and 5
        # (different crops, scales and rotations), far from the clean ones (sigma 0.04 of ~40 px)
        for epoch in (0, 5):
            found = _labels_in_original_pixels(noisy[(index, epoch)])
            np.testing.assert_allclose(found, want, rtol=0, atol=1e-3)
        assert np.abs(want - clean[index]).max() > 0.1
    val_records = read_records(config, "val")
    val = build_dataset(config, val_records, codec, scheme, train=False)
    assert val.label_noise is None
    np.testing.assert_allclose(_labels_in_original_pixels(val[1]), val_records[1].instances[0].keypoints,
                               rtol=0, atol=1e-3)
    # the default: no noise object at all
    plain = load_config("synthetic_faces", TINY)
    assert build_dataset(plain, train, codec, scheme, train=True).label_noise is None


@pytest.mark.parametrize("setting, message", [
    ("data.label_noise.sigma=-0.01", "data.label_noise.sigma=-0.01: a fraction of the normaliser, must be >= 0"),
    ("data.label_noise.swap=1.5", "data.label_noise.swap=1.5: a probability, must be in [0, 1]"),
    ("data.label_noise.swap=-0.1", "data.label_noise.swap=-0.1: a probability, must be in [0, 1]"),
])
def test_bad_settings_are_one_line_naming_the_key(setting, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        load_config("synthetic_faces", [setting])
    assert "\n" not in str(error.value)


def test_swapping_needs_flip_pairs():
    unpaired = dataclasses.replace(MTFL5, flip_pairs=())
    with pytest.raises(ConfigError, match="data.label_noise.swap=0.1: scheme mtfl5 has no left/right flip pairs"):
        LabelNoise(0.0, 0.1, unpaired)
    LabelNoise(0.02, 0.0, unpaired)  # jitter alone needs none


def test_a_union_run_is_refused_by_name():
    # trunk: data.scheme=union (several sources, each its own scheme and normaliser)
    with pytest.raises(ConfigError, match="data.label_noise: applies to runs of one scheme, not data.scheme=union"):
        load_config("trunk", ["data.label_noise.sigma=0.01"])
