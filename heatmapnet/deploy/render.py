"""One image's json entry (:mod:`.results`) drawn on the image, with the primitives of
:mod:`heatmapnet.drawing` (each data mode's :meth:`.modes.ModeSpec.draw` picks one): top-down
boxes framed and each box's keypoints joined by the scheme's skeleton in its own colour; bottom-up
people likewise; multi-instance peaks as crosses (peaks are not grouped into instances, so no
skeleton joins them). Markers grow with the image."""
from __future__ import annotations

from typing import List

import numpy as np

from ..drawing import PRED_COLOR, draw_boxes, draw_keypoints, draw_people, peak_rows
from ..metadata import KeypointScheme


def _marker_size(pixels: np.ndarray) -> tuple:
    """(radius, thickness) for an image: about 1/150 of its shorter side, at least 2 px."""
    side = min(pixels.shape[:2])
    return max(2.0, side / 150.0), 1 if side < 600 else 2


def draw_instances(pixels: np.ndarray, entry: List[dict], scheme: KeypointScheme) -> np.ndarray:
    radius, thickness = _marker_size(pixels)
    out = draw_boxes(pixels, [item["bbox"] for item in entry]) if entry and "bbox" in entry[0] else pixels
    if not entry:
        return out.copy()
    points = np.array([item["keypoints"] for item in entry], dtype=np.float64).reshape(len(entry), -1, 2)
    return draw_people(out, points, skeleton=scheme.skeleton, radius=radius, thickness=thickness)


def draw_peaks(pixels: np.ndarray, entry: List[dict], scheme: KeypointScheme) -> np.ndarray:
    radius, thickness = _marker_size(pixels)
    if not entry:
        return pixels.copy()
    rows, shown = peak_rows([item["keypoint_type"] for item in entry], [[item["x"], item["y"]] for item in entry],
                            scheme.num_keypoints)
    return draw_keypoints(pixels, rows, shown, (), PRED_COLOR, radius, "cross", thickness)

