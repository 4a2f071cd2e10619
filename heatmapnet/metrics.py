"""Pure keypoint-evaluation metrics: NME, failure rate, CED / AUC, PCK and point-detection AP.

Every function is stateless and vectorised with numpy. Inputs may be numpy arrays, array-likes or
torch tensors (CPU or GPU, with or without grad); results are numpy arrays or Python floats.

Shapes and conventions:

- ``pred``, ``gt``: ``(N, K, 2)`` keypoint coordinates (x, y) in pixels, same units for both.
- ``visible``: optional ``(N, K)`` mask; anything non-zero counts as visible (so COCO-style
  ``v in {0, 1, 2}`` works). ``None`` means every keypoint is visible.
- ``boxes``: ``(N, 4)`` as ``(x, y, w, h)``.
- A NaN anywhere in an input raises ``ValueError`` naming the argument. The one exception is the
  ``normaliser`` of :func:`pck`, where a non-finite entry marks an instance that cannot be
  evaluated (see ``invalid``).

Face alignment (NME family)::

    e = nme(pred, gt, norm_indices=(36, 45))            # 300W, inter-ocular (outer eye corners)
    e = nme(pred, gt, norm_indices=(60, 72))            # WFLW, inter-ocular
    e = nme(pred, gt, norm_indices=(range(36, 42), range(42, 48)))  # 300W inter-pupil:
                                                        # eye-contour centroids stand in for pupils
    e = nme_bbox(pred, gt, boxes)                       # sqrt(w * h) of the face box
    failure_rate(e, 0.1), auc(e, 0.1)                   # FR@0.1 and AUC@0.1 of the CED
    mean_offset(pred, gt, norm)                         # (x, y) systematic shift, in units of norm

Body pose (PCK family)::

    r = pck(pred, gt, visible, torso_size(gt, (8, 3), visible), threshold=0.2)  # LSP PCK@0.2
    r = pck(pred, gt, visible, bbox_size(boxes), threshold=0.05)                # mmpose bbox PCK
    r = pck(pred, gt, visible, head_size(head_boxes), threshold=0.5)            # MPII PCKh@0.5
    r.overall, r.per_keypoint
"""
from __future__ import annotations

from dataclasses import dataclass
import operator
from typing import Any, Sequence, Tuple, Union

import numpy as np

import torch

__all__ = [
    "PCKResult",
    "auc",
    "bbox_size",
    "ced_curve",
    "failure_rate",
    "head_size",
    "joint_error",
    "mean_offset",
    "nme",
    "nme_bbox",
    "pair_distance",
    "pck",
    "torso_size",
]

IndexGroup = Union[int, Sequence[int]]
_MAX_LISTED = 10  # sample indices spelled out in an error message


# --------------------------------------------------------------------------------------------
# input helpers


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_floating_point():  # also covers float16 / bfloat16, which numpy may not hold
            x = x.to(torch.float64)
        return x.cpu().numpy()
    return np.asarray(x)


def _as_float(x: Any, name: str) -> np.ndarray:
    """Float64 copy of ``x``; raises ``ValueError`` naming ``name`` when it holds NaN."""
    try:
        arr = np.asarray(_to_numpy(x), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(x).__name__}") from exc
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def _as_points(x: Any, name: str) -> np.ndarray:
    arr = _as_float(x, name)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (N, K, 2), got {arr.shape}")
    return arr


def _pred_gt(pred: Any, gt: Any) -> Tuple[np.ndarray, np.ndarray]:
    p = _as_points(pred, "pred")
    g = _as_points(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt shapes differ: {p.shape} vs {g.shape}")
    return p, g


def _as_visible(visible: Any, n: int, k: int) -> np.ndarray:
    if visible is None:
        return np.ones((n, k), dtype=bool)
    vis = _to_numpy(visible)
    if vis.dtype != bool:
        vis = _as_float(vis, "visible") != 0
    if vis.shape != (n, k):
        raise ValueError(f"visible must have shape (N, K) = {(n, k)}, got {vis.shape}")
    return vis


def _as_per_sample(x: Any, name: str, n: int, width: int) -> np.ndarray:
    arr = _as_float(x, name)
    if arr.shape != (n, width):
        raise ValueError(f"{name} must have shape {(n, width)}, got {arr.shape}")
    return arr


def _as_normaliser(normaliser: Any, n: int) -> np.ndarray:
    """(N,) float64 per-sample lengths; non-finite or non-positive entries are left to the caller."""
    norm = np.asarray(_to_numpy(normaliser), dtype=np.float64)
    if norm.shape != (n,):
        raise ValueError(f"normaliser must have shape (N,) = {(n,)}, got {norm.shape}")
    return norm


def _as_boxes(boxes: Any) -> np.ndarray:
    arr = _as_float(boxes, "boxes")
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) as (x, y, w, h), got {arr.shape}")
    return arr


def _as_errors(nme_values: Any) -> np.ndarray:
    e = _as_float(nme_values, "nme_values")
    if e.ndim != 1:
        raise ValueError(f"nme_values must be one-dimensional (N,), got shape {e.shape}")
    if e.size == 0:
        raise ValueError("nme_values is empty")
    if (e < 0).any():
        raise ValueError("nme_values must be non-negative")
    return e


def _check_threshold(threshold: float, positive: bool) -> float:
    t = float(threshold)
    if not np.isfinite(t) or t < 0 or (positive and t == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"threshold must be a finite {kind} number, got {threshold!r}")
    return t


def _list_indices(indices: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:_MAX_LISTED])
    more = f", ... ({len(indices)} in all)" if len(indices) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def _group(entry: IndexGroup, k: int, name: str) -> np.ndarray:
    """Keypoint indices of one ``norm_indices`` / ``indices`` entry: an int or a sequence of ints."""
    try:
        if np.ndim(entry) == 0:
            idx = np.array([operator.index(entry)])
        else:
            idx = np.array([operator.index(i) for i in entry], dtype=np.int64)
    except TypeError as exc:
        raise ValueError(f"{name} entries must be ints or sequences of ints, got {entry!r}") from exc
    if idx.size == 0:
        raise ValueError(f"{name} contains an empty index group")
    if ((idx < -k) | (idx >= k)).any():
        raise ValueError(f"{name} entry {entry!r} is out of range for {k} keypoints")
    return idx


def _pair_distance(gt: np.ndarray, indices: Sequence[IndexGroup], name: str) -> np.ndarray:
    """(N,) distance between the centroids of two index groups of ``gt`` (N, K, 2)."""
    if isinstance(indices, (str, bytes)) or len(indices) != 2:
        raise ValueError(f"{name} must hold exactly two entries, got {indices!r}")
    k = gt.shape[1]
    a = gt[:, _group(indices[0], k, name)].mean(axis=1)
    b = gt[:, _group(indices[1], k, name)].mean(axis=1)
    return np.linalg.norm(a - b, axis=-1)


def _mean_visible_error(p: np.ndarray, g: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """(N,) mean Euclidean error over the visible keypoints of each sample."""
    count = vis.sum(axis=1)
    empty = np.flatnonzero(count == 0)
    if empty.size:
        raise ValueError(f"no visible keypoints in samples {_list_indices(empty)}")
    err = np.linalg.norm(p - g, axis=-1)
    return np.where(vis, err, 0.0).sum(axis=1) / count


def _normalise(mean_err: np.ndarray, norm: np.ndarray, what: str) -> np.ndarray:
    bad = np.flatnonzero(~(np.isfinite(norm) & (norm > 0)))
    if bad.size:
        raise ValueError(f"zero or non-finite {what} for samples {_list_indices(bad)}")
    return mean_err / norm


# --------------------------------------------------------------------------------------------
# NME family


def nme(
    pred: Any,
    gt: Any,
    norm_indices: Sequence[IndexGroup] = (36, 45),
    visible: Any = None,
) -> np.ndarray:
    """Per-sample normalised mean error, shape (N,).

    ``NME_i = mean_{k visible} ||pred_ik - gt_ik|| / ||c0_i - c1_i||`` where ``c0``/``c1`` are the
    gt points ``norm_indices[0]`` and ``norm_indices[1]``. Each entry may also be a sequence of
    keypoint indices, whose gt centroid is used; that gives inter-pupil NME from the eye contours,
    e.g. ``norm_indices=(range(36, 42), range(42, 48))`` for the 68-point 300W layout.

    Usual inter-ocular (outer eye corner) indices: 300W/68-point ``(36, 45)``, WFLW/98-point
    ``(60, 72)``; take them from the dataset metadata. The normaliser always uses the gt points,
    visible or not. Raises ``ValueError`` naming the sample indices whose normaliser is zero
    (coincident eye points) or that have no visible keypoint.
    """
    p, g = _pred_gt(pred, gt)
    n, k, _ = p.shape
    vis = _as_visible(visible, n, k)
    norm = _pair_distance(g, norm_indices, "norm_indices")
    return _normalise(_mean_visible_error(p, g, vis), norm, "normaliser (inter-ocular distance)")


def nme_bbox(pred: Any, gt: Any, boxes: Any, visible: Any = None) -> np.ndarray:
    """Per-sample NME normalised by the gt face-box size ``sqrt(w * h)``, shape (N,).

    ``boxes`` is (N, 4) ``(x, y, w, h)`` in the same pixels as the points. This is the "bbox size"
    normalisation used for AFLW-style benchmarks and the NME_box figures reported for WFLW/COFW.
    Papers differ on *which* box (the annotated face box or the tight box around the gt
    landmarks); pass the one matching the protocol you compare against. Raises ``ValueError``
    naming the samples whose box has zero area.
    """
    p, g = _pred_gt(pred, gt)
    n, k, _ = p.shape
    vis = _as_visible(visible, n, k)
    b = _as_per_sample(boxes, "boxes", n, 4)
    if (b[:, 2:] < 0).any():
        raise ValueError("boxes must have non-negative width and height")
    norm = np.sqrt(b[:, 2] * b[:, 3])
    return _normalise(_mean_visible_error(p, g, vis), norm, "normaliser (box size sqrt(w*h))")


def _usable(vis: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """(N,) the samples a per-sample normalised error counts: a positive finite normaliser and at
    least one visible point."""
    return np.isfinite(norm) & (norm > 0) & vis.any(axis=1)


def joint_error(pred: Any, gt: Any, visible: Any, normaliser: Any) -> np.ndarray:
    """(N,) each instance's mean error over its visible joints divided by its ``normaliser``
    (e.g. :func:`torso_size`): the NME of a body. NaN where the normaliser is not a positive finite
    length (a torso joint unlabelled) or no joint is visible: those instances are left out, as
    :func:`pck` leaves them out (``invalid="skip"``)."""
    p, g = _pred_gt(pred, gt)
    n, k, _ = p.shape
    vis = _as_visible(visible, n, k)
    norm = _as_normaliser(normaliser, n)
    valid = _usable(vis, norm)
    out = np.full(n, np.nan)
    out[valid] = _mean_visible_error(p[valid], g[valid], vis[valid]) / norm[valid]
    return out


def pair_distance(gt: Any, indices: Sequence[IndexGroup]) -> np.ndarray:
    """(N,) distance between two gt points (or the centroids of two point groups) of each
    sample: the normaliser :func:`nme` divides by, e.g. ``indices=(36, 45)`` for 300W."""
    return _pair_distance(_as_points(gt, "gt"), indices, "indices")


def mean_offset(pred: Any, gt: Any, normaliser: Any, visible: Any = None) -> np.ndarray:
    """(2,) the mean signed error ``pred - gt`` in x and y, in units of each sample's normaliser.

    Each sample's visible points are averaged, divided by its ``normaliser[i]`` (e.g. the
    inter-ocular distance, or a torso size), and the samples averaged. Samples whose normaliser
    is zero, negative or non-finite, or that have no visible point, are left out. NME measures
    how far predictions are; this says whether they are off in one direction: a systematic
    shift between predictions and labels, such as labels that do not follow the pixel
    convention a horizontal mirror assumes (a flip-trained model then lands half-way), or a
    test set whose labels are offset from the training set's. Raises ``ValueError`` when no
    sample remains.
    """
    p, g = _pred_gt(pred, gt)
    n, k, _ = p.shape
    vis = _as_visible(visible, n, k)
    norm = _as_normaliser(normaliser, n)
    count = vis.sum(axis=1)
    used = _usable(vis, norm)
    if not used.any():
        raise ValueError("no sample with a visible keypoint and a positive normaliser")
    signed = np.where(vis[..., None], p - g, 0.0).sum(axis=1)[used] / count[used, None]
    return (signed / norm[used, None]).mean(axis=0)


def failure_rate(nme_values: Any, threshold: float = 0.1) -> float:
    """Fraction of samples whose NME is strictly greater than ``threshold``.

    Uses ``>`` (face-alignment convention: "NME larger than the threshold is a failure"), so a
    sample exactly at the threshold succeeds and ``failure_rate(e, t) == 1 - CED(t)``.
    """
    e = _as_errors(nme_values)
    t = _check_threshold(threshold, positive=False)
    return float(np.mean(e > t))


def auc(nme_values: Any, threshold: float = 0.1) -> float:
    """Area under the CED curve on ``[0, threshold]``, divided by ``threshold`` (perfect = 1.0).

    With ``CED(x) = fraction of samples with NME <= x`` the integral is exact in closed form:
    ``(1/t) * integral_0^t CED(x) dx = mean_i max(0, 1 - e_i / t)``; no sampling grid is involved.
    """
    e = _as_errors(nme_values)
    t = _check_threshold(threshold, positive=True)
    return float(np.mean(np.maximum(0.0, 1.0 - e / t)))


def ced_curve(
    nme_values: Any, threshold: float = 0.1, num: int = 1001
) -> Tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution for plotting: ``(thresholds, fractions)``, each (num,).

    ``thresholds = linspace(0, threshold, num)`` and ``fractions[j]`` is the fraction of samples
    with NME ``<=`` ``thresholds[j]`` (the complement of :func:`failure_rate`).
    """
    e = _as_errors(nme_values)
    t = _check_threshold(threshold, positive=True)
    if int(num) < 2:
        raise ValueError(f"num must be at least 2, got {num!r}")
    xs = np.linspace(0.0, t, int(num))
    fractions = np.searchsorted(np.sort(e), xs, side="right") / e.size
    return xs, fractions


# --------------------------------------------------------------------------------------------
# PCK family


@dataclass(frozen=True)
class PCKResult:
    """Result of :func:`pck`.

    overall: correct visible points / visible points, over the evaluated instances.
    per_keypoint: (K,) PCK of each keypoint; NaN for a keypoint never visible in the evaluated
        instances (such keypoints simply contribute nothing to ``overall``).
    num_visible: (K,) visible points counted per keypoint.
    skipped: indices of the instances left out for an invalid normaliser (``invalid="skip"``).
    """

    overall: float
    per_keypoint: np.ndarray
    num_visible: np.ndarray
    skipped: np.ndarray

    @property
    def num_skipped(self) -> int:
        return int(self.skipped.size)


def pck(
    pred: Any,
    gt: Any,
    visible: Any,
    normaliser: Any,
    threshold: float = 0.2,
    invalid: str = "raise",
) -> PCKResult:
    """Percentage of correct keypoints.

    A visible point is correct when ``||pred - gt|| <= threshold * normaliser[i]`` (mmpose
    compares with a strict ``<``; the two differ only for errors exactly on the boundary).
    ``normaliser`` is (N,) per-instance lengths, e.g. from :func:`torso_size`, :func:`bbox_size`
    or :func:`head_size`; ``visible`` may be ``None`` (all visible).

    Instances whose normaliser is zero, negative or non-finite (e.g. a NaN from
    ``torso_size(..., visible=...)`` when a torso joint is missing) raise ``ValueError`` naming
    them, unless ``invalid="skip"``, which excludes them and lists them in ``result.skipped``.
    Raises ``ValueError`` when nothing visible remains to evaluate.
    """
    if invalid not in ("raise", "skip"):
        raise ValueError(f"invalid must be 'raise' or 'skip', got {invalid!r}")
    p, g = _pred_gt(pred, gt)
    n, k, _ = p.shape
    vis = _as_visible(visible, n, k)
    norm = _as_normaliser(normaliser, n)
    t = _check_threshold(threshold, positive=False)

    valid = np.isfinite(norm) & (norm > 0)
    skipped = np.flatnonzero(~valid)
    if skipped.size and invalid == "raise":
        raise ValueError(
            f"zero or non-finite normaliser for instances {_list_indices(skipped)}; "
            "pass invalid='skip' to exclude them"
        )
    counted = vis & valid[:, None]
    safe_norm = np.where(valid, norm, 1.0)  # keeps skipped rows free of inf/NaN arithmetic
    err = np.linalg.norm(p - g, axis=-1)
    correct = (err <= t * safe_norm[:, None]) & counted

    num_visible = counted.sum(axis=0)
    total = int(num_visible.sum())
    if total == 0:
        raise ValueError("no visible keypoints in the evaluated instances")
    hits = correct.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_keypoint = np.where(num_visible > 0, hits / np.maximum(num_visible, 1), np.nan)
    return PCKResult(
        overall=float(hits.sum() / total),
        per_keypoint=per_keypoint,
        num_visible=num_visible,
        skipped=skipped,
    )


def torso_size(
    gt: Any, indices: Sequence[IndexGroup], visible: Any = None
) -> np.ndarray:
    """(N,) distance between two gt joints (or the centroids of two joint groups).

    For LSP's "PCK@0.2" the torso is right shoulder to left hip, ``indices=(8, 3)`` in the
    14-joint LSP order; take the indices from the dataset metadata. With ``visible`` given, an
    instance where a joint of either entry is invisible gets NaN, which :func:`pck` treats as an
    invalid normaliser.
    """
    g = _as_points(gt, "gt")
    n, k, _ = g.shape
    size = _pair_distance(g, indices, "indices")
    if visible is not None:
        vis = _as_visible(visible, n, k)
        used = np.concatenate([_group(indices[0], k, "indices"), _group(indices[1], k, "indices")])
        size = np.where(vis[:, used].all(axis=1), size, np.nan)
    return size


def bbox_size(boxes: Any) -> np.ndarray:
    """(N,) ``max(w, h)`` of ``(x, y, w, h)`` boxes, the normaliser of mmpose's bbox PCK."""
    b = _as_boxes(boxes)
    return np.maximum(b[:, 2], b[:, 3])


def head_size(head_boxes: Any, scale: float = 0.6) -> np.ndarray:
    """(N,) MPII PCKh normaliser: ``scale * sqrt(w**2 + h**2)``, the head-box diagonal times 0.6.

    ``head_boxes`` are ``(x, y, w, h)``; for MPII's two-corner head boxes pass
    ``w = x2 - x1, h = y2 - y1``. Use with ``pck(..., threshold=0.5)`` for PCKh@0.5.
    """
    b = _as_boxes(head_boxes)
    return float(scale) * np.hypot(b[:, 2], b[:, 3])


def detection_average_precision(gt_points: Any, gt_radius: Any, gt_image: Any, points: Any, scores: Any,
                                image: Any) -> float:
    """AP of point detections ``points`` (M, 2) with ``scores`` (M,) in images ``image`` (M,)
    against ground-truth points ``gt_points`` (G, 2) in ``gt_image`` (G,): by descending score
    (equal scores in the given order), each detection takes the unmatched ground truth of its
    image nearest in units of that point's ``gt_radius`` (G,) (the first of equals), a hit when
    that is <= 1; the area under the interpolated precision-recall curve (all points, as VOC
    2010+). No ground truth: 0.

    A detection only ever meets its own image's ground truth, so the greedy matching runs image by
    image, each over its own distance matrix: O(sum of detections x ground truth per image)."""
    gt_points, points = _as_float(gt_points, "gt_points").reshape(-1, 2), _as_float(points, "points").reshape(-1, 2)
    gt_radius, scores = _as_float(gt_radius, "gt_radius").reshape(-1), _as_float(scores, "scores").reshape(-1)
    gt_image, image = _to_numpy(gt_image).reshape(-1), _to_numpy(image).reshape(-1)
    if not len(gt_points):
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = np.zeros(len(order), bool)  # by rank
    by_image = np.argsort(image[order], kind="stable")  # ranks grouped by image, each group in rank order
    gt_by_image = np.argsort(gt_image, kind="stable")  # ground truth grouped by image, in index order
    gt_sorted = gt_image[gt_by_image]
    names, starts = np.unique(image[order][by_image], return_index=True)
    lows, highs = np.searchsorted(gt_sorted, names, "left"), np.searchsorted(gt_sorted, names, "right")
    for start, stop, low, high in zip(starts, np.r_[starts[1:], len(order)], lows, highs):
        if low == high:  # no ground truth in this image: every detection there misses
            continue
        truth = gt_by_image[low:high]
        ranks = by_image[start:stop]
        distance = np.linalg.norm(points[order[ranks]][:, None] - gt_points[truth][None], axis=2) / gt_radius[truth]
        # greedy matching is sequential by definition; a detection with no ground truth within
        # reach misses whatever came before it, so only those with some take part
        for row in np.flatnonzero((distance <= 1.0).any(axis=1)):
            best = int(np.argmin(distance[row]))
            if distance[row, best] <= 1.0:
                hits[ranks[row]] = True
                distance[:, best] = np.inf  # matched: no later detection takes it
    true_positives = np.cumsum(hits)
    recall = true_positives / len(gt_points)
    precision = true_positives / np.arange(1, len(order) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(recall_steps * envelope))


@dataclass(frozen=True)
class Normaliser:
    """Each instance's length that its scheme's metric divides errors by."""

    values: np.ndarray  # (N,); NaN where undefined (a torso joint unlabelled)
    name: str  # interocular | torso | bbox


def scheme_normaliser(scheme, gt: Any, visible: Any, boxes: Any) -> Normaliser:
    """The normaliser of a keypoint scheme's metric (``scheme`` a
    :class:`heatmapnet.metadata.KeypointScheme`): the inter-ocular distance where the scheme names
    one (faces, NME), else the torso where it names one (bodies, PCK; NaN where a torso joint is
    unlabelled), else the box's longer side. ``gt`` (N, K, 2), ``visible`` (N, K), ``boxes`` (N, 4)."""
    if scheme.interocular is not None:
        return Normaliser(pair_distance(gt, scheme.interocular), "interocular")
    if scheme.torso is not None:
        return Normaliser(torso_size(gt, scheme.torso, visible), "torso")
    return Normaliser(bbox_size(boxes), "bbox")
