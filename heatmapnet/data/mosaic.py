"""Crowds with real appearance from single-person sets: mosaics of real people on one canvas.

:class:`MosaicPeople` is a random-access sequence of :class:`~heatmapnet.data.records.Record`
built from a list of single-person *source* records (e.g. LSPET's ``joints.mat``, sliced by
subset). Like :class:`~heatmapnet.data.synthetic.SyntheticPeople`, record ``i`` is generated on
access and depends only on ``(seed, i)`` (and the sources); its ``image`` holds the pixels and its
``image_path`` is ``mosaic://<name>/seed<seed>/<index>``. ``mosaics.annotations`` gives the same
records from their layouts alone, no image read
(:class:`~heatmapnet.data.records.GeneratedRecords`). Source images are read lazily, one
mosaic at a time, through :func:`heatmapnet.data.pipelines.load_image` (as training reads them:
each source record's ``exif_orientation``, :mod:`heatmapnet.imageio`); nothing is cached or
copied.

One mosaic, in order:

* **Layout** (its own random stream, no pixels read, so :meth:`MosaicPeople.instance_counts` is
  cheap): a number of people drawn from ``people`` (inclusive). Person *height* means the height of
  the person's box (for LSPET: the tight box of the visible joints) after rescaling. The tallest
  height is drawn log-uniformly from ``[min_ratio * min_height, max_height]``, the shortest is the
  tallest divided by a ratio drawn log-uniformly from ``[min_ratio, tallest / min_height]`` (a hair
  above ``min_ratio``, so rounding never takes it below), the others log-uniformly in between: the
  tallest and shortest person of every mosaic differ by at least ``min_ratio`` (4x) in height.
  ``min_height`` and ``max_height`` are fractions of the canvas height (``heights``). Each height
  gets a source person not yet in this mosaic, drawn uniformly among those whose rescaled box fits
  the canvas width and whose zoom is at most ``max_zoom``, with at least ``min_visible`` visible
  joints; its box is placed uniformly at random with at most ``max_outside`` of its width and of its
  height past the canvas edges and at least one visible joint on the canvas. Overlap is limited:
  the intersection of two people's boxes is at most ``max_overlap`` of the smaller box's area, and
  so is the part of the shorter (farther) person's box that the taller (nearer) one's crop paints
  over where it is at least half opaque (the crop carries its own photograph's scenery, which
  hides whatever lies under it: without this rule a short person could vanish under a tall one's
  margin and still be annotated). A person that cannot be placed so after some tries is left out;
  the tallest and the shortest are placed first and are never left out, so every mosaic keeps its
  height ratio and >= 2 people.
* **Background**: the canvas is cut into g x g tiles (g in 1..3); each tile shows the scenery of a
  random source image (the largest strip of it outside its person's box grown by the margin, or,
  where no strip is wide enough, the whole image blurred beyond recognition), randomly mirrored,
  resized to the tile; then the canvas is blurred (sigma 1-2.5 px) to soften the seams. Backgrounds
  come only from this set's own sources, so train and val mosaics of disjoint subsets share no image.
* **People**, smaller (farther) ones first so taller ones are drawn in front: each source image
  is moved by one affine matrix ``[[z, 0, tx], [0, z, ty]]`` (isotropic zoom and a shift; the
  0-based pixel-centre convention of :mod:`heatmapnet.data.transforms`) with ``cv2.warpAffine``,
  anti-aliased by a Gaussian pre-blur of sigma ``(1/z - 1)/2`` source pixels when shrinking
  (symmetric, so it moves no point). The crop is the person's box grown on every side by
  ``margin * max(box w, box h)``: fully opaque up to 60% of the margin, then fading linearly to
  the crop's edge (rounded corners), and transparent where the source image has no pixels.
  Joints behind a nearer person's box stay annotated (occluded by that person, as in COCO).
* **Finish** (not with ``plain=True``): Gaussian sensor noise of sigma 1-4 over the canvas.

Annotations follow the same matrix exactly: ``keypoints' = z * keypoints + (tx, ty)``. A joint is
``visible`` when it was visible in the source, its nearest pixel is on the canvas
(``-0.5 <= x < width - 0.5``, likewise y) and no nearer person's scenery covers it (that person's
crop at least half opaque there, :meth:`MosaicPeople.opacity`, outside that person's box: the
image shows another photograph there, not the joint); invisible joints stay invisible (their coordinates are
moved too and stay meaningless). The box is the moved source box (exact: no rotation), clipped to
the canvas's pixel extent ``[-0.5, width - 0.5] x [-0.5, height - 0.5]``. Each instance's ``extra``
holds ``source_index`` (into ``sources``), ``source_path``, ``zoom``, ``offset`` (tx, ty) and
``height`` (the rescaled, unclipped box height).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import List, Optional

import cv2
import numpy as np

from .records import GeneratedRecords, Instance, Record

_RATIO_SLACK = 1.0 + 1e-9  # the drawn height ratio exceeds min_ratio by this factor (rounding)
_OPAQUE = 0.6  # the crop is opaque up to this fraction of the margin, then fades to its edge
_PLACE_TRIES = 30  # positions (each with a fresh source person) tried for one person
_LAYOUT_TRIES = 100  # fresh height draws when the tallest or the shortest cannot be placed
_HIDES = 0.5  # a nearer person's crop at least this opaque hides what lies under it
#: the crop is at least _HIDES opaque inside the box grown by this fraction of the margin
_HIDING_REACH = _OPAQUE + (1.0 - _OPAQUE) * (1.0 - _HIDES)


@dataclass(frozen=True)
class Placement:
    """One source person on the canvas: ``canvas = zoom * source + offset``."""

    source: int  # index into MosaicPeople.sources
    zoom: float
    offset: tuple  # (tx, ty)

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.zoom, 0.0, self.offset[0]], [0.0, self.zoom, self.offset[1]]])

    def move(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) * self.zoom + np.asarray(self.offset, dtype=np.float64)


def _loguniform(rng: np.random.Generator, low: float, high: float, size=None):
    return np.exp(rng.uniform(math.log(low), math.log(high), size))


class MosaicPeople(GeneratedRecords):
    """Mosaics of real people cut from single-person ``sources``; see the module doc.

    Args:
        sources: records with one person each (records without any are used for backgrounds only).
        num_samples: mosaics in the set; mosaic ``i`` depends only on ``(seed, i)``.
        people: (fewest, most) people per mosaic, fewest >= 2.
        canvas: (width, height) in pixels.
        heights: (min_height, max_height) as fractions of the canvas height; the box heights of
            the tallest and the shortest person of a mosaic differ by at least ``min_ratio``.
        margin: crop margin around each person's box, a fraction of the box's longer side.
        max_overlap: largest intersection of two people's boxes, a fraction of the smaller box; also
            the largest part of a person's box that a taller person's crop hides.
        max_outside: largest fraction of a person's box width (and height) past the canvas edge, < 0.5.
        max_zoom: largest magnification of a source person.
        min_visible: fewest visible joints of a source person that is placed.
        plain: no sensor noise (for tests that read pixels).
        name: the set's name in ``image_path``.
    """

    kind = "mosaic"

    def __init__(self, sources, num_samples: int, seed: int = 0, people=(2, 4), canvas=(384, 384),
                 heights=(0.1, 0.8), min_ratio: float = 4.0, margin: float = 0.2, max_overlap: float = 0.3,
                 max_outside: float = 0.25, max_zoom: float = 3.0, min_visible: int = 4, plain: bool = False,
                 name: str = "mosaic"):
        self.sources = sources
        self.num_samples, self.seed, self.plain, self.name = int(num_samples), int(seed), bool(plain), str(name)
        self.people = tuple(int(p) for p in people)
        self.canvas = tuple(int(c) for c in canvas)
        self.min_ratio, self.margin = float(min_ratio), float(margin)
        self.max_overlap, self.max_outside, self.max_zoom = float(max_overlap), float(max_outside), float(max_zoom)
        self.min_visible = int(min_visible)
        if self.num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if len(self.people) != 2 or not 2 <= self.people[0] <= self.people[1]:
            raise ValueError(f"people must be [fewest, most] with 2 <= fewest <= most, got {list(people)}")
        if len(self.canvas) != 2 or min(self.canvas) < 8:
            raise ValueError(f"canvas must be [width, height], each >= 8 px, got {list(canvas)}")
        if self.min_ratio < 1.0:
            raise ValueError(f"min_ratio must be >= 1, got {min_ratio}")
        self.min_height, self.max_height = (float(h) * self.canvas[1] for h in heights)
        if not 0 < self.min_height <= self.max_height <= self.canvas[1]:
            raise ValueError(f"heights must be fractions of the canvas height in (0, 1], got {list(heights)}")
        if self.max_height < self.min_ratio * self.min_height:
            raise ValueError(f"heights {list(heights)}: the largest must be at least min_ratio={self.min_ratio} "
                             "times the smallest")
        if self.margin < 0 or not 0 <= self.max_overlap <= 1 or not 0 <= self.max_outside < 0.5 or self.max_zoom <= 0:
            raise ValueError("need margin >= 0, 0 <= max_overlap <= 1, 0 <= max_outside < 0.5 and max_zoom > 0")

        # the sources' annotations (in memory already); pixels are read only when a mosaic is drawn
        counts = [len(r.instances) for r in sources]
        crowded = [(r.image_path, c) for r, c in zip(sources, counts) if c > 1]
        if crowded:
            raise ValueError(f"mosaic sources must show one person each; {crowded[0][0]} has {crowded[0][1]} "
                             f"({len(crowded)} record(s) with several)")
        people_records = [r for r, c in zip(sources, counts) if c == 1]
        sizes = {r.instances[0].keypoints.shape[0] for r in people_records}
        if len(sizes) > 1:
            raise ValueError(f"mosaic sources mix keypoint counts {sorted(sizes)}")
        self.num_keypoints = sizes.pop() if sizes else 0
        self._has_person = np.array([c == 1 for c in counts], bool)
        self._boxes = np.array([r.instances[0].bbox if c == 1 else np.zeros(4) for r, c in zip(sources, counts)],
                               np.float64).reshape(-1, 4)
        visible_counts = np.array([r.instances[0].visible.sum() if c == 1 else 0 for r, c in zip(sources, counts)])
        self._eligible = self._has_person & (visible_counts >= self.min_visible) & (self._boxes[:, 2] > 0) \
            & (self._boxes[:, 3] > 0)
        if self._eligible.sum() < self.people[0]:
            raise ValueError(f"mosaic needs at least {self.people[0]} source people with >= {self.min_visible} "
                             f"visible joints and a box, found {int(self._eligible.sum())} of {len(sources)} records")
        self._counts: Optional[np.ndarray] = None

    # -- sequence ----------------------------------------------------------------------------------
    def render(self, index: int) -> Record:
        return self._generate(index, self.layout(index))

    def annotate(self, index: int) -> Record:
        """The mosaic's people from its layout alone: no image is read."""
        layout = self.layout(index)
        return self._record(index, [self._instance(placement, layout[rank + 1:])
                                    for rank, placement in enumerate(layout)])

    def _record(self, index: int, instances: List[Instance], image: Optional[np.ndarray] = None) -> Record:
        width, height = self.canvas
        return Record(f"mosaic://{self.name}/seed{self.seed}/{index:06d}", width, height, instances,
                      image_id=index, image=image)

    def instance_counts(self) -> np.ndarray:
        """People per mosaic, from the layouts alone (no image is read)."""
        if self._counts is None:
            self._counts = np.array([len(self.layout(i)) for i in range(len(self))], np.int64)
        return self._counts

    # -- layout ------------------------------------------------------------------------------------
    def layout(self, index: int) -> List[Placement]:
        """Mosaic ``index``'s people, smallest first (the drawing order)."""
        index = self.checked_index(index)
        rng = np.random.default_rng([self.seed, index, 0])
        count = int(rng.integers(self.people[0], self.people[1] + 1))
        for _ in range(_LAYOUT_TRIES):
            placed: List[Placement] = []
            for rank, height in enumerate(self._draw_heights(rng, count)):
                placement = self._place(rng, height, placed)
                if placement is None:
                    if rank < 2:  # the tallest or the shortest: draw the heights afresh
                        break
                    continue
                placed.append(placement)
            else:
                return sorted(placed, key=lambda p: p.zoom * self._boxes[p.source, 3])
        raise RuntimeError(f"mosaic {index} of {self.name}: found no layout for {count} people in "
                           f"{_LAYOUT_TRIES} tries; widen heights or max_overlap, or give more sources")

    def _draw_heights(self, rng: np.random.Generator, count: int) -> list:
        """[tallest, shortest, the others], tallest / shortest >= min_ratio."""
        ratio = self.min_ratio * _RATIO_SLACK
        low, high = self.min_height, self.max_height
        tallest = float(_loguniform(rng, min(ratio * low, high), high))
        shortest = tallest / float(_loguniform(rng, ratio, max(ratio, tallest / low)))
        others = _loguniform(rng, shortest, tallest, count - 2) if count > 2 else []
        return [tallest, shortest, *(float(h) for h in others)]

    def _place(self, rng: np.random.Generator, height: float, placed: List[Placement]) -> Optional[Placement]:
        width_px, height_px = self.canvas
        boxes = self._boxes
        used = np.zeros(len(boxes), bool)
        used[[p.source for p in placed]] = True
        with np.errstate(divide="ignore", invalid="ignore"):
            zooms = height / boxes[:, 3]
            fits = self._eligible & ~used & (zooms <= self.max_zoom) & (zooms * boxes[:, 2] <= width_px) \
                & (height <= height_px)
        candidates = np.flatnonzero(fits)
        if not len(candidates):
            return None
        placed_boxes = np.array([self._moved_box(p) for p in placed]).reshape(-1, 4)
        placed_hiding = np.array([self._hiding_region(p) for p in placed]).reshape(-1, 4)
        placed_heights = np.array([self._height(p) for p in placed])
        for _ in range(_PLACE_TRIES):
            source = int(candidates[rng.integers(len(candidates))])
            zoom = float(zooms[source])
            box_w, box_h = zoom * boxes[source, 2:]
            x = rng.uniform(-0.5 - self.max_outside * box_w, width_px - 0.5 - (1 - self.max_outside) * box_w)
            y = rng.uniform(-0.5 - self.max_outside * box_h, height_px - 0.5 - (1 - self.max_outside) * box_h)
            shift = (float(x - zoom * boxes[source, 0]), float(y - zoom * boxes[source, 1]))
            placement = Placement(source, zoom, shift)
            box = self._moved_box(placement)
            if len(placed_boxes) and (_overlap(box, placed_boxes) > self.max_overlap).any():
                continue
            if len(placed_boxes) and (self._hidden_share(box, self._hiding_region(placement), placed_boxes,
                                                         placed_hiding, height > placed_heights)
                                      > self.max_overlap).any():
                continue
            instance = self.sources[source].instances[0]
            if not (instance.visible & self._on_canvas(placement.move(instance.keypoints))).any():
                continue
            return placement
        return None

    def _height(self, placement: Placement) -> float:
        """The person's rescaled box height, which orders the drawing (taller: nearer, drawn later)."""
        return placement.zoom * float(self._boxes[placement.source, 3])

    def _hiding_region(self, placement: Placement) -> np.ndarray:
        """(x0, y0, x1, y1): the rectangle round the canvas region where the person's crop is at
        least _HIDES opaque (its box grown by _HIDING_REACH of the margin; the rounded corners and
        the source photograph's edges, where the crop is more transparent, are not cut off)."""
        x, y, w, h = self._moved_box(placement)
        grow = _HIDING_REACH * self.margin * max(self._boxes[placement.source, 2:]) * placement.zoom
        return np.array([x - grow, y - grow, x + w + grow, y + h + grow])

    @staticmethod
    def _hidden_share(box, region, placed_boxes, placed_regions, new_is_nearer) -> np.ndarray:
        """For each placed person: the share of the farther one's box (of it and the new ``box``)
        inside the nearer one's hiding region (``new_is_nearer`` (P,) says which is nearer)."""
        farther = np.where(new_is_nearer[:, None], placed_boxes, box[None])
        nearer = np.where(new_is_nearer[:, None], region[None], placed_regions)
        return _covered(farther, nearer)

    def _moved_box(self, placement: Placement) -> np.ndarray:
        box = self._boxes[placement.source]
        return np.concatenate([placement.move(box[:2]), placement.zoom * box[2:]])

    def _on_canvas(self, points: np.ndarray) -> np.ndarray:
        """Points whose nearest pixel is on the canvas."""
        width, height = self.canvas
        return (points[:, 0] >= -0.5) & (points[:, 0] < width - 0.5) & (points[:, 1] >= -0.5) \
            & (points[:, 1] < height - 0.5)

    # -- opacity of a pasted crop -----------------------------------------------------------------
    def _ramp(self, placement: Placement, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The crop's fade at canvas points (``cols``, ``rows`` broadcast together): 1 inside the box
        grown by _OPAQUE of the margin, falling linearly to 0 at the crop's edge (rounded corners)."""
        bx, by, bw, bh = self._boxes[placement.source]
        margin = self.margin * max(bw, bh)
        inner_low = placement.move(np.array([bx, by]) - _OPAQUE * margin)
        inner_high = placement.move(np.array([bx + bw, by + bh]) + _OPAQUE * margin)
        dx = np.maximum(np.maximum(inner_low[0] - cols, cols - inner_high[0]), 0.0)
        dy = np.maximum(np.maximum(inner_low[1] - rows, rows - inner_high[1]), 0.0)
        distance = np.hypot(dx, dy)
        fade = (1.0 - _OPAQUE) * margin * placement.zoom
        return np.clip(1.0 - distance / fade, 0.0, 1.0) if fade > 0 else (distance <= 0).astype(np.float64)

    def opacity(self, placement: Placement, points: np.ndarray) -> np.ndarray:
        """(M,) how opaque the person's pasted crop is at canvas ``points`` (M, 2): its fade times
        its source photograph's coverage (bilinear, 0 from a pixel beyond the photograph's edge
        on), the weight :meth:`_paste` gives the crop over what lies below."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        source = self.sources[placement.source]
        inside = (points - np.asarray(placement.offset)) / placement.zoom  # source pixels
        limits = np.array([source.width, source.height], dtype=np.float64)
        coverage = np.clip(np.minimum(inside + 1.0, limits - inside), 0.0, 1.0).prod(axis=1)
        return self._ramp(placement, points[:, 0], points[:, 1]) * coverage

    def _hidden_by(self, points: np.ndarray, nearer: Sequence) -> np.ndarray:
        """(M,) which canvas ``points`` the scenery of the ``nearer`` placements covers: a crop at
        least _HIDES opaque there, outside that person's box."""
        hidden = np.zeros(len(points), bool)
        for placement in nearer:  # at most a few people per mosaic
            x, y, w, h = self._moved_box(placement)
            in_box = (points[:, 0] >= x) & (points[:, 0] <= x + w) & (points[:, 1] >= y) & (points[:, 1] <= y + h)
            hidden |= (self.opacity(placement, points) >= _HIDES) & ~in_box
        return hidden

    # -- pixels and annotations ------------------------------------------------------------------
    def _generate(self, index: int, layout: List[Placement]) -> Record:
        from .pipelines import load_image  # the one way images are read (and size-checked)

        rng = np.random.default_rng([self.seed, index, 1])
        canvas = self._background(rng, load_image)
        instances = []
        for rank, placement in enumerate(layout):
            self._paste(canvas, placement, load_image(self.sources[placement.source]))
            instances.append(self._instance(placement, layout[rank + 1:]))
        if not self.plain:
            canvas += np.float32(rng.uniform(1.0, 4.0)) * rng.standard_normal(canvas.shape, dtype=np.float32)
        return self._record(index, instances, np.clip(np.round(canvas), 0, 255).astype(np.uint8))

    def _instance(self, placement: Placement, nearer: Sequence = ()) -> Instance:
        """The person's annotation on the canvas; ``nearer``: the people drawn over it."""
        source = self.sources[placement.source]
        person = source.instances[0]
        keypoints = placement.move(person.keypoints)
        visible = person.visible & self._on_canvas(keypoints) & ~self._hidden_by(keypoints, nearer)
        x, y, w, h = self._moved_box(placement)
        width, height = self.canvas
        low = np.maximum([x, y], -0.5)
        high = np.minimum([x + w, y + h], [width - 0.5, height - 0.5])
        extra = {"source_index": placement.source, "source_path": source.image_path, "zoom": placement.zoom,
                 "offset": placement.offset, "height": float(h)}
        return Instance(keypoints, visible, np.concatenate([low, high - low]), extra)

    def _paste(self, canvas: np.ndarray, placement: Placement, image: np.ndarray) -> None:
        """Composite one person's crop over ``canvas`` (float32 H x W x 3) in place."""
        zoom = placement.zoom
        bx, by, bw, bh = self._boxes[placement.source]
        margin = self.margin * max(bw, bh)  # source pixels
        crop = np.array([bx - margin, by - margin, bx + bw + margin, by + bh + margin])
        (left, top), (right, bottom) = placement.move(crop[:2]), placement.move(crop[2:])
        width, height = self.canvas
        c0, r0 = max(0, math.floor(left)), max(0, math.floor(top))
        c1, r1 = min(width, math.ceil(right) + 1), min(height, math.ceil(bottom) + 1)
        if c1 <= c0 or r1 <= r0:
            return
        # the source region the crop reads from, padded for the anti-alias blur, as its own image
        sigma = (1.0 / zoom - 1.0) / 2.0 if zoom < 1.0 else 0.0
        pad = int(math.ceil(4 * sigma)) + 2
        src_h, src_w = image.shape[:2]
        sx0, sy0 = max(0, math.floor(crop[0]) - pad), max(0, math.floor(crop[1]) - pad)
        sx1, sy1 = min(src_w, math.ceil(crop[2]) + pad + 1), min(src_h, math.ceil(crop[3]) + pad + 1)
        if sx1 <= sx0 or sy1 <= sy0:
            return
        region = image[sy0:sy1, sx0:sx1]
        if sigma > 0:
            region = cv2.GaussianBlur(region, (0, 0), sigma)
        # canvas pixel (c, r) = zoom * source + offset; region pixel (u, v) = source - (sx0, sy0)
        matrix = np.array([[zoom, 0.0, placement.offset[0] + zoom * sx0 - c0],
                           [0.0, zoom, placement.offset[1] + zoom * sy0 - r0]])
        size = (c1 - c0, r1 - r0)
        patch = cv2.warpAffine(region, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=(0, 0, 0)).astype(np.float32)
        # where the source has pixels: 0 past the image's edges (where the region is cut inside the
        # image, the cut lies more than the blur's reach beyond the crop, so it never shows)
        cover = cv2.warpAffine(np.ones(region.shape[:2], np.float32), matrix, size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        # opaque inside the box grown by _OPAQUE of the margin, fading to 0 at the crop's edge
        cols, rows = np.arange(c0, c1, dtype=np.float64), np.arange(r0, r1, dtype=np.float64)
        ramp = self._ramp(placement, cols[None, :], rows[:, None]).astype(np.float32)
        below = canvas[r0:r1, c0:c1]
        canvas[r0:r1, c0:c1] = patch * ramp[..., None] + below * (1.0 - ramp * cover)[..., None]

    def _background(self, rng: np.random.Generator, load_image) -> np.ndarray:
        width, height = self.canvas
        grid = int(rng.integers(1, 4))
        xs = np.linspace(0, width, grid + 1).round().astype(int)
        ys = np.linspace(0, height, grid + 1).round().astype(int)
        canvas = np.zeros((height, width, 3), np.float32)
        for row in range(grid):
            for col in range(grid):
                source = int(rng.integers(len(self.sources)))
                scenery = self._scenery(load_image(self.sources[source]), source)
                if rng.random() < 0.5:
                    scenery = scenery[:, ::-1]
                tile_w, tile_h = xs[col + 1] - xs[col], ys[row + 1] - ys[row]
                shrink = scenery.shape[1] > tile_w or scenery.shape[0] > tile_h
                tile = cv2.resize(np.ascontiguousarray(scenery), (int(tile_w), int(tile_h)),
                                  interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
                canvas[ys[row]:ys[row + 1], xs[col]:xs[col + 1]] = tile
        return cv2.GaussianBlur(canvas, (0, 0), float(rng.uniform(1.0, 2.5)))

    def _scenery(self, image: np.ndarray, source: int) -> np.ndarray:
        """The largest strip of a source image beside its person (box grown by the margin); the
        whole image blurred beyond recognition where no strip is at least 16 px across."""
        height, width = image.shape[:2]
        if self._has_person[source]:
            bx, by, bw, bh = self._boxes[source]
            margin = self.margin * max(bw, bh)
            x0, y0 = max(0, math.floor(bx - margin)), max(0, math.floor(by - margin))
            x1, y1 = min(width, math.ceil(bx + bw + margin) + 1), min(height, math.ceil(by + bh + margin) + 1)
            strips = [image[:, :x0], image[:, x1:], image[:y0, :], image[y1:, :]]
            strips = [s for s in strips if min(s.shape[:2]) >= 16]
            if strips:
                return max(strips, key=lambda s: s.shape[0] * s.shape[1])
        small = cv2.resize(image, (max(1, width // 16), max(1, height // 16)), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _covered(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(P,) the share of each box (x, y, w, h) inside its region (x0, y0, x1, y1)."""
    low = np.maximum(boxes[:, :2], regions[:, :2])
    high = np.minimum(boxes[:, :2] + boxes[:, 2:], regions[:, 2:])
    return np.prod(np.clip(high - low, 0.0, None), axis=1) / np.maximum(boxes[:, 2] * boxes[:, 3], 1e-12)


def _overlap(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection of ``box`` with each of ``others`` (x, y, w, h) over the smaller one's area."""
    low = np.maximum(box[:2], others[:, :2])
    high = np.minimum(box[:2] + box[2:], others[:, :2] + others[:, 2:])
    intersection = np.prod(np.clip(high - low, 0.0, None), axis=1)
    smaller = np.minimum(box[2] * box[3], others[:, 2] * others[:, 3])
    return intersection / smaller
