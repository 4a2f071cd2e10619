"""Decoding: argmax, HRNet's quarter offset, DARK, and multi-instance peaks."""
import math

import numpy as np
import pytest
import torch

from heatmapnet import decode
from heatmapnet.decode import (_every_window_numpy, _every_window_torch, decode_keypoints, decode_peaks,
                               gaussian_blur, refine_peaks)
from heatmapnet.targets import render_heatmaps

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="CUDA not available"))]


def _random_points(n, low, high, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return low + torch.rand(n, 2, generator=generator) * (high - low)


def _one_point_per_channel(points, sigma, size, exact_peak):
    n = points.shape[0]
    return render_heatmaps(points, torch.arange(n), sigma, n, size, exact_peak=exact_peak)[None]


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("exact_peak, tolerance", [(False, 0.02), (True, 0.05)])
def test_dark_recovers_sub_pixel_points_of_rendered_gaussians(sigma, exact_peak, tolerance):
    points = _random_points(300, 8, 40, seed=int(sigma * 10))
    maps = _one_point_per_channel(points, sigma, (48, 48), exact_peak)
    decoded = decode_keypoints(maps, refine="dark")
    errors = (decoded.coordinates[0] - points).norm(dim=-1)
    assert errors.max().item() < tolerance


def test_argmax_is_off_by_at_most_half_a_pixel_per_axis_and_quarter_halves_it_on_average():
    points = _random_points(400, 8, 40)
    maps = _one_point_per_channel(points, 2.0, (48, 48), exact_peak=False)
    plain = decode_keypoints(maps, refine="none").coordinates[0]
    quarter = decode_keypoints(maps, refine="quarter").coordinates[0]
    assert (plain - points).abs().max().item() <= 0.5
    assert torch.equal(plain, torch.floor(points + 0.5))
    assert (quarter - points).abs().mean() < 0.75 * (plain - points).abs().mean()


def test_quarter_offset_steps_a_quarter_pixel_towards_the_higher_neighbour():
    maps = torch.zeros(1, 1, 5, 5)
    maps[0, 0, 2, 2] = 1.0
    maps[0, 0, 2, 3] = 0.6  # right neighbour higher than left (0) -> x + 0.25
    maps[0, 0, 1, 2] = 0.3  # upper neighbour higher than lower (0) -> y - 0.25
    decoded = decode_keypoints(maps, refine="quarter")
    assert decoded.coordinates[0, 0].tolist() == [2.25, 1.75]
    assert decoded.scores[0, 0].item() == 1.0


def test_dark_offset_is_minus_inverse_hessian_times_gradient_on_a_hand_made_log_quadratic():
    # log-map L(x, y) = -((x - 2.3)^2 + (y - 1.8)^2) / 2 on a 5x5 grid: peak at (2.3, 1.8)
    ys, xs = torch.meshgrid(torch.arange(5.0), torch.arange(5.0), indexing="ij")
    maps = torch.exp(-((xs - 2.3) ** 2 + (ys - 1.8) ** 2) / 2)[None, None]
    coords = decode_keypoints(maps, refine="dark").coordinates[0, 0]
    assert coords.tolist() == pytest.approx([2.3, 1.8], abs=1e-5)


def test_dark_handles_anisotropic_and_rotated_peaks():
    # An elongated Gaussian rotated by 30 degrees exercises the cross term of the Hessian.
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    u = (xs - 15.4) * c + (ys - 16.3) * s
    v = -(xs - 15.4) * s + (ys - 16.3) * c
    maps = torch.exp(-(u ** 2 / (2 * 3.0 ** 2) + v ** 2 / (2 * 1.5 ** 2)))[None, None]
    coords = decode_keypoints(maps, refine="dark").coordinates[0, 0]
    assert coords.tolist() == pytest.approx([15.4, 16.3], abs=1e-3)


def test_peaks_on_the_border_and_flat_maps_decode_to_finite_points():
    maps = torch.zeros(1, 3, 8, 8)
    maps[0, 0, 0, 0] = 1.0
    maps[0, 0, 0, 1] = 0.5
    maps[0, 1, 7, 4] = 0.9
    for refine in ("none", "quarter", "dark"):
        decoded = decode_keypoints(maps, refine=refine)
        assert torch.isfinite(decoded.coordinates).all()
        assert decoded.coordinates[0, 2].tolist() == [0.0, 0.0]  # all-zero channel: first pixel, no shift
        assert decoded.scores[0, 2].item() == 0.0


def test_nan_heatmaps_are_a_clear_error():
    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        decode_keypoints(maps)
    with pytest.raises(ValueError, match="refine"):
        decode_keypoints(torch.zeros(1, 1, 4, 4), refine="sixteenth")


def test_blur_keeps_the_maximum_and_dark_still_finds_a_blurred_gaussian(cpu_path):
    points = _random_points(50, 10, 38, seed=3)
    maps = _one_point_per_channel(points, 2.0, (48, 48), exact_peak=False)
    blurred = gaussian_blur(maps, 1.0)
    torch.testing.assert_close(blurred.amax(dim=(2, 3)), maps.amax(dim=(2, 3)))
    coords = decode_keypoints(maps, refine="dark", blur_sigma=1.0).coordinates[0]
    assert (coords - points).norm(dim=-1).max().item() < 0.05


def _decode_after_a_whole_blur(maps, sigma):
    batch, channels, height, width = maps.shape
    index = maps.reshape(batch * channels, -1).max(dim=1).indices
    blurred = gaussian_blur(maps, sigma).reshape(batch * channels, height, width)
    return refine_peaks(blurred, index % width, index // width, "dark").view(batch, channels, 2)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 5.5])  # 5.5: a window wider than one chunk of the C kernel
def test_dark_blurring_peak_windows_equals_blurring_whole_maps_at_every_distance_from_the_border(sigma, cpu_path):
    # peaks at 0..8 pixels from each border, where windows are moved inwards and replicate the edge
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(36.0), indexing="ij")
    centres = [(d + 0.3, d + 0.2) for d in range(9)] + [(35 - d - 0.2, 39 - d - 0.4) for d in range(9)] + \
              [(0.0, 20.3), (35.0, 12.6), (17.2, 0.0), (9.7, 39.0)]
    maps = torch.stack([torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.8 ** 2)) for x, y in centres])[None]
    maps = maps + 0.02 * torch.rand(maps.shape, generator=torch.Generator().manual_seed(1))
    ours = decode_keypoints(maps, refine="dark", blur_sigma=sigma).coordinates
    torch.testing.assert_close(ours, _decode_after_a_whole_blur(maps, sigma), atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [(20, 24), (10, 12)], ids=["window-fits", "map-smaller-than-window"])
def test_dark_blurring_falls_back_to_whole_maps_where_peak_patches_cannot_be_used(size, cpu_path):
    generator = torch.Generator().manual_seed(8)
    maps = torch.rand(2, 9, *size, generator=generator) ** 4
    maps[0, 0] = 0.0  # flat map: no usable patch
    maps[0, 1] = torch.rand(size, generator=generator) ** 40  # values near the log floor
    maps[1, 2, 0, 0] = 5.0  # peak in a corner
    ours = decode_keypoints(maps, refine="dark", blur_sigma=1.5).coordinates
    torch.testing.assert_close(ours, _decode_after_a_whole_blur(maps, 1.5), atol=1e-4, rtol=0)


def test_the_c_kernel_and_the_pytorch_path_agree_on_network_like_maps(c_kernels, monkeypatch):
    generator = torch.Generator().manual_seed(4)
    points = 1 + torch.rand(3, 17, 2, generator=generator) * torch.tensor([45.0, 61.0])
    maps = torch.stack([_one_point_per_channel(p, 2.5, (64, 48), exact_peak=False)[0] for p in points])
    maps = maps + 0.05 * torch.rand(maps.shape, generator=generator)
    kernel = decode_keypoints(maps, refine="dark", blur_sigma=2.0).coordinates
    monkeypatch.setattr(decode, "_kernels", None)
    torch.testing.assert_close(kernel, decode_keypoints(maps, refine="dark", blur_sigma=2.0).coordinates,
                               atol=2e-5, rtol=0)


def test_the_c_kernel_flags_maps_it_leaves_to_the_whole_map_blur_and_rejects_bad_input(c_kernels):
    maps = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(2)) ** 2
    maps[1], maps[1, 10, 9] = -1.0, -0.5  # a peak value <= 0 has no log
    maps[2], maps[2, 8, 11] = 0.0, 1e-12  # its blurred values lie at the log floor
    points, whole = decode._kernel_points(maps, maps.flatten(1).argmax(dim=1), 1.5)
    assert whole.tolist() == [1, 2]
    kernel_1d = decode._blur_kernel_numpy(1.5)
    buffers = np.empty((3, 2), np.float32), np.empty(3, np.uint8)
    with pytest.raises(ValueError, match=r"peak_index\[1\] lies outside"):
        c_kernels.blurred_dark_points(maps.numpy(), 20, 20, np.array([0, 400, 3]), kernel_1d, 1e-10, *buffers)
    with pytest.raises(ValueError, match="symmetric"):
        c_kernels.blurred_dark_points(maps.numpy(), 20, 20, np.array([0, 1, 3]),
                                      np.array([0.2, 0.5, 0.3], np.float32), 1e-10, *buffers)
    with pytest.raises(ValueError, match="maps: expected"):
        c_kernels.blurred_dark_points(maps.numpy(), 20, 21, np.array([0, 1, 3]), kernel_1d, 1e-10, *buffers)


def test_numpy_and_torch_window_gathers_agree():
    maps = torch.rand(5, 11, 13)
    top, left = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([6, 0, 3, 1, 2])
    windows = _every_window_numpy(maps, top, left, 7)
    torch.testing.assert_close(windows, _every_window_torch(maps, top, left, 7), rtol=0, atol=0)
    torch.testing.assert_close(windows[3], maps[3, 3:10, 1:8], rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_decoding_is_batched_over_images_and_keypoints(device):
    points = _random_points(12, 6, 26).view(3, 4, 2)
    maps = torch.stack([_one_point_per_channel(p, 1.5, (32, 32), False)[0] for p in points]).to(device)
    decoded = decode_keypoints(maps, refine="dark")
    assert decoded.coordinates.shape == (3, 4, 2) and decoded.scores.shape == (3, 4)
    assert decoded.coordinates.device.type == device
    assert (decoded.coordinates.cpu() - points).norm(dim=-1).max().item() < 0.02


def test_multi_instance_peaks_are_suppressed_ranked_and_sub_pixel():
    points = torch.tensor([[5.3, 6.6], [20.7, 12.2], [11.1, 25.4]])
    maps = render_heatmaps(points, [0, 0, 1], 1.5, 2, (32, 32), exact_peak=True)
    maps[0] *= torch.where(torch.arange(32)[None, :] < 12, 0.9, 0.7)  # unequal peak heights
    peaks = decode_peaks(maps[None], k=3, refine="dark")
    assert peaks.scores[0].tolist() == pytest.approx([1.0, 0.9, 0.7])
    assert peaks.classes[0].tolist() == [1, 0, 0]
    expected = points[[2, 0, 1]]
    assert (peaks.points[0] - expected).norm(dim=-1).max().item() < 0.05


def test_max_pool_suppression_keeps_one_peak_per_gaussian():
    maps = render_heatmaps(torch.tensor([[8.0, 8.0]]), [0], 2.0, 1, (16, 16))[None]
    peaks = decode_peaks(maps, k=5, refine="none")
    # the Gaussian's shoulders are suppressed; what remains is the flat zero background
    assert peaks.scores[0, 0].item() == 1.0
    assert peaks.scores[0, 1:].max().item() <= 0.0
