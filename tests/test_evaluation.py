"""Evaluation: metrics from predictions against hand-computed values, flip test, affine inverses."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from heatmapnet.config import EvalSection
from heatmapnet.data.records import Instance, Record
from heatmapnet.data.transforms import AffineParams, crop_matrix, invert_matrix
from heatmapnet.cocoeval import peak_results
from heatmapnet.evaluation import (PeakPredictions, TopDownPredictions, apply_affine_batch, heatmap_probabilities,
                                   invert_affine_batch, primary_metric)
from heatmapnet.metadata import load_scheme
from heatmapnet.modes import MultiInstanceMode, TopDownMode
from heatmapnet.scoring import keypoint_detection_ap

EVAL = OmegaConf.structured(EvalSection)


def _person(nose_xy, box):
    """A 5-point instance whose only labelled point (type 0) is at ``nose_xy``."""
    points = np.zeros((5, 2))
    points[0] = nose_xy
    return Instance(points, [True, False, False, False, False], box)


def test_detection_ap_matches_a_hand_worked_precision_recall_curve():
    # One keypoint type, two people (boxes 100 x 100 -> match radius 0.1 * 100 = 10 px).
    # Ranked detections: hit (P 1, R .5), miss (P .5, R .5), hit (P 2/3, R 1).
    # Interpolated precision [1, 2/3, 2/3]; AP = 0.5 * 1 + 0 * 2/3 + 0.5 * 2/3 = 0.8333
    people = [_person([50.0, 50.0], [0, 0, 100, 100]), _person([150.0, 50.0], [100, 0, 100, 100])]
    records = [Record("a.jpg", 300, 100, people)]
    scheme = load_scheme("mtfl5")
    predictions = PeakPredictions(np.zeros(3, int), np.zeros(3, int),
                                  np.array([[52.0, 51.0], [250.0, 50.0], [143.0, 50.0]]), np.array([0.9, 0.8, 0.7]))
    result = keypoint_detection_ap(records, predictions, scheme, distance=0.1)
    assert result["keypoint_ap"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert result["keypoint_ap_per_type"] == [pytest.approx(0.5 + 0.5 * 2 / 3)]
    # The multi-instance mode scores with this AP at eval.detection_distance (default 0.1: as above).
    mode = MultiInstanceMode()
    assert mode.evaluate(records, predictions, scheme, EVAL)["keypoint_ap"] == pytest.approx(5 / 6)
    # 0.075 -> radius 7.5 px: the third detection (7 px off) still hits
    wider = OmegaConf.merge(EVAL, {"detection_distance": 0.075})
    assert mode.evaluate(records, predictions, scheme, wider)["keypoint_ap"] == pytest.approx(5 / 6)
    # 0.025 -> radius 2.5 px: the first (sqrt(5) = 2.24 px off) hits, the third misses: AP = 0.5 * 1
    narrow = OmegaConf.merge(EVAL, {"detection_distance": 0.025})
    assert mode.evaluate(records, predictions, scheme, narrow)["keypoint_ap"] == pytest.approx(0.5)


def test_a_detection_cannot_match_a_person_twice_or_beyond_the_radius():
    people = [_person([50.0, 50.0], [0, 0, 100, 100])]
    records = [Record("a.jpg", 100, 100, people)]
    predictions = PeakPredictions(np.zeros(2, int), np.zeros(2, int), np.array([[50.0, 50.0], [51.0, 50.0]]),
                                  np.array([0.9, 0.8]))
    # the second detection is a duplicate: precision [1, 0.5], recall [1, 1] -> AP 1
    assert keypoint_detection_ap(records, predictions, load_scheme("mtfl5"))["keypoint_ap"] == pytest.approx(1.0)
    far = PeakPredictions(np.zeros(1, int), np.zeros(1, int), np.array([[61.0, 50.0]]), np.array([0.9]))
    assert keypoint_detection_ap(records, far, load_scheme("mtfl5"))["keypoint_ap"] == 0.0


def test_detection_ap_matches_within_each_image_only_by_hand():
    # Three images. Image 0: A (box 100 x 100, radius 10) with type 0 at (50, 50) and type 1 at
    # (30, 30); B (box 100 x 100 at x 100) with type 0 at (150, 50), type 1 unlabelled. Image 1: C
    # (box 200 x 200, radius 20) with type 0 at (50, 50) -- A's coordinates -- and type 1 at
    # (100, 100). Image 2: nobody.
    def person(points, labelled, box):
        keypoints = np.zeros((5, 2))
        keypoints[:2] = points
        return Instance(keypoints, labelled + [False] * 3, box)

    records = [Record("a.jpg", 200, 100, [person([[50, 50], [30, 30]], [True, True], [0, 0, 100, 100]),
                                           person([[150, 50], [0, 0]], [True, False], [100, 0, 100, 100])]),
               Record("b.jpg", 200, 200, [person([[50, 50], [100, 100]], [True, True], [0, 0, 200, 200])]),
               Record("c.jpg", 100, 100, [])]
    # type 0, by score: (image 1, 0.95) 2 px from C: hit; (0, 0.9) 1 px from A: hit; (0, 0.9, after
    # it) 2 px from A, taken, and 10 px radii from B: miss; (2, 0.85): no one there, miss; (0, 0.82)
    # 8 px from B: hit; (1, 0.8) 5 px from C, taken: miss -- though half a radius from A in image 0.
    # TP 1 2 2 2 3 3: precision 1 1 2/3 1/2 3/5 1/2, recall 1/3 2/3 2/3 2/3 1 1; interpolated
    # 1 1 2/3 3/5 3/5 1/2: AP = 1/3 + 1/3 + 1/3 * 3/5 = 13/15.
    # type 1: (0, 0.6) 1 px from A: hit; (1, 0.5) 30 px = 1.5 radii from C: miss; (1, 0.4) 10 px =
    # 0.5 radii: hit. Precision 1 1/2 2/3, recall 1/2 1/2 1: AP = 1/2 + 1/2 * 2/3 = 5/6.
    rows = [(1, 0, [52, 50], 0.95), (0, 0, [51, 50], 0.9), (0, 0, [50, 52], 0.9), (2, 0, [50, 50], 0.85),
            (0, 0, [158, 50], 0.82), (1, 0, [55, 50], 0.8),
            (0, 1, [31, 30], 0.6), (1, 1, [100, 130], 0.5), (1, 1, [100, 110], 0.4)]
    order = [5, 7, 0, 3, 8, 1, 6, 2, 4]  # shuffled, the tied pair keeping its order
    rows = [rows[i] for i in order]
    predictions = PeakPredictions(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                                  np.array([r[2] for r in rows], float), np.array([r[3] for r in rows]))
    result = keypoint_detection_ap(records, predictions, load_scheme("mtfl5"), distance=0.1)
    assert result["keypoint_ap_per_type"] == [pytest.approx(13 / 15), pytest.approx(5 / 6)]
    assert result["keypoint_ap"] == pytest.approx((13 / 15 + 5 / 6) / 2)


def _face_records(n=4):
    rng = np.random.default_rng(0)
    shapes = rng.uniform(20, 60, size=(n, 5, 2))
    shapes[:, 0] = [30.0, 30.0]  # left eye
    shapes[:, 1] = [50.0, 30.0]  # right eye: inter-ocular distance 20
    return [Record(f"{i}.jpg", 80, 80, [Instance(s, np.ones(5, bool), [20, 20, 40, 40])]) for i, s in enumerate(shapes)]


def test_face_metrics_normalise_by_the_schemes_interocular_points():
    records = _face_records()
    gt = np.stack([r.instances[0].keypoints for r in records])
    shifted = gt + np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 3.0], [0.0, 5.0]])[:, None, :]  # errors 0,1,3,5 px
    predictions = TopDownPredictions(np.arange(4), np.zeros(4, int), shifted, np.ones((4, 5)))
    result = TopDownMode().evaluate(records, predictions, load_scheme("mtfl5"), EVAL)
    # NME = error / 20: 0, 0.05, 0.15, 0.25 -> mean 0.1125; failures (> 0.1): 2 of 4;
    # AUC@0.1 = mean(max(0, 1 - e / 0.1)) = (1 + 0.5 + 0 + 0) / 4 = 0.375
    assert result["nme"] == pytest.approx(0.1125)
    assert result["failure_rate@0.1"] == pytest.approx(0.5)
    assert result["auc@0.1"] == pytest.approx(0.375)
    assert primary_metric(result) == ("nme", pytest.approx(0.1125), False)
    # every shift is downwards: mean signed offset (0, (0 + 1 + 3 + 5) / 4 / 20) = (0, 0.1125)
    assert (result["offset_x"], result["offset_y"]) == (pytest.approx(0.0), pytest.approx(0.1125))
    # the same errors pointing left and right cancel: NME is unchanged, the offset is 0
    mixed = gt + np.array([[0.0, 0.0], [-1.0, 0.0], [3.0, 0.0], [-2.0, 0.0]])[:, None, :]
    level = TopDownMode().evaluate(records, TopDownPredictions(np.arange(4), np.zeros(4, int), mixed, np.ones((4, 5))),
                                   load_scheme("mtfl5"), EVAL)
    assert level["nme"] == pytest.approx(6.0 / 4 / 20)
    assert (level["offset_x"], level["offset_y"]) == (pytest.approx(0.0), pytest.approx(0.0))


def test_pose_metrics_give_full_pck_and_oks_ap_for_perfect_predictions():
    scheme = load_scheme("lsp14")
    rng = np.random.default_rng(1)
    records = []
    for i in range(3):
        joints = rng.uniform(20, 120, size=(14, 2))
        records.append(Record(f"{i}.jpg", 150, 150, [Instance(joints, np.ones(14, bool), [15, 15, 110, 110])]))
    gt = np.stack([r.instances[0].keypoints for r in records])
    predictions = TopDownPredictions(np.arange(3), np.zeros(3, int), gt.copy(), np.ones((3, 14)))
    result = TopDownMode().evaluate(records, predictions, scheme, EVAL)
    assert result["pck@0.2"] == 1.0 and result["pck_normaliser"] == "torso"
    assert result["oks_ap"] == pytest.approx(1.0)
    off = TopDownPredictions(np.arange(3), np.zeros(3, int), gt + 200.0, np.ones((3, 14)))
    worse = TopDownMode().evaluate(records, off, scheme, EVAL)
    assert worse["pck@0.2"] == 0.0 and worse["oks_ap"] == pytest.approx(0.0)
    # offsets in units of each person's torso (right shoulder 8 to left hip 3): 200 px right and down
    torso = np.linalg.norm(gt[:, 8] - gt[:, 3], axis=1)
    assert worse["offset_x"] == pytest.approx(np.mean(200.0 / torso)) and worse["offset_y"] == worse["offset_x"]
    assert (result["offset_x"], result["offset_y"]) == (0.0, 0.0)


def test_batched_affine_inverse_matches_opencv():
    matrices = np.stack([crop_matrix([50.0, 60.0], [80.0, 100.0], (64, 64), AffineParams(1.1, 20.0, (0.1, 0.0), True)),
                         crop_matrix([10.0, 20.0], [30.0, 30.0], (64, 64))])
    inverse = invert_affine_batch(torch.tensor(matrices)).numpy()
    np.testing.assert_allclose(inverse, np.stack([invert_matrix(m) for m in matrices]), atol=1e-10)
    points = torch.tensor([[[1.0, 2.0], [30.0, 40.0]], [[5.0, 5.0], [0.0, 0.0]]], dtype=torch.float64)
    back = apply_affine_batch(apply_affine_batch(points, torch.tensor(matrices)), torch.tensor(inverse))
    torch.testing.assert_close(back, points)


class _ColumnWeighted:
    """A fixed "model" that is not mirror-equivariant: heatmap c at column j is input channel c
    times (j + 1), so its maps depend on absolute x. Its raw output is not to be used."""

    def __init__(self, channels):
        self.channels = channels

    def heatmaps(self, images):
        return images[:, :self.channels] * torch.arange(1.0, images.shape[3] + 1, dtype=images.dtype)

    def __call__(self, images):
        raise AssertionError("heatmap_probabilities must read model.heatmaps, not the raw output")


def test_flip_test_mirrors_the_prediction_back_and_swaps_left_and_right_channels():
    # One row, three columns, two channels; weights (1, 2, 3) by column.
    images = torch.tensor([[[[1.0, 0.0, 2.0]], [[4.0, 5.0, 0.0]]]])
    model = _ColumnWeighted(2)
    # plain:            channel 0: [1, 0, 6]          channel 1: [4, 10, 0]
    # mirrored input:   [2, 0, 1] and [0, 5, 4]  -> maps [2, 0, 3] and [0, 10, 12]
    # mirrored back:    [3, 0, 2] and [12, 10, 0]; swapped: channel 0 <- [12, 10, 0], channel 1 <- [3, 0, 2]
    # averaged:         channel 0: [6.5, 5, 3]        channel 1: [3.5, 5, 1]
    torch.testing.assert_close(heatmap_probabilities(model, images),
                               torch.tensor([[[[1.0, 0.0, 6.0]], [[4.0, 10.0, 0.0]]]]), rtol=0, atol=0)
    torch.testing.assert_close(heatmap_probabilities(model, images, flip_permutation=[1, 0]),
                               torch.tensor([[[[6.5, 5.0, 3.0]], [[3.5, 5.0, 1.0]]]]), rtol=0, atol=1e-6)


def test_flip_test_with_the_mtfl5_permutation_on_several_rows():
    scheme = load_scheme("mtfl5")
    # eyes and mouth corners are left/right pairs, the nose maps to itself
    assert list(scheme.flip_permutation) == [1, 0, 2, 4, 3]
    images = torch.randn(2, 5, 3, 7, generator=torch.Generator().manual_seed(0))
    averaged = heatmap_probabilities(_ColumnWeighted(5), images, scheme.flip_permutation)
    # the mirrored image's map at column j was computed at column W-1-j, weight W-j; rows stay
    ramp = torch.arange(1.0, 8.0)
    for c, partner in enumerate([1, 0, 2, 4, 3]):
        expected = (images[:, c] * ramp + images[:, partner] * (8.0 - ramp)) / 2
        torch.testing.assert_close(averaged[:, c], expected)


class _CountingRecords(list):
    """Records that count their reads, as generated records (which draw on access) would cost."""

    reads = 0

    def __getitem__(self, index):
        self.reads += 1
        return super().__getitem__(index)


def test_peak_results_name_each_peaks_image_and_read_each_record_once():
    records = _CountingRecords([Record("a.jpg", 10, 10, [], image_id=7), Record("b.jpg", 10, 10, [])])
    predictions = PeakPredictions(np.array([0, 0, 1, 1, 0]), np.array([2, 3, 0, 1, 4]),
                                  np.array([[1.23456, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 9.0]]),
                                  np.array([0.9, 0.5, 0.7, 0.01, 0.3]))
    results = peak_results(records, predictions, min_score=0.05)
    assert [(r["image_id"], r["image_path"], r["keypoint_type"], r["x"], r["score"]) for r in results] == [
        (7, "a.jpg", 2, 1.235, 0.9), (7, "a.jpg", 3, 3.0, 0.5), (1, "b.jpg", 0, 5.0, 0.7), (7, "a.jpg", 4, 9.0, 0.3)]
    assert records.reads == 2


@pytest.mark.parametrize("config_name, overrides, samples_per_image", [
    ("synthetic_faces", [], "one"),  # top-down, one face per image: one crop each
    ("synthetic_people", [], "one"),  # multi-instance: whole images
    ("people_bottomup", [], "one"),  # bottom-up: whole images
    ("synthetic_people", ["data.mode=topdown"], "per person"),  # top-down crops: one per person
])
def test_evaluation_draws_each_val_sample_once_and_scoring_draws_none(config_name, overrides, samples_per_image,
                                                                      tiny_run, tmp_path, monkeypatch):
    from collections import Counter

    from heatmapnet.config import load_config
    from heatmapnet.engine import Trainer

    trainer = Trainer(load_config(config_name, tiny_run(**{"data.val.num_samples": 6}) + overrides), tmp_path)
    generated = type(trainer.data.val_records)
    drawn = Counter()
    original = generated.render

    def counting(self, index):
        drawn[index] += 1
        return original(self, index)

    monkeypatch.setattr(generated, "render", counting)
    predictions = trainer.evaluator.predict(trainer.model)
    people = trainer.data.val_records.instance_counts()
    expected = {i: 1 if samples_per_image == "one" else int(people[i]) for i in range(6)}
    assert dict(drawn) == expected
    drawn.clear()
    assert trainer.evaluator.score(predictions)  # the annotations alone: nothing drawn
    assert not drawn
