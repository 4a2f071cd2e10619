"""The built-in default data: procedural faces (68 iBUG points, or the 5-point subset) and people
(17 COCO joints, several per image), generated on access and deterministic from (seed, index).

Both sets are random-access sequences of :class:`~heatmapnet.data.records.Record` whose pixels
are in memory, so they drop into the same pipelines as files read from disk. Everything is drawn
with OpenCV's fixed-point coordinates (1/16 px) on the records' convention (integer coordinates
are pixel centres), so a landmark sits sub-pixel exactly on the feature drawn for it: a decoder
that throws away sub-pixel information loses accuracy here just as on real photographs.

Difficulty comes from what real data has: head pose (3-D rotation of a face template), shape
variation, occluders, background clutter with limb-like distractors, people overlapping each
other at scales that differ by 4x, blur and sensor noise. ``plain=True`` turns off clutter,
occluders, blur and noise, to check that the annotations land on the drawing.

``dataset.annotations`` (:class:`~heatmapnet.data.records.GeneratedRecords`) gives the same records
with no pixels drawn: the generators take every random draw the drawing would, so record ``i``'s
annotations are the rendered record's, at a fraction of the cost (evaluation scores through it).
"""
from __future__ import annotations

import math
from typing import Optional
import cv2
import numpy as np

from .records import GeneratedRecords, Instance, Record

_SHIFT = 4  # OpenCV fixed-point bits: coordinates in 1/16 px
_ONE = float(1 << _SHIFT)

# five-point scheme (mtfl5 order, image sides) from the 68 iBUG points: eye centres, nose tip,
# mouth corners. Image-left eye = iBUG 36-41, image-right eye = 42-47.
_FIVE_FROM_68 = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47), (30,), (48,), (54,))


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32)


# The drawing primitives draw nothing on ``image`` None: a record generated for its annotations alone.
def _polygon(image, points, color) -> None:
    if image is None:
        return
    cv2.fillPoly(image, [_fixed(points)], color, cv2.LINE_AA, _SHIFT)


def _polyline(image, points, color, thickness: float, closed: bool = False) -> None:
    if image is None:
        return
    cv2.polylines(image, [_fixed(points)], closed, color, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _circle(image, centre, radius: float, color, thickness: int = -1) -> None:
    if image is None:
        return
    cv2.circle(image, tuple(int(v) for v in _fixed(centre)), int(round(radius * _ONE)), color, thickness,
               cv2.LINE_AA, _SHIFT)


def _capsule(image, start, end, thickness: float, color) -> None:
    if image is None:
        return
    cv2.line(image, tuple(int(v) for v in _fixed(start)), tuple(int(v) for v in _fixed(end)), color,
             max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple:
    return tuple(int(v) for v in rng.integers(low, high, size=3))


def _skin(rng: np.random.Generator) -> tuple:
    """A BGR skin tone from dark to light."""
    tone = rng.uniform(0.0, 1.0)
    base = np.array([60, 80, 120]) + tone * np.array([140, 130, 115])
    return tuple(int(v) for v in np.clip(base + rng.normal(0, 8, 3), 0, 255))


def _background(rng: np.random.Generator, width: int, height: int, clutter: int, draw: bool = True
                ) -> Optional[np.ndarray]:
    """A colour gradient with random rectangles, ellipses and sticks (limb-like distractors);
    ``draw=False``: None, after the same random draws."""
    top, bottom = rng.uniform(20, 235, size=(2, 3))
    image = None
    if draw:
        ramp = np.linspace(0.0, 1.0, height)[:, None, None]
        image = np.ascontiguousarray(np.broadcast_to(top + (bottom - top) * ramp, (height, width, 3))).astype(np.uint8)
    for _ in range(clutter):
        kind = rng.integers(3)
        centre = rng.uniform([0, 0], [width, height])
        size = rng.uniform(0.03, 0.25) * min(width, height)
        colour = _colour(rng)
        if kind == 0:
            corner = centre + rng.uniform(-size, size, 2)
            if draw:
                cv2.rectangle(image, tuple(int(v) for v in _fixed(centre)), tuple(int(v) for v in _fixed(corner)),
                              colour, -1, cv2.LINE_AA, _SHIFT)
        elif kind == 1:
            axes = tuple(int(v) for v in _fixed(rng.uniform(0.3, 1.0, 2) * size))
            angle = float(rng.uniform(0, 180))
            if draw:
                cv2.ellipse(image, tuple(int(v) for v in _fixed(centre)), axes, angle, 0, 360, colour, -1,
                            cv2.LINE_AA, _SHIFT)
        else:
            end = centre + rng.uniform(-2 * size, 2 * size, 2)
            _capsule(image, centre, end, rng.uniform(0.1, 0.4) * size, colour)
    return image


def _finish(image: np.ndarray, rng: np.random.Generator, plain: bool) -> np.ndarray:
    """Camera blur, sensor noise and a global gain."""
    if plain:
        return image
    sigma = rng.uniform(0.3, 1.3)
    image = cv2.GaussianBlur(image, (0, 0), sigma)
    noisy = image.astype(np.float32) * rng.uniform(0.8, 1.15) + rng.normal(0.0, rng.uniform(2, 10), image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _tight_box(points: np.ndarray) -> np.ndarray:
    """(x, y, w, h) of the points, the readers' rule for landmark-only formats."""
    low, high = points.min(axis=0), points.max(axis=0)
    return np.concatenate([low, high - low])


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3-D rotation (radians): yaw about the vertical axis, pitch about the horizontal, roll in
    the image plane; x right, y down, z towards the camera."""
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch),
                              math.cos(roll), math.sin(roll))
    around_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    around_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    around_z = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return around_z @ around_x @ around_y


class _SyntheticSet(GeneratedRecords):
    """A fixed-length sequence of generated records; record i depends only on (seed, i)."""

    kind = "synthetic"

    def __init__(self, num_samples: int, seed: int = 0, plain: bool = False):
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.num_samples, self.seed, self.plain = int(num_samples), int(seed), bool(plain)

    def render(self, index: int) -> Record:
        return self._generate(index, np.random.default_rng([self.seed, index, 1]), draw=True)

    def annotate(self, index: int) -> Record:
        return self._generate(index, np.random.default_rng([self.seed, index, 1]), draw=False)

    def _path(self, index: int) -> str:
        return f"synthetic://{self.kind}/seed{self.seed}/{index:06d}"

    def _generate(self, index: int, rng: np.random.Generator, draw: bool) -> Record:
        """Record ``index`` from ``rng``; ``draw=False``: its annotations alone (``image`` None)."""
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------
# faces
# ----------------------------------------------------------------------------------------------
def _face_template() -> np.ndarray:
    """The 68 iBUG landmarks of a frontal face as 3-D points (x right, y down, z towards the
    camera), the face about 1 unit wide. Left/right are image sides: 36-41 is the image-left eye."""
    points = np.zeros((68, 3))
    t = np.pi - np.pi * np.arange(17) / 16  # jaw: image-left temple, chin (8), image-right temple
    points[:17] = np.stack([0.5 * np.cos(t), -0.1 + 0.72 * np.sin(t), 0.05 - 0.35 * np.abs(np.cos(t))], 1)
    brow = np.linspace(0.0, 1.0, 5)  # 17-21 outer to inner (image left), 22-26 inner to outer
    left_brow = np.stack([-0.42 + 0.32 * brow, -0.27 - 0.06 * np.sin(np.pi * (0.3 + 0.7 * brow)), 0.08 + 0.05 * brow], 1)
    points[17:22] = left_brow
    points[22:27] = left_brow[::-1] * [-1, 1, 1]
    points[27:31] = np.stack([np.zeros(4), np.linspace(-0.17, 0.12, 4), np.linspace(0.15, 0.34, 4)], 1)
    points[31:36] = np.stack([np.linspace(-0.1, 0.1, 5), [0.19, 0.205, 0.215, 0.205, 0.19], [0.17, 0.2, 0.22, 0.2, 0.17]], 1)
    left_eye = [[-0.34, -0.12], [-0.28, -0.155], [-0.2, -0.155], [-0.13, -0.12], [-0.2, -0.093], [-0.28, -0.093]]
    points[36:42, :2] = left_eye
    points[42:48, :2] = np.array(left_eye)[[3, 2, 1, 0, 5, 4]] * [-1, 1]
    points[36:48, 2] = 0.07
    points[48:60, :2] = [[-0.2, 0.38], [-0.13, 0.34], [-0.05, 0.32], [0.0, 0.33], [0.05, 0.32], [0.13, 0.34],
                         [0.2, 0.38], [0.13, 0.44], [0.05, 0.47], [0.0, 0.475], [-0.05, 0.47], [-0.13, 0.44]]
    points[60:68, :2] = [[-0.17, 0.38], [-0.06, 0.365], [0.0, 0.365], [0.06, 0.365], [0.17, 0.38], [0.06, 0.395],
                         [0.0, 0.395], [-0.06, 0.395]]
    points[48:68, 2] = 0.12
    return points


_FACE = _face_template()
_FOREHEAD_ANGLES = np.linspace(0, -np.pi, 9)  # the arc over the brows, image-right temple to image-left
_FOREHEAD = np.stack([0.5 * np.cos(_FOREHEAD_ANGLES), -0.1 + 0.55 * np.sin(_FOREHEAD_ANGLES),
                      0.05 - 0.35 * np.abs(np.cos(_FOREHEAD_ANGLES))], 1)


def _face_shape(rng: np.random.Generator) -> np.ndarray:
    """The template with this face's proportions and expression."""
    points = _FACE.copy()
    points[:17, 0] *= rng.uniform(0.85, 1.1)  # jaw width
    points[:, 1] *= rng.uniform(0.9, 1.12)  # face length
    eyes = slice(36, 48)
    eye_centres = np.repeat(points[eyes, :2].reshape(2, 6, 2).mean(1), 6, axis=0)
    points[eyes, :2] = eye_centres + (points[eyes, :2] - eye_centres) * rng.uniform(0.8, 1.25)
    points[eyes, 0] *= rng.uniform(0.92, 1.08)  # eye spacing
    points[17:27, 1] -= rng.uniform(-0.03, 0.05)  # brow raise
    points[27:36, 1] *= rng.uniform(0.9, 1.1)  # nose length
    mouth = slice(48, 68)
    points[mouth, 0] *= rng.uniform(0.8, 1.2)  # mouth width
    opening = rng.uniform(0.0, 0.12) if rng.random() < 0.4 else 0.0
    points[[55, 56, 57, 58, 59, 65, 66, 67], 1] += opening
    smile = rng.uniform(-0.03, 0.05)
    points[[48, 54, 60, 64], 1] -= smile
    points[:, :2] += rng.normal(0.0, 0.006, (68, 2))
    return points


class SyntheticFaces(_SyntheticSet):
    """Faces with the 68 iBUG landmarks (``num_keypoints=68``) or the five mtfl5 points
    (``num_keypoints=5``: eye centres, nose tip, mouth corners, image sides), one per image.

    Each face is a 3-D template with random proportions and expression, turned by a random
    yaw (+-35 deg), pitch (+-20) and roll (+-25), drawn over clutter, sometimes partly hidden by
    an occluder (its points stay annotated, as in 300W), then blurred and noised.
    """

    kind = "faces"

    def __init__(self, num_samples: int, seed: int = 0, num_keypoints: int = 68, image_size: int = 160,
                 plain: bool = False):
        super().__init__(num_samples, seed, plain)
        if num_keypoints not in (68, 5):
            raise ValueError(f"synthetic faces have 68 or 5 keypoints, not {num_keypoints}")
        self.num_keypoints, self.image_size = num_keypoints, int(image_size)

    def instance_counts(self) -> np.ndarray:
        return np.ones(len(self), np.int64)

    def _generate(self, index: int, rng: np.random.Generator, draw: bool) -> Record:
        size = self.image_size
        shape = _face_shape(rng)
        rotation = _rotation(math.radians(rng.uniform(-35, 35)), math.radians(rng.uniform(-20, 20)),
                             math.radians(rng.uniform(-25, 25)))
        scale = rng.uniform(0.5, 0.72) * size
        turned = shape @ rotation.T
        forehead = (_FOREHEAD * [shape[:17, 0].max() / 0.5, 1, 1]) @ rotation.T
        # the face centre within the image, all points at least 3 px inside
        extent = np.concatenate([turned[:, :2], forehead[:, :2]]) * scale
        low, high = 3 - extent.min(0), size - 4 - extent.max(0)
        centre = rng.uniform(low, np.maximum(low, high))
        points = turned[:, :2] * scale + centre
        keypoints = points if self.num_keypoints == 68 else np.stack([points[list(p)].mean(0) for p in _FIVE_FROM_68])
        instance = Instance(keypoints, np.ones(len(keypoints), bool), _tight_box(keypoints))
        record = Record(self._path(index), size, size, [instance], image_id=index)
        if not draw:  # every draw the annotation takes is above; the rest is appearance
            return record
        depth = turned[:, 2]
        image = _background(rng, size, size, 0 if self.plain else int(rng.integers(4, 12)))
        self._draw_face(image, rng, points, depth, forehead[:, :2] * scale + centre, scale)
        if not self.plain and rng.random() < 0.3:
            self._draw_occluder(image, rng, points, scale)
        record.image = _finish(image, rng, self.plain)
        return record

    @staticmethod
    def _draw_face(image, rng, points, depth, forehead, scale) -> None:
        skin = _skin(rng)
        hair = _colour(rng, 0, 120)
        # hair behind the head, the face (jaw contour + forehead arc) over it
        head = np.concatenate([points[:17], forehead[1:-1]])
        centre = head.mean(0)
        _polygon(image, centre + (head - centre) * [1.08, 1.12], hair)
        _polygon(image, head, skin)
        shade = tuple(int(c * rng.uniform(0.7, 0.9)) for c in skin)
        # the far cheek darker: the side of the jaw that turned away from the camera
        far = slice(0, 9) if depth[0] < depth[16] else slice(8, 17)
        _polygon(image, np.concatenate([points[far], points[[30]]]), shade)
        brow_colour = tuple(int(c * 0.6) for c in hair)
        _polyline(image, points[17:22], brow_colour, 0.035 * scale)
        _polyline(image, points[22:27], brow_colour, 0.035 * scale)
        iris = _colour(rng, 20, 140)
        for eye in (points[36:42], points[42:48]):
            mask = np.zeros(image.shape[:2], np.uint8)
            _polygon(mask, eye, 255)
            sclera = image.copy()
            _polygon(sclera, eye, (235, 235, 235))
            _circle(sclera, eye.mean(0) + rng.normal(0, 0.01 * scale, 2), 0.045 * scale, iris)
            _circle(sclera, eye.mean(0), 0.018 * scale, (20, 20, 20))
            blend = (mask.astype(np.float32) / 255.0)[..., None]
            image[:] = (image * (1 - blend) + sclera * blend).astype(np.uint8)
            _polyline(image, eye, (40, 30, 30), max(1.0, 0.012 * scale), closed=True)
        nose_colour = tuple(int(c * 0.75) for c in skin)
        _polyline(image, points[27:31], nose_colour, max(1.0, 0.015 * scale))
        _polyline(image, points[[31, 32, 33, 34, 35]], nose_colour, max(1.0, 0.02 * scale))
        _polyline(image, points[[31, 30, 35]], nose_colour, max(1.0, 0.012 * scale))
        lip = tuple(int(v) for v in np.clip(np.array(skin) * [0.6, 0.55, 1.1], 0, 255))
        _polygon(image, points[48:60], lip)
        inner = points[60:68]
        if np.ptp(inner[:, 1]) > 0.03 * scale:
            _polygon(image, inner, (30, 20, 40))
        else:
            _polyline(image, inner[[0, 1, 2, 3, 4]], (40, 30, 60), max(1.0, 0.012 * scale))
        _polyline(image, points[:17], tuple(int(c * 0.8) for c in skin), max(1.0, 0.01 * scale))

    @staticmethod
    def _draw_occluder(image, rng, points, scale) -> None:
        """A hand, a microphone or sunglasses: an opaque shape over part of the face."""
        centre = points[rng.integers(len(points))] + rng.normal(0, 0.1 * scale, 2)
        axes = rng.uniform(0.08, 0.22, 2) * scale
        cv2.ellipse(image, tuple(int(v) for v in _fixed(centre)), tuple(int(v) for v in _fixed(axes)),
                    float(rng.uniform(0, 180)), 0, 360, _colour(rng), -1, cv2.LINE_AA, _SHIFT)


# ----------------------------------------------------------------------------------------------
# people
# ----------------------------------------------------------------------------------------------
# COCO 17 order: nose, eyes (l, r), ears (l, r), shoulders, elbows, wrists, hips, knees, ankles.
# Sides are the person's own: facing the camera, the left shoulder is on the image right.
_HEAD_POINTS = np.array([[0.0, 0.01, 0.065], [0.024, -0.012, 0.05], [-0.024, -0.012, 0.05],
                         [0.062, 0.0, -0.005], [-0.062, 0.0, -0.005]])  # in heights, head-centred
_LIMBS = (  # (joint from, joint to, thickness in heights, part)
    (5, 7, 0.055, "shirt"), (7, 9, 0.045, "skin"), (6, 8, 0.055, "shirt"), (8, 10, 0.045, "skin"),
    (11, 13, 0.075, "trousers"), (13, 15, 0.06, "trousers"), (12, 14, 0.075, "trousers"), (14, 16, 0.06, "trousers"),
)


def _unit(angle: float) -> np.ndarray:
    return np.array([math.sin(angle), math.cos(angle)])  # angle 0 points down the image


class SyntheticPeople(_SyntheticSet):
    """Images of 1 to ``max_people`` articulated people with the 17 COCO joints, standing,
    walking, reaching, crouching, facing any way; heights vary 4x within and across images, so
    the CenterNet-style size-adaptive Gaussian has something to adapt to.

    A joint counts as annotated (``visible``) when it lies inside the image and, for the face
    points, on the side of the head towards the camera; joints hidden behind another person stay
    annotated, as in COCO. Boxes span the drawn body.
    """

    kind = "people"

    def __init__(self, num_samples: int, seed: int = 0, image_height: int = 256, max_people: int = 4,
                 plain: bool = False):
        super().__init__(num_samples, seed, plain)
        self.image_height, self.max_people = int(image_height), int(max_people)

    def _count(self, index: int) -> int:
        return int(np.random.default_rng([self.seed, index, 0]).integers(1, self.max_people + 1))

    def instance_counts(self) -> np.ndarray:
        """People per image without drawing any (drawn from their own random stream)."""
        return np.array([self._count(i) for i in range(len(self))], np.int64)

    def _generate(self, index: int, rng: np.random.Generator, draw: bool) -> Record:
        # the appearance draws come between the people's, so draw=False takes them all, painting nothing
        height = self.image_height
        width = int(rng.integers(7, 11)) * height // 8
        count = self._count(index)
        image = _background(rng, width, height, 0 if self.plain else int(rng.integers(6, 16)), draw)
        tallest = rng.uniform(0.45, 0.9) * height
        heights = np.sort(tallest * rng.uniform(0.25, 1.0, count))
        heights[-1] = tallest
        instances = []
        for person_height in heights:  # smaller people are farther away: drawn first, behind
            joints, labelled, box = self._draw_person(image, rng, person_height, width, height)
            instances.append(Instance(joints, labelled, box))
        if draw:
            image = _finish(image, rng, self.plain)
        return Record(self._path(index), width, height, instances, image_id=index, image=image)

    def _draw_person(self, image, rng, body: float, width: int, height: int):
        """One person's joints, labels and box, drawn on ``image`` (None: not drawn)."""
        facing = rng.uniform(-math.pi, math.pi) if rng.random() < 0.3 else rng.uniform(-0.6, 0.6)
        side = math.cos(facing)  # + : the person's left shows on the image right
        low = np.array([0.1 * width, 0.5 * body])
        hip_centre = rng.uniform(low, np.maximum(low, [0.9 * width, height - 0.45 * body]))
        lean = rng.normal(0.0, 0.12) + (rng.uniform(-0.6, 0.6) if rng.random() < 0.15 else 0.0)
        up = -_unit(lean)
        across = np.array([-up[1], up[0]]) * -1  # image right for an upright person
        neck = hip_centre + 0.3 * body * up
        joints = np.zeros((17, 2))
        joints[5], joints[6] = neck + side * 0.115 * body * across, neck - side * 0.115 * body * across
        joints[11], joints[12] = hip_centre + side * 0.08 * body * across, hip_centre - side * 0.08 * body * across
        crouch = rng.random() < 0.15
        for shoulder, elbow, wrist in ((5, 7, 9), (6, 8, 10)):
            upper = rng.uniform(-2.6, 2.6) if rng.random() < 0.5 else rng.normal(0.0, 0.4)
            bend = rng.uniform(-2.4, 2.4) * (1.0 if rng.random() < 0.6 else 0.2)
            joints[elbow] = joints[shoulder] + 0.17 * body * rng.uniform(0.75, 1.0) * _unit(upper + lean)
            joints[wrist] = joints[elbow] + 0.15 * body * rng.uniform(0.75, 1.0) * _unit(upper + bend + lean)
        for hip, knee, ankle in ((11, 13, 15), (12, 14, 16)):
            thigh = rng.normal(0.0, 0.25) + (rng.uniform(-1.4, 1.4) if crouch else 0.0)
            bend = rng.uniform(-0.6, 0.6) + (rng.uniform(-2.0, 2.0) if crouch else 0.0)
            joints[knee] = joints[hip] + 0.23 * body * rng.uniform(0.8, 1.0) * _unit(thigh + lean)
            joints[ankle] = joints[knee] + 0.23 * body * rng.uniform(0.8, 1.0) * _unit(thigh + bend + lean)
        head_centre = neck + 0.13 * body * up + rng.normal(0, 0.01 * body, 2)
        head_turn = _rotation(facing + rng.normal(0.0, 0.2), rng.normal(0.0, 0.15), lean)
        face = _HEAD_POINTS @ head_turn.T
        joints[:5] = head_centre + face[:, :2] * body
        towards_camera = face[:, 2] > -0.01

        skin, shirt, trousers = _skin(rng), _colour(rng), _colour(rng)
        colours = {"skin": skin, "shirt": shirt, "trousers": trousers}
        near_is_left = math.sin(facing) < 0  # the side turned towards the camera is drawn last
        order = [(a, b, t, p) for a, b, t, p in _LIMBS if (a % 2 == 1) != near_is_left]
        order += [(a, b, t, p) for a, b, t, p in _LIMBS if (a % 2 == 1) == near_is_left]
        far_limbs, near_limbs = order[:4], order[4:]
        for a, b, thickness, part in far_limbs:
            self._limb(image, joints[a], joints[b], thickness * body, colours[part])
        _polygon(image, self._torso(joints, body, up), shirt)
        for a, b, thickness, part in near_limbs:
            self._limb(image, joints[a], joints[b], thickness * body, colours[part])
        for wrist in (9, 10):
            _circle(image, joints[wrist], 0.028 * body, skin)
        _capsule(image, neck, head_centre, 0.05 * body, skin)
        hair = _colour(rng, 0, 110)
        _circle(image, head_centre, 0.068 * body, hair if not towards_camera[0] else skin)
        if towards_camera[0]:
            _circle(image, head_centre - up * 0.03 * body, 0.06 * body, hair)  # hair on top
            _circle(image, head_centre + 0.012 * body * up, 0.055 * body, skin)
            for eye in (1, 2):
                if towards_camera[eye]:
                    _circle(image, joints[eye], max(0.8, 0.01 * body), (30, 30, 30))
            _circle(image, joints[0], max(0.8, 0.012 * body), tuple(int(c * 0.7) for c in skin))
        for ear in (3, 4):
            if towards_camera[ear]:
                _circle(image, joints[ear], max(0.8, 0.014 * body), tuple(int(c * 0.85) for c in skin))

        labelled = ((joints >= 0) & (joints <= [width - 1, height - 1])).all(1)
        labelled[:5] &= towards_camera
        extent = np.concatenate([joints, head_centre[None] + 0.075 * body * np.array([[0, -1], [-1, 0], [1, 0]])])
        low = np.maximum(extent.min(0) - 0.04 * body, 0)
        high = np.minimum(extent.max(0) + 0.04 * body, [width - 1, height - 1])
        return joints, labelled, np.concatenate([low, high - low])

    @staticmethod
    def _limb(image, start, end, thickness, colour) -> None:
        _capsule(image, start, end, thickness, colour)
        # a slightly darker disc at the joint it ends on: elbows and knees show where limbs bend
        _circle(image, end, 0.5 * thickness, tuple(int(c * 0.85) for c in colour))

    @staticmethod
    def _torso(joints, body, up) -> np.ndarray:
        shoulders, hips = joints[[5, 6]], joints[[11, 12]]
        across = shoulders[0] - shoulders[1]
        widen = across / (np.linalg.norm(across) + 1e-9) * 0.03 * body
        return np.array([shoulders[0] + widen, shoulders[1] - widen, hips[1] - widen * 0.5 - up * 0.03 * body,
                         hips[0] + widen * 0.5 - up * 0.03 * body])
