"""Heatmaps to sub-pixel keypoints, vectorised over every map at once.

Coordinates are heatmap pixels with the centre of pixel (row i, column j) at (x=j, y=i), the
convention of :mod:`heatmapnet.targets`. Refinements:

- ``"none"``: the argmax pixel.
- ``"quarter"``: HRNet's quarter-pixel step towards the higher neighbour on each axis.
- ``"dark"``: DARK (Zhang et al., CVPR 2020), a second-order Taylor expansion of the log-heatmap
  L at the argmax, offset = -H^-1 g, from the 3x3 neighbourhood. The curvatures come from the
  eight neighbours alone (see ``_dark_offsets``): exact for a Gaussian and, unlike the textbook
  L[+1] - 2 L[0] + L[-1], blind to the centre pixel that ``exact_peak`` targets force to 1.0.
  Where a neighbour is off the map or ~0 (a peak on the border), each axis whose line through the
  peak is usable takes its own 1-D Newton step -g/h (textbook stencil, so on an ``exact_peak``
  target it steps f / (1 + f^2 + f_across^2) for a sub-pixel fraction f); an axis without room
  gets no offset.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .kernels import active as active_kernels
from .targets import usable_sigmas
from .windows import window_view_numpy, window_view_torch


REFINEMENTS = ("none", "quarter", "dark")
_LOG_FLOOR = 1e-10  # log-heatmap floor for DARK: values at or below it carry no shape information
_PATCH = 1  # neighbours gathered on each side of the argmax


class DecodedKeypoints(NamedTuple):
    coordinates: torch.Tensor  # (B, K, 2) x, y in heatmap pixels
    scores: torch.Tensor  # (B, K) heatmap value at the peak


class Peaks(NamedTuple):
    scores: torch.Tensor  # (B, k)
    classes: torch.Tensor  # (B, k) channel of each peak
    points: torch.Tensor  # (B, k, 2) x, y in heatmap pixels


def _check_shape(heatmaps: torch.Tensor) -> None:
    if heatmaps.dim() != 4:
        raise ValueError(f"heatmaps must have shape (B, K, H, W), got {tuple(heatmaps.shape)}")


def _check_finite(values: torch.Tensor) -> None:
    if torch.isnan(values).any():
        raise ValueError("heatmaps contain NaN; the model output is not finite")


def _check_heatmaps(heatmaps: torch.Tensor) -> None:
    _check_shape(heatmaps)
    _check_finite(heatmaps)


def _blur_kernel(sigma: float, dtype, device):
    """DARK's normalised 1-D Gaussian, radius max(1, ceil(3 sigma)); the one source of the blur for
    both paths, so both refuse a sigma that :func:`heatmapnet.targets.usable_sigmas` refuses."""
    if not bool(usable_sigmas(torch.tensor(float(sigma)))):
        raise ValueError(f"DARK's blur sigma is {float(sigma):g}: it must be finite and > 0, its square a normal "
                         "float32 (sigma >= 1.1e-19)")
    radius = max(1, int(math.ceil(3 * sigma)))
    grid = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel_1d = torch.exp(-grid ** 2 / (2 * sigma ** 2))
    return kernel_1d / kernel_1d.sum(), radius


def gaussian_blur(heatmaps: torch.Tensor, sigma: float) -> torch.Tensor:
    """DARK's distribution modulation of (B, K, H, W) maps: a separable Gaussian blur (kernel
    radius max(1, ceil(3 sigma)), the map's edge pixels replicated beyond its borders), then each
    map rescaled to its original maximum. A map whose maximum or blurred maximum is <= 0 has no
    positive maximum to keep: it is returned blurred but unscaled (never sign-flipped). Integer
    maps are blurred as float32.

    Border bias: the replicated edge stands in for values that, beyond a peak, would keep
    falling, so a peak near a border is pulled towards it. DARK on the blurred map of a Gaussian
    (sigma 1..3 px) whose peak pixel lies d pixels inside the border is shifted outwards, on
    average over its sub-pixel positions (largest shift in brackets; larger for wider Gaussians):

    ==========  ================  ================  ================  ================  ==============
    blur sigma  d = 1             d = 2             d = 3             d = 4             d = 5
    ==========  ================  ================  ================  ================  ==============
    1           0.34-0.47 (0.55)  0.02-0.07 (0.12)  < 0.006 (0.01)    none              none
    1.5         0.65-0.84 (0.98)  0.08-0.33 (0.45)  < 0.08 (0.12)     < 0.011 (0.02)    < 0.002
    2           0.85-1.0 (1.4)    0.19-0.67 (0.80)  < 0.25 (0.35)     < 0.07 (0.10)     < 0.013 (0.02)
    ==========  ================  ================  ================  ================  ==============

    (d = 0: the peak is on the border and that axis gets no offset anyway; "none": the blur's
    window, radius + 1 pixels, stays inside the map.) Blurring with zeros outside and dividing by
    the blurred in-map mask (normalised convolution) was measured to shift further at every d
    (e.g. 0.45-0.55 px at d = 1, 0.07-0.12 at d = 2 for blur sigma 1); zero padding shifts
    inwards by about as much. Without the blur, DARK is exact on a Gaussian at every d >= 1.
    """
    _check_shape(heatmaps)
    if not heatmaps.is_floating_point():
        heatmaps = heatmaps.float()
    kernel_1d, radius = _blur_kernel(sigma, heatmaps.dtype, heatmaps.device)
    batch, channels, height, width = heatmaps.shape
    maps = heatmaps.reshape(batch * channels, 1, height, width)
    padded = F.pad(maps, (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(F.conv2d(padded, kernel_1d.view(1, 1, 1, -1)), kernel_1d.view(1, 1, -1, 1))
    old_max = maps.amax(dim=(2, 3), keepdim=True)
    new_max = blurred.amax(dim=(2, 3), keepdim=True)
    positive = (old_max > 0) & (new_max > 0)
    blurred = blurred * torch.where(positive, old_max / torch.where(positive, new_max, 1.0), 1.0)
    return blurred.view(batch, channels, height, width)


def _peak_windows(maps: torch.Tensor, px: torch.Tensor, py: torch.Tensor, reach: int):
    """(N, S, S) windows of ``maps`` (N, H, W), S = 2 reach + 1, centred on (px, py) where the map
    allows and moved inwards at its borders, with their top and left lines. Needs H, W >= S."""
    count, height, width = maps.shape
    size = 2 * reach + 1
    top = (py - reach).clamp(0, height - size)
    left = (px - reach).clamp(0, width - size)
    every_window = _every_window_numpy if maps.device.type == "cpu" else _every_window_torch
    return every_window(maps, top, left, size), top, left


def _every_window_torch(maps: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    view = window_view_torch(maps.contiguous(), size)
    return view[torch.arange(maps.shape[0], device=maps.device), top, left]


def _every_window_numpy(maps: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """As ``_every_window_torch``; numpy copies each window line as a block, about twice as fast."""
    view = window_view_numpy(np.ascontiguousarray(maps.detach().numpy()), size)
    return torch.from_numpy(view[np.arange(maps.shape[0]), top.numpy(), left.numpy()])


class _PatchBlur(NamedTuple):
    """DARK's blur restricted to the 3x3 patch around a peak, read from the S x S window around it
    (S = 2 reach + 1): ``weights`` (S*S, 9) maps a centred window to its blurred patch in one
    product; ``bands[reach + d]`` (S, 3) blurs a window line whose start was moved d lines
    inwards at the map's border, the edge line standing in for the lines past it (replicate
    padding)."""
    reach: int
    weights: torch.Tensor
    bands: torch.Tensor


@functools.lru_cache(maxsize=16)
def _patch_blur(sigma: float, dtype: torch.dtype, device: torch.device) -> _PatchBlur:
    kernel_1d, radius = _blur_kernel(sigma, torch.float64, torch.device("cpu"))
    reach, taps = radius + _PATCH, 2 * _PATCH + 1
    size = 2 * reach + 1
    band = torch.zeros(size, taps, dtype=torch.float64)
    for column in range(taps):  # column c: the blur centred on padded line c + radius
        band[column:column + kernel_1d.numel(), column] = kernel_1d
    lines = torch.arange(size)
    bands = torch.stack([torch.zeros_like(band).index_add_(0, (lines - shift).clamp(0, size - 1), band)
                         for shift in range(-reach, reach + 1)])
    weights = torch.einsum("ra,cb->rcab", band, band).reshape(size * size, taps * taps)
    return _PatchBlur(reach, weights.to(dtype=dtype, device=device), bands.to(dtype=dtype, device=device))


def _blurred_patches(maps: torch.Tensor, px: torch.Tensor, py: torch.Tensor, peaks: torch.Tensor, sigma: float):
    """The 3x3 patches of ``gaussian_blur(maps)`` around each map's peak (px, py), in-map masks,
    and the maps whose patches cannot be used (indices), which the caller blurs whole.

    Only the (3 + 2 radius)^2 pixels of the window around a peak are read and blurred by one
    matrix product; windows shifted inwards at a map's border are blurred by their own bands.
    ``gaussian_blur``'s rescaling to the original maximum multiplies a patch by one constant,
    which DARK's log differences cancel; it matters only where a blurred value could fall to the
    log floor, so maps with an in-map patch value at or below the floor (or a maximum <= 0), and
    maps smaller than a window, are left to the whole-map blur. ``peaks``: each map's maximum.
    """
    count, height, width = maps.shape
    blur = _patch_blur(float(sigma), maps.dtype, maps.device)
    taps = 2 * _PATCH + 1
    row_ok, col_ok = _in_map(px, py, height, width)
    if min(height, width) < 2 * blur.reach + 1:
        patches = torch.ones(count, taps, taps, dtype=maps.dtype, device=maps.device)
        local = torch.zeros(count, dtype=torch.bool, device=maps.device)
    else:
        windows, top, left = _peak_windows(maps, px, py, blur.reach)
        patches = (windows.reshape(count, -1) @ blur.weights).view(count, taps, taps)
        shift_y, shift_x = top - (py - blur.reach), left - (px - blur.reach)
        shifted = ((shift_y != 0) | (shift_x != 0)).nonzero()[:, 0]
        if shifted.numel():
            rows, cols = blur.bands[blur.reach + shift_y[shifted]], blur.bands[blur.reach + shift_x[shifted]]
            patches[shifted] = torch.bmm(rows.transpose(1, 2), torch.bmm(windows[shifted], cols))
        in_map = row_ok[:, :, None] & col_ok[:, None, :]
        local = ((patches > _LOG_FLOOR) | ~in_map).flatten(1).all(dim=1) & (peaks > 0)
    return patches, row_ok, col_ok, (~local).nonzero()[:, 0]


@functools.lru_cache(maxsize=16)
def _blur_kernel_numpy(sigma: float) -> np.ndarray:
    """:func:`_blur_kernel` as the C kernel takes it, made once per sigma."""
    return _blur_kernel(sigma, torch.float32, torch.device("cpu"))[0].numpy()


def _kernel_points(kernels, maps: torch.Tensor, flat_index: torch.Tensor, sigma: float):
    """DARK's points after its blur by the C kernel (CPU; ``kernels`` the extension), and the maps
    it leaves to the whole-map blur (indices), under the same rules as :func:`_blurred_patches`."""
    count, height, width = maps.shape
    points = np.empty((count, 2), dtype=np.float32)
    whole = np.empty(count, dtype=np.uint8)
    kernels.blurred_dark_points(np.ascontiguousarray(maps.detach().numpy()), height, width,
                                np.ascontiguousarray(flat_index.numpy()), _blur_kernel_numpy(sigma), _LOG_FLOOR,
                                points, whole)
    return torch.from_numpy(points), torch.from_numpy(np.flatnonzero(whole))


def _blurred_dark_points(maps: torch.Tensor, flat_index: torch.Tensor, scores: torch.Tensor, sigma: float):
    """Sub-pixel points (N, 2) of DARK after its blur at each float32 map's peak (``maps``
    (N, H, W); the peak's flat index and value): the C kernel on CPU where it is built, else the
    windowed PyTorch path; maps either leaves over are blurred whole."""
    width = maps.shape[2]
    kernels = active_kernels()
    if kernels is not None and maps.device.type == "cpu":
        points, whole = _kernel_points(kernels, maps, flat_index, sigma)
    else:
        px, py = flat_index % width, flat_index // width
        patches, row_ok, col_ok, whole = _blurred_patches(maps, px, py, scores, sigma)
        points = torch.stack([px, py], dim=-1).to(maps.dtype) + _dark_offsets(patches, row_ok, col_ok)
    if whole.numel():
        px, py = flat_index[whole] % width, flat_index[whole] // width
        blurred = gaussian_blur(maps[whole][:, None], sigma)[:, 0]
        patches = _gather_patches(blurred, torch.arange(whole.numel(), device=maps.device), px, py)
        points[whole] = torch.stack([px, py], dim=-1).to(maps.dtype) + _dark_offsets(*patches)
    return points


def _in_map(px: torch.Tensor, py: torch.Tensor, height: int, width: int):
    """Which rows and columns of the 3x3 patches around (px, py) lie inside the map: (N, 3) each."""
    steps = torch.arange(-_PATCH, _PATCH + 1, device=px.device)
    rows, cols = py[:, None] + steps, px[:, None] + steps
    return (rows >= 0) & (rows < height), (cols >= 0) & (cols < width)


def _gather_patches(maps: torch.Tensor, map_index: torch.Tensor, px: torch.Tensor, py: torch.Tensor):
    """3x3 patches (N, 3, 3) of ``maps[map_index]`` around integer peaks (N,), and in-map masks."""
    _, height, width = maps.shape
    steps = torch.arange(-_PATCH, _PATCH + 1, device=maps.device)
    rows = (py[:, None] + steps).clamp(0, height - 1)
    cols = (px[:, None] + steps).clamp(0, width - 1)
    lines = (map_index[:, None] * height + rows) * width  # flat indices: torch's 3-tensor indexing is ~10x slower
    patches = maps.reshape(-1).take(lines[:, :, None] + cols[:, None, :])
    return (patches, *_in_map(px, py, height, width))


def _quarter_offsets(patches, row_ok, col_ok):
    c = _PATCH
    has_x = col_ok[:, c - 1] & col_ok[:, c + 1]
    has_y = row_ok[:, c - 1] & row_ok[:, c + 1]
    dx = torch.sign(patches[:, c, c + 1] - patches[:, c, c - 1]) * 0.25
    dy = torch.sign(patches[:, c + 1, c] - patches[:, c - 1, c]) * 0.25
    return torch.stack([torch.where(has_x, dx, 0.0), torch.where(has_y, dy, 0.0)], dim=-1)


@functools.lru_cache(maxsize=16)
def _log_stencils(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(9, 7) finite-difference weights on a row-major 3x3 log patch (index 3 (dy + 1) + dx + 1):
    columns gx, gy, d2/dx2 and d2/dy2 from the eight neighbours, d2/dxdy, and the textbook
    d2/dx2 and d2/dy2 through the centre.

    For L = a x^2 + b y^2 + e xy + f the diagonals sum to 4(a + b + f) and up + down to 2(b + f),
    so d2L/dx2 = 2a = diagonals / 2 - (up + down), exactly, without L at the centre."""
    corners, up, down, left, right, centre = (0, 2, 6, 8), 1, 7, 3, 5, 4
    weights = torch.zeros(9, 7, dtype=torch.float64)
    weights[[right, left], 0] = torch.tensor([0.5, -0.5], dtype=torch.float64)
    weights[[down, up], 1] = torch.tensor([0.5, -0.5], dtype=torch.float64)
    weights[list(corners), 2] = weights[list(corners), 3] = 0.5
    weights[[up, down], 2] = weights[[left, right], 3] = -1.0
    weights[list(corners), 4] = torch.tensor([0.25, -0.25, -0.25, 0.25], dtype=torch.float64)
    weights[[left, centre, right], 5] = weights[[up, centre, down], 6] = torch.tensor([1.0, -2.0, 1.0],
                                                                                    dtype=torch.float64)
    return weights.to(dtype=dtype, device=device)


def _dark_offsets(patches, row_ok, col_ok):
    """Offsets (N, 2) of the log-heatmap L's maximum from 3x3 patches (N, 3, 3) around peaks.

    A value is usable where it lies inside the map and above the log floor. Where all nine are:
    -H^-1 g, the curvatures from the eight neighbours (blind to a centre that ``exact_peak``
    forced to 1), kept where H is negative definite. Elsewhere each axis on its own: the 1-D
    Newton step -g/h from the centred first and second differences of L along the line through
    the centre, where that line's three values are usable and h < 0; an axis without room (a
    peak on the border) gets no offset. Offsets are clamped to one pixel."""
    usable = (patches > _LOG_FLOOR) & row_ok[:, :, None] & col_ok[:, None, :]
    ring_ok = usable.flatten(1).all(dim=1)
    lines_ok = torch.stack([usable[:, _PATCH, :].all(dim=1), usable[:, :, _PATCH].all(dim=1)], dim=-1)
    logs = torch.log(patches.clamp_min(_LOG_FLOOR)).flatten(1)
    gx, gy, dxx, dyy, dxy, line_dxx, line_dyy = (logs @ _log_stencils(logs.dtype, logs.device)).unbind(dim=1)
    det = dxx * dyy - dxy * dxy
    step_2d = ring_ok & (dxx < 0) & (det > 0)
    offsets_2d = torch.stack([dxy * gy - dyy * gx, dxy * gx - dxx * gy], dim=-1) / \
        torch.where(step_2d, det, 1.0)[:, None]
    curvatures = torch.stack([line_dxx, line_dyy], dim=-1)
    step_1d = ~ring_ok[:, None] & lines_ok & (curvatures < 0)
    offsets_1d = -torch.stack([gx, gy], dim=-1) / torch.where(step_1d, curvatures, 1.0)
    offsets = torch.where(step_2d[:, None], offsets_2d, torch.where(step_1d, offsets_1d, 0.0))
    return offsets.clamp(-1.0, 1.0)


def _row_maxima(rows: torch.Tensor):
    """Each row's maximum and the index of its first occurrence (a NaN counts as the maximum).
    On CPU numpy's argmax is one vectorised pass, several times faster than ``torch.max(dim)``."""
    if rows.device.type != "cpu":
        return rows.max(dim=1)
    values = rows.detach().numpy()
    index = values.argmax(axis=1)
    return torch.from_numpy(values[np.arange(values.shape[0]), index]), torch.from_numpy(index)


def refine_peaks(maps: torch.Tensor, px: torch.Tensor, py: torch.Tensor, refine: str,
                 map_index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sub-pixel positions (N, 2) of integer peaks (px, py) on ``maps[map_index]``; maps (M, H, W),
    ``map_index`` (N,) defaults to one peak per map. Maps of integers or of fewer than 32 bits
    (whose range ends above DARK's log floor) are refined in float32."""
    if refine not in REFINEMENTS:
        raise ValueError(f"refine must be one of {REFINEMENTS}, got {refine!r}")
    if not maps.is_floating_point() or torch.finfo(maps.dtype).bits < 32:
        maps = maps.float()
    points = torch.stack([px, py], dim=-1).to(maps.dtype)
    if refine == "none" or px.shape[0] == 0:
        return points
    if map_index is None:
        map_index = torch.arange(px.shape[0], device=maps.device)
    patches, row_ok, col_ok = _gather_patches(maps, map_index, px, py)
    if refine == "quarter":
        return points + _quarter_offsets(patches, row_ok, col_ok)
    return points + _dark_offsets(patches, row_ok, col_ok)


def decode_keypoints(heatmaps: torch.Tensor, refine: str = "dark",
                     blur_sigma: Optional[float] = None) -> DecodedKeypoints:
    """One keypoint per channel: argmax of each (B, K, H, W) map, refined to sub-pixel.

    ``blur_sigma`` applies DARK's Gaussian modulation first (useful on network outputs; leave it
    None on clean targets). Scores are the map values at the integer peaks, before any blur.
    The blur pulls peaks near a border outwards (:func:`gaussian_blur` tabulates it): for
    ``blur_sigma=1`` by 0.34-0.47 px when the peak pixel is 1 px from the border, 0.02-0.07 px
    at 2 px, < 0.01 px beyond; for ``blur_sigma=2`` by 0.85-1, 0.19-0.67, < 0.25, < 0.07 px at
    1, 2, 3, 4 px. A peak on a border row or column gets no offset across that border.
    """
    _check_shape(heatmaps)
    batch, channels, height, width = heatmaps.shape
    maps = heatmaps.float()
    scores, flat_index = _row_maxima(maps.reshape(batch * channels, -1))
    _check_finite(scores)  # the maximum of a map is NaN exactly when the map holds a NaN
    maps = maps.reshape(batch * channels, height, width)
    if blur_sigma and refine == "dark" and flat_index.shape[0]:
        points = _blurred_dark_points(maps, flat_index, scores, float(blur_sigma))
    else:
        if blur_sigma:
            maps = gaussian_blur(maps[:, None], blur_sigma)[:, 0]
        points = refine_peaks(maps, flat_index % width, flat_index // width, refine)
    return DecodedKeypoints(points.view(batch, channels, 2), scores.view(batch, channels))


def decode_peaks(heatmaps: torch.Tensor, k: int = 100, refine: str = "dark",
                 pool_size: int = 3) -> Peaks:
    """Several instances per channel (CenterNet): peaks kept by max-pool suppression, top-k of
    all channels and positions together, each refined to sub-pixel."""
    _check_heatmaps(heatmaps)
    batch, channels, height, width = heatmaps.shape
    maps = heatmaps.float()
    pooled = F.max_pool2d(maps, pool_size, stride=1, padding=pool_size // 2)
    suppressed = torch.where(pooled == maps, maps, torch.full_like(maps, -math.inf))
    k = min(k, channels * height * width)
    scores, flat_index = suppressed.reshape(batch, -1).topk(k, dim=1)
    classes = flat_index // (height * width)
    pixel = flat_index % (height * width)
    px, py = pixel % width, pixel // width
    map_index = (torch.arange(batch, device=maps.device)[:, None] * channels + classes).reshape(-1)
    points = refine_peaks(maps.reshape(batch * channels, height, width), px.reshape(-1), py.reshape(-1),
                          refine, map_index=map_index)
    return Peaks(scores, classes, points.view(batch, k, 2))
