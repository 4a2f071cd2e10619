"""Geometry and photometry for both pipelines: one affine matrix moves the image and its points.

Matrices are 2x3 and map original-image pixels to network-input pixels, with the shared
convention that integer coordinates are pixel centres (OpenCV's ``warpAffine`` samples
``dst(x, y) = src(M^-1 (x, y))`` on exactly that grid). Predictions go back with the inverse.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..augmentation import NO_AUGMENTATION, Augmentation  # noqa: F401  (the pipelines' names for them)

IMAGE_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # RGB, ImageNet (timm's default)
IMAGE_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class AffineParams:
    """One draw of the geometric augmentation."""

    scale: float = 1.0
    rotation: float = 0.0  # degrees, counter-clockwise in the image
    shift: tuple = (0.0, 0.0)  # fraction of the box size
    flip: bool = False

    @staticmethod
    def sample(rng: np.random.Generator, augmentation: Augmentation) -> "AffineParams":
        scale = rng.uniform(1 - augmentation.scale, 1 + augmentation.scale)
        rotation = rng.uniform(-augmentation.rotation, augmentation.rotation) \
            if rng.random() < augmentation.rotation_probability else 0.0
        shift = tuple(rng.uniform(-augmentation.translation, augmentation.translation, size=2))
        flip = bool(rng.random() < augmentation.flip_probability)
        return AffineParams(scale, rotation, shift, flip)


def box_to_center_size(bbox, aspect_ratio: float, padding: float = 1.25):
    """(x, y, w, h) -> centre and (w, h) grown to the input's aspect ratio, then padded.

    The box is a continuous extent in the keypoints' coordinates (a tight box of keypoints has
    x = min x and w = max x - min x), so its centre is x + w / 2."""
    x, y, w, h = (float(v) for v in bbox)
    center = np.array([x + w / 2.0, y + h / 2.0])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w, h]) * padding


def crop_matrix(center, size, output_size, params: AffineParams = AffineParams()) -> np.ndarray:
    """Affine matrix taking the box (centre, size (w, h)), scaled, rotated, shifted and optionally
    mirrored, onto an ``output_size`` (w, h) input whose pixel centres span 0..w-1."""
    out_w, out_h = output_size
    size = np.asarray(size, dtype=np.float64) * params.scale
    center = np.asarray(center, dtype=np.float64) + np.asarray(params.shift) * size
    zoom = out_w / size[0]
    angle = math.radians(params.rotation)
    cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
    # rotate and scale about the box centre, then put the centre at the output centre
    linear = np.array([[cos, sin], [-sin, cos]])
    out_center = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0])
    matrix = np.concatenate([linear, (out_center - linear @ center)[:, None]], axis=1)
    if params.flip:
        mirror = np.array([[-1.0, 0.0, out_w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        matrix = (mirror @ np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    return matrix


def letterbox_matrix(image_size, output_size) -> np.ndarray:
    """Scale a whole (w, h) image to fit ``output_size`` (w, h), centred, aspect kept."""
    in_w, in_h = image_size
    out_w, out_h = output_size
    zoom = min(out_w / in_w, out_h / in_h)
    # pixel i covers [i - 0.5, i + 0.5): edges -0.5 and in - 0.5 map into the output's centred span
    offset_x = (out_w - zoom * in_w) / 2.0 - 0.5 + 0.5 * zoom
    offset_y = (out_h - zoom * in_h) / 2.0 - 0.5 + 0.5 * zoom
    return np.array([[zoom, 0.0, offset_x], [0.0, zoom, offset_y]])


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(..., 2) points through a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_image(image: np.ndarray, matrix: np.ndarray, output_size) -> np.ndarray:
    return cv2.warpAffine(image, np.asarray(matrix, dtype=np.float64), (int(output_size[0]), int(output_size[1])),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def jitter_colour(image: np.ndarray, rng: np.random.Generator, augmentation: Augmentation) -> np.ndarray:
    """Brightness, contrast and saturation jitter of a uint8 BGR image."""
    if not (augmentation.brightness or augmentation.contrast or augmentation.saturation):
        return image
    out = image.astype(np.float32)
    brightness = rng.uniform(1 - augmentation.brightness, 1 + augmentation.brightness)
    contrast = rng.uniform(1 - augmentation.contrast, 1 + augmentation.contrast)
    saturation = rng.uniform(1 - augmentation.saturation, 1 + augmentation.saturation)
    out *= brightness
    out = (out - out.mean()) * contrast + out.mean()
    grey = out.mean(axis=2, keepdims=True)
    out = (out - grey) * saturation + grey
    return np.clip(out, 0, 255).astype(np.uint8)


def to_input_tensor(image_bgr: np.ndarray, mean=IMAGE_MEAN, std=IMAGE_STD) -> np.ndarray:
    """uint8 BGR HxWx3 -> float32 RGB 3xHxW normalised with ``mean`` and ``std`` (RGB, of pixel / 255;
    default the ImageNet ones every heatmapnet model is trained with)."""
    rgb = image_bgr[:, :, ::-1].astype(np.float32) / 255.0
    mean, std = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(((rgb - mean) / std).transpose(2, 0, 1))
