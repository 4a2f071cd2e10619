"""CornerNet's radius, sigma policies and Gaussian splatting against hand-derived values."""
import math

import numpy as np
import pytest
import torch

from heatmapnet.targets import (FixedSigma, OKSSigma, RadiusSigma, build_sigma_policy, gaussian_radius,
                                render_heatmaps, render_heatmaps_batched, sigma_from_radius)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="CUDA not available"))]


# ----------------------------------------------------------------------------------------------
# gaussian_radius
# ----------------------------------------------------------------------------------------------
def test_radius_of_square_box_matches_hand_solved_quadratics():
    # s = 10, o = 0.7 (see the derivations in heatmapnet.targets._radius_exact):
    # case 1: r^2 - 20 r + 100 * 0.3/1.7 = 0 -> r = 10 - sqrt(100 - 17.647059) = 0.925147
    # case 2: 4 r^2 - 40 r + 30 = 0          -> r = (40 - sqrt(1600 - 480)) / 8 = 0.816700
    # case 3: 2.8 r^2 + 28 r - 30 = 0        -> r = (-28 + sqrt(784 + 336)) / 5.6 = 0.976143
    assert gaussian_radius(10, 10, 0.7) == pytest.approx(0.816700, abs=1e-6)


def test_centernet_formula_reproduces_its_published_roots_about_3_4x_too_large():
    # CenterNet: r1 = (20 + sqrt(400 - 70.588235)) / 2 = 19.075, r2 = (40 + sqrt(1120)) / 2 = 36.733,
    # r3 = (-28 + sqrt(784 + 336)) / 2 = 2.733201; min = 2.733201.
    centernet = gaussian_radius(10, 10, 0.7, formula="centernet")
    assert centernet == pytest.approx(2.733201, abs=1e-6)
    assert centernet / gaussian_radius(10, 10, 0.7) == pytest.approx(3.3466, abs=1e-4)


def _iou_after_shift(h, w, r):
    """IoU with the original box in each of CornerNet's three cases, by direct geometry."""
    translated = (w - r) * (h - r) / (2 * w * h - (w - r) * (h - r))
    shrunk = (w - 2 * r) * (h - 2 * r) / (w * h)
    grown = w * h / ((w + 2 * r) * (h + 2 * r))
    return np.stack([translated, shrunk, grown])


@pytest.mark.parametrize("min_overlap", [0.3, 0.5, 0.7, 0.9])
def test_exact_radius_is_the_largest_shift_keeping_the_overlap(min_overlap):
    rng = np.random.default_rng(0)
    h, w = rng.uniform(2, 300, 200), rng.uniform(2, 300, 200)
    r = gaussian_radius(h, w, min_overlap)
    ious = _iou_after_shift(h, w, r)
    assert np.all(ious >= min_overlap - 1e-9)  # every case still overlaps enough...
    np.testing.assert_allclose(ious.min(axis=0), min_overlap, atol=1e-9)  # ...and one is exactly at it


def test_radius_is_symmetric_in_height_and_width():
    assert gaussian_radius(13.0, 57.0) == pytest.approx(gaussian_radius(57.0, 13.0))


def test_radius_accepts_scalars_arrays_and_tensors_alike():
    heights = [10.0, 40.0, 100.0]
    widths = [20.0, 40.0, 30.0]
    from_array = gaussian_radius(np.array(heights), np.array(widths))
    from_tensor = gaussian_radius(torch.tensor(heights), torch.tensor(widths))
    assert isinstance(from_array, np.ndarray) and isinstance(from_tensor, torch.Tensor)
    assert isinstance(gaussian_radius(10, 20), float)
    np.testing.assert_allclose(from_tensor.numpy(), from_array, rtol=1e-6)
    np.testing.assert_allclose(from_array, [gaussian_radius(h, w) for h, w in zip(heights, widths)])


def test_radius_of_empty_box_is_zero_and_nan_box_is_an_error():
    assert gaussian_radius(0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="finite"):
        gaussian_radius(float("nan"), 10.0)
    with pytest.raises(ValueError, match="formula"):
        gaussian_radius(10, 10, formula="cornernet-ish")


# ----------------------------------------------------------------------------------------------
# sigma policies
# ----------------------------------------------------------------------------------------------
def test_sigma_from_radius_spans_the_diameter_with_six_sigmas():
    assert sigma_from_radius(2.0) == pytest.approx(5.0 / 6.0)


def test_fixed_sigma_is_the_same_for_every_keypoint():
    sigmas = FixedSigma(2.0)(torch.tensor([[10.0, 20.0], [50.0, 50.0]]), 3)
    assert sigmas.shape == (2, 3) and torch.all(sigmas == 2.0)


def test_radius_sigma_grows_with_the_box():
    # 40 x 40 heatmap-pixel box: r = 4 * 0.816700 = 3.266799, sigma = (2r + 1) / 6 = 1.255600
    sigmas = RadiusSigma()(torch.tensor([[40.0, 40.0], [80.0, 80.0], [1.0, 1.0]]), 2)
    assert sigmas[0, 0].item() == pytest.approx(1.255600, abs=1e-5)
    assert sigmas[1, 0] > sigmas[0, 0]
    assert sigmas[2, 0].item() == pytest.approx(0.75)  # tiny boxes are held at min_sigma


def test_oks_sigma_gives_a_wrist_and_a_hip_of_one_person_different_spreads():
    # Box 10 x 40 -> object scale sqrt(400) = 20; spread 2 * kappa * 20: wrist 0.062 -> 2.48, hip 0.107 -> 4.28
    policy = OKSSigma(oks_sigmas=(0.062, 0.107))
    sigmas = policy(torch.tensor([[10.0, 40.0]]), 2)
    np.testing.assert_allclose(sigmas.numpy(), [[2.48, 4.28]], rtol=1e-6)
    with pytest.raises(ValueError, match="2 sigmas for 3 keypoints"):
        policy(torch.tensor([[10.0, 40.0]]), 3)


def test_sigma_policies_are_built_by_name():
    assert isinstance(build_sigma_policy("radius", min_overlap=0.5), RadiusSigma)
    with pytest.raises(ValueError, match=r"unknown target.sigma_policy .huge.; choose one of \[.fixed., .oks., .radius.\]"):
        build_sigma_policy("huge")


# ----------------------------------------------------------------------------------------------
# render_heatmaps
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_gaussian_values_match_the_formula_at_hand_picked_pixels(device, cpu_path):
    maps = render_heatmaps(torch.tensor([[5.0, 7.0]], device=device), [0], 2.0, 1, (16, 12))
    assert maps.shape == (1, 16, 12) and maps.device.type == device
    assert maps[0, 7, 5].item() == 1.0
    assert maps[0, 7, 6].item() == pytest.approx(math.exp(-1 / 8))  # 0.882497
    assert maps[0, 9, 5].item() == pytest.approx(math.exp(-4 / 8))  # 0.606531
    assert maps[0, 8, 6].item() == pytest.approx(math.exp(-2 / 8))  # diagonal: 0.778801


def test_exact_peak_forces_the_nearest_pixel_to_one_and_leaves_the_rest(cpu_path):
    point = torch.tensor([[5.3, 7.0]])
    plain = render_heatmaps(point, [0], 2.0, 1, (16, 16), exact_peak=False)
    peaked = render_heatmaps(point, [0], 2.0, 1, (16, 16), exact_peak=True)
    assert plain[0, 7, 5].item() == pytest.approx(math.exp(-0.09 / 8))  # 0.988813: sub-pixel, untouched
    assert peaked[0, 7, 5].item() == 1.0
    assert plain[0, 7, 6].item() == pytest.approx(math.exp(-0.49 / 8)) == peaked[0, 7, 6].item()
    assert int((peaked == 1.0).sum()) == 1 and int((plain == 1.0).sum()) == 0


def test_gaussian_is_truncated_at_three_sigma(cpu_path):
    maps = render_heatmaps(torch.tensor([[10.0, 10.0]]), [0], 1.0, 1, (21, 21))
    assert maps[0, 10, 13].item() == pytest.approx(math.exp(-4.5))  # d = 3 sigma: kept
    assert maps[0, 11, 13].item() == 0.0  # d^2 = 10 > 9: cut
    assert int((maps > 0).sum()) == 29  # lattice points with dx^2 + dy^2 <= 9


def test_points_of_one_channel_combine_by_maximum_and_channels_stay_apart(cpu_path):
    points = torch.tensor([[4.0, 4.0], [6.0, 4.0], [4.0, 4.0]])
    maps = render_heatmaps(points, [0, 0, 1], 2.0, 2, (10, 10))
    # pixel (4, 5) is 1 px from both points of channel 0: max, not sum
    assert maps[0, 4, 5].item() == pytest.approx(math.exp(-1 / 8))
    assert maps[0, 4, 4].item() == 1.0 and maps[0, 4, 6].item() == 1.0
    assert maps[1, 4, 6].item() == pytest.approx(math.exp(-4 / 8))


def _dense_reference(points, labels, sigmas, num_classes, size, exact_peak):
    """Every point evaluated over the whole map, no windows: slow but plainly right."""
    height, width = size
    ys, xs = np.mgrid[0:height, 0:width]
    out = np.zeros((num_classes, height, width))
    for (x, y), label, sigma in zip(points, labels, sigmas):
        cx, cy = math.floor(x + 0.5), math.floor(y + 0.5)
        if not (0 <= cx < width and 0 <= cy < height):
            continue
        d2 = (xs - x) ** 2 + (ys - y) ** 2
        g = np.where(d2 <= 9 * sigma ** 2, np.exp(-d2 / (2 * sigma ** 2)), 0.0)
        if exact_peak:
            g[cy, cx] = 1.0
        out[label] = np.maximum(out[label], g)
    return out


@pytest.mark.parametrize("exact_peak", [False, True])
def test_windowed_splatting_equals_a_dense_reference(exact_peak, cpu_path):
    rng = np.random.default_rng(1)
    points = rng.uniform(-3, 35, size=(60, 2))
    labels = rng.integers(0, 5, 60)
    sigmas = rng.uniform(0.3, 6.0, 60)
    maps = render_heatmaps(torch.tensor(points), labels, sigmas, 5, (30, 33), exact_peak=exact_peak)
    expected = _dense_reference(points, labels, sigmas, 5, (30, 33), exact_peak)
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_overlapping_windows_of_one_map_combine_to_the_max_of_each_point_drawn_alone(device, cpu_path):
    """Four overlapping windows in map 0 and two in map 2, of three widths: each map is the
    element-wise max of its points rendered one at a time (where nothing combines), exactly. On the
    CPU the PyTorch path writes overlapping windows in rounds, on a GPU it scatters them."""
    points = torch.tensor([[3.0, 3.0], [5.2, 4.1], [4.4, 3.6], [5.6, 2.9], [6.0, 6.0], [4.8, 4.6], [3.9, 4.2]],
                          device=device)
    channels = [0, 2, 0, 0, 1, 2, 0]
    sigmas = torch.tensor([1.0, 1.0, 1.4, 1.0, 0.6, 2.2, 0.5], device=device)
    maps = render_heatmaps(points, channels, sigmas, 3, (9, 10))
    expected = torch.zeros(3, 9, 10, device=device)
    for point, channel, sigma in zip(points, channels, sigmas):
        alone = render_heatmaps(point[None], [channel], sigma[None], 3, (9, 10))
        assert int((alone > 0).any(dim=(1, 2)).sum()) == 1  # one map drawn
        expected = torch.maximum(expected, alone)
    torch.testing.assert_close(maps, expected, rtol=0, atol=0)
    overlaps = [int(((render_heatmaps(points[[a]], [0], sigmas[[a]], 1, (9, 10)) > 0)
                     & (render_heatmaps(points[[b]], [0], sigmas[[b]], 1, (9, 10)) > 0)).sum())
                for a, b in ((0, 2), (2, 3), (0, 6), (1, 5))]
    assert min(overlaps) > 0  # the windows do overlap: not vacuous


def test_points_beyond_the_border_draw_nothing_and_points_on_it_do(cpu_path):
    points = torch.tensor([[-0.6, 3.0], [9.5, 3.0], [3.0, -0.51]])
    assert render_heatmaps(points, [0, 0, 0], 2.0, 1, (10, 10)).sum() == 0
    edge = render_heatmaps(torch.tensor([[-0.4, 3.0]]), [0], 2.0, 1, (10, 10))
    assert edge[0, 3, 0].item() == 1.0


def test_points_of_weight_zero_draw_nothing(cpu_path):
    points = torch.tensor([[2.0, 2.0], [7.0, 7.0]])
    maps = render_heatmaps(points, [0, 0], 1.0, 1, (10, 10), weights=[1.0, 0.0])
    assert maps[0, 2, 2].item() == 1.0 and maps[0, 7, 7].item() == 0.0


def test_no_points_give_empty_maps(cpu_path):
    maps = render_heatmaps(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 2.0, 3, (8, 8))
    assert maps.shape == (3, 8, 8) and maps.sum() == 0


def test_tiny_sigma_leaves_only_the_peak_pixel(cpu_path):
    maps = render_heatmaps(torch.tensor([[4.2, 4.0]]), [0], 0.1, 1, (9, 9))
    assert maps[0, 4, 4].item() == 1.0 and int((maps > 0).sum()) == 1


def test_the_c_kernel_names_a_point_whose_channel_is_out_of_range(c_kernels):
    maps = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"channels\[1\] must lie in \[0, 2\), got 2"):
        c_kernels.max_gaussians(maps, 8, 8, np.ones((2, 2), np.float32), np.array([0, 2]), np.ones(2, np.float32),
                                np.ones(2, bool), 3.0, 0.011, True)
    assert not maps.any()  # every channel is checked before the first point is drawn


def test_nan_points_and_bad_labels_are_clear_errors():
    with pytest.raises(ValueError, match="points contains NaN"):
        render_heatmaps(torch.tensor([[float("nan"), 1.0]]), [0], 2.0, 1, (8, 8))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        render_heatmaps(torch.tensor([[1.0, 1.0]]), [2], 2.0, 2, (8, 8))


@pytest.mark.parametrize("device", DEVICES)
def test_batched_rendering_equals_rendering_each_sample(device, cpu_path):
    rng = np.random.default_rng(2)
    points = torch.tensor(rng.uniform(0, 20, size=(3, 7, 2)), dtype=torch.float32, device=device)
    labels = torch.tensor(rng.integers(0, 4, size=(3, 7)), device=device)
    sigmas = torch.tensor(rng.uniform(0.5, 3, size=(3, 7)), dtype=torch.float32, device=device)
    weights = torch.ones(3, 7, device=device)
    weights[1, 3:] = 0  # padding
    batched = render_heatmaps_batched(points, labels, sigmas, 4, (20, 24), weights=weights)
    for b in range(3):
        single = render_heatmaps(points[b], labels[b], sigmas[b], 4, (20, 24), weights=weights[b])
        torch.testing.assert_close(batched[b], single)
