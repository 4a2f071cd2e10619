"""Confidence of keypoint scores (heatmapnet.confidence): AUROC, Spearman, ECE and the reliability
bins on tables worked by hand; the measures of top-down metrics; bottom-up AP with the person
score replaced by chance; ``heatmapnet eval``'s outputs."""
import json
import math

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from heatmapnet.build import build_model
from heatmapnet.checkpoint import save_checkpoint
from heatmapnet.cli import main
from heatmapnet.config import EvalSection, load_config
from heatmapnet.confidence import (KeepThreshold, Reliability, auroc, expected_calibration_error, hits_from_errors,
                                   keep_threshold, measure_confidence, plot_reliability, reliability, spearman)
from heatmapnet.data.records import Instance, Record
from heatmapnet.evaluation import PeoplePredictions, TopDownPredictions
from heatmapnet.scoring import people_metrics
from heatmapnet.metadata import load_scheme
from heatmapnet.modes import TopDownMode

EVAL = OmegaConf.structured(EvalSection)


# ----------------------------------------------------------------------------------------------
# the measures on hand-worked tables
# ----------------------------------------------------------------------------------------------
def test_auroc_counts_the_pairs_a_hit_outscores_a_miss():
    # hits score 0.9, 0.8, 0.6; misses 0.7, 0.4, 0.2. Pairs (hit, miss) with the hit higher:
    # 0.9: 3, 0.8: 3, 0.6: 2 (not above 0.7) -> 8 of 3 x 3 = 9
    scores = [0.9, 0.8, 0.7, 0.6, 0.4, 0.2]
    hits = [True, True, False, True, False, False]
    assert auroc(scores, hits) == pytest.approx(8 / 9, abs=1e-15)
    # a tie between a hit and a miss counts 1/2: hits 0.5, 0.9; misses 0.5, 0.1.
    # 0.5 vs 0.5: 1/2, 0.5 vs 0.1: 1, 0.9 vs both: 2 -> 3.5 / 4
    assert auroc([0.5, 0.5, 0.9, 0.1], [True, False, True, False]) == pytest.approx(0.875, abs=1e-15)
    # every miss above every hit: 0; a constant score: every pair a tie, 1/2
    assert auroc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert auroc([0.3] * 4, [True, False, True, False]) == 0.5


def test_auroc_is_undefined_without_hits_or_without_misses():
    assert math.isnan(auroc([0.9, 0.1], [True, True]))
    assert math.isnan(auroc([0.9, 0.1], [False, False]))
    assert math.isnan(auroc([], []))
    everything_hits = measure_confidence([0.9, 0.5, 0.2], [0.01, 0.02, 0.03], threshold=0.1)
    assert math.isnan(everything_hits.auroc)
    assert "auroc undefined: every keypoint is a hit" in everything_hits.notes
    # the ECE is still defined: bins 9, 5, 2 each hold one hit: gaps 0.1, 0.5, 0.8 -> mean 1.4 / 3
    assert everything_hits.ece == pytest.approx(1.4 / 3, abs=1e-12)
    metrics = everything_hits.as_metrics()
    assert metrics["confidence/auroc"] is None and metrics["confidence/notes"].startswith("auroc undefined")


def test_spearman_on_a_hand_ranked_table():
    # score ranks 4 3 2 1, error ranks 1 3 2 4: d = 3 0 0 -3, sum d^2 = 18,
    # rho = 1 - 6 * 18 / (4 * (16 - 1)) = 1 - 108 / 60 = -0.8
    assert spearman([0.9, 0.7, 0.5, 0.3], [0.01, 0.03, 0.02, 0.2]) == pytest.approx(-0.8, abs=1e-12)
    assert spearman([0.9, 0.7, 0.5, 0.3], [0.01, 0.02, 0.03, 0.04]) == pytest.approx(-1.0, abs=1e-12)
    assert math.isnan(spearman([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]))  # a constant score ranks nothing
    assert math.isnan(spearman([0.5], [0.1]))


def test_ece_and_reliability_bins_by_hand_with_scores_clipped_to_the_unit_interval():
    # scores 0.92 (hit), 0.98 (miss), 1.30 -> 1.0 (hit): bin 9 (the last holds 1.0), mean score
    # (0.92 + 0.98 + 1.0) / 3 = 0.9667, hit rate 2/3, gap 0.3, weight 3/6;
    # 0.35 (miss), 0.31 (hit): bin 3, mean 0.33, hit rate 1/2, gap 0.17, weight 2/6;
    # -0.2 -> 0.0 (miss): bin 0, mean 0, hit rate 0, gap 0, weight 1/6.
    # ECE = 0.5 * 0.3 + 0.17 / 3 = 0.206667
    scores = [0.92, 0.98, 1.30, 0.35, 0.31, -0.2]
    hits = [True, False, True, False, True, False]
    bins = reliability(scores, hits)
    np.testing.assert_array_equal(bins.count, [1, 0, 0, 2, 0, 0, 0, 0, 0, 3])
    np.testing.assert_allclose(bins.mean_score[[0, 3, 9]], [0.0, 0.33, 2.9 / 3], rtol=0, atol=1e-15)
    np.testing.assert_allclose(bins.hit_rate[[0, 3, 9]], [0.0, 0.5, 2 / 3], rtol=0, atol=1e-15)
    assert np.isnan(bins.mean_score[[1, 2, 4, 5, 6, 7, 8]]).all() and np.isnan(bins.hit_rate[1])
    assert bins.edges.tolist() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert expected_calibration_error(bins) == pytest.approx(0.15 + 0.17 / 3, abs=1e-12)
    # a bin is closed below and open above: 0.5 is bin 5, 0.1 bin 1, 0.0999 bin 0
    np.testing.assert_array_equal(reliability([0.5, 0.1, 0.0999], [True] * 3).count, [1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    # the bins reach json as plain lists (null for an empty bin) and come back
    text = json.dumps(bins.as_json(), allow_nan=False)
    back = Reliability.from_json(json.loads(text))
    np.testing.assert_array_equal(back.count, bins.count)
    np.testing.assert_array_equal(back.hit_rate, bins.hit_rate)  # NaN where empty, on both sides


def test_the_keep_threshold_decides_the_most_keypoints_right_by_hand():
    # the table above: bins 0 (1 miss), 3 (1 hit, 1 miss), 9 (2 hits, 1 miss). Keep all: 3 of 6 right; from edge
    # 0.1 (0.2, 0.3: the same) the miss of bin 0 dropped: 4; from 0.4 both misses below dropped, bin 3's hit lost:
    # 4 again; drop all: 3. The first of the tied best: 0.1, keeping 5 of 6, of which 3 hit.
    keep = keep_threshold(reliability([0.92, 0.98, 1.30, 0.35, 0.31, -0.2], [True, False, True, False, True, False]))
    assert keep == KeepThreshold(score=0.1, right=pytest.approx(4 / 6), kept=pytest.approx(5 / 6),
                                 kept_hit_rate=pytest.approx(3 / 5))
    # hits at 0.95, 0.85 and 0.42, misses at 0.55, 0.45 and 0.05: from 0.6 the three misses are dropped and the two
    # hits above kept, 5 of 6 right (0.1: 4; 0.5: 4; 0.9: 4; drop all: 3)
    keep = keep_threshold(reliability([0.95, 0.85, 0.55, 0.45, 0.42, 0.05], [True, True, False, False, True, False]))
    assert (keep.score, keep.right, keep.kept, keep.kept_hit_rate) == (0.6, pytest.approx(5 / 6), pytest.approx(2 / 6),
                                                                      1.0)
    # only misses: dropping every keypoint is right for all of them; no keypoints: no threshold
    assert keep_threshold(reliability([0.9, 0.95], [False, False])) == KeepThreshold(None, 1.0, 0.0, None)
    # misses scored 0.3 and 0.35 and a hit at 0.05: every edge from 0.4 up keeps nothing, as dropping all does
    # (2 of 3 right; keeping all: 1; from 0.1 to 0.3, the hit dropped and both misses kept: 0)
    assert keep_threshold(reliability([0.3, 0.35, 0.05], [False, False, True])) == KeepThreshold(
        None, pytest.approx(2 / 3), 0.0, None)
    assert keep_threshold(reliability([], [])) is None


def test_hits_are_errors_within_the_threshold_boundary_included():
    np.testing.assert_array_equal(hits_from_errors([0.05, 0.1, 0.1000001, 0.3], 0.1), [True, True, False, False])
    with pytest.raises(ValueError, match="finite"):
        hits_from_errors([0.1, np.nan], 0.1)


def test_non_finite_scores_are_left_out_and_counted():
    # scores 0.9 (error 0.01: hit), NaN, inf (left out), 0.2 (error 0.5: miss): AUROC 1 on the two left
    result = measure_confidence([0.9, np.nan, np.inf, 0.2], [0.01, 0.5, 0.01, 0.5], threshold=0.1)
    assert (result.num_keypoints, result.num_nonfinite_scores, result.num_hits) == (2, 2, 1)
    assert result.auroc == 1.0 and result.spearman == pytest.approx(-1.0)
    # bins 9 (0.9, hit: gap 0.1) and 2 (0.2, miss: gap 0.2): ECE 0.15
    assert result.ece == pytest.approx(0.15, abs=1e-12)
    assert "2 keypoint(s) with a non-finite score left out" in result.notes


def test_no_keypoints_leave_every_measure_undefined():
    result = measure_confidence([], [], threshold=0.1)
    assert result.num_keypoints == 0
    assert math.isnan(result.auroc) and math.isnan(result.spearman) and math.isnan(result.ece)
    metrics = result.as_metrics()
    assert [metrics[f"confidence/{k}"] for k in ("auroc", "spearman", "ece", "hit_rate")] == [None] * 4
    assert "ece undefined: no keypoints" in metrics["confidence/notes"]
    json.dumps(metrics, allow_nan=False)  # strict json: no NaN


def test_the_reliability_diagram_is_a_png_of_the_figure_size(tmp_path):
    bins = reliability([0.92, 0.98, 0.35, 0.31], [True, False, False, True])
    path = plot_reliability(bins, tmp_path / "r.png")
    image = cv2.imread(str(path))
    assert image.shape == (616, 528, 3)  # 4.8 x 5.6 inches at 110 dpi


# ----------------------------------------------------------------------------------------------
# top-down metrics carry the measures
# ----------------------------------------------------------------------------------------------
def test_face_metrics_measure_scores_against_per_keypoint_nme():
    # four 5-point faces, inter-ocular 20 px; every point of face i moved by 0, 1, 3, 5 px: errors
    # 0, 0.05, 0.15, 0.25 of the normaliser, hits (<= eval.failure_threshold 0.1) for faces 0, 1.
    # Scores per face 0.9, 0.5, 0.6, 0.1 (all five points):
    #   AUROC: hit 0.9 beats all 10 misses (5 x 10 = 50 pairs), 0.5 beats the 0.1s (5 x 5 = 25) -> 75 / 100
    #   Spearman: average ranks of scores 18, 8, 13, 3 and of errors 3, 8, 13, 18 (five ties each):
    #     centred 7.5 -2.5 2.5 -7.5 and -7.5 -2.5 2.5 7.5 -> -100 / 125 = -0.8
    #   ECE: bins 9, 5, 6, 1 with hit rates 1, 1, 0, 0: gaps 0.1, 0.5, 0.6, 0.1 -> 1.3 / 4
    rng = np.random.default_rng(0)
    shapes = rng.integers(20, 60, size=(4, 5, 2)).astype(np.float64)  # whole pixels: equal errors tie exactly
    shapes[:, 0], shapes[:, 1] = [30.0, 30.0], [50.0, 30.0]
    records = [Record(f"{i}.jpg", 80, 80, [Instance(s, np.ones(5, bool), [20, 20, 40, 40])])
               for i, s in enumerate(shapes)]
    moved = shapes + np.array([0.0, 1.0, 3.0, 5.0])[:, None, None] * np.array([0.0, 1.0])
    scores = np.repeat(np.array([0.9, 0.5, 0.6, 0.1])[:, None], 5, axis=1)
    result = TopDownMode().evaluate(records, TopDownPredictions(np.arange(4), np.zeros(4, int), moved, scores),
                                    load_scheme("mtfl5"), EVAL)
    assert result["confidence/auroc"] == pytest.approx(0.75, abs=1e-12)
    assert result["confidence/spearman"] == pytest.approx(-0.8, abs=1e-12)
    assert result["confidence/ece"] == pytest.approx(0.325, abs=1e-12)
    assert result["confidence/hit_rate"] == 0.5 and result["confidence/num_keypoints"] == 20
    assert result["confidence/threshold"] == 0.1
    assert result["confidence/reliability"]["count"] == [0, 5, 0, 0, 0, 5, 5, 0, 0, 5]


def test_pose_metrics_measure_visible_joints_of_instances_with_a_torso():
    # lsp14, torso = right shoulder (8) to left hip (3). Instance 0: joint 0 unlabelled, the rest
    # exact; instance 1: joints 0-6 off by 0.3 torso (misses at PCK@0.2), 7-13 exact; instance 2:
    # its right shoulder unlabelled, so no torso: left out. Measured: 13 + 14 = 27 joints.
    # Scores 0.8 on hits, 0.3 on misses: AUROC 1; bins 8 (20 hits, gap 0.2) and 3 (7 misses, gap
    # 0.3): ECE = (20 * 0.2 + 7 * 0.3) / 27 = 6.1 / 27
    scheme = load_scheme("lsp14")
    rng = np.random.default_rng(1)
    joints = rng.uniform(20, 120, size=(3, 14, 2))
    visible = np.ones((3, 14), bool)
    visible[0, 0] = visible[2, 8] = False
    records = [Record(f"{i}.jpg", 150, 150, [Instance(joints[i], visible[i], [15, 15, 110, 110])]) for i in range(3)]
    torso = np.linalg.norm(joints[1, 8] - joints[1, 3])
    predicted = joints.copy()
    predicted[1, :7] += [0.3 * torso, 0.0]
    predicted[0, 0] += 500.0  # unlabelled: its error counts nowhere
    scores = np.full((3, 14), 0.8)
    scores[1, :7] = 0.3
    result = TopDownMode().evaluate(records, TopDownPredictions(np.arange(3), np.zeros(3, int), predicted, scores),
                                    scheme, EVAL)
    assert result["confidence/num_keypoints"] == 27 and result["confidence/threshold"] == 0.2
    assert result["confidence/auroc"] == 1.0
    assert result["confidence/ece"] == pytest.approx(6.1 / 27, abs=1e-12)
    assert result["confidence/hit_rate"] == pytest.approx(20 / 27, abs=1e-15)
    # the torso-normalised joint error over the same instances: 0 and 7 * 0.3 / 14 = 0.15
    assert result["nme_torso"] == pytest.approx(0.075, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# bottom-up: the person score's ranking against chance
# ----------------------------------------------------------------------------------------------
def _one_person_image():
    rng = np.random.default_rng(3)
    joints = np.array([100.0, 50.0]) + rng.uniform(0.1, 0.9, size=(17, 2)) * [120.0, 240.0]
    return [Record("p.jpg", 400, 400, [Instance(joints, np.ones(17, bool), [100, 50, 120, 240])], image_id=5)]


def test_bottom_up_ap_without_the_person_score_ranks_people_by_seeded_chance():
    records = _one_person_image()
    truth = records[0].instances[0].keypoints
    coco17 = load_scheme("coco17")

    def people(first, second, scores):
        return PeoplePredictions(np.zeros(2, np.int64), np.stack([first, second]), np.ones((2, 17)), np.array(scores))

    # the exact person scores 0.2, a person 300 px away 0.9: ranked by score the miss comes first,
    # precision 1/2 at recall 1: AP 0.5. By chance the two get rng(0)'s draws 0.637, 0.270 in
    # result order: the exact person (first) ranks first: AP 1.
    result = people_metrics(records, people(truth, truth + 300.0, [0.2, 0.9]), [0], coco17)
    assert result["oks_ap"] == pytest.approx(0.5, abs=1e-12)
    assert result["confidence/oks_ap_unranked"] == pytest.approx(1.0, abs=1e-12)
    # listed the other way round, the miss draws 0.637 and ranks first: AP 0.5 either way
    result = people_metrics(records, people(truth + 300.0, truth, [0.9, 0.2]), [0], coco17)
    assert result["oks_ap"] == pytest.approx(0.5, abs=1e-12)
    assert result["confidence/oks_ap_unranked"] == pytest.approx(0.5, abs=1e-12)
    # chance ignores the scores: reversing them leaves it, while the ranked AP becomes 1
    result = people_metrics(records, people(truth + 300.0, truth, [0.2, 0.9]), [0], coco17)
    assert result["oks_ap"] == pytest.approx(1.0, abs=1e-12)
    assert result["confidence/oks_ap_unranked"] == pytest.approx(0.5, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# heatmapnet eval
# ----------------------------------------------------------------------------------------------
TINY = ["model.backbone=mobilenetv3_small_050", "model.head_channels=16", "data.input_size=[64,64]",
        "data.num_workers=0", "train.threads=1", "eval.batch_size=4", "data.train.num_samples=4",
        "data.val.num_samples=3"]


def test_eval_writes_the_measures_and_the_reliability_diagram(tmp_path, capsys):
    config = load_config("synthetic_faces", TINY)
    scheme = load_scheme(config.data.scheme)
    checkpoint = tmp_path / "w.pt"
    save_checkpoint(checkpoint, config=OmegaConf.to_container(config), scheme=scheme,
                    model=build_model(config, scheme).state_dict(), step=0)
    assert main(["eval", "synthetic_faces", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "e"),
                 "--set", *TINY]) == 0
    assert f"metrics.json, predictions.json and reliability.png written to {tmp_path / 'e'}" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())["metrics"]
    # 3 generated faces of 68 points, every one labelled
    assert metrics["confidence/num_keypoints"] == 3 * 68
    assert sum(metrics["confidence/reliability"]["count"]) == 3 * 68
    assert metrics["confidence/threshold"] == config.eval.failure_threshold
    assert cv2.imread(str(tmp_path / "e" / "reliability.png")).shape == (616, 528, 3)
