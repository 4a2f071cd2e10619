"""The reference implementations (heatmapnet.testing.reference) against values worked out by hand from
the anchors' published formulas, on maps small enough to write out. No reference is checked
against itself or against heatmapnet's own functions.
"""
import math

import numpy as np
import pytest
import torch

from heatmapnet.testing import reference

# exp(-18 n / 25) for n = dx^2 + dy^2: CenterNet's Gaussian of radius 2 (sigma = 5 / 6)
E1, E2, E4, E5, E8 = math.exp(-0.72), math.exp(-1.44), math.exp(-2.88), math.exp(-3.6), math.exp(-5.76)


# ----------------------------------------------------------------------------------------------
# CenterNet: gaussian_radius
# ----------------------------------------------------------------------------------------------
def test_centernet_radius_of_a_square_box_is_its_shrink_case():
    # h = w = 40, overlap o = 0.7. For a square box (s = h + w = 2w) the three roots reduce to
    #   r1 = (b1 - sq1) / 2    = w (1 - sqrt(2o / (1 + o)))  = 40 (1 - 0.907485) = 3.70060
    #   r2 = (b2 - sq2) / 8    = w (1 - sqrt(o)) / 2         = 40 (1 - 0.836660) / 2 = 3.26680
    #   r3 = (b3 + sq3) / 8o   = w (sqrt(o) - o) / 2o        = 40 (0.136660) / 1.4 = 3.90458
    # so the radius is r2 = 3.26680 and CenterNet's integer radius int(r2) = 3.
    assert reference.centernet_gaussian_radius((40, 40)) == pytest.approx(40 * (1 - math.sqrt(0.7)) / 2, rel=1e-12)
    assert reference.centernet_gaussian_radius((40, 40)) == pytest.approx(3.26680, abs=1e-5)
    assert reference.centernet_keypoint_radius(40, 40) == 3
    # The original roots, (b + sq) / 2 each: r1 = (80 + 72.5988) / 2 = 76.2994,
    # r2 = (160 + 133.8656) / 2 = 146.9328, r3 = (-112 + 133.8656) / 2 = 10.9328 = 2w (sqrt(o) - o)
    original = reference.centernet_gaussian_radius((40, 40), original_roots=True)
    assert original == pytest.approx(2 * 40 * (math.sqrt(0.7) - 0.7), rel=1e-12)
    assert original == pytest.approx(10.93280, abs=1e-5)
    assert reference.centernet_keypoint_radius(40, 40, original_roots=True) == 10


def test_centernet_radius_of_an_oblong_box():
    # h = 10, w = 30, o = 0.7, s = 40:
    #   c1 = 300 * 0.3 / 1.7 = 52.941176, sq1 = sqrt(1600 - 211.764706) = 37.259030, r1 = 1.370485
    #   c2 = 0.3 * 300 = 90, sq2 = sqrt(6400 - 1440) = sqrt(4960) = 70.427267, r2 = 9.572733 / 8 = 1.196592
    #   a3 = 2.8, b3 = -56, c3 = -90, sq3 = sqrt(3136 + 1008) = sqrt(4144) = 64.373908, r3 = 8.373908 / 5.6
    #      = 1.495341
    assert reference.centernet_gaussian_radius((10, 30)) == pytest.approx(1.196592, abs=1e-6)
    # original roots: r1 = 38.6295, r2 = 75.2136, r3 = 8.373908 / 2 = 4.186954
    assert reference.centernet_gaussian_radius((10, 30), original_roots=True) == pytest.approx(4.186954, abs=1e-6)
    # the keypoint radius rounds the box sides up first: (9.2, 29.1) -> (10, 30) -> int(1.1966) = 1
    assert reference.centernet_keypoint_radius(9.2, 29.1) == 1


# ----------------------------------------------------------------------------------------------
# CenterNet: gaussian2D, draw_umich_gaussian and the multi-pose drawing loop
# ----------------------------------------------------------------------------------------------
def test_centernet_gaussian2d_values_and_its_epsilon_cut():
    # shape (5, 5), sigma 5/6: exp(-(x^2 + y^2) * 18 / 25) on x, y in -2..2
    expected = np.array([[E8, E5, E4, E5, E8],
                         [E5, E2, E1, E2, E5],
                         [E4, E1, 1.0, E1, E4],
                         [E5, E2, E1, E2, E5],
                         [E8, E5, E4, E5, E8]])
    np.testing.assert_allclose(reference.centernet_gaussian2d((5, 5), 5 / 6), expected, rtol=1e-12)
    # sigma 0.1: the neighbours would be exp(-50) = 1.9e-22 and exp(-100), both below
    # float64 epsilon (2.2e-16) times the maximum 1, so they are set to exactly 0
    np.testing.assert_array_equal(reference.centernet_gaussian2d((3, 3), 0.1),
                                  [[0, 0, 0], [0, 1, 0], [0, 0, 0]])


def test_centernet_draw_gaussian_at_the_left_border_clips_its_square_window():
    # radius 2: diameter 5, sigma 5/6. The centre (0.9, 1.7) is truncated to the pixel (x=0, y=1)
    # (not rounded to (1, 2)). The window would span columns -2..2 and rows -1..3; clipped to the
    # map it keeps columns 0..2 and rows 0..3, values exp(-18 (dx^2 + dy^2) / 25) with dx = column,
    # dy = row - 1, corners included: (2, 3) is 2 sqrt(2) = 2.83 px away, beyond 3 sigma = 2.5,
    # and still gets exp(-5.76) = 0.0031511.
    heatmap = np.zeros((7, 7), dtype=np.float32)
    returned = reference.centernet_draw_gaussian(heatmap, (0.9, 1.7), 2)
    expected = np.zeros((7, 7))
    expected[0:4, 0:3] = [[E1, E2, E5],   # row 0: dy = -1
                          [1.0, E1, E4],  # row 1: the peak, exactly 1
                          [E1, E2, E5],   # row 2: dy = 1
                          [E4, E5, E8]]   # row 3: dy = 2
    assert returned is heatmap  # in place, as published
    np.testing.assert_allclose(heatmap, expected, rtol=1e-7, atol=0)
    assert heatmap[3, 2] == pytest.approx(0.0031511, abs=1e-7)
    # a second, lower Gaussian (k = 0.5) overlapping it is max-combined, not added
    reference.centernet_draw_gaussian(heatmap, (2, 1), 1, k=0.5)  # radius 1: sigma 0.5, exp(-2), exp(-4)
    assert heatmap[1, 2] == pytest.approx(0.5, abs=1e-7)  # max(E4, 0.5)
    assert heatmap[1, 1] == pytest.approx(E1, rel=1e-7)  # max(E1 = 0.487, 0.5 e^-2 = 0.068)
    assert heatmap[0, 3] == pytest.approx(0.5 * math.exp(-4), rel=1e-7)  # max(0, 0.5 e^-4)


def test_centernet_draw_gaussian_at_the_bottom_right_corner():
    # radius 1 (diameter 3, sigma 0.5: exp(-2 n)) at the last pixel (6, 6): only the window's
    # upper-left quarter remains on the map
    heatmap = reference.centernet_draw_gaussian(np.zeros((7, 7), np.float32), (6.99, 6.5), 1)
    expected = np.zeros((7, 7))
    expected[5:, 5:] = [[math.exp(-4), math.exp(-2)], [math.exp(-2), 1.0]]
    np.testing.assert_allclose(heatmap, expected, rtol=1e-7, atol=0)


def test_centernet_keypoint_heatmaps_skip_points_off_the_map_and_truncate_the_rest():
    # one image, two people, two keypoint types, 5 x 6 map (H, W)
    points = np.array([[[[-0.5, 2.0], [5.99, 4.9]],      # person 0: x < 0 skipped (int(-0.5) = 0 would
                        [[6.0, 1.0], [2.2, 2.8]]]],      #   draw), (5.99, 4.9) -> pixel (5, 4); person 1:
                      dtype=np.float32)                   #   x = W skipped, (2.2, 2.8) -> (2, 2)
    radii = np.array([[0, 1]])  # person 0: a single pixel; person 1: sigma 0.5
    maps = reference.centernet_keypoint_heatmaps(points, radii, 2, (5, 6))
    assert maps.shape == (1, 2, 5, 6) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps[0, 0], 0)  # both of keypoint 0's points are off the map
    expected = np.zeros((5, 6))
    expected[4, 5] = 1.0
    expected[1:4, 1:4] = [[math.exp(-4), math.exp(-2), math.exp(-4)],
                          [math.exp(-2), 1.0, math.exp(-2)],
                          [math.exp(-4), math.exp(-2), math.exp(-4)]]
    np.testing.assert_allclose(maps[0, 1], expected, rtol=1e-7, atol=0)


# ----------------------------------------------------------------------------------------------
# CenterNet: _neg_loss and _sigmoid
# ----------------------------------------------------------------------------------------------
def _t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_centernet_neg_loss_on_a_2x2_map_by_hand():
    pred = _t([[0.8, 0.4], [0.1, 0.5]])
    gt = _t([[1.0, 0.5], [0.0, 0.0]])
    # one positive (gt == 1) at (0, 0): -log(0.8) 0.2^2           = 0.2231436 * 0.04          = 0.0089257
    # negatives, -log(1 - p) p^2 (1 - gt)^4:
    #   (0, 1): -log(0.6) 0.4^2 0.5^4 = 0.5108256 * 0.16 * 0.0625 = 0.0051083
    #   (1, 0): -log(0.9) 0.1^2       = 0.1053605 * 0.01          = 0.0010536
    #   (1, 1): -log(0.5) 0.5^2       = 0.6931472 * 0.25          = 0.1732868
    # divided by num_pos = 1:                                       0.1883744
    expected = (-math.log(0.8) * 0.04 - math.log(0.6) * 0.16 * 0.0625 - math.log(0.9) * 0.01
                - math.log(0.5) * 0.25)
    loss = reference.centernet_neg_loss(pred, gt)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert loss.item() == pytest.approx(0.1883744, abs=1e-7)
    # two positives: (1, 1) becomes a positive, -log(0.5) (1 - 0.5)^2 = 0.1732868; the sum
    # 0.0089257 + 0.0051083 + 0.0010536 + 0.1732868 = 0.1883744 is divided by 2
    two = reference.centernet_neg_loss(pred, _t([[1.0, 0.5], [0.0, 1.0]]))
    assert two.item() == pytest.approx(0.0941872, abs=1e-7)


def test_centernet_neg_loss_without_positives_is_the_undivided_negative_sum():
    # gt (0, 0) = 0.5 instead of 1: (0, 0) is a negative, -log(0.2) 0.8^2 0.5^4 = 1.6094379 * 0.04
    # = 0.0643775; with the three other negatives above: 0.0643775 + 0.0051083 + 0.0010536
    # + 0.1732868 = 0.2438262, not divided (num_pos == 0)
    loss = reference.centernet_neg_loss(_t([[0.8, 0.4], [0.1, 0.5]]), _t([[0.5, 0.5], [0.0, 0.0]]))
    assert loss.item() == pytest.approx(0.2438262, abs=1e-7)
    # positives are exactly 1: a target of 1 - 1e-9 is a negative with weight (1e-9)^4 ~ 0
    near = reference.centernet_neg_loss(_t([[0.8, 0.4], [0.1, 0.5]]), _t([[1 - 1e-9, 0.5], [0.0, 0.0]]))
    assert near.item() == pytest.approx(0.0051083 + 0.0010536 + 0.1732868, abs=1e-7)


def test_centernet_focal_loss_clamps_the_sigmoid_to_one_in_ten_thousand():
    # logits +-20: sigmoid 1 - 2e-9 and 2e-9, clamped to 1 - 1e-4 and 1e-4.
    #   (0, 0) gt 0, p = 1 - 1e-4: -log(1e-4) (1 - 1e-4)^2 = 9.2103404 * 0.9998000 = 9.2084984
    #   (0, 1) gt 1, p = 1e-4:     -log(1e-4) (1 - 1e-4)^2 = 9.2084984 (unclamped it would be ~20)
    #   (1, 0), (1, 1) gt 0, p = 0.5: 0.1732868 each
    # total 18.4169968 + 0.3465736 = 18.7635704, one positive
    loss = reference.centernet_focal_loss(_t([[20.0, -20.0], [0.0, 0.0]]), _t([[0.0, 1.0], [0.0, 0.0]]))
    assert loss.item() == pytest.approx(2 * -math.log(1e-4) * (1 - 1e-4) ** 2 - 2 * 0.25 * math.log(0.5), rel=1e-9)
    assert loss.item() == pytest.approx(18.7635704, abs=1e-6)
    logits = _t([[20.0, -20.0]])
    reference.centernet_sigmoid(logits)
    assert logits.tolist() == [[20.0, -20.0]]  # not in place (CenterNet's sigmoid_ is)


# ----------------------------------------------------------------------------------------------
# HRNet: get_max_preds and get_final_preds' quarter offset
# ----------------------------------------------------------------------------------------------
H, W = 7, 8


def _cross(px, py, right=0.6, left=0.3, down=0.5, up=0.2):
    """A (H, W) map: 1 at (px, py), its four neighbours (where on the map), 0 elsewhere."""
    hm = np.zeros((H, W), dtype=np.float32)
    hm[py, px] = 1.0
    for dx, dy, value in ((1, 0, right), (-1, 0, left), (0, 1, down), (0, -1, up)):
        if 0 <= px + dx < W and 0 <= py + dy < H:
            hm[py + dy, px + dx] = value
    return hm


def test_hrnet_quarter_offset_in_every_column():
    # Peak in row 3 of a 7 x 8 map, right neighbour 0.6 > left 0.3, lower 0.5 > upper 0.2, so
    # where applied the offset is (+0.25, +0.25). HRNet's condition 1 < px < W - 1 and
    # 1 < py < H - 1 with W = 8: px in 2..6. Columns 0, 1 and 7 get no offset on either axis
    # (row 3 is interior, yet y stays 3); column 6 = W - 2 is refined (its right neighbour exists).
    maps = np.stack([_cross(px, 3) for px in range(W)])[:, None]
    coords = reference.hrnet_quarter_decode(maps)[:, 0]
    expected = [[0.0, 3.0], [1.0, 3.0], [2.25, 3.25], [3.25, 3.25], [4.25, 3.25], [5.25, 3.25],
                [6.25, 3.25], [7.0, 3.0]]
    np.testing.assert_array_equal(coords, expected)
    assert coords.dtype == np.float32


def test_hrnet_quarter_offset_in_every_row():
    # Column 3, H = 7: refined only for py in 2..5; rows 0, 1 and 6 keep the integer peak on
    # both axes (x stays 3 though column 3 is interior).
    maps = np.stack([_cross(3, py) for py in range(H)])[:, None]
    coords = reference.hrnet_quarter_decode(maps)[:, 0]
    expected = [[3.0, 0.0], [3.0, 1.0], [3.25, 2.25], [3.25, 3.25], [3.25, 4.25], [3.25, 5.25], [3.0, 6.0]]
    np.testing.assert_array_equal(coords, expected)


def test_hrnet_quarter_offset_signs_and_ties():
    # left higher: -0.25; equal neighbours: np.sign(0) = 0, no move on that axis
    maps = np.stack([_cross(4, 3, right=0.3, left=0.6, down=0.4, up=0.4)])[:, None]
    np.testing.assert_array_equal(reference.hrnet_quarter_decode(maps)[0, 0], [3.75, 3.0])


def test_hrnet_maps_without_a_positive_maximum_give_the_origin():
    # get_max_preds multiplies the argmax by (maxval > 0): a map of -1 with its maximum -0.5 at
    # (4, 3), and an all-zero map, both decode to (0, 0), which is then not refined
    negative = np.full((H, W), -1.0, np.float32)
    negative[3, 4] = -0.5
    maps = np.stack([negative, np.zeros((H, W), np.float32), _cross(4, 3)])[None]
    preds, maxvals = reference.hrnet_get_max_preds(maps)
    np.testing.assert_array_equal(preds[0], [[0.0, 0.0], [0.0, 0.0], [4.0, 3.0]])
    np.testing.assert_array_equal(maxvals[0, :, 0], [-0.5, 0.0, 1.0])
    np.testing.assert_array_equal(reference.hrnet_quarter_decode(maps)[0], [[0, 0], [0, 0], [4.25, 3.25]])


# ----------------------------------------------------------------------------------------------
# mmpose: gaussian_blur
# ----------------------------------------------------------------------------------------------
# cv2.GaussianBlur with a kernel of 11 and sigma 0 uses sigma = 0.3 ((11 - 1) / 2 - 1) + 0.8 = 2,
# taps g(d) = exp(-d^2 / 8) / G for d in -5..5, G = 1 + 2 (e^-1/8 + e^-1/2 + e^-9/8 + e^-2 + e^-25/8)
# = 1 + 2 * 1.9929522 = 4.9859045.
def test_mmpose_blur_of_a_single_peak_is_exp_minus_d2_over_8_inside_and_at_a_corner():
    # A delta of height v blurs to v g(dx) g(dy) = v exp(-(dx^2 + dy^2) / 8) / G^2 within the
    # kernel's reach (|dx|, |dy| <= 5) and to 0 beyond it; the rescale to the original maximum v
    # divides by g(0)^2 = 1 / G^2: v exp(-(dx^2 + dy^2) / 8). At the corner the zero padding adds
    # nothing, so the in-map part is the same function (a replicate padding would copy the delta
    # into the padding and raise the corner).
    maps = np.zeros((1, 2, 9, 9), dtype=np.float32)
    maps[0, 0, 4, 4] = 0.5
    maps[0, 1, 0, 0] = 1.0
    blurred = reference.mmpose_gaussian_blur(maps)
    rows, cols = np.mgrid[0:9, 0:9]
    np.testing.assert_allclose(blurred[0, 0], 0.5 * np.exp(-((cols - 4) ** 2 + (rows - 4) ** 2) / 8), atol=2e-7)
    reach = (cols <= 5) & (rows <= 5)  # columns and rows 6..8 are 6..8 taps away: exactly 0
    np.testing.assert_allclose(blurred[0, 1], np.where(reach, np.exp(-(cols ** 2 + rows ** 2) / 8), 0), atol=2e-7)
    assert (blurred[0, 1][~reach] == 0).all()
    assert maps[0, 0, 4, 4] == 0.5 and maps[0, 0, 4, 5] == 0  # a copy, not in place


def test_mmpose_blur_darkens_the_border_of_a_constant_map():
    # A constant map of 11 x 11: the centre pixel sees all 11 taps (sum 1), so it stays the
    # maximum and the rescale leaves it unchanged. A pixel on the border sees taps d = 0..5 only:
    # S(0) = (1 + 1.9929522) / 4.9859045 = 0.6002827; the pixel next to it also d = -1:
    # S(1) = (2.9929522 + 0.8824969) / 4.9859045 = 0.7772811. Corner S(0)^2 = 0.3603393,
    # (0, 1): S(0) S(1) = 0.4665884, middle of an edge: S(0) = 0.6002827.
    blurred = reference.mmpose_gaussian_blur(np.full((1, 1, 11, 11), 0.8, np.float32))[0, 0]
    assert blurred[5, 5] == pytest.approx(0.8, abs=1e-6)
    assert blurred[0, 0] == pytest.approx(0.8 * 0.3603393, abs=1e-6)
    assert blurred[0, 1] == pytest.approx(0.8 * 0.4665884, abs=1e-6)
    assert blurred[5, 0] == pytest.approx(0.8 * 0.6002827, abs=1e-6)
    assert blurred[10, 10] == pytest.approx(blurred[0, 0], abs=1e-7)


# ----------------------------------------------------------------------------------------------
# mmpose: get_heatmap_maximum and DARK's Taylor step
# ----------------------------------------------------------------------------------------------
def _log_quadratic(cx, cy, shape=(9, 12), a=0.5, b=0.4, e=0.2):
    """exp(-(a (x - cx)^2 + b (y - cy)^2 + e (x - cx)(y - cy))): its log is an exact quadratic."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    dx, dy = cols - cx, rows - cy
    return np.exp(-(a * dx * dx + b * dy * dy + e * dx * dy))


def test_mmpose_dark_on_an_exact_log_quadratic_in_the_interior():
    # L = -(0.5 dx^2 + 0.4 dy^2 + 0.2 dx dy) around (4.3, 3.8). The argmax pixel is (4, 4)
    # (L = -0.049 there; -0.289 at (5, 4), -0.349 at (4, 3)). At (dx, dy) = (-0.3, 0.2):
    #   g = (-2a dx - e dy, -2b dy - e dx) = (0.3 - 0.04, -0.16 + 0.06) = (0.26, -0.10)
    #   mmpose's central difference is exact for a quadratic, and so are its stride-2
    #   (L[x+2] - 2 L[x] + L[x-2]) / 4 = -2a and mixed (...) / 4 = -e:
    #   H = [[-1.0, -0.2], [-0.2, -0.8]], det = 0.76, H^-1 = [[-0.8, 0.2], [0.2, -1.0]] / 0.76
    #   -H^-1 g = -(-0.208 - 0.020, 0.052 + 0.100) / 0.76 = (0.3, -0.2)  ->  (4.3, 3.8)
    maps = _log_quadratic(4.3, 3.8)[None, None]
    locs, vals = reference.mmpose_heatmap_maximum(maps)
    np.testing.assert_array_equal(locs[0, 0], [4.0, 4.0])
    assert vals[0, 0] == pytest.approx(math.exp(-0.049))
    np.testing.assert_allclose(reference.mmpose_dark_decode(maps, blur_kernel=None)[0, 0], [4.3, 3.8], atol=1e-6)


@pytest.mark.parametrize("column", range(12))
def test_mmpose_dark_border_condition_in_every_column(column):
    # W = 12: mmpose refines only where 1 < x < W - 2 = 10, i.e. columns 2..9; column 9 = W - 3 is
    # the last, as its stencil reads x + 2 = 11 = W - 1. Columns 0, 1, 10 and 11 are refused,
    # 1 and 10 although their 3 x 3 neighbourhoods lie on the map. With the centre at
    # column + 0.3 (row 4.2) the argmax pixel is (column, 4); where refused it stays there on both axes.
    maps = _log_quadratic(column + 0.3, 4.2)[None, None]
    locs, _ = reference.mmpose_heatmap_maximum(maps)
    assert locs[0, 0].tolist() == [column, 4.0]
    decoded = reference.mmpose_dark_decode(maps, blur_kernel=None)[0, 0]
    if 2 <= column <= 9:
        np.testing.assert_allclose(decoded, [column + 0.3, 4.2], atol=1e-6)
    else:
        np.testing.assert_array_equal(decoded, [column, 4.0])


@pytest.mark.parametrize("row", range(9))
def test_mmpose_dark_border_condition_in_every_row(row):
    # H = 9: refined for 1 < y < 7, rows 2..6; a refused row leaves x unrefined too (column 5 is
    # interior), since mmpose's condition covers both axes at once.
    maps = _log_quadratic(5.3, row + 0.2)[None, None]
    decoded = reference.mmpose_dark_decode(maps, blur_kernel=None)[0, 0]
    if 2 <= row <= 6:
        np.testing.assert_allclose(decoded, [5.3, row + 0.2], atol=1e-6)
    else:
        np.testing.assert_array_equal(decoded, [5.0, row])


def test_mmpose_dark_uses_its_own_stride_2_curvature():
    # A log map that is not a quadratic, around the peak (3, 3) of a 7 x 7 map (else L = -10):
    #   row 3: L[x=1..5] = -4, -1, 0, -0.5, -3; column 3: L[y=1..5] = -4, -1, 0, -1, -4;
    #   diagonals L[2, 2] = L[2, 4] = L[4, 2] = -2, L[4, 4] = -1.5 (as [y, x]).
    # mmpose: dx = (-0.5 - (-1)) / 2 = 0.25, dy = 0;
    #   dxx = (L[x+2] - 2 L[x] + L[x-2]) / 4 = (-3 - 0 - 4) / 4 = -1.75 (a 3-point stencil through
    #   x +- 1 would give -1.5), dyy = (-4 - 0 - 4) / 4 = -2,
    #   dxy = (L[4,4] - L[2,4] - L[4,2] + L[2,2]) / 4 = (-1.5 + 2 + 2 - 2) / 4 = 0.125;
    #   det = 3.5 - 0.015625 = 3.484375, -H^-1 g = (2 * 0.25, 0.125 * 0.25) / det
    #   = (0.14349776, 0.00896861).
    log_map = np.full((7, 7), -10.0)
    log_map[3, 1:6] = [-4, -1, 0, -0.5, -3]
    log_map[1:6, 3] = [-4, -1, 0, -1, -4]
    log_map[2, 2] = log_map[2, 4] = log_map[4, 2] = -2.0
    log_map[4, 4] = -1.5
    decoded = reference.mmpose_dark_decode(np.exp(log_map)[None, None], blur_kernel=None)[0, 0]
    np.testing.assert_allclose(decoded, [3 + 0.5 / 3.484375, 3 + 0.03125 / 3.484375], atol=1e-6)
    np.testing.assert_allclose(decoded, [3.14349776, 3.00896861], atol=1e-6)


def test_mmpose_dark_with_its_blur_on_a_single_peak_stays_on_the_pixel():
    # The blurred delta is exp(-((x - 5)^2 + (y - 4)^2) / 8) (see the blur test), whose log is a
    # quadratic centred on the pixel itself: g = 0, so the Taylor step adds nothing.
    maps = np.zeros((1, 1, 9, 11), np.float32)
    maps[0, 0, 4, 5] = 0.7
    np.testing.assert_allclose(reference.mmpose_dark_decode(maps)[0, 0], [5.0, 4.0], atol=1e-5)


def test_mmpose_maps_without_a_positive_maximum_give_minus_one():
    # get_heatmap_maximum sets the location of a map whose maximum is <= 0 to (-1, -1); DARK's
    # condition 1 < x then refuses it, so it stays (-1, -1), blur or not
    maps = np.zeros((1, 2, 9, 9), np.float32)
    maps[0, 1] = -1.0
    maps[0, 1, 4, 4] = -0.2
    locs, vals = reference.mmpose_heatmap_maximum(maps)
    np.testing.assert_array_equal(locs[0], [[-1, -1], [-1, -1]])
    np.testing.assert_array_equal(vals[0], [0.0, np.float32(-0.2)])
    for kernel in (None, 11):
        np.testing.assert_array_equal(reference.mmpose_dark_decode(maps, blur_kernel=kernel)[0], [[-1, -1], [-1, -1]])


# ----------------------------------------------------------------------------------------------
# CenterNet: multi_pose_decode and multi_pose_post_process
# ----------------------------------------------------------------------------------------------
def test_centernet_nms_zeroes_non_maxima_and_keeps_plateaus():
    # 3 x 3 max-pool, stride 1, padded: a value survives where it equals its neighbourhood's max.
    heat = torch.tensor([[[[0.9, 0.2, 0.0, 0.0, 0.3],
                           [0.1, 0.0, 0.0, 0.0, 0.0],
                           [0.0, 0.0, 0.5, 0.5, 0.0],
                           [0.0, 0.0, 0.0, 0.0, 0.0]]]])
    # 0.9 (corner) and 0.3 (corner) are maxima; the plateau 0.5, 0.5 keeps both; 0.2 and 0.1 lose
    # to 0.9; the zeros away from everything equal their (all-zero) neighbourhood's max and stay 0.
    expected = torch.zeros_like(heat)
    expected[0, 0, 0, 0], expected[0, 0, 0, 4] = 0.9, 0.3
    expected[0, 0, 2, 2] = expected[0, 0, 2, 3] = 0.5
    torch.testing.assert_close(reference.centernet_nms(heat), expected)


def test_centernet_topk_rows_and_columns_from_flat_indices():
    # W = 5: index 13 is row 13 // 5 = 2, column 3; index 4 is row 0, column 4
    heat = torch.zeros(1, 1, 4, 5)
    heat[0, 0, 2, 3], heat[0, 0, 0, 4], heat[0, 0, 3, 0] = 0.8, 0.6, 0.7
    scores, inds, clses, ys, xs = reference.centernet_topk(heat, K=3)
    torch.testing.assert_close(scores, torch.tensor([[0.8, 0.7, 0.6]]))
    assert inds.tolist() == [[13, 15, 4]] and clses.tolist() == [[0, 0, 0]]
    assert ys.tolist() == [[2.0, 3.0, 0.0]] and xs.tolist() == [[3.0, 0.0, 4.0]]
    assert ys.dtype == xs.dtype == torch.float32


def _multi_pose_maps():
    """8 x 8 maps, 3 joint types, two people (see the test below for every value's purpose)."""
    heat = torch.zeros(1, 1, 8, 8)
    wh, reg, kps = torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8), torch.zeros(1, 6, 8, 8)
    hm_hp, hp_offset = torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 8)
    # person A at pixel (x 3, y 4); its neighbour (4, 4) = 0.5 is suppressed by the NMS
    heat[0, 0, 4, 3], heat[0, 0, 4, 4] = 0.9, 0.5
    reg[0, :, 4, 3] = torch.tensor([0.25, -0.25])
    wh[0, :, 4, 3] = torch.tensor([4.0, 6.0])
    kps[0, :, 4, 3] = torch.tensor([-1.0, -2.0, 1.5, 2.0, 0.0, -1.0])
    # person B at pixel (6, 1)
    heat[0, 0, 1, 6] = 0.4
    wh[0, :, 1, 6] = torch.tensor([2.0, 4.0])
    kps[0, :, 1, 6] = torch.tensor([0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    # joint peaks, as [type, y, x] = score, with the sub-pixel offset at their pixel
    for (joint, x, y, score, offset) in ((0, 2, 3, 0.8, (0.5, 0.0)), (0, 7, 1, 0.3, (0.0, 0.0)),
                                         (1, 6, 6, 0.7, (-0.4, 0.0)), (1, 4, 5, 0.6, (0.0, -0.2)),
                                         (2, 6, 2, 0.1, (0.0, 0.0)), (2, 5, 6, 0.5, (0.0, 0.0))):
        hm_hp[0, joint, y, x] = score
        hp_offset[0, :, y, x] = torch.tensor(offset)
    return heat, wh, kps, reg, hm_hp, hp_offset


def test_centernet_multi_pose_decode_by_hand():
    # Person A: centre (3 + 0.25, 4 - 0.25) = (3.25, 3.75), box +- (2, 3): (1.25, 0.75, 5.25, 6.75),
    # longer side 6, so a peak is refused farther than 0.3 * 6 = 1.8 from the regressed joint.
    # Regressed joints: pixel (3, 4) + offsets: (2, 2), (4.5, 6), (3, 3).
    # Person B: centre (6, 1), box (5, -1, 7, 3), limit 1.2; regressed (6.5, 1), (6, 1), (6, 1).
    # Joint peaks (pixel + hp_offset): type 0: P (2.5, 3) 0.8, Q (7, 1) 0.3;
    #   type 1: (5.6, 6) 0.7, (4, 4.8) 0.6; type 2: (6, 2) 0.1, (5, 6) 0.5.
    # A type 0: nearest P, |(0.5, 1)| = 1.118 <= 1.8, inside: snapped (2.5, 3).
    # A type 1: nearest (5.6, 6) at 1.1 (the other at 1.3), x 5.6 > 5.25 outside: regressed (4.5, 6),
    #   although (4, 4.8) is inside the box and within 1.8: the nearer peak outside hides it.
    # A type 2: (6, 2) has score 0.1, not > 0.1: moved to (-10000, -10000); nearest is then (5, 6) at
    #   |(2, 3)| = 3.606 > 1.8 although inside: regressed (3, 3).
    # B type 0: Q (7, 1) at 0.5 <= 1.2, on the box's right edge x = 7 (inclusive): snapped (7, 1).
    # B type 1: nearest (4, 4.8) at 4.294, outside: regressed (6, 1).
    # B type 2: (6, 2) at distance 1 <= 1.2 inside, but its score 0.1 is not > 0.1: regressed (6, 1).
    dets = reference.centernet_multi_pose_decode(*_multi_pose_maps(), K=2)
    assert dets.shape == (1, 2, 12)
    expected = torch.tensor([[[1.25, 0.75, 5.25, 6.75, 0.9, 2.5, 3.0, 4.5, 6.0, 3.0, 3.0, 0.0],
                              [5.0, -1.0, 7.0, 3.0, 0.4, 7.0, 1.0, 6.0, 1.0, 6.0, 1.0, 0.0]]])
    torch.testing.assert_close(dets, expected)


def test_centernet_multi_pose_decode_threshold_and_distance_limit():
    heat, wh, kps, reg, hm_hp, hp_offset = _multi_pose_maps()
    # a score just above 0.1 is used: B type 2 snaps to (6, 2); A's type 2 now has (6, 2) nearest
    # (|(3, -1)| = 3.162 > 1.8): still regressed (3, 3)
    hm_hp[0, 2, 2, 6] = 0.1001
    dets = reference.centernet_multi_pose_decode(heat, wh, kps, reg, hm_hp, hp_offset, K=2)
    torch.testing.assert_close(dets[0, 1, 9:11], torch.tensor([6.0, 2.0]))
    torch.testing.assert_close(dets[0, 0, 9:11], torch.tensor([3.0, 3.0]))
    # back to 0.1; A's box 12.1 high: limit 0.3 * 12.1 = 3.63 >= 3.606, so A type 2 snaps to (5, 6);
    # type 1's nearest (5.6, 6) is still outside in x (x2 = 5.25): regressed (4.5, 6)
    hm_hp[0, 2, 2, 6] = 0.1
    wh[0, 1, 4, 3] = 12.1
    dets = reference.centernet_multi_pose_decode(heat, wh, kps, reg, hm_hp, hp_offset, K=2)
    torch.testing.assert_close(dets[0, 0, :5], torch.tensor([1.25, 3.75 - 6.05, 5.25, 3.75 + 6.05, 0.9]))
    torch.testing.assert_close(dets[0, 0, 5:11], torch.tensor([2.5, 3.0, 4.5, 6.0, 5.0, 6.0]))
    # a negative size inverts the box (x1 > x2), which then holds no peak: all of A's joints are
    # regressed (CenterNet does not clamp wh)
    wh[0, :, 4, 3] = torch.tensor([-4.0, 6.0])
    dets = reference.centernet_multi_pose_decode(heat, wh, kps, reg, hm_hp, hp_offset, K=2)
    torch.testing.assert_close(dets[0, 0, 5:11], torch.tensor([2.0, 2.0, 4.5, 6.0, 3.0, 3.0]))


def test_centernet_multi_pose_decode_without_offsets_adds_half_a_pixel():
    # reg and hp_offset None: centres and peaks at their pixel + 0.5. A: centre (3.5, 4.5), box
    # (1.5, 1.5, 5.5, 7.5); type 0: P at (2.5, 3.5), 1.58 from (2, 2) <= 1.8, inside: snapped.
    heat, wh, kps, _, hm_hp, _ = _multi_pose_maps()
    dets = reference.centernet_multi_pose_decode(heat, wh, kps, hm_hp=hm_hp, K=2)
    torch.testing.assert_close(dets[0, 0, :7], torch.tensor([1.5, 1.5, 5.5, 7.5, 0.9, 2.5, 3.5]))


def test_centernet_multi_pose_post_process_maps_back_by_centre_and_scale():
    # get_affine_transform(c, s, 0, (w, h), inv=1): the output centre (w / 2, h / 2) goes to c and
    # the scale is s / w on both axes (s is the side of a square). Image 32 x 24 (W x H), maps 8 x 6,
    # c = (16, 12), s = 32: x_in = 4 (x - 4) + 16 = 4 x, y_in = 4 (y - 3) + 12 = 4 y.
    dets = np.array([[[1.25, 0.75, 5.25, 6.75, 0.9, 2.5, 3.0, 4.5, 6.0, 3.0, 3.0, 0.0],
                      [5.0, -1.0, 7.0, 3.0, 0.4, 7.0, 1.0, 6.0, 1.0, 6.0, 1.0, 0.0]]], np.float32)
    before = dets.copy()
    results = reference.centernet_multi_pose_post_process(dets, [np.array([16.0, 12.0])], [32.0], 6, 8)
    assert len(results) == 1 and list(results[0]) == [1] and isinstance(list(results[0])[0], np.int32)
    rows = results[0][1]
    assert isinstance(rows, list) and len(rows) == 2 and len(rows[0]) == 11  # 4 + score + 2 x 3 joints
    np.testing.assert_allclose(rows[0], [5, 3, 21, 27, 0.9, 10, 12, 18, 24, 12, 12], atol=1e-5)
    np.testing.assert_allclose(rows[1], [20, -4, 28, 12, 0.4, 28, 4, 24, 4, 24, 4], atol=1e-5)
    np.testing.assert_array_equal(dets, before)  # the class column is dropped, dets not written
    # a centre moved by (1.5, 1.5) moves every point by it (heatmapnet's pixel-centre convention at
    # stride 4: x_in = 4 x + 1.5); the score stays
    shifted = reference.centernet_multi_pose_post_process(dets, [np.array([17.5, 13.5])], [32.0], 6, 8)[0][1]
    np.testing.assert_allclose(np.array(shifted) - np.array(rows),
                               [[1.5] * 4 + [0.0] + [1.5] * 6] * 2, atol=1e-5)
