"""Does a keypoint's score mean anything? Failure detection, ranking and calibration of scores.

Every decoded keypoint carries a score: the peak of its map (an MSE regression target's peak,
which can exceed 1 or go below 0, or a focal model's sigmoid probability). Given each keypoint's
normalised error and the dataset's threshold (a *hit* is ``error <= threshold``, as PCK counts it;
a *miss* is ``error > threshold``), :func:`measure_confidence` reports:

- ``auroc``: how well the score tells a hit from a miss. Convention: a higher score should mean a
  hit; AUROC = P(score of a random hit > score of a random miss) + 1/2 P(equal), the Mann-Whitney
  form (:func:`auroc`). 1: the score separates them perfectly, 0.5: it carries no information, 0:
  perfectly reversed. Undefined (NaN, with the reason in ``notes``) when every keypoint is a hit or
  every one a miss.
- ``spearman``: Spearman's rank correlation between score and error (:func:`spearman`, scipy's
  ``spearmanr``, ties by average rank); -1 is best (the higher the score, the smaller the error).
  Undefined for fewer than two keypoints or a constant score or error.
- ``ece``: expected calibration error of the score read as P(hit), over :data:`NUM_BINS`
  equal-width bins of [0, 1] (:func:`reliability`, :func:`expected_calibration_error`):
  ``sum_b n_b / n * |hit rate_b - mean score_b|``. Scores are **clipped to [0, 1]** first (an MSE
  peak of 1.3 counts as 1, one of -0.2 as 0), in these two measures only: AUROC and Spearman use
  the raw scores, whose order clipping would tie. Bin b holds clipped scores in
  ``[b / 10, (b + 1) / 10)``, the last bin also 1.0.
- ``keep``: where to threshold the score (:func:`keep_threshold`): of the bin edges, the one at
  which keeping the keypoints scored at or above it and dropping the rest decides the most
  keypoints right (a hit kept, a miss dropped), with the fraction kept and their hit rate.

Keypoints with a non-finite score (NaN, inf) are left out of every measure and counted in
``num_nonfinite_scores``. The module is torch-free (numpy, scipy; matplotlib for the plot).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

#: Equal-width score bins of the reliability diagram and the ECE.
NUM_BINS = 10
#: Prefix of the measures in a metrics dict (``metrics.json``: ``confidence/auroc``, ...).
PREFIX = "confidence/"


def hits_from_errors(errors, threshold: float) -> np.ndarray:
    """(N,) bool: ``error <= threshold`` (a hit; PCK's convention), from finite normalised errors."""
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    if not np.isfinite(errors).all():
        raise ValueError("confidence: errors must be finite (leave out keypoints without a normaliser)")
    if not threshold > 0:
        raise ValueError(f"confidence: threshold must be > 0, got {threshold}")
    return errors <= threshold


def _undefined_auroc(hits: np.ndarray) -> Optional[str]:
    if hits.size == 0:
        return "no keypoints"
    if hits.all():
        return "every keypoint is a hit"
    if not hits.any():
        return "every keypoint is a miss"
    return None


def auroc(scores, hits) -> float:
    """Area under the ROC curve of ``scores`` for telling hits (positives) from misses: the
    Mann-Whitney U of the hits' scores over ``n_hits * n_misses``, ties counting 1/2. NaN when
    there are no hits or no misses."""
    from scipy.stats import rankdata

    scores, hits = _paired(scores, hits)
    if _undefined_auroc(hits) is not None:
        return float("nan")
    ranks = rankdata(scores)  # average ranks: a tie between a hit and a miss counts 1/2
    n_hits, n_misses = int(hits.sum()), int((~hits).sum())
    u = ranks[hits].sum() - n_hits * (n_hits + 1) / 2.0
    return float(u / (n_hits * n_misses))


def _undefined_spearman(scores: np.ndarray, errors: np.ndarray) -> Optional[str]:
    if scores.size < 2:
        return f"{scores.size} keypoint(s), Spearman needs 2"
    if np.ptp(scores) == 0:
        return "every score is the same"
    if np.ptp(errors) == 0:
        return "every error is the same"
    return None


def spearman(scores, errors) -> float:
    """Spearman's rank correlation of score and error (-1: the higher the score, the smaller the
    error); NaN for fewer than two keypoints or a constant score or error."""
    from scipy.stats import spearmanr

    scores, errors = _paired(scores, errors, np.float64)
    if _undefined_spearman(scores, errors) is not None:
        return float("nan")
    return float(spearmanr(scores, errors).statistic)


@dataclass(frozen=True)
class Reliability:
    """The reliability diagram: per equal-width bin of the clipped score, how many keypoints fell
    in it, their mean (clipped) score and the fraction of them that hit (NaN for an empty bin)."""

    edges: np.ndarray  # (B + 1,) bin edges, 0 ... 1
    count: np.ndarray  # (B,) int
    mean_score: np.ndarray  # (B,)
    hit_rate: np.ndarray  # (B,)

    def as_json(self) -> dict:
        """Plain lists (``null`` for an empty bin's mean score and hit rate)."""
        def listed(values):
            return [None if not np.isfinite(v) else float(v) for v in values]
        return {"edges": [float(e) for e in self.edges], "count": [int(c) for c in self.count],
                "mean_score": listed(self.mean_score), "hit_rate": listed(self.hit_rate)}

    @classmethod
    def from_json(cls, values: dict) -> "Reliability":
        def array(key):
            return np.array([np.nan if v is None else v for v in values[key]], dtype=np.float64)
        return cls(array("edges"), np.asarray(values["count"], dtype=np.int64), array("mean_score"), array("hit_rate"))


def reliability(scores, hits, num_bins: int = NUM_BINS) -> Reliability:
    """Scores clipped to [0, 1] in ``num_bins`` equal-width bins, ``[b / B, (b + 1) / B)`` and the
    last one also 1.0: each bin's count, mean clipped score and hit rate."""
    scores, hits = _paired(scores, hits)
    clipped = np.clip(scores, 0.0, 1.0)
    edges = np.arange(num_bins + 1) / num_bins
    index = np.minimum(np.searchsorted(edges, clipped, side="right") - 1, num_bins - 1)
    count = np.bincount(index, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(index, weights=clipped, minlength=num_bins) / count
        hit_rate = np.bincount(index, weights=hits.astype(np.float64), minlength=num_bins) / count
    return Reliability(edges, count, mean_score, hit_rate)


def expected_calibration_error(bins: Reliability) -> float:
    """``sum_b n_b / n * |hit rate_b - mean score_b|`` over the non-empty bins; NaN when all are empty."""
    total = int(bins.count.sum())
    if total == 0:
        return float("nan")
    used = bins.count > 0
    return float(np.sum(bins.count[used] / total * np.abs(bins.hit_rate[used] - bins.mean_score[used])))


@dataclass(frozen=True)
class KeepThreshold:
    """Where to threshold the score: keep the keypoints scored at least ``score`` (a bin edge; None:
    drop every keypoint), drop the rest. ``right``: the fraction of keypoints that decision gets
    right (a hit kept or a miss dropped); ``kept``: the fraction kept; ``kept_hit_rate``: the hit
    rate of those kept (None when none is)."""

    score: Optional[float]
    right: float
    kept: float
    kept_hit_rate: Optional[float]

    def as_json(self) -> dict:
        return asdict(self)


def keep_threshold(bins: Reliability) -> Optional[KeepThreshold]:
    """The threshold read off reliability bins: of the bin edges 0, 0.1, ..., 0.9 (keep the bins at
    and above it) and "drop all", the one that decides the most keypoints right (a hit kept, a miss
    dropped); a tie goes to the lower edge, which keeps more. None: no keypoints. On bins of a
    validation split, this is the threshold to use on new images of that kind."""
    count = bins.count.astype(np.float64)
    total = float(count.sum())
    if total == 0:
        return None
    hits = np.nan_to_num(bins.hit_rate) * count
    # option k keeps bins k ... B-1 (k = B keeps none): hits kept + misses of the dropped bins
    kept_hits = np.append(np.cumsum(hits[::-1])[::-1], 0.0)
    kept = np.append(np.cumsum(count[::-1])[::-1], 0.0)
    dropped_misses = np.concatenate([[0.0], np.cumsum(count - hits)])
    right = kept_hits + dropped_misses
    k = int(np.argmax(right))  # the first maximum: the lowest edge among ties
    # an edge above every score keeps nothing: that is dropping all
    return KeepThreshold(None if kept[k] == 0 else float(bins.edges[k]), float(right[k] / total),
                         float(kept[k] / total), float(kept_hits[k] / kept[k]) if kept[k] else None)


@dataclass(frozen=True)
class ConfidenceResult:
    """The measures of one set of keypoints (see the module's docstring)."""

    threshold: float  # a hit: normalised error <= threshold
    num_keypoints: int  # keypoints measured (finite score)
    num_hits: int
    num_nonfinite_scores: int  # left out of every measure
    auroc: float
    spearman: float
    ece: float
    reliability: Reliability
    notes: Tuple[str, ...] = ()  # why a measure is NaN; how many scores were left out

    def as_metrics(self) -> dict:
        """The measures as a metrics dict (``confidence/auroc``, ...): an undefined measure is
        ``None`` (json ``null``), with the reasons in ``confidence/notes``."""
        def value(v):
            return float(v) if np.isfinite(v) else None
        result = {f"{PREFIX}auroc": value(self.auroc), f"{PREFIX}spearman": value(self.spearman),
                  f"{PREFIX}ece": value(self.ece), f"{PREFIX}hit_rate": value(self.num_hits / self.num_keypoints)
                  if self.num_keypoints else None, f"{PREFIX}threshold": float(self.threshold),
                  f"{PREFIX}num_keypoints": self.num_keypoints, f"{PREFIX}reliability": self.reliability.as_json()}
        keep = keep_threshold(self.reliability)
        if keep is not None:
            result[f"{PREFIX}keep"] = keep.as_json()
        if self.notes:
            result[f"{PREFIX}notes"] = "; ".join(self.notes)
        return result


def measure_confidence(scores, errors, threshold: float, num_bins: int = NUM_BINS) -> ConfidenceResult:
    """AUROC, Spearman and ECE (with the reliability bins) of per-keypoint ``scores`` against
    their normalised ``errors`` (same length, any shape, flattened), a hit being
    ``error <= threshold``. Keypoints whose score is not finite are left out and counted."""
    scores, errors = _paired(scores, errors, np.float64)
    finite = np.isfinite(scores)
    scores, errors = scores[finite], errors[finite]
    hits = hits_from_errors(errors, threshold)
    notes = []
    left_out = int((~finite).sum())
    if left_out:
        notes.append(f"{left_out} keypoint(s) with a non-finite score left out")
    for name, reason in (("auroc", _undefined_auroc(hits)), ("spearman", _undefined_spearman(scores, errors))):
        if reason is not None:
            notes.append(f"{name} undefined: {reason}")
    bins = reliability(scores, hits, num_bins)
    if scores.size == 0:
        notes.append("ece undefined: no keypoints")
    return ConfidenceResult(float(threshold), int(scores.size), int(hits.sum()), left_out, auroc(scores, hits),
                            spearman(scores, errors), expected_calibration_error(bins), bins, tuple(notes))


def plot_reliability(bins: Reliability, path: Union[str, Path], title: str = "") -> Path:
    """The reliability diagram as a PNG: each bin's hit rate against its mean score (a calibrated
    score lies on the diagonal), with the bin counts below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.8, 5.6), dpi=110)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centres = (bins.edges[:-1] + bins.edges[1:]) / 2.0
    width = np.diff(bins.edges)
    used = bins.count > 0
    top.bar(centres[used], bins.hit_rate[used], width=width[used], edgecolor="black", color="#4c72b0",
            label="hit rate")
    top.plot([0, 1], [0, 1], linestyle="--", color="0.4", linewidth=1, label="calibrated")
    top.plot(bins.mean_score[used], bins.hit_rate[used], "o", color="#dd8452", markersize=4,
             label="(mean score, hit rate)")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("P(hit | score)")
    top.set_title(title or f"ECE {expected_calibration_error(bins):.4f}", fontsize=9)
    top.legend(fontsize=7, loc="upper left")
    top.grid(alpha=0.3)
    bottom.bar(centres, bins.count, width=width, edgecolor="black", color="0.7")
    bottom.set_xlabel("keypoint score (clipped to [0, 1])")
    bottom.set_ylabel("keypoints")
    figure.tight_layout()
    figure.savefig(path)
    return Path(path)


def _paired(values, other, other_dtype=bool) -> Tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    other = np.asarray(other, dtype=other_dtype).reshape(-1)
    if values.shape != other.shape:
        raise ValueError(f"confidence: {values.size} scores but {other.size} hits or errors")
    return values, other
