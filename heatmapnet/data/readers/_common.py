"""Shared pieces of the readers: errors, the skip-or-raise policy, image sizes, checked instances,
records grouped by image."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar

import numpy as np

from ...imageio import DEFAULT_EXIF_ORIENTATION, check_exif_orientation, header, oriented_size
from ..records import Instance, Record

logger = logging.getLogger("heatmapnet.data.readers")

T = TypeVar("T")

#: Default for ``max_outside``: a visible point may lie at most this fraction of the image's
#: larger side beyond the image border before it counts as "far outside" (an annotation error).
#: Real datasets do put a few visible points just past the border (LSPET has one at y = -1.2).
DEFAULT_MAX_OUTSIDE = 0.25


class InvalidAnnotationError(ValueError):
    """A bad sample. The message names the file, the place in it (line, annotation id) and the field."""

    def __init__(self, where: str, field: str, problem: str):
        self.where = where
        self.field = field
        self.problem = problem
        super().__init__(f"{where}: field {field!r}: {problem}")


class MissingImageError(InvalidAnnotationError, FileNotFoundError):
    """An annotated image file that does not exist (both a ``ValueError`` and a ``FileNotFoundError``)."""

    def __init__(self, where: str, image_path: str):
        self.image_path = image_path
        super().__init__(where, "image", f"image file not found: {image_path}")

    def __str__(self) -> str:  # OSError formats its own message otherwise
        return self.args[0] if self.args else super().__str__()


class RecordList(list):
    """A ``list[Record]`` that also reports what was skipped (with ``skip_invalid=True``).

    ``skipped`` holds one message per skipped sample, each naming the file, place and field.
    """

    skipped: list

    def __init__(self, records: Iterable[Record] = (), skipped: Optional[list] = None, source: str = ""):
        super().__init__(records)
        self.skipped = list(skipped or [])
        self.source = source

    @property
    def num_instances(self) -> int:
        return sum(len(r.instances) for r in self)


class Problems:
    """Raise on the first bad sample, or (``skip_invalid=True``) collect it and go on.

    ``finish`` warns once with the count and the first few reasons: skipped samples are never
    silent.
    """

    def __init__(self, skip_invalid: bool, source: str):
        self.skip_invalid = bool(skip_invalid)
        self.source = source
        self.skipped: list[str] = []

    def call(self, fn: Callable[..., T], *args, **kwargs) -> Optional[T]:
        try:
            return fn(*args, **kwargs)
        except InvalidAnnotationError as exc:
            if not self.skip_invalid:
                raise
            self.skipped.append(str(exc))
            return None

    def add(self, exc: InvalidAnnotationError) -> None:
        if not self.skip_invalid:
            raise exc
        self.skipped.append(str(exc))

    def finish(self, records: Iterable[Record]) -> RecordList:
        out = RecordList(records, self.skipped, self.source)
        if self.skipped:
            first = "\n  ".join(self.skipped[:5])
            more = f"\n  ... and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            message = (f"{self.source}: skipped {len(self.skipped)} invalid sample(s) "
                       f"(skip_invalid=True); kept {len(out)} record(s). First reasons:\n  {first}{more}")
            logger.warning(message)
            warnings.warn(message, stacklevel=3)
        return out


# ---------------------------------------------------------------------------- images


def image_size(path: str, exif_orientation: str = DEFAULT_EXIF_ORIENTATION) -> tuple[int, int]:
    """(width, height) from the image header only, as ``exif_orientation`` shows the image (the
    size :func:`heatmapnet.imageio.read_image` gives: ``apply`` swaps width and height of a file
    whose EXIF orientation is 5 to 8).

    JPEG and PNG headers are parsed directly (a few bytes each, ~10x faster than PIL), their EXIF
    orientation with them (:func:`heatmapnet.imageio.header`); anything else, or a header that
    parser does not understand, goes to PIL for the size, which also reads only the header until
    pixels are asked for. A missing file raises ``FileNotFoundError``.
    """
    check_exif_orientation(exif_orientation)
    size, orientation = header(path)
    if size is None or size[0] <= 0 or size[1] <= 0:
        from PIL import Image

        with Image.open(path) as im:
            size = (int(im.size[0]), int(im.size[1]))
    return oriented_size(size, orientation if exif_orientation == "apply" else 1)


def image_sizes(paths: Sequence[str], exif_orientation: str = DEFAULT_EXIF_ORIENTATION) -> list:
    """Header sizes (:func:`image_size`) for many files; each entry is (w, h) or the exception
    raised for that file."""
    check_exif_orientation(exif_orientation)

    def one(p):
        try:
            return image_size(p, exif_orientation)
        except Exception as exc:  # reported per sample by the caller
            return exc

    return [one(p) for p in paths]


def size_or_raise(result, where: str, image_path: str) -> tuple[int, int]:
    """Turn an :func:`image_sizes` entry into (w, h) or the right sample error."""
    if isinstance(result, FileNotFoundError):
        raise MissingImageError(where, image_path)
    if isinstance(result, Exception):
        raise InvalidAnnotationError(where, "image", f"cannot read the image header of {image_path}: {result}")
    return result


def resolve_image_root(candidates: Sequence[Path], probes: Sequence[str]) -> Path:
    """The first candidate folder in which one of the ``probes`` (relative image paths) exists.

    Falls back to the first candidate, so that missing-image errors then name a sensible path.
    """
    candidates = [Path(c) for c in candidates]
    for probe in probes[:3]:
        for folder in candidates:
            if (folder / probe).is_file():
                return folder
    return candidates[0]


def join_image(root: Path, relative: str) -> str:
    return os.path.normpath(os.path.join(str(root), relative.replace("\\", "/")))


# ---------------------------------------------------------------------------- instances


def tight_bbox(keypoints: np.ndarray, visible: np.ndarray) -> np.ndarray:
    pts = keypoints[visible]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return np.array([x0, y0, x1 - x0, y1 - y0], dtype=np.float64)


def check_size(width, height, where: str) -> tuple[int, int]:
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError):
        raise InvalidAnnotationError(where, "width/height", f"not integers: {width!r} x {height!r}") from None
    if w <= 0 or h <= 0:
        raise InvalidAnnotationError(where, "width/height", f"image size must be positive, got {w} x {h}")
    return w, h


def box_meets_image(box: np.ndarray, width: int, height: int) -> bool:
    """Whether box (x, y, w, h) overlaps the image, whose pixels span [-0.5, width - 0.5] x
    [-0.5, height - 0.5] in the keypoints' coordinates (integers are pixel centres)."""
    x, y, w, h = (float(v) for v in box)
    return x < width - 0.5 and y < height - 0.5 and x + w > -0.5 and y + h > -0.5


def make_instance(
    keypoints,
    visible,
    width: int,
    height: int,
    where: str,
    *,
    bbox=None,
    extra: Optional[dict] = None,
    max_outside: Optional[float] = DEFAULT_MAX_OUTSIDE,
    num_keypoints: Optional[int] = None,
    keypoint_field: str = "keypoints",
    require_visible: bool = True,
) -> Instance:
    """A checked :class:`Instance`; any problem raises :class:`InvalidAnnotationError`.

    * ``num_keypoints`` given and different from K: "wrong number of points".
    * a visible point that is NaN/inf, or (``max_outside`` not None) lies more than
      ``max_outside * max(width, height)`` beyond the image border: error. Invisible points may
      hold anything; non-finite ones are set to 0 so they cannot poison arithmetic downstream.
    * ``bbox`` (the format's own, x, y, w, h) must be finite with w, h > 0. Without one, the box is
      the tight box of the visible points, which must then exist and have w, h > 0. Either must
      overlap the image.
    """
    kp = np.array(keypoints, dtype=np.float64).reshape(-1, 2)
    vis = np.array(visible, dtype=bool).reshape(-1)
    k = kp.shape[0]
    if vis.shape[0] != k:
        raise InvalidAnnotationError(where, "visible", f"{vis.shape[0]} flags for {k} points")
    if num_keypoints is not None and k != num_keypoints:
        raise InvalidAnnotationError(where, keypoint_field, f"wrong number of points: {k}, expected {num_keypoints}")
    finite = np.isfinite(kp).all(axis=1)
    bad = np.flatnonzero(vis & ~finite)
    if bad.size:
        raise InvalidAnnotationError(where, keypoint_field,
                                     f"visible point(s) {bad.tolist()} have NaN/inf coordinates")
    kp[~finite] = 0.0
    if max_outside is not None and vis.any():
        margin = float(max_outside) * max(width, height)
        outside = np.maximum(np.maximum(-kp[:, 0], kp[:, 0] - (width - 1)),
                             np.maximum(-kp[:, 1], kp[:, 1] - (height - 1)))
        far = np.flatnonzero(vis & (outside > margin))
        if far.size:
            i = int(far[0])
            raise InvalidAnnotationError(
                where, keypoint_field,
                f"visible point {i} at ({kp[i, 0]:.1f}, {kp[i, 1]:.1f}) lies far outside the "
                f"{width}x{height} image ({len(far)} such point(s); limit {margin:.1f} px beyond the border, "
                f"max_outside={max_outside})")
    if bbox is not None:
        box = np.array(bbox, dtype=np.float64).reshape(-1)
        if box.shape[0] != 4:
            raise InvalidAnnotationError(where, "bbox", f"expected 4 numbers (x, y, w, h), got {box.shape[0]}")
        if not np.isfinite(box).all():
            raise InvalidAnnotationError(where, "bbox", f"non-finite box {box.tolist()}")
        if box[2] <= 0 or box[3] <= 0:
            raise InvalidAnnotationError(where, "bbox", f"zero-size box (w={box[2]:g}, h={box[3]:g})")
    else:
        if not vis.any():
            if require_visible:
                raise InvalidAnnotationError(where, "visible", "no visible keypoint, so no box can be made")
            box = np.zeros(4)
        else:
            box = tight_bbox(kp, vis)
            if box[2] <= 0 or box[3] <= 0:
                raise InvalidAnnotationError(
                    where, "bbox", f"zero-size box from the visible points (w={box[2]:g}, h={box[3]:g}; "
                    f"{int(vis.sum())} visible point(s))")
    if box[2] > 0 and box[3] > 0 and not box_meets_image(box, width, height):
        raise InvalidAnnotationError(where, "bbox", f"box {[round(float(v), 2) for v in box]} (x, y, w, h) lies "
                                     f"entirely outside the {width}x{height} image")
    return Instance(keypoints=kp, visible=vis, bbox=box, extra=dict(extra or {}))


def make_record(image_path: str, width: int, height: int, instances: list, image_id=None,
                exif_orientation: str = DEFAULT_EXIF_ORIENTATION) -> Record:
    return Record(image_path=image_path, width=int(width), height=int(height), instances=instances,
                  image_id=image_id, exif_orientation=exif_orientation)


def records_by_image(
    problems: Problems,
    root_candidates: Sequence[Path],
    rows: Sequence[tuple],
    make: Callable[[str, Any, int, int], Instance],
    exif_orientation: str = DEFAULT_EXIF_ORIENTATION,
) -> list:
    """Records of parsed rows (one instance each) grouped by image, one record per image in first-seen order.

    ``rows`` are ``(where, image, payload)``: the place for messages, the image path relative to the
    image root, and what ``make(where, payload, width, height)`` turns into the row's
    :class:`Instance` (raising :class:`InvalidAnnotationError` on a bad sample). The image root is
    :func:`resolve_image_root` of ``root_candidates``, probed with the first rows' images; each
    distinct image's size is read once from its header (as ``exif_orientation`` shows it, the
    convention the records carry). The instances are built lazily, row by row,
    under ``problems``: a row whose image is missing or unreadable, or whose instance is bad, is
    raised or skipped (an image whose rows are all skipped gets no record). The caller passes the
    result to ``problems.finish``.
    """
    root = resolve_image_root(root_candidates, [image for _, image, _ in rows[:3]])
    names = list(dict.fromkeys(image for _, image, _ in rows))
    sizes = dict(zip(names, image_sizes([join_image(root, n) for n in names], exif_orientation)))

    grouped: dict = {}
    for where, name, payload in rows:
        image_path = join_image(root, name)

        def build():
            width, height = size_or_raise(sizes[name], where, image_path)
            return width, height, make(where, payload, width, height)
        built = problems.call(build)
        if built is None:
            continue
        width, height, inst = built
        if name not in grouped:
            grouped[name] = make_record(image_path, width, height, [], exif_orientation=exif_orientation)
        grouped[name].instances.append(inst)
    return list(grouped.values())
