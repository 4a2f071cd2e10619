"""Images and boxes -> network inputs, and the matrices that take decoded points back.

A top-down model sees one crop per box ``[x, y, w, h]`` (grown to the input's aspect ratio, then
padded), the whole image as one box when none is given (:func:`crop_matrices`); whole-image
modes see the image letterboxed. Which a mode does is its spec's
:meth:`heatmapnet.deploy.modes.ModeSpec.frame`. Boxes are checked before anything is cropped: four
finite numbers each, width and height above zero, and overlapping the image (a box outside it
would crop nothing but black border and put its points anywhere). Matrices map original-image
pixels to network-input pixels (:mod:`heatmapnet.data.transforms`); their inverses take the
decoded points back. torch-free: the PyTorch predictor and the onnxruntime one share this.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from ..data.transforms import (IMAGE_MEAN, IMAGE_STD, box_to_center_size, crop_matrix, invert_matrix, to_input_tensor,
                               warp_image)
from .errors import DeployError

def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def parse_boxes(raw, where: str) -> np.ndarray:
    """``raw``, a list of ``[x, y, w, h]`` boxes, as an (N, 4) float64 array; every value a finite
    number, every width and height > 0. Errors name ``where`` and the box."""
    if isinstance(raw, np.ndarray):
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)):
        raise DeployError(f"{where}: expected a list of [x, y, w, h] boxes, got {type(raw).__name__}")
    if raw and all(_is_number(v) for v in raw):
        raise DeployError(f"{where}: expected a list of [x, y, w, h] boxes, got one flat list {list(raw)!r}: "
                          "write [[x, y, w, h]]")
    rows = []
    for index, box in enumerate(raw):
        if not isinstance(box, (list, tuple)) or len(box) != 4 \
                or not all(_is_number(v) for v in box):
            raise DeployError(f"{where}: box {index} is {box!r}; expected [x, y, w, h], four numbers")
        x, y, w, h = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise DeployError(f"{where}: box {index} {list(box)!r} holds a value that is not a finite number")
        if w <= 0 or h <= 0:
            raise DeployError(f"{where}: box {index} {list(box)!r}: width and height must be > 0 "
                              f"(got w={w:g}, h={h:g})")
        rows.append((x, y, w, h))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def check_boxes_in_image(boxes: np.ndarray, image_size, where: str) -> None:
    """Every box (N, 4) overlaps the ``image_size`` (w, h) image: x < w, y < h, x + w > 0, y + h > 0."""
    width, height = image_size
    x, y, w, h = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).T
    outside = np.flatnonzero((x >= width) | (y >= height) | (x + w <= 0) | (y + h <= 0))
    if outside.size:
        index = int(outside[0])
        raise DeployError(f"{where}: box {index} {boxes[index].tolist()!r} lies outside the {width}x{height} image "
                          f"(a box must overlap it: x < {width}, y < {height}, x + w > 0, y + h > 0)")


def crop_matrices(image_size, boxes, input_size, padding: float, where: str = "boxes") -> Tuple[list, list]:
    """Top-down framing of one ``image_size`` (w, h) image: one input matrix per box (``[x, y, w,
    h]`` in image pixels, checked as :func:`parse_boxes` and :func:`check_boxes_in_image` say),
    the whole image as one box when ``boxes`` is None or empty; and the boxes used (lists of floats)."""
    width, height = image_size
    if boxes is None or len(boxes) == 0:
        boxes = np.array([[0.0, 0.0, float(width), float(height)]])
    else:
        boxes = parse_boxes(boxes, where)
        check_boxes_in_image(boxes, image_size, where)
    aspect = input_size[0] / input_size[1]
    return [crop_matrix(*box_to_center_size(box, aspect, padding), input_size) for box in boxes], boxes.tolist()


def network_inputs(pixels: np.ndarray, matrices: Sequence[np.ndarray], input_size, mean=IMAGE_MEAN,
                   std=IMAGE_STD) -> np.ndarray:
    """The crops of a uint8 BGR image through ``matrices``, normalised: (N, 3, H, W) float32."""
    return np.stack([to_input_tensor(warp_image(pixels, matrix, input_size), mean, std) for matrix in matrices])


def inverse_matrices(matrices: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 2, 3) inverses of input matrices: network-input pixels -> image pixels."""
    return np.stack([invert_matrix(matrix) for matrix in matrices]).reshape(-1, 2, 3)


def apply_affine_rows(points: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Points (N, ..., 2) through one (2, 3) matrix per row (N, 2, 3), in float64."""
    points = np.asarray(points, dtype=np.float64)
    flat = points.reshape(points.shape[0], -1, 2)
    moved = flat @ np.transpose(matrices[:, :, :2], (0, 2, 1)) + matrices[:, None, :, 2]
    return moved.reshape(points.shape)


def image_size_of(pixels: np.ndarray) -> Tuple[int, int]:
    """(width, height) of an (H, W, ...) image."""
    return int(pixels.shape[1]), int(pixels.shape[0])


@dataclass
class Frame:
    """One image to predict on: uint8 BGR ``pixels``, its ``boxes`` (top-down; None: the whole
    image) and the ``name`` errors give it (a path, or a video's frame)."""

    pixels: np.ndarray
    boxes: Optional[object] = None
    name: str = "image"
