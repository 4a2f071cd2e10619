"""Which keypoints a horizontal mirror swaps, when the scheme's names do not say.

A mirrored training image is only correct if its labels are swapped too (the left eye drawn
where the right one was is called left again). Schemes name their pairs (``flip_pairs``); a
COCO json whose keypoint names carry no side (``eye_0 .. eye_11``) gives none. Then, in order:

1. ``data.flip_pairs`` in the config: ``[[a, b], ...]`` by name or 0-based index
   (:func:`configured_flip_pairs`). An empty list says that no point changes name in a mirror.
2. The training data (:func:`infer_flip_pairs_from_records`): the mean shape of the instances,
   each normalised by its box (centre and size), is mirrored about a vertical line through its
   centroid; mirrored point i landing nearest point j while mirrored j lands nearest i makes
   (i, j) a pair, a point whose mirror lands nearest itself lies on the axis. The pairing is kept
   only if it is a consistent involution (every point in exactly one mutual match) and every
   mirrored point lands within ``MAX_RESIDUAL`` of the mean shape's size of its match. Turned
   heads leave a mean face slightly lopsided (the nose and mouth off the contour's centre), so
   the line is also tried up to ``AXIS_SEARCH`` of the size either side of the centroid, and the
   consistent pairing with the smallest total mismatch wins.
3. Neither: the scheme is made not ``mirrorable``, which turns flip augmentation and flip test
   off, with a warning.

:func:`resolve_flip_pairs` applies this to a scheme; :func:`heatmapnet.data.build.resolve_scheme`
calls it, so the scheme a run trains with, and saves in its checkpoints, carries the result.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..metadata import KeypointScheme, Pair
from .records import Record

__all__ = ["FlipInference", "MAX_RESIDUAL", "infer_flip_pairs_from_records", "normalised_mean_shape",
           "mirror_matches", "configured_flip_pairs", "resolve_flip_pairs"]

#: How far (a fraction of the mean shape's larger extent) a mirrored point may land from its match.
#: Pairings found on real faces and bodies stay below 0.06.
MAX_RESIDUAL = 0.1
#: How far either side of the centroid (a fraction of the size) the mirror line is searched, in
#: ``AXIS_STEPS`` positions.
AXIS_SEARCH = 0.05
AXIS_STEPS = 41


@dataclass(frozen=True)
class MeanShape:
    """The mean of the box-normalised instances: ``points`` (K, 2), and how many instances
    showed each point (``counts``, (K,))."""

    points: np.ndarray
    counts: np.ndarray
    num_instances: int


@dataclass(frozen=True)
class MirrorMatches:
    """A shape mirrored about the vertical line x = ``axis``: for each point, the point its mirror
    image lands nearest (``nearest``, (K,)) and how far from it (``residual``, (K,), in the shape's
    units); ``size``: the shape's larger extent."""

    axis: float
    nearest: np.ndarray
    residual: np.ndarray
    size: float

    @property
    def consistent(self) -> bool:
        """Whether the matches pair up: i's mirror nearest j and j's nearest i, for every i."""
        return bool(np.array_equal(self.nearest[self.nearest], np.arange(len(self.nearest))))


@dataclass(frozen=True)
class FlipInference:
    """What :func:`infer_flip_pairs_from_records` found.

    ``pairs``: (i, j), i < j, the points a mirror swaps; ``on_axis``: the points it maps to
    themselves; ``problem``: why no consistent pairing was found (then ``pairs`` and ``on_axis``
    are empty); ``worst_residual``: the largest distance of a mirrored point from its match, as a
    fraction of the mean shape's size.
    """

    pairs: tuple[Pair, ...]
    on_axis: tuple[int, ...]
    num_instances: int
    worst_residual: float
    problem: Optional[str] = None

    @property
    def found(self) -> bool:
        return self.problem is None

    def describe(self, names: Sequence[str]) -> str:
        """One line saying what was inferred, by name."""
        if not self.found:
            return f"no flip pairs inferred from {self.num_instances} training instance(s): {self.problem}"
        pairs = ", ".join(f"{names[a]}<->{names[b]}" for a, b in self.pairs) or "none"
        axis = ", ".join(names[i] for i in self.on_axis) or "none"
        return (f"flip pairs inferred from the mirrored mean shape of {self.num_instances} training instance(s) "
                f"(worst mismatch {self.worst_residual:.3f} of its size): {len(self.pairs)} pair(s): {pairs}; "
                f"on the axis: {axis}")


def normalised_mean_shape(records: Sequence[Record], num_keypoints: int) -> MeanShape:
    """The mean of every instance's points, each instance moved so that its box centre is at 0
    and scaled by its box's size (the square root of its area); invisible points are left out
    of their point's mean (a point no instance shows gets NaN)."""
    instances = [inst for record in records for inst in record.instances
                 if inst.keypoints.shape[0] == num_keypoints and not inst.extra.get("ignore")]
    if not instances:
        return MeanShape(np.full((num_keypoints, 2), np.nan), np.zeros(num_keypoints, np.int64), 0)
    points = np.stack([inst.keypoints for inst in instances])  # (N, K, 2)
    visible = np.stack([inst.visible for inst in instances])  # (N, K)
    boxes = np.stack([inst.bbox for inst in instances])  # (N, 4)
    size = np.sqrt(boxes[:, 2] * boxes[:, 3])
    usable = np.isfinite(size) & (size > 0)
    visible &= usable[:, None]
    centre = boxes[:, :2] + boxes[:, 2:] / 2.0
    normalised = (points - centre[:, None]) / np.where(usable, size, 1.0)[:, None, None]
    counts = visible.sum(axis=0)
    total = np.where(visible[..., None], normalised, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / counts[:, None]
    return MeanShape(mean, counts, int(usable.sum()))


def mirror_matches(shape: np.ndarray) -> MirrorMatches:
    """Mirror ``shape`` (K, 2) about vertical lines near its centroid (see the module doc) and match
    each mirrored point to the nearest original one: the consistent matching with the smallest
    total mismatch, else the one about the centroid's line."""
    extent = shape.max(axis=0) - shape.min(axis=0)
    size = float(extent.max())
    offsets = np.linspace(-AXIS_SEARCH, AXIS_SEARCH, AXIS_STEPS) * size
    axes = shape[:, 0].mean() + np.concatenate([[0.0], offsets])  # the centroid's own line first
    mirrored = np.stack([2.0 * axes[:, None] - shape[None, :, 0], np.broadcast_to(shape[:, 1], (len(axes), len(shape)))],
                        axis=2)  # (A, K, 2)
    distance = np.linalg.norm(mirrored[:, :, None, :] - shape[None, None, :, :], axis=3)  # (A, mirrored, original)
    nearest = distance.argmin(axis=2)  # (A, K)
    residual = np.take_along_axis(distance, nearest[:, :, None], axis=2)[:, :, 0]
    consistent = (np.take_along_axis(nearest, nearest, axis=1) == np.arange(len(shape))).all(axis=1)
    best = int(np.argmin(np.where(consistent, residual.sum(axis=1), np.inf))) if consistent.any() else 0
    return MirrorMatches(float(axes[best]), nearest[best], residual[best], size)


def infer_flip_pairs_from_records(records: Sequence[Record], num_keypoints: int) -> FlipInference:
    """The mirror pairing of the records' mean shape (see the module doc); ``problem`` says why
    there is none (no instances, a point never visible, no consistent involution, a mirror that
    lands far from its match)."""
    mean = normalised_mean_shape(records, num_keypoints)

    def failed(problem: str, worst: float = float("nan")) -> FlipInference:
        return FlipInference((), (), mean.num_instances, worst, problem)

    if mean.num_instances == 0:
        return failed(f"no instance has {num_keypoints} points and a box")
    unseen = np.flatnonzero(mean.counts == 0)
    if unseen.size:
        return failed(f"point(s) {unseen.tolist()} are never visible")
    matches = mirror_matches(mean.points)
    if matches.size <= 0:
        return failed("all points coincide in the mean shape")
    index = np.arange(num_keypoints)
    worst = float(matches.residual.max() / matches.size)
    if not matches.consistent:
        one_sided = np.flatnonzero(matches.nearest[matches.nearest] != index)
        i = int(one_sided[0])
        return failed(f"the pairing is not consistent (the mirror of point {i} lands nearest point "
                      f"{int(matches.nearest[i])}, whose mirror lands nearest point "
                      f"{int(matches.nearest[matches.nearest[i]])}; {one_sided.size} such point(s))", worst)
    if worst > MAX_RESIDUAL:
        i = int(matches.residual.argmax())
        return failed(f"the mean shape is not mirror-symmetric (the mirror of point {i} lands "
                      f"{worst:.2f} of the shape's size from point {int(matches.nearest[i])}; "
                      f"at most {MAX_RESIDUAL} allowed)", worst)
    first = index[index < matches.nearest]
    pairs = tuple((int(i), int(matches.nearest[i])) for i in first)
    on_axis = tuple(int(i) for i in np.flatnonzero(matches.nearest == index))
    return FlipInference(pairs, on_axis, mean.num_instances, worst)


def configured_flip_pairs(value: Any, scheme: KeypointScheme, key: str = "data.flip_pairs") -> tuple[Pair, ...]:
    """``[[a, b], ...]`` from the config (each a keypoint name or a 0-based index) as index pairs;
    a :class:`~heatmapnet.errors.ConfigError` naming ``key`` on anything else."""
    names = scheme.keypoint_names
    k = len(names)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"{key}: expected a list of [a, b] pairs (keypoint names or 0-based indices), "
                          f"got {value!r}")

    def point(item: Any, where: str) -> int:
        if isinstance(item, str):
            if item not in names:
                shown = ", ".join(names[:12]) + (", ..." if k > 12 else "")
                raise ConfigError(f"{where}: unknown keypoint name {item!r}; scheme {scheme.name!r} has {shown}")
            return names.index(item)
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not 0 <= int(item) < k:
                raise ConfigError(f"{where}: index {int(item)} out of range for {k} keypoints (0..{k - 1})")
            return int(item)
        raise ConfigError(f"{where}: expected a keypoint name or a 0-based index, got {item!r}")

    pairs = []
    used: dict = {}
    for n, entry in enumerate(value):
        where = f"{key}[{n}]"
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) != 2:
            raise ConfigError(f"{where}: expected a pair [a, b], got {entry!r}")
        a, b = point(entry[0], where), point(entry[1], where)
        if a == b:
            raise ConfigError(f"{where}: {names[a]!r} is paired with itself (leave points on the axis out)")
        for i in (a, b):
            if i in used:
                raise ConfigError(f"{where}: {names[i]!r} is already in {key}[{used[i]}]")
            used[i] = n
        pairs.append((a, b))
    return tuple(pairs)


def resolve_flip_pairs(scheme: KeypointScheme, configured: Any, training_records: Callable[[], Sequence[Record]],
                       key: str = "data.flip_pairs") -> KeypointScheme:
    """``scheme`` with the flip pairs a run uses: ``configured`` (the config's ``data.flip_pairs``)
    if set; else the scheme's own; else, for a mirrorable scheme with none, those inferred from
    ``training_records()`` (called only then), printed in one line; else the scheme made not
    mirrorable, with a warning."""
    if configured is not None:
        pairs = configured_flip_pairs(configured, scheme, key)
        return dataclasses.replace(scheme, flip_pairs=pairs, mirrorable=True,
                                   notes=scheme.notes + (f"flip pairs from {key}",))
    if scheme.flip_pairs or not scheme.mirrorable:
        return scheme
    inference = infer_flip_pairs_from_records(training_records(), scheme.num_keypoints)
    line = inference.describe(scheme.keypoint_names)
    if inference.found:
        print(f"scheme {scheme.name!r}: {line}", flush=True)
        return dataclasses.replace(scheme, flip_pairs=inference.pairs, notes=scheme.notes + (line,))
    warnings.warn(f"scheme {scheme.name!r} names no flip pairs and {line}: flip augmentation and flip test "
                  f"are off (set {key} to turn them on)", UserWarning, stacklevel=2)
    return dataclasses.replace(scheme, mirrorable=False, notes=scheme.notes + (line,))
