"""Heatmap targets: CornerNet's Gaussian radius, sigma policies and vectorised Gaussian splatting.

Coordinate convention (shared with :mod:`heatmapnet.decode` and :mod:`heatmapnet.codec`): a point
(x, y) is in heatmap pixels, sub-pixel, and the centre of the pixel at row i, column j is (x=j, y=i).
A map of size (H, W) therefore covers x in [-0.5, W - 0.5) and y in [-0.5, H - 0.5).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .registry import Registry
from .kernels import active as active_kernels
from .windows import window_view_numpy


ArrayLike = Union[float, np.ndarray, torch.Tensor, Sequence[float]]

TRUNCATE_SIGMAS = 3.0  # each Gaussian is zero beyond this many sigmas from its point
# A Gaussian's value at TRUNCATE_SIGMAS, less float32 rounding: values at or above it are kept
_VALUE_AT_TRUNCATION = math.exp(-TRUNCATE_SIGMAS ** 2 / 2) * (1 - 1e-6)


# ----------------------------------------------------------------------------------------------
# CornerNet's radius
# ----------------------------------------------------------------------------------------------
def _radius_exact(h, w, o, lib):
    """Largest corner shift r keeping IoU >= o, each case's quadratic solved for its valid root.

    Case 1, one corner in and one out (the box translated by r in x and y):
        IoU = (w-r)(h-r) / (2wh - (w-r)(h-r))  ->  r^2 - (w+h) r + wh (1-o)/(1+o) >= 0;
        r lies below both roots, so the bound is the smaller root.
    Case 2, both corners in (the box shrunk by r on every side):
        IoU = (w-2r)(h-2r) / wh  ->  4r^2 - 2(w+h) r + (1-o) wh >= 0; again the smaller root.
    Case 3, both corners out (the box grown by r on every side):
        IoU = wh / ((w+2r)(h+2r))  ->  4o r^2 + 2o(w+h) r - (1-o) wh <= 0; the positive root.
    """
    s = h + w
    r1 = (s - lib.sqrt(s * s - 4.0 * w * h * (1.0 - o) / (1.0 + o))) / 2.0
    r2 = (2.0 * s - lib.sqrt(4.0 * s * s - 16.0 * (1.0 - o) * w * h)) / 8.0
    r3 = (-2.0 * o * s + lib.sqrt(4.0 * o * o * s * s + 16.0 * o * (1.0 - o) * w * h)) / (8.0 * o)
    return lib.minimum(lib.minimum(r1, r2), r3)


def _radius_centernet(h, w, o, lib):
    """CenterNet's published values: the larger roots, and no division by 2a in cases 2 and 3."""
    s = h + w
    r1 = (s + lib.sqrt(s * s - 4.0 * w * h * (1.0 - o) / (1.0 + o))) / 2.0
    r2 = (2.0 * s + lib.sqrt(4.0 * s * s - 16.0 * (1.0 - o) * w * h)) / 2.0
    b3 = -2.0 * o * s
    r3 = (b3 + lib.sqrt(b3 * b3 + 16.0 * o * (1.0 - o) * w * h)) / 2.0
    return lib.minimum(lib.minimum(r1, r2), r3)


_RADIUS_FORMULAS = {"exact": _radius_exact, "centernet": _radius_centernet}


def gaussian_radius(height: ArrayLike, width: ArrayLike, min_overlap: float = 0.7, formula: str = "exact"):
    """CornerNet's radius: the largest shift of a box's corners keeping IoU >= ``min_overlap``.

    ``formula="exact"`` solves each of the three cases for its correct root; ``"centernet"``
    reproduces CenterNet's published (wrong-root) values, about 3.4x larger at overlap 0.7, for
    reproducing its numbers. Accepts scalars, numpy arrays or tensors and returns the same kind.
    """
    if formula not in _RADIUS_FORMULAS:
        raise ValueError(f"formula must be one of {sorted(_RADIUS_FORMULAS)}, got {formula!r}")
    if not 0.0 < min_overlap < 1.0:
        raise ValueError(f"min_overlap must lie in (0, 1), got {min_overlap}")
    solve = _RADIUS_FORMULAS[formula]
    if isinstance(height, torch.Tensor) or isinstance(width, torch.Tensor):
        ref = height if isinstance(height, torch.Tensor) else width
        dtype = ref.dtype if ref.is_floating_point() else torch.float32
        h = torch.as_tensor(height, dtype=dtype, device=ref.device)
        w = torch.as_tensor(width, dtype=dtype, device=ref.device)
        _check_box_sides(h, w)
        return solve(h, w, min_overlap, torch)
    h = np.asarray(height, dtype=np.float64)
    w = np.asarray(width, dtype=np.float64)
    _check_box_sides(h, w)
    radius = solve(h, w, min_overlap, np)
    return float(radius) if radius.ndim == 0 else radius


def _check_box_sides(h, w):
    bad = ~((h >= 0) & (w >= 0))  # also catches NaN
    if bool(bad.any()):
        raise ValueError("gaussian_radius: box height and width must be finite and >= 0")


# ----------------------------------------------------------------------------------------------
# Sigma policies: how wide each keypoint's Gaussian is, in heatmap pixels
# ----------------------------------------------------------------------------------------------
#: Sigma policies by their ``target.sigma_policy`` name; each has ``from_config(target, scheme)``.
SIGMA_POLICIES: Registry = Registry("target.sigma_policy")


def sigma_from_radius(radius):
    """CenterNet's rule: a Gaussian of diameter 2r + 1 pixels spans six sigmas."""
    return (2.0 * radius + 1.0) / 6.0


@SIGMA_POLICIES.register("fixed")
@dataclass(frozen=True)
class FixedSigma:
    """One sigma for every keypoint (HRNet/mmpose: 2 heatmap pixels at stride 4)."""

    sigma: float = 2.0

    @classmethod
    def from_config(cls, target, scheme) -> "FixedSigma":
        return cls(float(target.sigma))

    def __call__(self, box_sizes: torch.Tensor, num_keypoints: int) -> torch.Tensor:
        """box_sizes (N, 2) as (w, h) in heatmap pixels -> sigmas (N, K)."""
        return torch.full((box_sizes.shape[0], num_keypoints), float(self.sigma),
                          dtype=torch.float32, device=box_sizes.device)


@SIGMA_POLICIES.register("radius")
@dataclass(frozen=True)
class RadiusSigma:
    """Size-adaptive sigma from CornerNet's radius of the instance's box (CenterNet's targets)."""

    min_overlap: float = 0.7
    formula: str = "exact"
    # Radius 0 would give sigma 1/6, a one-pixel target. At 0.75 the whole 3x3 neighbourhood of a
    # point lies within 3 sigma (at most 2.12 px away), so DARK can decode even exact-peak targets.
    min_sigma: float = 0.75

    @classmethod
    def from_config(cls, target, scheme) -> "RadiusSigma":
        return cls(float(target.min_overlap), str(target.radius_formula))

    def __call__(self, box_sizes: torch.Tensor, num_keypoints: int) -> torch.Tensor:
        box_sizes = box_sizes.to(torch.float32)
        radius = gaussian_radius(box_sizes[:, 1], box_sizes[:, 0], self.min_overlap, self.formula)
        sigma = sigma_from_radius(radius).clamp_min(self.min_sigma)
        return sigma[:, None].expand(-1, num_keypoints).contiguous()


@SIGMA_POLICIES.register("oks")
@dataclass(frozen=True)
class OKSSigma:
    """Per-keypoint-type sigma from the COCO OKS constants, so a wrist and a hip differ.

    OKS models the annotators' spread of keypoint k on an object of area s^2 as a Gaussian of
    standard deviation ``2 * oks_sigma_k * s``; the target uses that spread times ``scale``
    (in heatmap pixels, since ``s`` is measured on the heatmap), clamped to ``min_sigma``.
    """

    oks_sigmas: tuple
    scale: float = 1.0
    min_sigma: float = 0.5

    @classmethod
    def from_config(cls, target, scheme) -> "OKSSigma":
        return cls(tuple(float(s) for s in scheme.oks_sigmas), float(target.oks_scale))

    def __call__(self, box_sizes: torch.Tensor, num_keypoints: int) -> torch.Tensor:
        if len(self.oks_sigmas) != num_keypoints:
            raise ValueError(f"OKSSigma has {len(self.oks_sigmas)} sigmas for {num_keypoints} keypoints")
        box_sizes = box_sizes.to(torch.float32)
        object_scale = torch.sqrt(box_sizes[:, 0] * box_sizes[:, 1])
        kappa = torch.as_tensor(self.oks_sigmas, dtype=torch.float32, device=box_sizes.device)
        sigma = 2.0 * kappa[None, :] * object_scale[:, None] * self.scale
        return sigma.clamp_min(self.min_sigma)


def build_sigma_policy(name: str, **kwargs):
    """A sigma policy by name: ``fixed``, ``radius`` or ``oks``."""
    return SIGMA_POLICIES.get(name)(**kwargs)


# ----------------------------------------------------------------------------------------------
# Gaussian splatting
# ----------------------------------------------------------------------------------------------
def _as_float_tensor(value, name, device=None, dtype=torch.float32):
    tensor = torch.as_tensor(value, dtype=dtype, device=device)
    if tensor.is_floating_point() and torch.isnan(tensor).any():
        raise ValueError(f"{name} contains NaN")
    return tensor


def lazy_zeros(numel: int, device: torch.device) -> torch.Tensor:
    """A flat float32 zero tensor. On CPU it comes from calloc, whose fresh pages the kernel zeroes
    lazily, so the pages no Gaussian touches are never written (``torch.zeros`` writes them all)."""
    if device.type == "cpu":
        return torch.from_numpy(np.zeros(numel, dtype=np.float32))
    return torch.zeros(numel, dtype=torch.float32, device=device)


def window_groups(reach: torch.Tensor):
    """Half-widths for groups of points: each distinct reach, merged upwards while the merged
    window has at most 1.3x the pixels, so few groups form and no point pays a much wider window."""
    halves = torch.unique(reach).tolist()
    caps = []
    for half in reversed(halves):
        if not caps or (2 * caps[-1] + 1) ** 2 > 1.3 * (2 * half + 1) ** 2:
            caps.append(half)
    return caps[::-1]


_FLOAT32 = torch.finfo(torch.float32)


def usable_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """Where a float32 sigma can be drawn: finite, > 0, and its square a normal float32 (sigma >=
    about 1.1e-19), so that exp(-d^2 / 2 sigma^2) is never 0 / 0. Both drawing paths (the C
    kernel's ``usable_sigma`` is this rule) and DARK's blur accept exactly these sigmas."""
    sigmas = sigmas.to(torch.float32)
    return (sigmas > 0) & (sigmas <= _FLOAT32.max) & (sigmas * sigmas >= _FLOAT32.tiny)


def check_gaussians(points: torch.Tensor, channels: torch.Tensor, sigmas: torch.Tensor, draw: torch.Tensor,
                    num_channels: int, size) -> None:
    """The checks of :func:`splat_gaussians`' arguments, made before either path draws, so that
    the C kernel and PyTorch accept and refuse the same: ``points`` float32 (N, 2), ``channels``
    int64 (N,) in [0, num_channels), ``sigmas`` float32 (N,) of :func:`usable_sigmas` wherever
    ``draw`` (bool (N,)) is set, maps of ``size`` (H, W) >= 1 whose bytes fit in memory. Each
    failure is a ValueError naming the argument (and the first bad point); nothing is drawn."""
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1 or num_channels < 0:
        raise ValueError(f"splat_gaussians: {num_channels} maps of {height} x {width}: sizes must be >= 1")
    if num_channels * height * width * 4 > sys.maxsize:
        raise ValueError(f"splat_gaussians: {num_channels} float32 maps of {height} x {width} are more bytes than "
                         "memory can address")
    count = points.shape[0] if points.dim() else 0
    expected = {"points": (points, torch.float32, (count, 2), "(N, 2)"),
                "channels": (channels, torch.int64, (count,), "(N,)"),
                "sigmas": (sigmas, torch.float32, (count,), "(N,)"), "draw": (draw, torch.bool, (count,), "(N,)")}
    for name, (tensor, dtype, shape, shape_text) in expected.items():
        if tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise ValueError(f"splat_gaussians: {name} must be {str(dtype)[6:]} of shape {shape_text} for N = {count} "
                             f"points, got {str(tensor.dtype)[6:]} of shape {tuple(tensor.shape)}")
    if count == 0:
        return
    outside = (channels < 0) | (channels >= num_channels)
    if bool(outside.any()):
        first = int(outside.nonzero()[0, 0])
        raise ValueError(f"splat_gaussians: channels[{first}] is {int(channels[first])}, outside [0, {num_channels}); "
                         "nothing was drawn")
    unusable = draw & ~usable_sigmas(sigmas)
    if bool(unusable.any()):
        first = int(unusable.nonzero()[0, 0])
        x, y = points[first].tolist()
        raise ValueError(f"splat_gaussians: sigmas[{first}] is {float(sigmas[first]):g} for the point ({x:g}, {y:g}) "
                         f"of channel {int(channels[first])}: a drawn Gaussian's sigma must be finite and > 0, its "
                         "square a normal float32 (sigma >= 1.1e-19); nothing was drawn")


def splat_gaussians(points: torch.Tensor, channels: torch.Tensor, sigmas: torch.Tensor,
                    draw: torch.Tensor, num_channels: int, size, exact_peak: bool = True) -> torch.Tensor:
    """Draw every point's truncated Gaussian into ``num_channels`` maps at once, max-combined.

    ``points`` (N, 2) float32 heatmap pixels, ``channels`` (N,) int64, the flat output channel of
    each point, ``sigmas`` (N,) float32, ``draw`` (N,) bool. Each point writes only its window of
    half-width ceil(3 sigma + 0.5) around its nearest pixel, computed as the outer product of two
    1-D Gaussians and max-combined into the output: on CPU by the C kernel where it is built, else
    by PyTorch with points grouped by window width. Both paths take the arguments that
    :func:`check_gaussians` passes, and nothing else.
    """
    check_gaussians(points, channels, sigmas, draw, num_channels, size)
    height, width = int(size[0]), int(size[1])
    device = points.device
    out = lazy_zeros(num_channels * height * width, device)
    if points.shape[0] == 0:
        return out.view(num_channels, height, width)
    kernels = active_kernels()
    if kernels is not None and device.type == "cpu":  # one pass over the points, each window written once
        kernels.max_gaussians(out.numpy(), height, width, points.contiguous().numpy(), channels.contiguous().numpy(),
                              sigmas.contiguous().numpy(), draw.contiguous().numpy(), TRUNCATE_SIGMAS,
                              _VALUE_AT_TRUNCATION, exact_peak)
        return out.view(num_channels, height, width)

    centre = torch.floor(points + 0.5)  # the pixel nearest each point
    inside = (centre[:, 0] >= 0) & (centre[:, 0] <= width - 1) & (centre[:, 1] >= 0) & (centre[:, 1] <= height - 1)
    draw = draw & inside
    points, channels, sigmas, centre = points[draw], channels[draw], sigmas[draw], centre[draw]
    if points.shape[0] == 0:
        return out.view(num_channels, height, width)

    # every pixel within 3 sigma of the point lies within 3 sigma + 0.5 of its nearest pixel
    reach = torch.ceil(TRUNCATE_SIGMAS * sigmas + 0.5).clamp_max(max(height, width)).long()  # no inf to cast
    caps = window_groups(reach)
    group_of = torch.bucketize(reach, torch.tensor(caps, device=device))
    order, rounds = _drawing_order(group_of, channels, len(caps), num_channels)
    points, channels, sigmas, centre = points[order], channels[order], sigmas[order], centre[order]
    start = 0
    for half, group_rounds in zip(caps, rounds):
        end = start + sum(group_rounds)
        _splat_window(out, points[start:end], channels[start:end], sigmas[start:end], centre[start:end], half,
                      height, width, exact_peak, group_rounds)
        start = end
    return out.view(num_channels, height, width)


def _drawing_order(group_of: torch.Tensor, channels: torch.Tensor, groups: int, num_channels: int):
    """An order of the points by window group, then by round, a point's round being how many points
    of its group and channel come before it; and each group's round sizes. Each group is then a
    slice, and each round a slice of it that gives every map at most one window."""
    key = group_of * num_channels + channels
    by_key = torch.argsort(key, stable=True)
    _, counts = torch.unique_consecutive(key[by_key], return_counts=True)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rank = torch.empty_like(by_key)
    rank[by_key] = torch.arange(by_key.numel(), device=key.device) - first
    num_rounds = int(counts.max())
    slot = group_of * num_rounds + rank
    sizes = torch.bincount(slot, minlength=groups * num_rounds).view(groups, num_rounds)
    return torch.argsort(slot, stable=True), [[n for n in row if n] for row in sizes.tolist()]


def _splat_window(out, points, channels, sigmas, centre, half: int, height: int, width: int,
                  exact_peak: bool, rounds: Sequence[int]) -> None:
    """Max-combine the (2 half + 1)^2 windows of one group of points into the flat ``out``;
    ``rounds``: sizes of consecutive slices of the points that give each map at most one window.

    A window is centred on its point's nearest pixel and moved inwards where it would cross the
    map's border (the pixels it then covers beyond 3 sigma get 0), so every index is in the map
    and distinct within a window."""
    size = 2 * half + 1
    if size > min(height, width):  # the map is narrower than a window: draw on a padded map, crop
        padded = torch.zeros(int(channels.max()) + 1, height + 2 * half, width + 2 * half, device=out.device)
        _splat_window(padded.view(-1), points + half, channels, sigmas, centre + half, half,
                      height + 2 * half, width + 2 * half, exact_peak, rounds)
        view = out.view(-1, height, width)[:padded.shape[0]]
        torch.maximum(view, padded[:, half:half + height, half:half + width], out=view)
        return
    left = (centre[:, 0].long() - half).clamp(0, width - size)
    top = (centre[:, 1].long() - half).clamp(0, height - size)
    offsets = torch.arange(size, device=points.device)
    xs, ys = left[:, None] + offsets, top[:, None] + offsets  # (N, S) columns and rows, all on the map
    dx2 = (xs - points[:, 0, None]) ** 2
    dy2 = (ys - points[:, 1, None]) ** 2
    variance = sigmas[:, None] ** 2
    # exp(-(dx^2 + dy^2) / 2 sigma^2) = exp(-dx^2 / 2 sigma^2) exp(-dy^2 / 2 sigma^2)
    values = torch.exp(dy2 / (-2.0 * variance))[:, :, None] * torch.exp(dx2 / (-2.0 * variance))[:, None, :]
    F.threshold_(values, _VALUE_AT_TRUNCATION, 0.0)  # beyond 3 sigma: one pass, ~10x cheaper than a d^2 mask
    if exact_peak:
        values[torch.arange(values.shape[0], device=values.device), centre[:, 1].long() - top,
               centre[:, 0].long() - left] = 1.0
    _max_into_windows(out.view(-1, height, width), channels, top, left, values, rounds)


def _max_into_windows(maps: torch.Tensor, channels, top, left, values, rounds: Sequence[int]) -> None:
    """maps[c, t:t+S, l:l+S] = max(itself, v) for every window (c, t, l) with values v (N, S, S)."""
    if maps.device.type == "cpu":
        _max_into_windows_numpy(maps.numpy(), channels.numpy(), top.numpy(), left.numpy(), values.numpy(), rounds)
    else:
        _max_into_windows_torch(maps, channels, top, left, values)


def _max_into_windows_torch(maps: torch.Tensor, channels, top, left, values) -> None:
    height, width, size = maps.shape[1], maps.shape[2], values.shape[1]
    offsets = torch.arange(size, device=maps.device)
    rows = (channels[:, None] * height + top[:, None] + offsets) * width
    flat_index = rows[:, :, None] + (left[:, None] + offsets)[:, None, :]
    maps.view(-1).scatter_reduce_(0, flat_index.reshape(-1), values.reshape(-1), reduce="amax", include_self=True)


def _max_into_windows_numpy(maps: np.ndarray, channels, top, left, values, rounds: Sequence[int]) -> None:
    """The CPU path, round by round (``rounds``: sizes of consecutive slices that give each map at
    most one window). Within a round no two windows overlap, so each gathers its block, takes the
    maximum and writes it back with plain block copies, several times faster than torch's
    element-wise ``scatter_reduce``."""
    every_window = window_view_numpy(maps, values.shape[1], writeable=True)
    start = 0
    for round_size in rounds:
        part = slice(start, start + round_size)
        blocks = (channels[part], top[part], left[part])
        every_window[blocks] = np.maximum(every_window[blocks], values[part])
        start += round_size


def render_heatmaps(points, labels, sigmas, num_classes: int, size, weights=None,
                    exact_peak: bool = True) -> torch.Tensor:
    """Render (C, H, W) heatmaps: each channel the element-wise max of its points' Gaussians.

    ``points`` (N, 2) as (x, y) heatmap pixels; ``labels`` (N,) channel of each point; ``sigmas``
    a scalar or (N,); ``size`` (H, W); ``weights`` (N,): a point of weight 0 draws nothing.
    With ``exact_peak`` the pixel nearest each point is exactly 1.0 (the focal loss's positive);
    without it the sub-pixel Gaussian is untouched (the unbiased target for MSE). Points whose
    nearest pixel lies outside the map draw nothing.
    """
    device = points.device if isinstance(points, torch.Tensor) else None
    points = _as_float_tensor(points, "points", device).reshape(-1, 2)
    labels = torch.as_tensor(labels, device=points.device).reshape(-1).long()
    sigmas = _as_float_tensor(sigmas, "sigmas", points.device).reshape(-1).expand(points.shape[0])
    draw = _draw_mask(weights, points)
    if labels.shape[0] != points.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries for {points.shape[0]} points")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return splat_gaussians(points, labels, sigmas, draw, num_classes, size, exact_peak)


def render_heatmaps_batched(points, labels, sigmas, num_classes: int, size, weights=None,
                            exact_peak: bool = True) -> torch.Tensor:
    """Batched :func:`render_heatmaps`: ``points`` (B, N, 2), ``labels`` (B, N), ``sigmas`` a
    scalar, (B, N) or broadcastable, ``weights`` (B, N) (pad with weight 0) -> (B, C, H, W)."""
    device = points.device if isinstance(points, torch.Tensor) else None
    points = _as_float_tensor(points, "points", device)
    if points.dim() != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (B, N, 2), got {tuple(points.shape)}")
    batch, num_points = points.shape[:2]
    labels = torch.as_tensor(labels, device=points.device).long().expand(batch, num_points)
    sigmas = _as_float_tensor(sigmas, "sigmas", points.device).expand(batch, num_points)
    draw = _draw_mask(weights, points.reshape(-1, 2)).reshape(batch, num_points)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    channel = labels + torch.arange(batch, device=points.device)[:, None] * num_classes
    maps = splat_gaussians(points.reshape(-1, 2), channel.reshape(-1), sigmas.reshape(-1),
                           draw.reshape(-1), batch * num_classes, size, exact_peak)
    return maps.view(batch, num_classes, int(size[0]), int(size[1]))


def _draw_mask(weights, points: torch.Tensor) -> torch.Tensor:
    if weights is None:
        return torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
    weights = _as_float_tensor(weights, "weights", points.device).reshape(-1)
    if weights.shape[0] != points.shape[0]:
        raise ValueError(f"weights has {weights.shape[0]} entries for {points.shape[0]} points")
    return weights > 0
