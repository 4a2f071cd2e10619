"""Decoding: argmax, HRNet's quarter offset, DARK, and multi-instance peaks.

DARK is checked against hand-derived values, against the true sub-pixel points of rendered
Gaussians at every distance from the map's borders, and against ``_reference_dark``, an
independent float64 numpy/scipy implementation written here from the paper's formula.
"""
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from heatmapnet import decode
from heatmapnet.decode import decode_keypoints, decode_peaks, gaussian_blur, refine_peaks
from heatmapnet.kernels import use_kernels
from heatmapnet.targets import render_heatmaps
from heatmapnet.windows import window_view_numpy, window_view_torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="CUDA not available"))]
LOG_FLOOR = 1e-10  # DARK's documented log floor: values at or below it are unusable


def _random_points(n, low, high, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return low + torch.rand(n, 2, generator=generator) * (high - low)


def _one_point_per_channel(points, sigma, size, exact_peak):
    n = points.shape[0]
    return render_heatmaps(points, torch.arange(n), sigma, n, size, exact_peak=exact_peak)[None]


# ----------------------------------------------------------------------------------------------
# An independent DARK (Zhang et al., CVPR 2020) in float64 numpy/scipy
# ----------------------------------------------------------------------------------------------
def _reference_blur(heatmap, sigma):
    """DARK's modulation: Gaussian blur (radius max(1, ceil(3 sigma)), edge replicated), then the
    original maximum restored where both maxima are positive."""
    blurred = ndimage.gaussian_filter(heatmap, sigma, mode="nearest", radius=max(1, math.ceil(3 * sigma)))
    if heatmap.max() > 0 and blurred.max() > 0:
        blurred = blurred * (heatmap.max() / blurred.max())
    return blurred


def _reference_dark(heatmap, blur_sigma=None):
    """DARK's point (x, y) of one (H, W) map: argmax, optional blur, L = log of the map, the
    Taylor step -H^-1 g at the argmax, clipped to one pixel.

    Finite differences: central first differences for g; the cross term from the four corners;
    the pure second derivatives as the mean of the second differences on the two lines beside the
    peak (rows above and below for d2/dx2), which leaves out the centre pixel. Where the 3x3 patch
    is not all inside the map and above the log floor, each axis whose three values through the
    peak are usable takes the 1-D Newton step -L'/L'' if L'' < 0; any other axis stays put."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    height, width = heatmap.shape
    py, px = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    values = _reference_blur(heatmap, blur_sigma) if blur_sigma else heatmap
    padded = np.pad(values, 1, constant_values=np.nan)  # NaN: off the map
    patch = padded[py:py + 3, px:px + 3]
    usable = patch > LOG_FLOOR  # NaN compares False
    L = np.log(np.where(usable, patch, 1.0))
    offset = np.zeros(2)
    if usable.all():
        gradient = np.array([L[1, 2] - L[1, 0], L[2, 1] - L[0, 1]]) / 2
        dxx = np.diff(L[[0, 2], :], n=2, axis=1).mean()
        dyy = np.diff(L[:, [0, 2]], n=2, axis=0).mean()
        dxy = (L[2, 2] - L[2, 0] - L[0, 2] + L[0, 0]) / 4
        hessian = np.array([[dxx, dxy], [dxy, dyy]])
        if np.linalg.eigvalsh(hessian).max() < 0:
            offset = -np.linalg.solve(hessian, gradient)
    else:
        for axis, line in enumerate([L[1, :], L[:, 1]]):
            line_usable = usable[1, :] if axis == 0 else usable[:, 1]
            first, second = (line[2] - line[0]) / 2, np.diff(line, n=2)[0]
            if line_usable.all() and second < 0:
                offset[axis] = -first / second
    return np.array([px, py]) + np.clip(offset, -1, 1)


def _reference_points(maps, blur_sigma=None):
    """``_reference_dark`` of every map of (B, K, H, W) ``maps`` -> (B, K, 2)."""
    batch, channels = maps.shape[:2]
    flat = maps.detach().cpu().double().reshape(batch * channels, *maps.shape[2:]).numpy()
    return torch.from_numpy(np.stack([_reference_dark(m, blur_sigma) for m in flat])).view(batch, channels, 2)


def _network_like_maps(count, size, seed):
    """(1, count, H, W) maps like a trained network's: a Gaussian blob of random width, height and
    position (on every part of the map, borders included) over uniform background noise."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    centres = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) - 0.5
    sigmas = 1.2 + 2 * torch.rand(count, generator=generator)
    ys, xs = torch.meshgrid(torch.arange(float(height)), torch.arange(float(width)), indexing="ij")
    blobs = torch.exp(-((xs - centres[:, 0, None, None]) ** 2 + (ys - centres[:, 1, None, None]) ** 2)
                      / (2 * sigmas[:, None, None] ** 2))
    heights = 0.3 + 0.7 * torch.rand(count, 1, 1, generator=generator)
    return (heights * blobs + 0.05 * torch.rand(count, height, width, generator=generator))[None]


# float32 against float64: map values carry relative errors ~1e-7 (a few more after the blur's
# ~100 products), so the logs ~1e-7..1e-6 absolute; g and H are differences of those and H^-1 g
# divides by curvatures ~1 / (s^2 + b^2) >= 0.07 (blob sigma s <= 3.2 px, blur sigma b <= 2):
# ~1e-5 (measured: up to 1.4e-5). 1e-4 allows 7x.
REFERENCE_ATOL = 1e-4


@pytest.mark.parametrize("size", [(24, 30), (8, 11), (4, 5)],
                         ids=["window-fits", "map-smaller-than-window", "tiny-map"])
@pytest.mark.parametrize("blur_sigma", [None, 1.0, 1.5, 2.0])
def test_dark_matches_an_independent_reference_on_network_like_maps(size, blur_sigma, cpu_path):
    maps = _network_like_maps(120, size, seed=int(size[0] * 10 + (blur_sigma or 0) * 4))
    expected = _reference_points(maps, blur_sigma)
    decoded = decode_keypoints(maps, refine="dark", blur_sigma=blur_sigma).coordinates
    torch.testing.assert_close(decoded.double(), expected, atol=REFERENCE_ATOL, rtol=0)
    if blur_sigma:  # the same through the whole-map blur and the public refine_peaks
        index = maps[0].flatten(1).argmax(dim=1)
        blurred = gaussian_blur(maps, blur_sigma)[0]
        refined = refine_peaks(blurred, index % size[1], index // size[1], "dark")
        torch.testing.assert_close(refined.double(), expected[0], atol=REFERENCE_ATOL, rtol=0)


@pytest.mark.parametrize("device", [DEVICES[1]])
def test_dark_matches_the_reference_on_cuda(device):
    maps = _network_like_maps(200, (24, 30), seed=5)
    for blur_sigma in (None, 1.0, 2.0):
        decoded = decode_keypoints(maps.to(device), refine="dark", blur_sigma=blur_sigma).coordinates.cpu()
        torch.testing.assert_close(decoded.double(), _reference_points(maps, blur_sigma), atol=REFERENCE_ATOL,
                                   rtol=0)


def test_the_reference_recovers_a_hand_made_log_quadratic():
    # guards the reference itself: L = -((x - 2.3)^2 + (y - 1.8)^2) / 2 - 0.1 (x - 2.3)(y - 1.8)
    ys, xs = np.mgrid[0:5, 0:5].astype(float)
    u, v = xs - 2.3, ys - 1.8
    assert _reference_dark(np.exp(-(u ** 2 + v ** 2) / 2 - 0.1 * u * v)) == pytest.approx([2.3, 1.8], abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Accuracy against the true point
# ----------------------------------------------------------------------------------------------
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
    assert coords.tolist() == pytest.approx([15.4, 16.3], abs=1e-4)


HEIGHT, WIDTH = 24, 26


def _points_at_every_distance_from_each_border(fractions):
    """Points whose peak pixel lies d = 0..10 pixels inside the left, right, top and bottom border,
    each fraction f off that pixel across the border and 11 - f along it (>= 10 px from the others).
    Returns the points (N, 2), the axis across the border (N,) and d (N,)."""
    points, across, distance = [], [], []
    for d in range(11):
        for f in fractions.tolist():
            along = 11 - f
            points += [(d + f, along), (WIDTH - 1 - d - f, along), (along, d + f), (along, HEIGHT - 1 - d - f)]
            across += [0, 0, 1, 1]
            distance += [d] * 4
    return torch.tensor(points), torch.tensor(across), torch.tensor(distance)


# Rendered float32 Gaussians, no blur: a log-map value carries an error e <~ 5e-7 (float32 exp
# and squares of coordinates ~25). Each offset is ~ -g/h with h = -1/sigma^2; the curvature
# stencils weigh six values by |w| summing to 4, so the offset errs by <~ sigma^2 (e + 4e |offset|)
# <~ 3 sigma^2 e ~ 1.4e-5 at sigma = 3, plus float32 rounding of coordinates ~25 (2e-6).
EXACT_ATOL = 3e-5


# DARK after its blur, where the blur's window stays inside the map: a Gaussian of sigma s sampled
# on the pixels and blurred by the sampled kernel of sigma b is a sampled Gaussian of sigma
# sqrt(s^2 + b^2), centred where it was, up to a ripple of relative size 2 exp(-2 pi^2 s^2 b^2 /
# (s^2 + b^2)) (Poisson summation; 1e-4 at s = b = 1, < 1e-7 from s = 2) and the kernel's cut at
# 3 b (weight ~3e-4). Measured: at most 1.3e-3 px for s = 1, 3e-6 px for s >= 2. 5e-3 allows 4x.
BLURRED_ATOL = 5e-3
# The largest outward shift that gaussian_blur's table documents at d = 1, 2, 3 for blur sigma 1
DOCUMENTED_MAX_SHIFT = {1: 0.55, 2: 0.12, 3: 0.01}


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("exact_peak", [False, True])
def test_dark_recovers_gaussians_at_every_distance_from_each_border(sigma, exact_peak):
    fractions = torch.linspace(-0.45, 0.45, 7)
    points, across, distance = _points_at_every_distance_from_each_border(fractions)
    maps = _one_point_per_channel(points, sigma, (HEIGHT, WIDTH), exact_peak)
    decoded = decode_keypoints(maps, refine="dark").coordinates[0]
    pixel = torch.floor(points + 0.5)
    inside = distance >= 1  # the 3x3 patch lies in the map: the 2-D step, exact for a Gaussian
    torch.testing.assert_close(decoded[inside], points[inside], atol=EXACT_ATOL, rtol=0)
    # On the border the axis across it has no room: the peak pixel's line exactly.
    on_border = ~inside
    assert torch.equal(decoded[on_border, across[on_border]], pixel[on_border, across[on_border]])
    # Along the border the 1-D Newton step on L: exact for a Gaussian, while a centre forced to 1
    # (exact_peak) gives, with (fx, fy) = point - pixel along and across and L(0) = 0,
    # L(+-1) = -((1 -+ fx)^2 + fy^2) / 2 sigma^2: -L'/L'' = fx / (1 + fx^2 + fy^2).
    border = on_border.nonzero()[:, 0]
    along = 1 - across[border]
    f_along = points[border, along] - pixel[border, along]
    f_across = points[border, 1 - along] - pixel[border, 1 - along]
    step = f_along / (1 + f_along ** 2 + f_across ** 2) if exact_peak else f_along
    torch.testing.assert_close(decoded[border, along], pixel[border, along] + step, atol=EXACT_ATOL, rtol=0)


def test_a_gaussian_on_the_left_border_keeps_its_sub_pixel_row():
    # The architecture issue's case: a Gaussian at (0.2, 7.3). Column -1 is off the map, so x
    # has no room and stays 0; the column x = 0 holds the Gaussian's exact log-parabola in y.
    maps = render_heatmaps(torch.tensor([[0.2, 7.3]]), [0], 2.0, 1, (16, 16), exact_peak=False)[None]
    assert decode_keypoints(maps, refine="dark").coordinates[0, 0].tolist() == pytest.approx([0.0, 7.3], abs=1e-5)
    assert decode_keypoints(maps, refine="quarter").coordinates[0, 0].tolist() == [0.0, 7.25]
    # exact_peak: fy = 0.3, fx = 0.2 -> 7 + 0.3 / (1 + 0.09 + 0.04) = 7.265487
    forced = render_heatmaps(torch.tensor([[0.2, 7.3]]), [0], 2.0, 1, (16, 16), exact_peak=True)[None]
    assert decode_keypoints(forced, refine="dark").coordinates[0, 0].tolist() == pytest.approx([0.0, 7.265487],
                                                                                                abs=1e-5)


@pytest.mark.parametrize("blur_sigma", [1.0, 2.0])
def test_blurred_dark_keeps_the_sub_pixel_row_of_a_border_gaussian(blur_sigma, cpu_path):
    # The blur is separable and so is the Gaussian: along a border line the blurred log-map is
    # still the blurred parabola, here >= 7 px (radius + 1) from the other borders.
    points = torch.tensor([[0.2, 7.3], [17.0, 8.6], [8.4, 17.2]])
    maps = render_heatmaps(points, [0, 1, 2], 2.0, 3, (18, 18), exact_peak=False)[None]
    decoded = decode_keypoints(maps, refine="dark", blur_sigma=blur_sigma).coordinates[0]
    assert decoded[:, 0].tolist()[:2] == [0.0, 17.0] and decoded[2, 1].item() == 17.0  # no room across
    along = torch.stack([decoded[0, 1], decoded[1, 1], decoded[2, 0]])
    torch.testing.assert_close(along, torch.tensor([7.3, 8.6, 8.4]), atol=BLURRED_ATOL, rtol=0)


def test_corner_peaks_have_no_room_on_either_axis():
    points = torch.tensor([[0.3, -0.2], [25.4, 0.1], [-0.4, 23.3], [24.6, 22.7]])
    maps = _one_point_per_channel(points, 1.5, (HEIGHT, WIDTH), exact_peak=False)
    expected = [[0.0, 0.0], [25.0, 0.0], [0.0, 23.0], [25.0, 23.0]]
    for blur_sigma in (None, 1.0):
        assert decode_keypoints(maps, refine="dark", blur_sigma=blur_sigma).coordinates[0].tolist() == expected


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_blurred_dark_at_every_distance_from_each_border(sigma, cpu_path):
    blur_sigma, window = 1.0, 3 + 1  # radius ceil(3 * 1) + the patch's 1
    fractions = torch.linspace(-0.45, 0.45, 7)
    points, across, distance = _points_at_every_distance_from_each_border(fractions)
    maps = _one_point_per_channel(points, sigma, (HEIGHT, WIDTH), exact_peak=False)
    decoded = decode_keypoints(maps, refine="dark", blur_sigma=blur_sigma).coordinates[0]
    inside = distance >= window
    torch.testing.assert_close(decoded[inside], points[inside], atol=BLURRED_ATOL, rtol=0)
    rows = torch.arange(points.shape[0])
    error_across = decoded[rows, across] - points[rows, across]
    towards_border = torch.where(points[rows, across] < 12, -1.0, 1.0)  # left/top: -1, right/bottom: +1
    shift = error_across * towards_border
    for d, largest in DOCUMENTED_MAX_SHIFT.items():
        near = distance == d
        assert shift[near].min() > -BLURRED_ATOL  # never pulled inwards
        assert shift[near].max() <= largest
    # the axis along the border is untouched by it
    torch.testing.assert_close(decoded[rows, 1 - across], points[rows, 1 - across], atol=BLURRED_ATOL, rtol=0)
    assert torch.equal(decoded[distance == 0, across[distance == 0]],
                       torch.floor(points + 0.5)[distance == 0, across[distance == 0]])


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


# ----------------------------------------------------------------------------------------------
# The rules where the 3x3 patch is not usable, on hand-made maps
# ----------------------------------------------------------------------------------------------
def _cross(centre=1.0, left=0.0, right=0.0, up=0.0, down=0.0, size=5, dtype=torch.float32):
    """A size x size map, zero but for a cross around (2, 2): its corners lie at the log floor."""
    maps = torch.zeros(1, size, size, dtype=dtype)
    maps[0, 2, 2], maps[0, 2, 1], maps[0, 2, 3], maps[0, 1, 2], maps[0, 3, 2] = centre, left, right, up, down
    return maps


def _refine_at_centre(maps):
    return refine_peaks(maps, torch.tensor([2]), torch.tensor([2]), "dark")[0].tolist()


def test_a_peak_with_corners_at_the_log_floor_takes_a_newton_step_on_each_axis():
    # x: L = log .5, 0, log .25 -> L' = -log 2 / 2, L'' = -3 log 2 -> -L'/L'' = -1/6
    # y: L = log .5, 0, log .125 -> L' = -log 2, L'' = -4 log 2 -> -1/4
    assert _refine_at_centre(_cross(left=0.5, right=0.25, up=0.5, down=0.125)) == pytest.approx(
        [2 - 1 / 6, 2 - 0.25], abs=1e-6)


def test_an_axis_whose_line_reaches_the_log_floor_or_is_flat_gets_no_offset():
    # right neighbour 0: x has no usable line; y: L = log .5, 0, log .125 -> -1/4
    assert _refine_at_centre(_cross(left=0.5, right=0.0, up=0.5, down=0.125)) == pytest.approx([2, 1.75], abs=1e-6)
    # a flat row (L'' = 0) takes no step; the column still does
    assert _refine_at_centre(_cross(left=1.0, right=1.0, up=0.5, down=0.125)) == pytest.approx([2, 1.75], abs=1e-6)
    # below the floor although positive
    assert _refine_at_centre(_cross(left=0.5, right=1e-11, up=1e-12, down=0.5)) == [2.0, 2.0]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.float16, torch.float64])
def test_maps_of_other_dtypes_decode_as_their_values(dtype):
    # 100, 200, 50 along x: L = -log 2, 0, -2 log 2 -> L' = -log 2 / 2, L'' = -3 log 2: -1/6;
    # 100, 200, 25 along y: L = -log 2, 0, -3 log 2 -> L' = -log 2, L'' = -4 log 2: -1/4
    maps = _cross(centre=200, left=100, right=50, up=100, down=25, dtype=dtype)
    expected = [2 - 1 / 6, 2 - 1 / 4]
    assert _refine_at_centre(maps) == pytest.approx(expected, abs=1e-5)
    assert decode_keypoints(maps[None], refine="dark").coordinates[0, 0].tolist() == pytest.approx(expected, abs=1e-5)
    assert decode_keypoints(maps[None], refine="dark").scores.dtype == torch.float32


def test_peaks_on_the_border_and_flat_maps():
    maps = torch.zeros(1, 3, 8, 8)
    maps[0, 0, 0, 0] = 1.0
    maps[0, 0, 0, 1] = 0.5  # corner: no room on either axis
    maps[0, 1, 7, 4] = 0.9
    maps[0, 1, 7, 3], maps[0, 1, 7, 5], maps[0, 1, 6, 4] = 0.45, 0.225, 0.7  # bottom row: x only
    for refine in ("none", "quarter", "dark"):
        decoded = decode_keypoints(maps, refine=refine)
        assert decoded.coordinates[0, 0].tolist() == [0.0, 0.0]
        assert decoded.coordinates[0, 2].tolist() == [0.0, 0.0]  # all-zero channel: first pixel, no shift
        assert decoded.scores[0].tolist() == pytest.approx([1.0, 0.9, 0.0])
    # L = log .5, 0, log .25 along x (relative to 0.9): -1/6; y has no room below row 7
    assert decode_keypoints(maps, refine="dark").coordinates[0, 1].tolist() == pytest.approx([4 - 1 / 6, 7.0],
                                                                                             abs=1e-6)
    assert decode_keypoints(maps, refine="quarter").coordinates[0, 1].tolist() == [3.75, 7.0]


@pytest.mark.parametrize("blur_sigma", [None, 1.0])
def test_tiny_maps(blur_sigma, cpu_path):
    one = torch.full((1, 1, 1, 1), 0.7)
    assert decode_keypoints(one, refine="dark", blur_sigma=blur_sigma).coordinates.tolist() == [[[0.0, 0.0]]]
    # one row holding a Gaussian: x has its line, y no room at all
    row = torch.exp(-(torch.arange(9.0) - 4.3) ** 2 / (2 * 1.5 ** 2)).view(1, 1, 1, 9)
    decoded = decode_keypoints(row, refine="dark", blur_sigma=blur_sigma).coordinates[0, 0]
    assert decoded[1].item() == 0.0
    assert decoded[0].item() == pytest.approx(4.3, abs=EXACT_ATOL if blur_sigma is None else BLURRED_ATOL)
    column = row.transpose(2, 3)
    decoded = decode_keypoints(column, refine="dark", blur_sigma=blur_sigma).coordinates[0, 0]
    assert decoded[0].item() == 0.0
    assert decoded[1].item() == pytest.approx(4.3, abs=EXACT_ATOL if blur_sigma is None else BLURRED_ATOL)
    two = torch.tensor([[0.2, 0.9], [0.1, 0.4]]).view(1, 1, 2, 2)  # a 2x2 map: no line has 3 pixels
    assert decode_keypoints(two, refine="dark", blur_sigma=blur_sigma).coordinates.tolist() == [[[1.0, 0.0]]]


def test_nan_heatmaps_are_a_clear_error():
    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        decode_keypoints(maps)
    with pytest.raises(ValueError, match="refine"):
        decode_keypoints(torch.zeros(1, 1, 4, 4), refine="sixteenth")


# ----------------------------------------------------------------------------------------------
# gaussian_blur
# ----------------------------------------------------------------------------------------------
def _scipy_blur(maps, sigma):
    """The blur alone, unscaled, per (H, W) map."""
    flat = maps.double().reshape(-1, *maps.shape[-2:]).numpy()
    blurred = [ndimage.gaussian_filter(m, sigma, mode="nearest", radius=max(1, math.ceil(3 * sigma))) for m in flat]
    return torch.from_numpy(np.stack(blurred)).view(maps.shape)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("size", [(17, 13), (3, 2), (1, 1)])
def test_blur_is_scipy_s_replicate_blur_rescaled_to_the_original_maximum(sigma, size):
    maps = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(6)) ** 2 + 0.01
    blurred = gaussian_blur(maps, sigma)
    plain = _scipy_blur(maps, sigma)
    expected = plain * (maps.double().amax(dim=(2, 3), keepdim=True) / plain.amax(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(blurred.double(), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(blurred.amax(dim=(2, 3)), maps.amax(dim=(2, 3)), atol=1e-6, rtol=0)


def test_blur_leaves_maps_without_a_positive_maximum_unscaled():
    generator = torch.Generator().manual_seed(7)
    maps = torch.zeros(1, 4, 9, 10)
    maps[0, 0] = -torch.rand(9, 10, generator=generator) - 0.1  # all negative
    maps[0, 1] = -1.0
    maps[0, 1, 4, 5] = 0.01  # a positive maximum whose blurred maximum is negative
    maps[0, 2] = torch.rand(9, 10, generator=generator) - 0.3  # mixed signs, blurred maximum > 0
    # maps[0, 3] stays 0
    blurred = gaussian_blur(maps, 1.0).double()
    plain = _scipy_blur(maps, 1.0)
    assert plain[0, 1].max() < 0 < plain[0, 2].max()
    torch.testing.assert_close(blurred[0, :2], plain[0, :2], atol=1e-6, rtol=0)  # no sign flip, no scaling
    torch.testing.assert_close(blurred[0, 2], plain[0, 2] * maps[0, 2].max().item() / plain[0, 2].max(),
                               atol=1e-6, rtol=0)
    assert torch.equal(blurred[0, 3], torch.zeros(9, 10, dtype=torch.float64))


def test_blur_of_integer_maps_is_their_float_blur():
    maps = torch.zeros(1, 1, 7, 7, dtype=torch.int64)
    maps[0, 0, 3, 2], maps[0, 0, 3, 3] = 4, 8
    blurred = gaussian_blur(maps, 1.0)
    assert blurred.dtype == torch.float32
    plain = _scipy_blur(maps.double(), 1.0)
    torch.testing.assert_close(blurred.double(), plain * 8 / plain.max(), atol=1e-6, rtol=0)


def test_dark_after_the_blur_of_negative_maps_stays_on_the_argmax(cpu_path):
    maps = -torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(9)) - 0.5
    maps[0, 1, 5, 6] = 0.01  # positive peak over a negative background: blurred all < 0
    index = maps[0].flatten(1).argmax(dim=1)
    expected = torch.stack([index % 12, index // 12], dim=-1).float()
    assert torch.equal(decode_keypoints(maps, refine="dark", blur_sigma=1.5).coordinates[0], expected)


# ----------------------------------------------------------------------------------------------
# The C kernel, the windowed PyTorch path and the whole-map blur
# ----------------------------------------------------------------------------------------------
def test_the_c_kernel_and_the_pytorch_path_agree_on_network_like_maps(c_kernels):
    generator = torch.Generator().manual_seed(4)
    points = torch.rand(3, 17, 2, generator=generator) * torch.tensor([47.0, 63.0]) - 0.5  # borders too
    maps = torch.stack([_one_point_per_channel(p, 2.5, (64, 48), exact_peak=False)[0] for p in points])
    maps = maps + 0.05 * torch.rand(maps.shape, generator=generator)
    kernel = decode_keypoints(maps, refine="dark", blur_sigma=2.0).coordinates
    with use_kernels(False):
        pytorch = decode_keypoints(maps, refine="dark", blur_sigma=2.0).coordinates
    torch.testing.assert_close(kernel, pytorch, atol=2e-5, rtol=0)


def test_the_c_kernel_flags_maps_it_leaves_to_the_whole_map_blur_and_rejects_bad_input(c_kernels):
    maps = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(2)) ** 2
    maps[1], maps[1, 10, 9] = -1.0, -0.5  # a peak value <= 0 has no log
    maps[2], maps[2, 8, 11] = 0.0, 1e-12  # its blurred values lie at the log floor
    points, whole = decode._kernel_points(c_kernels, maps, maps.flatten(1).argmax(dim=1), 1.5)
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


@pytest.mark.parametrize("device", DEVICES)
def test_numpy_and_torch_window_views_hold_every_window(device):
    """The windows DARK reads around peaks (numpy on CPU, torch elsewhere): view[c, t, l] is
    maps[c, t:t+S, l:l+S], also gathered by index arrays (one window per map), as the decoder does."""
    maps = torch.rand(5, 11, 13, generator=torch.Generator().manual_seed(0))
    top, left = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([6, 0, 3, 1, 2])
    by_numpy = window_view_numpy(np.ascontiguousarray(maps.numpy()), 7)
    by_torch = window_view_torch(maps.to(device).contiguous(), 7)
    assert by_numpy.shape == tuple(by_torch.shape) == (5, 5, 7, 7, 7)
    for c in range(5):
        for y in range(5):
            for x in range(7):
                window = maps[c, y:y + 7, x:x + 7].numpy()
                np.testing.assert_array_equal(by_numpy[c, y, x], window)
                np.testing.assert_array_equal(by_torch[c, y, x].cpu().numpy(), window)
    gathered = by_numpy[np.arange(5), top.numpy(), left.numpy()]
    np.testing.assert_array_equal(gathered, by_torch[torch.arange(5, device=device), top.to(device),
                                                     left.to(device)].cpu().numpy())
    np.testing.assert_array_equal(gathered[3], maps[3, 3:10, 1:8].numpy())


# ----------------------------------------------------------------------------------------------
# Batching and multi-instance peaks
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_decoding_is_batched_over_images_and_keypoints(device):
    points = _random_points(12, 6, 26).view(3, 4, 2)
    maps = torch.stack([_one_point_per_channel(p, 1.5, (32, 32), False)[0] for p in points]).to(device)
    decoded = decode_keypoints(maps, refine="dark")
    assert decoded.coordinates.shape == (3, 4, 2) and decoded.scores.shape == (3, 4)
    assert decoded.coordinates.device.type == device
    torch.testing.assert_close(decoded.coordinates.cpu(), points, atol=EXACT_ATOL, rtol=0)


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
