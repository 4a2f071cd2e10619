"""Shared pieces of the readers: errors, the skip-or-raise policy, image sizes, checked instances,
records grouped by image."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar

import numpy as np

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


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_png_size(f) -> Optional[tuple[int, int]]:
    """(w, h) from a JPEG's SOF segment or a PNG's IHDR, reading a few bytes; None if neither."""
    head = f.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] != b"\xff\xd8":
        return None
    f.seek(2)
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        code = marker[1]
        while code == 0xFF:  # fill bytes
            byte = f.read(1)
            if not byte:
                return None
            code = byte[0]
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:  # markers without a length
            continue
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            return None
        length = int.from_bytes(length_bytes, "big")
        if code in _JPEG_SOF:
            data = f.read(5)
            if len(data) < 5:
                return None
            return int.from_bytes(data[3:5], "big"), int.from_bytes(data[1:3], "big")
        if code == 0xD9 or length < 2:
            return None
        f.seek(length - 2, 1)


def image_size(path: str) -> tuple[int, int]:
    """(width, height) from the image header only.

    JPEG and PNG headers are parsed directly (a few bytes each, ~10x faster than PIL); anything
    else, or a header this parser does not understand, goes to PIL, which also reads only the
    header until pixels are asked for. A missing file raises ``FileNotFoundError``.
    """
    with open(path, "rb") as f:
        size = _jpeg_png_size(f)
    if size is not None and size[0] > 0 and size[1] > 0:
        return size
    from PIL import Image

    with Image.open(path) as im:
        return int(im.size[0]), int(im.size[1])


def image_sizes(paths: Sequence[str]) -> list:
    """Header sizes for many files; each entry is (w, h) or the exception raised for that file."""

    def one(p):
        try:
            return image_size(p)
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


def make_record(image_path: str, width: int, height: int, instances: list, image_id=None) -> Record:
    return Record(image_path=image_path, width=int(width), height=int(height), instances=instances,
                  image_id=image_id)


def records_by_image(
    problems: Problems,
    root_candidates: Sequence[Path],
    rows: Sequence[tuple],
    make: Callable[[str, Any, int, int], Instance],
) -> list:
    """Records of parsed rows (one instance each) grouped by image, one record per image in first-seen order.

    ``rows`` are ``(where, image, payload)``: the place for messages, the image path relative to the
    image root, and what ``make(where, payload, width, height)`` turns into the row's
    :class:`Instance` (raising :class:`InvalidAnnotationError` on a bad sample). The image root is
    :func:`resolve_image_root` of ``root_candidates``, probed with the first rows' images; each
    distinct image's size is read once from its header. The instances are built lazily, row by row,
    under ``problems``: a row whose image is missing or unreadable, or whose instance is bad, is
    raised or skipped (an image whose rows are all skipped gets no record). The caller passes the
    result to ``problems.finish``.
    """
    root = resolve_image_root(root_candidates, [image for _, image, _ in rows[:3]])
    names = list(dict.fromkeys(image for _, image, _ in rows))
    sizes = dict(zip(names, image_sizes([join_image(root, n) for n in names])))

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
            grouped[name] = make_record(image_path, width, height, [])
        grouped[name].instances.append(inst)
    return list(grouped.values())
