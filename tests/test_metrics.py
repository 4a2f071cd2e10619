"""Tests for heatmapnet.metrics. Every expected number is worked out by hand in the comments."""
import math

import numpy as np
import pytest
import torch

from heatmapnet.metrics import (
    PCKResult,
    auc,
    bbox_size,
    ced_curve,
    failure_rate,
    head_size,
    joint_error,
    mean_offset,
    nme,
    nme_bbox,
    pair_distance,
    pck,
    torso_size,
)

# Three keypoints; points 0 and 1 play the eye corners, so the eye distance is 10.
GT3 = np.array([[[0.0, 0.0], [10.0, 0.0], [5.0, 5.0]]])
# Errors: (3, 4) -> 5, (0, 0) -> 0, (0, 1) -> 1.
PRED3 = np.array([[[3.0, 4.0], [10.0, 0.0], [5.0, 6.0]]])


# ------------------------------------------------------------------------------------- NME


def test_nme_three_point_example_matches_hand_value():
    # mean error (5 + 0 + 1) / 3 = 2, eye distance 10 -> 0.2
    out = nme(PRED3, GT3, norm_indices=(0, 1))
    assert out.shape == (1,)
    assert out[0] == pytest.approx(0.2)


def test_nme_is_per_sample_with_each_samples_own_normaliser():
    # sample 1: eyes (0,0)-(0,4) -> distance 4; errors 2, 2, 2 -> mean 2 -> 0.5
    gt = np.concatenate([GT3, [[[0.0, 0.0], [0.0, 4.0], [1.0, 1.0]]]])
    pred = np.concatenate([PRED3, [[[2.0, 0.0], [0.0, 6.0], [1.0, -1.0]]]])
    np.testing.assert_allclose(nme(pred, gt, norm_indices=(0, 1)), [0.2, 0.5])


def test_nme_default_indices_are_300w_outer_eye_corners():
    # 68 points, all errors 1 (shift by (0.6, 0.8)); gt 36 at (0,0) and 45 at (50,0) -> 1/50
    gt = np.zeros((1, 68, 2))
    gt[0, 45] = [50.0, 0.0]
    pred = gt + np.array([0.6, 0.8])
    assert nme(pred, gt)[0] == pytest.approx(0.02)


def test_nme_interpupil_via_index_groups_uses_group_centroids():
    # left eye (0,0),(2,0) -> centroid (1,0); right eye (8,2),(10,-2) -> centroid (9,0): distance 8
    gt = np.array([[[0.0, 0.0], [2.0, 0.0], [8.0, 2.0], [10.0, -2.0]]])
    pred = gt + np.array([0.6, 0.8])  # every error is 1
    assert nme(pred, gt, norm_indices=([0, 1], [2, 3]))[0] == pytest.approx(1 / 8)
    assert nme(pred, gt, norm_indices=(range(0, 2), range(2, 4)))[0] == pytest.approx(1 / 8)
    # an int and a group can be mixed: (0,0) to centroid (9,0) -> 9
    assert nme(pred, gt, norm_indices=(0, [2, 3]))[0] == pytest.approx(1 / 9)
    # a one-element group is the same as the int
    assert nme(pred, gt, norm_indices=([0], [3]))[0] == pytest.approx(
        nme(pred, gt, norm_indices=(0, 3))[0]
    )


def test_nme_invariant_to_translating_pred_and_gt_together():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (5, 68, 2))
    pred = gt + rng.normal(0, 2, gt.shape)
    shift = np.array([37.5, -12.25])
    np.testing.assert_allclose(nme(pred + shift, gt + shift), nme(pred, gt), rtol=1e-12)


def test_nme_invariant_to_scaling_pred_and_gt_together():
    # errors and eye distance both scale by s, so their ratio does not change
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 100, (5, 68, 2))
    pred = gt + rng.normal(0, 2, gt.shape)
    for s in (0.25, 3.0):
        np.testing.assert_allclose(nme(s * pred, s * gt), nme(pred, gt), rtol=1e-12)


def test_nme_excludes_invisible_points_even_if_prediction_is_wild():
    # visible [T, T, F]: errors 5, 0 -> mean 2.5, / 10 -> 0.25; point 2's prediction is ignored
    pred = PRED3.copy()
    pred[0, 2] = [1e6, -1e6]
    out = nme(pred, GT3, norm_indices=(0, 1), visible=np.array([[True, True, False]]))
    assert out[0] == pytest.approx(0.25)


def test_nme_normaliser_uses_gt_eye_points_even_when_invisible():
    # visible [F, T, T]: errors 0, 1 -> mean 0.5; eye distance is still 10 -> 0.05
    out = nme(PRED3, GT3, norm_indices=(0, 1), visible=[[0, 1, 1]])
    assert out[0] == pytest.approx(0.05)


def test_nme_zero_normaliser_raises_naming_sample_index():
    gt = np.concatenate([GT3, [[[4.0, 4.0], [4.0, 4.0], [0.0, 0.0]]]])  # sample 1: eyes coincide
    pred = gt + 1.0
    with pytest.raises(ValueError, match=r"samples \[1\]"):
        nme(pred, gt, norm_indices=(0, 1))


def test_nme_sample_without_visible_points_raises_naming_it():
    gt = np.concatenate([GT3, GT3])
    with pytest.raises(ValueError, match=r"no visible keypoints in samples \[0\]"):
        nme(gt, gt, norm_indices=(0, 1), visible=[[False] * 3, [True] * 3])


def test_nme_rejects_bad_indices_and_shapes():
    with pytest.raises(ValueError, match="out of range"):
        nme(PRED3, GT3, norm_indices=(0, 3))
    with pytest.raises(ValueError, match="empty"):
        nme(PRED3, GT3, norm_indices=([], 1))
    with pytest.raises(ValueError, match="two entries"):
        nme(PRED3, GT3, norm_indices=(0, 1, 2))
    with pytest.raises(ValueError, match="differ"):
        nme(PRED3[:, :2], GT3, norm_indices=(0, 1))
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        nme(PRED3[0], GT3[0], norm_indices=(0, 1))
    with pytest.raises(ValueError, match="visible"):
        nme(PRED3, GT3, norm_indices=(0, 1), visible=[[True, True]])


def test_joint_error_is_the_mean_visible_error_over_the_normaliser_and_nan_where_it_cannot_count():
    # four instances of GT3 / PRED3 (errors 5, 0, 1 px)
    gt, pred = np.repeat(GT3, 4, axis=0), np.repeat(PRED3, 4, axis=0)
    visible = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 0], [1, 1, 1]], dtype=bool)
    normaliser = np.array([10.0, 4.0, 10.0, np.nan])
    error = joint_error(pred, gt, visible, normaliser)
    assert error[0] == pytest.approx(0.2)   # (5 + 0 + 1) / 3 = 2 px over 10
    assert error[1] == pytest.approx(0.75)  # (5 + 1) / 2 = 3 px over 4
    assert np.isnan(error[2])               # nothing visible
    assert np.isnan(error[3])               # a torso joint unlabelled: no normaliser
    assert np.isnan(joint_error(pred[:1], gt[:1], None, [0.0])[0])  # a zero-length torso


def test_nme_bbox_divides_by_sqrt_of_box_area():
    # box w=16, h=4 -> sqrt(64) = 8; every error is 4 (shift (0, 4)) -> 4 / 8 = 0.5
    gt = np.array([[[1.0, 2.0], [3.0, 7.0], [9.0, 9.0]]])
    pred = gt + np.array([0.0, 4.0])
    boxes = np.array([[100.0, 50.0, 16.0, 4.0]])  # x, y do not matter
    assert nme_bbox(pred, gt, boxes)[0] == pytest.approx(0.5)
    # with point 2 invisible and its error made 12, the mean stays 4
    pred[0, 2] = gt[0, 2] + [0.0, 12.0]
    assert nme_bbox(pred, gt, boxes, visible=[[1, 1, 0]])[0] == pytest.approx(0.5)


def test_nme_bbox_zero_area_box_raises_naming_sample():
    gt = np.zeros((2, 3, 2))
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 0.0]])
    with pytest.raises(ValueError, match=r"samples \[1\]"):
        nme_bbox(gt, gt, boxes)


# ------------------------------------------------------------------------ mean offset


def test_mean_offset_is_the_signed_shift_in_units_of_each_samples_normaliser():
    # sample 0: normaliser 10 (points 0-1), errors (3, 4), (0, 0), (0, 1): mean (1, 5/3) -> (0.1, 1/6)
    # sample 1: normaliser 4 (points 0-1 at x 0 and 4), every point shifted by (-2, 0): (-0.5, 0)
    gt1 = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 3.0]])
    gt = np.concatenate([GT3, gt1[None]])
    pred = np.concatenate([PRED3, gt1[None] + [-2.0, 0.0]])
    norm = pair_distance(gt, (0, 1))
    assert norm.tolist() == [10.0, 4.0]
    # the mean over samples: ((0.1 - 0.5) / 2, (1/6 + 0) / 2) = (-0.2, 1/12)
    assert mean_offset(pred, gt, norm) == pytest.approx([-0.2, 1.0 / 12.0])
    # NME sees both samples as equally bad or worse; the offset tells their directions apart
    assert mean_offset(gt + [1.0, -2.0], gt, norm) == pytest.approx([(0.1 + 0.25) / 2, (-0.2 - 0.5) / 2])


def test_mean_offset_leaves_out_invisible_points_and_unusable_samples():
    gt = np.concatenate([GT3, GT3, GT3])
    pred = gt + [0.0, 2.0]  # every visible point 2 px low: 0.2 of the normaliser 10
    pred[0, 2] = gt[0, 2] + [50.0, 50.0]  # invisible in sample 0: ignored
    pred[1] = gt[1] + [9.0, 9.0]  # sample 1 has no normaliser: ignored
    pred[2] = gt[2] + [7.0, 7.0]  # sample 2 has no visible point: ignored
    norm = np.array([10.0, np.nan, 10.0])
    visible = [[1, 1, 0], [1, 1, 1], [0, 0, 0]]
    assert mean_offset(pred, gt, norm, visible) == pytest.approx([0.0, 0.2])
    with pytest.raises(ValueError, match="no sample"):
        mean_offset(pred, gt, np.array([0.0, np.nan, -1.0]))
    with pytest.raises(ValueError, match="shape"):
        mean_offset(pred, gt, np.array([10.0, 10.0]))


# ------------------------------------------------------------------- failure rate, CED, AUC

ERRORS = [0.0, 0.05, 0.1, 0.2]


def test_failure_rate_counts_strictly_greater_than_threshold():
    # at 0.1 only 0.2 fails (0.1 itself succeeds under ">") -> 1/4
    assert failure_rate(ERRORS, 0.1) == pytest.approx(0.25)
    # at 0.05: 0.1 and 0.2 fail -> 2/4
    assert failure_rate(ERRORS, 0.05) == pytest.approx(0.5)
    # at 0: everything but the exact 0 fails -> 3/4
    assert failure_rate(ERRORS, 0.0) == pytest.approx(0.75)
    assert isinstance(failure_rate(ERRORS), float)


def test_auc_closed_form_on_hand_made_errors():
    # t = 0.1: max(0, 1 - e/t) = 1, 0.5, 0, 0 -> 1.5 / 4 = 0.375
    assert auc(ERRORS, 0.1) == pytest.approx(0.375)
    # t = 0.2: 1, 0.75, 0.5, 0 -> 2.25 / 4 = 0.5625
    assert auc(ERRORS, 0.2) == pytest.approx(0.5625)
    assert isinstance(auc(ERRORS), float)


def test_auc_is_one_for_perfect_and_zero_when_all_fail():
    assert auc([0.0, 0.0, 0.0], 0.08) == 1.0
    assert auc([0.1, 0.3], 0.08) == 0.0


def test_ced_curve_fractions_are_cumulative_with_less_or_equal():
    # thresholds 0, 0.05, 0.1: <= 0 -> {0}: 1/4; <= 0.05 -> 2/4; <= 0.1 -> 3/4
    xs, frac = ced_curve(ERRORS, 0.1, num=3)
    np.testing.assert_allclose(xs, [0.0, 0.05, 0.1])
    np.testing.assert_allclose(frac, [0.25, 0.5, 0.75])
    # the CED at t is the complement of the failure rate at t
    assert frac[-1] == pytest.approx(1 - failure_rate(ERRORS, 0.1))


def test_auc_closed_form_equals_fine_trapezoid_of_ced():
    rng = np.random.default_rng(2)
    errors = rng.gamma(2.0, 0.03, size=500)  # spread across and beyond [0, 0.1]
    for t in (0.08, 0.1):
        xs, frac = ced_curve(errors, t, num=20001)
        # step-function trapezoid error is at most (t / 20000) / 2 per unit height -> 2.5e-5
        assert np.trapezoid(frac, xs) / t == pytest.approx(auc(errors, t), abs=1e-4)


def test_error_list_validation():
    with pytest.raises(ValueError, match="empty"):
        auc([], 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        failure_rate([0.1, -0.01])
    with pytest.raises(ValueError, match="threshold"):
        auc(ERRORS, 0.0)
    with pytest.raises(ValueError, match="one-dimensional"):
        auc([[0.1, 0.2]])
    with pytest.raises(ValueError, match="num"):
        ced_curve(ERRORS, 0.1, num=1)


# ------------------------------------------------------------------------------------- PCK


def _pck_example():
    # Two instances, three keypoints, axis-aligned errors so distances are exact.
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0, :, 0] = [1.0, 3.0, 2.0]  # instance 0 errors 1, 3, 2
    pred[1, :, 1] = [5.0, 4.0, 0.0]  # instance 1 errors 5, 4, 0
    visible = np.array([[True, True, True], [True, True, False]])
    normaliser = np.array([10.0, 20.0])  # with threshold 0.2 -> radii 2 and 4
    return pred, gt, visible, normaliser


def test_pck_hand_example_overall_and_per_keypoint():
    # instance 0 (radius 2): 1 ok, 3 no, 2 ok (boundary counts, "<=")
    # instance 1 (radius 4): 5 no, 4 ok (boundary), kp2 invisible
    # per keypoint: kp0 1/2, kp1 1/2, kp2 1/1; overall 3 correct / 5 visible = 0.6
    pred, gt, vis, norm = _pck_example()
    r = pck(pred, gt, vis, norm, threshold=0.2)
    assert isinstance(r, PCKResult)
    assert r.overall == pytest.approx(0.6)
    np.testing.assert_allclose(r.per_keypoint, [0.5, 0.5, 1.0])
    np.testing.assert_array_equal(r.num_visible, [2, 2, 1])
    assert r.num_skipped == 0


def test_pck_keypoint_never_visible_is_nan_and_left_out_of_overall():
    # hide kp2 everywhere: remaining kp0 1/2, kp1 1/2 -> overall 2/4 = 0.5
    pred, gt, vis, norm = _pck_example()
    vis[:, 2] = False
    r = pck(pred, gt, vis, norm, threshold=0.2)
    assert r.overall == pytest.approx(0.5)
    assert r.per_keypoint[:2] == pytest.approx([0.5, 0.5])
    assert math.isnan(r.per_keypoint[2])
    assert r.num_visible[2] == 0


def test_pck_visible_none_means_all_visible():
    # adds instance 1 kp2 (error 0, correct): 4 / 6, kp2 2/2
    pred, gt, _, norm = _pck_example()
    r = pck(pred, gt, None, norm, threshold=0.2)
    assert r.overall == pytest.approx(4 / 6)
    np.testing.assert_allclose(r.per_keypoint, [0.5, 0.5, 1.0])


def test_pck_zero_normaliser_raises_naming_instance():
    pred, gt, vis, norm = _pck_example()
    norm[1] = 0.0
    with pytest.raises(ValueError, match=r"instances \[1\]"):
        pck(pred, gt, vis, norm)


def test_pck_skip_excludes_invalid_instances_and_reports_them():
    # instance 1 skipped (NaN normaliser) -> only instance 0: 2 of 3 correct; kp0 1, kp1 0, kp2 1
    pred, gt, vis, norm = _pck_example()
    norm[1] = np.nan
    with pytest.raises(ValueError, match=r"instances \[1\]"):
        pck(pred, gt, vis, norm)
    r = pck(pred, gt, vis, norm, threshold=0.2, invalid="skip")
    assert r.overall == pytest.approx(2 / 3)
    np.testing.assert_allclose(r.per_keypoint, [1.0, 0.0, 1.0])
    assert r.num_skipped == 1
    np.testing.assert_array_equal(r.skipped, [1])


def test_pck_nothing_to_evaluate_raises():
    pred, gt, vis, norm = _pck_example()
    with pytest.raises(ValueError, match="no visible"):
        pck(pred, gt, np.zeros_like(vis), norm)
    with pytest.raises(ValueError, match="invalid"):
        pck(pred, gt, vis, norm, invalid="ignore")


def test_torso_size_is_distance_between_two_gt_joints():
    # joints 0 (0,0) and 1 (3,4) -> 5; instance 1 doubled -> 10
    gt = np.array([[[0.0, 0.0], [3.0, 4.0], [9.0, 9.0]], [[0.0, 0.0], [6.0, 8.0], [1.0, 1.0]]])
    np.testing.assert_allclose(torso_size(gt, (0, 1)), [5.0, 10.0])


def test_torso_size_with_invisible_joint_is_invalid_for_pck():
    # instance 1 lacks joint 1 -> NaN torso -> pck raises unless skipping
    gt = np.array([[[0.0, 0.0], [3.0, 4.0], [9.0, 9.0]], [[0.0, 0.0], [6.0, 8.0], [1.0, 1.0]]])
    vis = np.array([[True, True, True], [True, False, True]])
    size = torso_size(gt, (0, 1), visible=vis)
    assert size[0] == pytest.approx(5.0) and math.isnan(size[1])
    with pytest.raises(ValueError, match=r"instances \[1\]"):
        pck(gt, gt, vis, size)
    assert pck(gt, gt, vis, size, invalid="skip").num_skipped == 1


def test_bbox_size_is_max_side_and_head_size_is_scaled_diagonal():
    boxes = np.array([[5.0, 5.0, 30.0, 40.0], [0.0, 0.0, 12.0, 7.0]])
    np.testing.assert_allclose(bbox_size(boxes), [40.0, 12.0])
    # diagonal of 30 x 40 is 50, times 0.6 -> 30; second: sqrt(144 + 49) * 0.6
    np.testing.assert_allclose(head_size(boxes), [30.0, 0.6 * math.sqrt(193.0)])


# --------------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x: nme(x, GT3, norm_indices=(0, 1)), "pred"),
        (lambda x: nme(PRED3, x, norm_indices=(0, 1)), "gt"),
        (lambda x: nme_bbox(PRED3, GT3, [[0.0, 0.0, 1.0, float("nan")]]), "boxes"),
        (lambda x: nme(PRED3, GT3, (0, 1), visible=[[1.0, float("nan"), 1.0]]), "visible"),
        (lambda x: auc([0.1, float("nan")]), "nme_values"),
        (lambda x: failure_rate([float("nan")]), "nme_values"),
        (lambda x: pck(x, GT3, None, [1.0]), "pred"),
        (lambda x: bbox_size([[0.0, 0.0, float("nan"), 1.0]]), "boxes"),
    ],
)
def test_nan_input_raises_naming_the_argument(call, name):
    bad = PRED3.copy()
    bad[0, 1, 0] = np.nan
    with pytest.raises(ValueError, match=rf"^{name} contains NaN"):
        call(bad)


def test_torch_tensors_are_accepted_and_numpy_is_returned():
    pred = torch.tensor(PRED3, dtype=torch.float32, requires_grad=True)
    gt = torch.tensor(GT3, dtype=torch.float32)
    out = nme(pred, gt, norm_indices=(0, 1), visible=torch.tensor([[True, True, False]]))
    assert isinstance(out, np.ndarray)
    assert out[0] == pytest.approx(0.25)  # same as the numpy invisible-point example
    assert auc(torch.tensor(ERRORS), 0.1) == pytest.approx(0.375)
    # bfloat16 (converted to float64 first); values exact in bf16: only 1.0 > 0.5 -> 1/4
    half = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.bfloat16)
    assert failure_rate(half, 0.5) == pytest.approx(0.25)
    p, g, v, n = (torch.from_numpy(a) for a in _pck_example())
    r = pck(p, g, v, n, threshold=0.2)
    assert r.overall == pytest.approx(0.6)
    assert isinstance(r.per_keypoint, np.ndarray)
