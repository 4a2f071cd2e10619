"""Heatmaps to sub-pixel keypoints, vectorised over every map at once.

Coordinates are heatmap pixels with the centre of pixel (row i, column j) at (x=j, y=i), the
convention of :mod:`heatmapnet.targets`. Refinements:

- ``"none"``: the argmax pixel.
- ``"quarter"``: HRNet's quarter-pixel step towards the higher neighbour on each axis.
- ``"dark"``: DARK (Zhang et al., CVPR 2020), a second-order Taylor expansion of the log-heatmap
  L at the argmax, offset = -H^-1 g, from the 3x3 neighbourhood. The curvatures come from the
  eight neighbours alone (see ``_dark_offsets``): exact for a Gaussian and, unlike the textbook
  L[+1] - 2 L[0] + L[-1], blind to the centre pixel that ``exact_peak`` targets force to 1.0.
  Where a neighbour is off the map or ~0 it falls back to the textbook stencil, then to no offset.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F

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
    """DARK's normalised 1-D Gaussian, radius max(1, ceil(3 sigma))."""
    radius = max(1, int(math.ceil(3 * sigma)))
    grid = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel_1d = torch.exp(-grid ** 2 / (2 * sigma ** 2))
    return kernel_1d / kernel_1d.sum(), radius


def gaussian_blur(heatmaps: torch.Tensor, sigma: float) -> torch.Tensor:
    """DARK's distribution modulation: blur each map, then rescale it to its original maximum."""
    kernel_1d, radius = _blur_kernel(sigma, heatmaps.dtype, heatmaps.device)
    batch, channels, height, width = heatmaps.shape
    maps = heatmaps.reshape(batch * channels, 1, height, width)
    padded = F.pad(maps, (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(F.conv2d(padded, kernel_1d.view(1, 1, 1, -1)), kernel_1d.view(1, 1, -1, 1))
    old_max = maps.amax(dim=(2, 3), keepdim=True)
    new_max = blurred.amax(dim=(2, 3), keepdim=True)
    blurred = blurred * (old_max / new_max.clamp_min(torch.finfo(maps.dtype).tiny))
    return blurred.view(batch, channels, height, width)


def _blurred_patches(maps: torch.Tensor, px: torch.Tensor, py: torch.Tensor, peaks: torch.Tensor, sigma: float):
    """The 3x3 patches of ``gaussian_blur(maps)`` around each map's peak (px, py), in log space.

    Only the (3 + 2 radius)^2 input pixels under a patch are read (clamped indices are the
    replicate padding). The blur's rescaling to the original maximum adds one constant to a
    patch's logs, which DARK's differences cancel; it matters only where a blurred value could
    fall to the log floor, so maps with a patch value at or below the floor (or a maximum <= 0)
    are blurred whole, exactly as :func:`gaussian_blur` does. ``peaks``: each map's maximum.
    Returns the patches, their logs and the in-map masks.
    """
    count, height, width = maps.shape
    kernel_1d, radius = _blur_kernel(sigma, maps.dtype, maps.device)
    span = torch.arange(-_PATCH - radius, _PATCH + radius + 1, device=maps.device)
    rows = (py[:, None] + span[None, :]).clamp(0, height - 1)
    cols = (px[:, None] + span[None, :]).clamp(0, width - 1)
    first_row = torch.arange(count, device=maps.device)[:, None] * height
    window = torch.take(maps, ((first_row + rows) * width)[:, :, None] + cols[:, None, :])  # (N, S, S)
    taps = 2 * _PATCH + 1
    # (S, 3) matrix whose column j holds the kernel at offset j: one conv step per output column
    band = torch.zeros(span.numel(), taps, dtype=maps.dtype, device=maps.device)
    for j in range(taps):
        band[j:j + kernel_1d.numel(), j] = kernel_1d
    patches = band.t() @ (window @ band)  # (N, 3, 3): columns, then rows, as the two 1-D passes
    steps = torch.arange(-_PATCH, _PATCH + 1, device=maps.device)
    row_ok = ((py[:, None] + steps) >= 0) & ((py[:, None] + steps) < height)
    col_ok = ((px[:, None] + steps) >= 0) & ((px[:, None] + steps) < width)
    local = (patches.flatten(1) > _LOG_FLOOR).all(dim=1) & (peaks > 0)
    logs = torch.log(patches.clamp_min(_LOG_FLOOR))
    if not bool(local.all()):
        whole = (~local).nonzero()[:, 0]
        blurred = gaussian_blur(maps[whole][:, None], sigma)[:, 0]
        exact, _, _ = _gather_patches(blurred, torch.arange(whole.numel(), device=maps.device), px[whole], py[whole])
        logs[whole] = torch.log(exact.clamp_min(_LOG_FLOOR))
        patches[whole] = exact
    return patches, logs, row_ok, col_ok


def _gather_patches(maps: torch.Tensor, map_index: torch.Tensor, px: torch.Tensor, py: torch.Tensor):
    """3x3 patches (N, 3, 3) of ``maps[map_index]`` around integer peaks (N,), and in-map masks."""
    _, height, width = maps.shape
    steps = torch.arange(-_PATCH, _PATCH + 1, device=maps.device)
    rows = py[:, None] + steps[None, :]
    cols = px[:, None] + steps[None, :]
    row_ok = (rows >= 0) & (rows < height)
    col_ok = (cols >= 0) & (cols < width)
    patches = maps[map_index[:, None, None], rows.clamp(0, height - 1)[:, :, None], cols.clamp(0, width - 1)[:, None, :]]
    return patches, row_ok, col_ok


def _quarter_offsets(patches, row_ok, col_ok):
    c = _PATCH
    has_x = col_ok[:, c - 1] & col_ok[:, c + 1]
    has_y = row_ok[:, c - 1] & row_ok[:, c + 1]
    dx = torch.sign(patches[:, c, c + 1] - patches[:, c, c - 1]) * 0.25
    dy = torch.sign(patches[:, c + 1, c] - patches[:, c - 1, c]) * 0.25
    return torch.stack([torch.where(has_x, dx, 0.0), torch.where(has_y, dy, 0.0)], dim=-1)


def _dark_offsets(patches, row_ok, col_ok, logs=None):
    """-H^-1 g of the log-heatmap from the 3x3 neighbourhood, curvature without the centre
    (``logs``: the patches' logs where they were taken from shifted values, see _blurred_patches)."""
    c = _PATCH
    if logs is None:
        logs = torch.log(patches.clamp_min(_LOG_FLOOR))
    usable = (patches > _LOG_FLOOR) & row_ok[:, :, None] & col_ok[:, None, :]
    ring_ok = usable.flatten(1).all(dim=1)  # centre included only as "inside the map"
    cross_ok = usable[:, c, :].all(dim=1) & usable[:, :, c].all(dim=1)
    left, right = logs[:, c, c - 1], logs[:, c, c + 1]
    up, down = logs[:, c - 1, c], logs[:, c + 1, c]
    diagonals = logs[:, c - 1, c - 1] + logs[:, c - 1, c + 1] + logs[:, c + 1, c - 1] + logs[:, c + 1, c + 1]
    gx, gy = (right - left) / 2.0, (down - up) / 2.0
    # For L = a x^2 + b y^2 + e xy + ... the diagonals sum to 4(a + b + f) and up + down = 2(b + f):
    # d2L/dx2 = 2a = diagonals / 2 - (up + down), exactly, without L at the centre.
    ring_dxx = diagonals / 2.0 - (up + down)
    ring_dyy = diagonals / 2.0 - (left + right)
    centre = logs[:, c, c]
    textbook_dxx = left - 2.0 * centre + right
    textbook_dyy = up - 2.0 * centre + down
    dxx = torch.where(ring_ok, ring_dxx, textbook_dxx)
    dyy = torch.where(ring_ok, ring_dyy, textbook_dyy)
    dxy = torch.where(ring_ok, (logs[:, c + 1, c + 1] - logs[:, c + 1, c - 1] - logs[:, c - 1, c + 1]
                                + logs[:, c - 1, c - 1]) / 4.0, torch.zeros_like(gx))
    det = dxx * dyy - dxy * dxy
    concave = (ring_ok | cross_ok) & (dxx < 0) & (det > 0)
    safe_det = torch.where(concave, det, torch.ones_like(det))
    offset_x = -(dyy * gx - dxy * gy) / safe_det
    offset_y = -(dxx * gy - dxy * gx) / safe_det
    offsets = torch.stack([offset_x, offset_y], dim=-1).clamp(-1.0, 1.0)
    return torch.where(concave[:, None], offsets, torch.zeros_like(offsets))


def _row_maxima(rows: torch.Tensor):
    """Each row's maximum and the index of its first occurrence (a NaN counts as the maximum).
    On CPU numpy's argmax is one vectorised pass, several times faster than ``torch.max(dim)``."""
    if rows.device.type != "cpu":
        return rows.max(dim=1)
    index = torch.from_numpy(np.ascontiguousarray(rows.detach().numpy().argmax(axis=1)))
    return rows.gather(1, index[:, None])[:, 0], index


def refine_peaks(maps: torch.Tensor, px: torch.Tensor, py: torch.Tensor, refine: str,
                 map_index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sub-pixel positions (N, 2) of integer peaks (px, py) on ``maps[map_index]``; maps (M, H, W),
    ``map_index`` (N,) defaults to one peak per map."""
    if refine not in REFINEMENTS:
        raise ValueError(f"refine must be one of {REFINEMENTS}, got {refine!r}")
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
    """
    _check_shape(heatmaps)
    batch, channels, height, width = heatmaps.shape
    maps = heatmaps.float()
    scores, flat_index = _row_maxima(maps.reshape(batch * channels, -1))
    _check_finite(scores)  # the maximum of a map is NaN exactly when the map holds a NaN
    px, py = flat_index % width, flat_index // width
    maps = maps.reshape(batch * channels, height, width)
    if blur_sigma and refine == "dark" and px.shape[0]:
        patches, logs, row_ok, col_ok = _blurred_patches(maps, px, py, scores, blur_sigma)
        points = torch.stack([px, py], dim=-1).to(maps.dtype) + _dark_offsets(patches, row_ok, col_ok, logs)
    else:
        if blur_sigma:
            maps = gaussian_blur(maps[:, None], blur_sigma)[:, 0]
        points = refine_peaks(maps, px, py, refine)
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
