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
  ``transform_preds``, mmpose's ``scale_factor``) are left out, except in CenterNet's multi-pose
  post-processing, whose per-point transform loop is itself part of the baseline;
- inputs are batched (B, K, H, W) arrays where the published function takes one instance
  (CenterNet's multi-pose decoding is batched as published; its maps are passed as slices of
  heatmapnet's bottom-up channel layout).

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


# ----------------------------------------------------------------------------------------------
# CenterNet: multi-pose decoding (src/lib/models/decode.py, src/lib/models/utils.py) and its
# post-processing (src/lib/utils/post_process.py, src/lib/utils/image.py,
# src/lib/detectors/multi_pose.py)
# ----------------------------------------------------------------------------------------------
def centernet_nms(heat: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """CenterNet's ``_nms``: ``heat`` times a float mask of the values equal to the maximum of their
    ``kernel`` x ``kernel`` neighbourhood (``max_pool2d``, stride 1, padding (kernel - 1) / 2).
    The other values become 0, they are not removed: a map with fewer than K peaks fills its
    top-K with zeros at arbitrary pixels. Equal neighbours (a plateau) are all kept."""
    pad = (kernel - 1) // 2
    pooled = torch.nn.functional.max_pool2d(heat, (kernel, kernel), stride=1, padding=pad)
    keep = (pooled == heat).float()
    return heat * keep


def centernet_gather_feat(feat: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """CenterNet's ``_gather_feat`` (without its mask argument): ``feat`` (B, N, D) rows at
    ``ind`` (B, M) -> (B, M, D)."""
    dim = feat.size(2)
    index = ind.unsqueeze(2).expand(ind.size(0), ind.size(1), dim)
    return feat.gather(1, index)


def centernet_transpose_and_gather_feat(feat: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """CenterNet's ``_transpose_and_gather_feat``: the whole (B, C, H, W) map permuted to a
    contiguous (B, H W, C) copy, then the rows at the flat pixel indices ``ind`` (B, M)."""
    feat = feat.permute(0, 2, 3, 1).contiguous()
    feat = feat.view(feat.size(0), -1, feat.size(3))
    return centernet_gather_feat(feat, ind)


def centernet_topk_channel(scores: torch.Tensor, K: int = 40):
    """CenterNet's ``_topk_channel``: the K highest values of every channel of (B, C, H, W):
    scores, flat pixel indices, and the rows and columns as floats (``(index / width).int()``,
    ``(index % width).int()``), each (B, C, K)."""
    batch, cat, height, width = scores.size()
    topk_scores, topk_inds = torch.topk(scores.view(batch, cat, -1), K)
    topk_inds = topk_inds % (height * width)
    topk_ys = (topk_inds / width).int().float()
    topk_xs = (topk_inds % width).int().float()
    return topk_scores, topk_inds, topk_ys, topk_xs


def centernet_topk(scores: torch.Tensor, K: int = 40):
    """CenterNet's ``_topk``: the K highest values of each channel, then the K highest of those
    over all channels: scores, flat pixel indices, classes (``(index / K).int()``), rows and
    columns as floats, each (B, K)."""
    batch, cat, height, width = scores.size()
    topk_scores, topk_inds = torch.topk(scores.view(batch, cat, -1), K)
    topk_inds = topk_inds % (height * width)
    topk_ys = (topk_inds / width).int().float()
    topk_xs = (topk_inds % width).int().float()
    topk_score, topk_ind = torch.topk(topk_scores.view(batch, -1), K)
    topk_clses = (topk_ind / K).int()
    topk_inds = centernet_gather_feat(topk_inds.view(batch, -1, 1), topk_ind).view(batch, K)
    topk_ys = centernet_gather_feat(topk_ys.view(batch, -1, 1), topk_ind).view(batch, K)
    topk_xs = centernet_gather_feat(topk_xs.view(batch, -1, 1), topk_ind).view(batch, K)
    return topk_score, topk_inds, topk_clses, topk_ys, topk_xs


CENTERNET_HP_THRESH = 0.1  # multi_pose_decode's ``thresh``, a constant in the published code


def centernet_multi_pose_decode(heat: torch.Tensor, wh: torch.Tensor, kps: torch.Tensor,
                                reg: Optional[torch.Tensor] = None, hm_hp: Optional[torch.Tensor] = None,
                                hp_offset: Optional[torch.Tensor] = None, K: int = 100) -> torch.Tensor:
    """CenterNet's ``multi_pose_decode`` on activated maps (the detector applies ``sigmoid_`` to
    ``hm`` and ``hm_hp`` first). Returns its detections (B, K, 2J + 6): box (x1, y1, x2, y2),
    score, J (x, y) joints, class (always 0), in heatmap pixels.

    Inputs: ``heat`` (B, 1, H, W) centre heatmap, ``wh`` (B, 2, H, W) box sizes, ``kps``
    (B, 2J, H, W) joint offsets from the centre pixel ((x, y) per joint), ``reg`` (B, 2, H, W)
    the centre's sub-pixel offset, ``hm_hp`` (B, J, H, W) joint heatmaps, ``hp_offset``
    (B, 2, H, W) the joints' sub-pixel offset (one pair for all joint types). heatmapnet's
    :class:`~heatmapnet.bottomup.BottomUpLayout` holds the same maps in one tensor (centre,
    centre_offset, size, joint_offsets, joints, joint_offset): they are passed as its slices,
    the only adaptation.

    What it does, with its quirks:

    - centres: :func:`centernet_nms` (non-peaks set to 0) and :func:`centernet_topk`; the centre is
      the integer pixel plus ``reg`` (plus 0.5 without ``reg``), the box centre +- ``wh`` / 2,
      ``wh`` not clamped (a negative size inverts the box, which then contains no point);
    - regressed joints: ``kps`` read at the centre's *integer* pixel plus that pixel;
    - joint peaks: :func:`centernet_nms` of ``hm_hp`` and the top K per joint type (K = the number
      of people), each at its pixel plus ``hp_offset`` read there;
    - threshold 0.1, strict: a peak with score ``<= 0.1`` gets score -1 and position
      (-10000, -10000) (so it is never the nearest unless all are), i.e. a peak of exactly 0.1
      is not used;
    - matching: per person and joint type the *nearest* peak of all K (any box) to the regressed
      joint is taken, and then refused, keeping the regressed joint, if it lies outside the box
      (x < x1, x > x2, y < y1 or y > y2: the box's edges count as inside), if its score is below
      0.1, or if it is farther than 0.3 x the box's longer side. A nearer peak outside the box
      therefore hides a farther one inside it; several people may take the same peak;
    - unmatched joints keep the regressed position; the joint scores are not returned.
    """
    batch, cat, height, width = heat.size()
    num_joints = kps.shape[1] // 2
    heat = centernet_nms(heat)
    scores, inds, clses, ys, xs = centernet_topk(heat, K=K)

    kps = centernet_transpose_and_gather_feat(kps, inds).view(batch, K, num_joints * 2)
    kps[..., ::2] += xs.view(batch, K, 1).expand(batch, K, num_joints)
    kps[..., 1::2] += ys.view(batch, K, 1).expand(batch, K, num_joints)
    if reg is not None:
        reg = centernet_transpose_and_gather_feat(reg, inds).view(batch, K, 2)
        xs = xs.view(batch, K, 1) + reg[:, :, 0:1]
        ys = ys.view(batch, K, 1) + reg[:, :, 1:2]
    else:
        xs = xs.view(batch, K, 1) + 0.5
        ys = ys.view(batch, K, 1) + 0.5
    wh = centernet_transpose_and_gather_feat(wh, inds).view(batch, K, 2)
    clses = clses.view(batch, K, 1).float()
    scores = scores.view(batch, K, 1)
    bboxes = torch.cat([xs - wh[..., 0:1] / 2, ys - wh[..., 1:2] / 2,
                        xs + wh[..., 0:1] / 2, ys + wh[..., 1:2] / 2], dim=2)

    if hm_hp is not None:
        hm_hp = centernet_nms(hm_hp)
        thresh = CENTERNET_HP_THRESH
        kps = kps.view(batch, K, num_joints, 2).permute(0, 2, 1, 3).contiguous()  # B x J x K x 2
        reg_kps = kps.unsqueeze(3).expand(batch, num_joints, K, K, 2)
        hm_score, hm_inds, hm_ys, hm_xs = centernet_topk_channel(hm_hp, K=K)  # B x J x K
        if hp_offset is not None:
            hp_offset = centernet_transpose_and_gather_feat(hp_offset, hm_inds.view(batch, -1))
            hp_offset = hp_offset.view(batch, num_joints, K, 2)
            hm_xs = hm_xs + hp_offset[:, :, :, 0]
            hm_ys = hm_ys + hp_offset[:, :, :, 1]
        else:
            hm_xs = hm_xs + 0.5
            hm_ys = hm_ys + 0.5
        mask = (hm_score > thresh).float()
        hm_score = (1 - mask) * -1 + mask * hm_score
        hm_ys = (1 - mask) * (-10000) + mask * hm_ys
        hm_xs = (1 - mask) * (-10000) + mask * hm_xs
        hm_kps = torch.stack([hm_xs, hm_ys], dim=-1).unsqueeze(2).expand(batch, num_joints, K, K, 2)
        dist = ((reg_kps - hm_kps) ** 2).sum(dim=4) ** 0.5
        min_dist, min_ind = dist.min(dim=3)  # B x J x K
        hm_score = hm_score.gather(2, min_ind).unsqueeze(-1)  # B x J x K x 1
        min_dist = min_dist.unsqueeze(-1)
        min_ind = min_ind.view(batch, num_joints, K, 1, 1).expand(batch, num_joints, K, 1, 2)
        hm_kps = hm_kps.gather(3, min_ind).view(batch, num_joints, K, 2)
        left = bboxes[:, :, 0].view(batch, 1, K, 1).expand(batch, num_joints, K, 1)
        top = bboxes[:, :, 1].view(batch, 1, K, 1).expand(batch, num_joints, K, 1)
        right = bboxes[:, :, 2].view(batch, 1, K, 1).expand(batch, num_joints, K, 1)
        bottom = bboxes[:, :, 3].view(batch, 1, K, 1).expand(batch, num_joints, K, 1)
        mask = (hm_kps[..., 0:1] < left) + (hm_kps[..., 0:1] > right) + \
               (hm_kps[..., 1:2] < top) + (hm_kps[..., 1:2] > bottom) + \
               (hm_score < thresh) + (min_dist > (torch.max(bottom - top, right - left) * 0.3))
        mask = (mask > 0).float().expand(batch, num_joints, K, 2)
        kps = (1 - mask) * hm_kps + mask * kps
        kps = kps.permute(0, 2, 1, 3).contiguous().view(batch, K, num_joints * 2)
    return torch.cat([bboxes, scores, kps, clses], dim=2)


def centernet_get_dir(src_point, rot_rad: float):
    """CenterNet's ``get_dir``: ``src_point`` rotated by ``rot_rad``."""
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    return [src_point[0] * cs - src_point[1] * sn, src_point[0] * sn + src_point[1] * cs]


def centernet_get_3rd_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CenterNet's ``get_3rd_point``: ``b`` plus ``a - b`` turned by 90 degrees."""
    direct = a - b
    return b + np.array([-direct[1], direct[0]], dtype=np.float32)


def centernet_get_affine_transform(center, scale, rot: float, output_size, shift=(0.0, 0.0),
                                   inv: int = 0) -> np.ndarray:
    """CenterNet's ``get_affine_transform`` (from HRNet): the 2 x 3 matrix (float64, by
    ``cv2.getAffineTransform`` from three float32 point pairs) taking the square of side
    ``scale`` (a scalar is used for both axes; only its width counts) around ``center`` to the
    ``output_size`` (w, h) map, centre to centre; ``inv=1`` the other way."""
    if not isinstance(scale, np.ndarray) and not isinstance(scale, list):
        scale = np.array([scale, scale], dtype=np.float32)
    shift = np.array(shift, dtype=np.float32)
    src_w = scale[0]
    dst_w, dst_h = output_size[0], output_size[1]
    rot_rad = np.pi * rot / 180
    src_dir = centernet_get_dir([0, src_w * -0.5], rot_rad)
    dst_dir = np.array([0, dst_w * -0.5], np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center + scale * shift
    src[1, :] = center + src_dir + scale * shift
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5], np.float32) + dst_dir
    src[2:, :] = centernet_get_3rd_point(src[0, :], src[1, :])
    dst[2:, :] = centernet_get_3rd_point(dst[0, :], dst[1, :])
    if inv:
        return cv2.getAffineTransform(np.float32(dst), np.float32(src))
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def centernet_affine_transform(pt, t: np.ndarray) -> np.ndarray:
    """CenterNet's ``affine_transform``: one point, through a float32 (x, y, 1), times ``t``."""
    new_pt = np.array([pt[0], pt[1], 1.0], dtype=np.float32).T
    return np.dot(t, new_pt)[:2]


def centernet_transform_preds(coords: np.ndarray, center, scale, output_size) -> np.ndarray:
    """CenterNet's ``transform_preds``: map points (N, 2) back to the image, one
    :func:`centernet_affine_transform` per point in a Python loop (float64 out)."""
    target_coords = np.zeros(coords.shape)
    trans = centernet_get_affine_transform(center, scale, 0, output_size, inv=1)
    for p in range(coords.shape[0]):
        target_coords[p, 0:2] = centernet_affine_transform(coords[p, 0:2], trans)
    return target_coords


def centernet_multi_pose_post_process(dets: np.ndarray, c, s, h: int, w: int) -> list:
    """CenterNet's ``multi_pose_post_process``: per image in a Python loop, the box corners and
    the joints of every detection back to image pixels (:func:`centernet_transform_preds` with
    the image's centre ``c[i]`` and scale ``s[i]``, maps (w, h)), concatenated as float32 rows
    (x1, y1, x2, y2, score, J (x, y)) and turned into lists, in a dict under the class key
    ``np.int32(1)``: one ``{1: [[...], ...]}`` per image.

    Departure: the joints are columns 5 .. 5 + 2J of ``dets`` for any J (published: 5:39,
    i.e. the 17 COCO joints). As CenterNet's ``c`` and ``s`` describe its own convention
    (x_in = s / w (x_out - w / 2) + c, so c = (W / 2, H / 2), s = max(W, H) gives x_in = 4 x_out
    at stride 4), maps encoded with heatmapnet's pixel centres (x_heat = (x_in - 1.5) / 4) come
    back to heatmapnet's input pixels with c = (W / 2 + 1.5, H / 2 + 1.5); CenterNet's own c
    puts every point 1.5 px up and left of them."""
    num_coords = dets.shape[2] - 6
    ret = []
    for i in range(dets.shape[0]):
        bbox = centernet_transform_preds(dets[i, :, :4].reshape(-1, 2), c[i], s[i], (w, h))
        pts = centernet_transform_preds(dets[i, :, 5:5 + num_coords].reshape(-1, 2), c[i], s[i], (w, h))
        top_preds = np.concatenate([bbox.reshape(-1, 4), dets[i, :, 4:5], pts.reshape(-1, num_coords)],
                                   axis=1).astype(np.float32).tolist()
        ret.append({np.ones(1, dtype=np.int32)[0]: top_preds})
    return ret
