"""The anchors' published formulations, written in their style: benchmark baselines and test oracles.

Each function here follows one published function of CenterNet (xingyizhou/CenterNet), HRNet
(leoxiaobin/deep-high-resolution-net.pytorch) or mmpose (open-mmlab/mmpose): its Python loops
over objects and keypoints, its integer conventions (truncation or rounding of a peak), its
window and border conditions and its constants. They are deliberately *not* written to
heatmapnet's definitions: ``heatmapnet bench`` times heatmapnet's fast paths against them, and
the tests use them as oracles, stating explicitly where heatmapnet differs by design.

Departures from the published code, the same everywhere and none of them changing a value:

- nothing is modified in place (CenterNet's ``_sigmoid`` and mmpose's ``gaussian_blur`` overwrite
  their input; mmpose's codec copies its heatmaps first, so its decoding does not either);
- coordinates stay in heatmap pixels: the transforms back to the image (HRNet's
  ``transform_preds``, mmpose's ``scale_factor``) are left out;
- inputs are batched (B, K, H, W) arrays where the published function takes one instance.

Each function's docstring names its source and any further departure.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import torch


# ----------------------------------------------------------------------------------------------
# CenterNet: targets (src/lib/utils/image.py, src/lib/datasets/sample/multi_pose.py)
# ----------------------------------------------------------------------------------------------
def centernet_gaussian_radius(det_size: Tuple[float, float], min_overlap: float = 0.7,
                              original_roots: bool = False) -> float:
    """CenterNet's ``gaussian_radius((height, width), min_overlap)`` (from CornerNet): the
    smallest of three radii, each a root of the quadratic a r^2 - b r + c = 0 of one corner case.

    By default the roots as CenterNet's ``src/lib/utils/image.py`` has them (stored version,
    commit b498e30): (b1 - sq1) / 2 a1, (b2 - sq2) / 2 a2 and (b3 + sq3) / 2 a3 (with b3 < 0).
    ``original_roots=True`` gives the earlier version, copied from CornerNet before its fix and
    quoted in xingyizhou/CenterNet#116: (b + sq) / 2 for all three, the larger roots without the
    division by a, about 3.4x larger at overlap 0.7. The radius is a float; CenterNet's callers
    truncate it (see :func:`centernet_keypoint_radius`).
    """
    height, width = det_size
    a1 = 1.0
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    sq1 = np.sqrt(b1 ** 2 - 4 * a1 * c1)
    a2 = 4.0
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    sq2 = np.sqrt(b2 ** 2 - 4 * a2 * c2)
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    sq3 = np.sqrt(b3 ** 2 - 4 * a3 * c3)
    if original_roots:
        radii = ((b1 + sq1) / 2, (b2 + sq2) / 2, (b3 + sq3) / 2)
    else:
        radii = ((b1 - sq1) / (2 * a1), (b2 - sq2) / (2 * a2), (b3 + sq3) / (2 * a3))
    return float(min(radii))


def centernet_keypoint_radius(height: float, width: float, min_overlap: float = 0.7,
                              original_roots: bool = False) -> int:
    """The integer radius CenterNet's multi-pose sample gives every keypoint of a person:
    ``max(0, int(gaussian_radius((ceil(h), ceil(w)))))`` of the person's box in output pixels."""
    radius = centernet_gaussian_radius((math.ceil(height), math.ceil(width)), min_overlap, original_roots)
    return max(0, int(radius))


def centernet_gaussian2d(shape: Tuple[int, int], sigma: float = 1.0) -> np.ndarray:
    """CenterNet's ``gaussian2D``: exp(-(x^2 + y^2) / 2 sigma^2) on the integer grid centred in a
    ``shape`` window (float64), with values below machine epsilon times its maximum set to 0."""
    half_rows, half_cols = [(side - 1.0) / 2.0 for side in shape]
    ys = np.arange(-half_rows, half_rows + 1)[:, None]
    xs = np.arange(-half_cols, half_cols + 1)[None, :]
    window = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    window[window < np.finfo(window.dtype).eps * window.max()] = 0
    return window


def centernet_draw_gaussian(heatmap: np.ndarray, center, radius: int, k: float = 1.0) -> np.ndarray:
    """CenterNet's ``draw_umich_gaussian``, in place on ``heatmap`` (H, W), which it returns.

    The Gaussian is :func:`centernet_gaussian2d` of side 2 radius + 1 and sigma side / 6, centred
    on the pixel ``int(x), int(y)`` (truncated, not rounded: the peak is exactly k there), filling
    the whole square window, corners included; the window is clipped where it crosses the map's
    border and ``np.maximum``-combined into it. ``radius`` must be an integer, as CenterNet's is.
    """
    diameter = 2 * radius + 1
    gaussian = centernet_gaussian2d((diameter, diameter), sigma=diameter / 6)
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape[0:2]
    left, right = min(x, radius), min(width - x, radius + 1)  # window extent left / right of x
    top, bottom = min(y, radius), min(height - y, radius + 1)
    on_map = heatmap[y - top:y + bottom, x - left:x + right]
    window = gaussian[radius - top:radius + bottom, radius - left:radius + right]
    if min(window.shape) > 0 and min(on_map.shape) > 0:
        np.maximum(on_map, window * k, out=on_map)
    return heatmap


def centernet_keypoint_heatmaps(points: np.ndarray, radii: np.ndarray, num_keypoints: int,
                                size: Sequence[int]) -> np.ndarray:
    """CenterNet's multi-pose keypoint heatmaps (``hm_hp``): for each image, person and keypoint
    in Python loops, a point with 0 <= x < W and 0 <= y < H is truncated to its integer pixel
    (``astype(np.int32)``) and drawn by :func:`centernet_draw_gaussian` with its person's radius.

    ``points`` (B, P, K, 2) in output pixels, already transformed; ``radii`` (B, P) integers
    (:func:`centernet_keypoint_radius`); ``size`` (H, W). Returns (B, K, H, W) float32.
    Departures: every given point counts as visible (CenterNet reads a visibility flag), and the
    output may be rectangular (CenterNet's is ``output_res`` square).
    """
    batch, people = points.shape[:2]
    height, width = int(size[0]), int(size[1])
    heatmaps = np.zeros((batch, num_keypoints, height, width), dtype=np.float32)
    for b in range(batch):
        for person in range(people):
            radius = int(radii[b, person])
            for j in range(num_keypoints):
                point = points[b, person, j]
                if 0 <= point[0] < width and 0 <= point[1] < height:
                    centernet_draw_gaussian(heatmaps[b, j], point.astype(np.int32), radius)
    return heatmaps


# ----------------------------------------------------------------------------------------------
# CenterNet: the focal loss (src/lib/models/losses.py, src/lib/models/utils.py)
# ----------------------------------------------------------------------------------------------
def centernet_sigmoid(logits: torch.Tensor) -> torch.Tensor:
    """CenterNet's ``_sigmoid``: the sigmoid clamped to [1e-4, 1 - 1e-4]. Departure: out of
    place (CenterNet's calls ``sigmoid_`` on the network's output)."""
    return torch.clamp(logits.sigmoid(), min=1e-4, max=1 - 1e-4)


def centernet_neg_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CenterNet's ``_neg_loss`` (CornerNet's modified focal loss) on probabilities ``pred``.

    Positives are ``gt == 1``, negatives ``gt < 1`` (float masks); positives add
    log(p) (1 - p)^2, negatives log(1 - p) p^2 (1 - gt)^4; the sum is divided by the number of
    positives, and when there are none the loss is minus the negative sum, undivided. The
    exponents 2 and 4 are fixed, as published.
    """
    positives = gt.eq(1).float()
    negatives = gt.lt(1).float()
    negative_weights = torch.pow(1 - gt, 4)
    positive_loss = (torch.log(pred) * torch.pow(1 - pred, 2) * positives).sum()
    negative_loss = (torch.log(1 - pred) * torch.pow(pred, 2) * negative_weights * negatives).sum()
    num_positive = positives.sum()
    if num_positive == 0:
        return -negative_loss
    return -(positive_loss + negative_loss) / num_positive


def centernet_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's heatmap loss as its trainer applies it: ``_neg_loss(_sigmoid(output), target)``.
    heatmapnet's focal loss (log-space, unclamped) equals it while every logit lies within
    +-log(1e4 - 1) = +-9.21, where the clamp is inactive."""
    return centernet_neg_loss(centernet_sigmoid(logits), target)


# ----------------------------------------------------------------------------------------------
# HRNet: quarter-offset decoding (lib/core/inference.py)
# ----------------------------------------------------------------------------------------------
def hrnet_get_max_preds(batch_heatmaps: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """HRNet's ``get_max_preds``: argmax of every (B, K, H, W) map as float32 (x, y), and the
    maxima (B, K, 1); a map whose maximum is not > 0 gets the point (0, 0)."""
    batch, keypoints, _, width = batch_heatmaps.shape
    flat = batch_heatmaps.reshape(batch, keypoints, -1)
    index = np.argmax(flat, 2).reshape(batch, keypoints, 1)
    maxvals = np.amax(flat, 2).reshape(batch, keypoints, 1)
    preds = np.tile(index, (1, 1, 2)).astype(np.float32)
    preds[:, :, 0] = preds[:, :, 0] % width
    preds[:, :, 1] = np.floor(preds[:, :, 1] / width)
    preds *= np.tile(np.greater(maxvals, 0.0), (1, 1, 2)).astype(np.float32)
    return preds, maxvals


def hrnet_quarter_decode(batch_heatmaps: np.ndarray) -> np.ndarray:
    """HRNet's ``get_final_preds`` with ``TEST.POST_PROCESS`` on, in heatmap pixels (B, K, 2).

    Per keypoint in a Python loop: px = floor(x + 0.5), py = floor(y + 0.5); only if
    ``1 < px < W - 1 and 1 < py < H - 1`` (one condition for both axes) the point moves 0.25 px
    on each axis towards the higher of its two neighbours (np.sign: not at all on a tie). So no
    offset on either axis for a peak in columns 0, 1 or W - 1 or in rows 0, 1 or H - 1; column
    W - 2 and row H - 2 are refined. Departure: ``transform_preds`` back to the image is left out.
    """
    coords, _ = hrnet_get_max_preds(batch_heatmaps)
    height, width = batch_heatmaps.shape[2], batch_heatmaps.shape[3]
    for n in range(coords.shape[0]):
        for p in range(coords.shape[1]):
            hm = batch_heatmaps[n][p]
            px = int(math.floor(coords[n][p][0] + 0.5))
            py = int(math.floor(coords[n][p][1] + 0.5))
            if 1 < px < width - 1 and 1 < py < height - 1:
                diff = np.array([hm[py][px + 1] - hm[py][px - 1], hm[py + 1][px] - hm[py - 1][px]])
                coords[n][p] += np.sign(diff) * 0.25
    return coords


# ----------------------------------------------------------------------------------------------
# mmpose: DARK (mmpose/codecs/utils/post_processing.py and refinement.py, MSRAHeatmap.decode;
# the same as mmpose 0.x's _get_max_preds, _gaussian_blur and _taylor)
# ----------------------------------------------------------------------------------------------
def mmpose_heatmap_maximum(heatmaps: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """mmpose's ``get_heatmap_maximum`` on (B, K, H, W): float32 locations (x, y) (B, K, 2) and
    values (B, K); a map whose maximum is not > 0 gets the location (-1, -1)."""
    batch, keypoints, height, width = heatmaps.shape
    flat = heatmaps.reshape(batch * keypoints, -1)
    ys, xs = np.unravel_index(np.argmax(flat, axis=1), shape=(height, width))
    locs = np.stack((xs, ys), axis=-1).astype(np.float32)
    vals = np.amax(flat, axis=1)
    locs[vals <= 0.0] = -1
    return locs.reshape(batch, keypoints, 2), vals.reshape(batch, keypoints)


def mmpose_gaussian_blur(heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """mmpose's ``gaussian_blur`` (DARK's distribution modulation) on (..., H, W) maps.

    Per map: pad with ``(kernel - 1) / 2`` zeros on every side (float32), ``cv2.GaussianBlur``
    with a ``kernel`` x ``kernel`` window and sigma 0, which OpenCV turns into
    0.3 ((kernel - 1) / 2 - 1) + 0.8 (2.0 for kernel 11), crop, and rescale to the map's original
    maximum. The zero padding darkens values near the border; cv2's own border rule never reaches
    the crop. Departure: returns a blurred copy instead of overwriting ``heatmaps``.
    """
    assert kernel % 2 == 1
    border = (kernel - 1) // 2
    height, width = heatmaps.shape[-2:]
    blurred = np.array(heatmaps, copy=True)
    for index in np.ndindex(*heatmaps.shape[:-2]):
        origin_max = np.max(blurred[index])
        padded = np.zeros((height + 2 * border, width + 2 * border), dtype=np.float32)
        padded[border:-border, border:-border] = blurred[index]
        padded = cv2.GaussianBlur(padded, (kernel, kernel), 0)
        blurred[index] = padded[border:-border, border:-border]
        with np.errstate(divide="ignore", invalid="ignore"):  # an all-zero map: 0/0, as published
            blurred[index] *= origin_max / np.max(blurred[index])
    return blurred


def mmpose_dark_decode(heatmaps: np.ndarray, blur_kernel: Optional[int] = 11) -> np.ndarray:
    """mmpose's ``MSRAHeatmap.decode`` with ``unbiased=True``: ``get_heatmap_maximum``, then
    ``refine_keypoints_dark``, per instance (B, K, H, W) -> (B, K, 2) float32 heatmap pixels.

    The argmax is taken on the maps as given; they are then blurred
    (:func:`mmpose_gaussian_blur`), floored at 1e-10 and logged. Per keypoint in a Python loop,
    with x, y the location truncated by ``astype(int)``, and only if ``1 < x < W - 2 and
    1 < y < H - 2`` (one condition for both axes: no offset for a peak in columns 0, 1, W - 2,
    W - 1 or the same rows), the Taylor step -H^-1 g from mmpose's own differences of the log
    map L: g = (L[x+1] - L[x-1]) / 2 per axis, d2/dx2 = (L[x+2] - 2 L[x] + L[x-2]) / 4 (a
    stride-2 stencil through the centre), d2/dxdy = (L[+1,+1] - L[-1,+1] - L[+1,-1] + L[-1,-1]) / 4;
    skipped where dxx dyy - dxy^2 == 0, otherwise applied whatever its size or sign.
    Departure: ``blur_kernel=None`` skips the blur (mmpose always blurs), to check the Taylor
    step alone.
    """
    batch, keypoints, height, width = heatmaps.shape
    locs, _ = mmpose_heatmap_maximum(heatmaps)
    maps = np.array(heatmaps, copy=True) if blur_kernel is None else mmpose_gaussian_blur(heatmaps, blur_kernel)
    np.maximum(maps, 1e-10, out=maps)
    np.log(maps, out=maps)
    for n in range(batch):
        for k in range(keypoints):
            hm = maps[n, k]
            x, y = locs[n, k].astype(int)
            if 1 < x < width - 2 and 1 < y < height - 2:
                dx = 0.5 * (hm[y, x + 1] - hm[y, x - 1])
                dy = 0.5 * (hm[y + 1, x] - hm[y - 1, x])
                dxx = 0.25 * (hm[y, x + 2] - 2 * hm[y, x] + hm[y, x - 2])
                dxy = 0.25 * (hm[y + 1, x + 1] - hm[y - 1, x + 1] - hm[y + 1, x - 1] + hm[y - 1, x - 1])
                dyy = 0.25 * (hm[y + 2, x] - 2 * hm[y, x] + hm[y - 2, x])
                gradient = np.array([[dx], [dy]])
                hessian = np.array([[dxx, dxy], [dxy, dyy]])
                if dxx * dyy - dxy ** 2 != 0:
                    offset = -np.linalg.inv(hessian) @ gradient
                    locs[n, k] += offset[:, 0]
    return locs
