"""One image's decoded keypoints -> its json entry, per data mode (what ``predict`` writes).

Points are in original image pixels. torch-free: :mod:`heatmapnet.modes` (the PyTorch path) and
the onnxruntime predictor write their entries with these functions, so both backends' json has
one layout:

- top-down: per box ``{"bbox", "keypoints" (K x [x, y]), "scores" (K), "keypoint_names"}``;
- multi: per peak scoring above ``min_score`` ``{"keypoint_type", "name", "x", "y", "score"}``;
- bottom-up: per person scoring at least ``min_score`` ``{"score", "keypoints", "scores",
  "keypoint_names"}``.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np


def instances_json(keypoints: np.ndarray, scores: np.ndarray, boxes: Sequence, names: Sequence[str]) -> List[dict]:
    """Top-down: keypoints (N, K, 2) and scores (N, K) of the N ``boxes`` ([x, y, w, h] each)."""
    return [{"bbox": [float(v) for v in box], "keypoints": keypoints[i].tolist(), "scores": scores[i].tolist(),
             "keypoint_names": list(names)} for i, box in enumerate(boxes)]


def peaks_json(keypoint_type: np.ndarray, points: np.ndarray, scores: np.ndarray, names: Sequence[str],
               min_score: float) -> List[dict]:
    """Multi-instance: peaks (M,) of type ``keypoint_type`` at ``points`` (M, 2) scoring above ``min_score``."""
    return [{"keypoint_type": int(k), "name": names[int(k)], "x": float(p[0]), "y": float(p[1]), "score": float(s)}
            for k, p, s in zip(np.asarray(keypoint_type).tolist(), points, np.asarray(scores).tolist())
            if s > min_score]


def listed_people(person_scores: np.ndarray, min_score: float) -> np.ndarray:
    """Which decoded people (T,) a bottom-up prediction lists: those scoring at least ``min_score``."""
    return np.asarray(person_scores, dtype=np.float64) >= min_score


def people_json(person_scores: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, names: Sequence[str],
                min_score: float) -> List[dict]:
    """Bottom-up: people (T,) with keypoints (T, K, 2) and keypoint scores (T, K), those
    :func:`listed_people` lists."""
    return [{"score": float(person_scores[i]), "keypoints": keypoints[i].tolist(), "scores": scores[i].tolist(),
             "keypoint_names": list(names)}
            for i in np.flatnonzero(listed_people(person_scores, min_score))]
