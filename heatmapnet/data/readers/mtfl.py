"""MTFL (Multi-Task Facial Landmark) txt files: ``training.txt`` / ``testing.txt`` and copies.

Lines starting with ``#`` are comments (the shared copy has one header line). Each other line is
``path x1 x2 x3 x4 x5 y1 y2 y3 y4 y5`` (left eye, right eye, nose, left and right mouth corner,
image left/right; see ``datasets/mtfl5.yaml``), optionally followed by MTFL's four attributes
``gender smile glasses head_pose`` (the published 15-field layout), which go to
``extra["attributes"]``. Coordinates are 0-based pixels, used as written. Paths are relative to
the txt's folder (backslashes, as in the published files, are accepted). All points are visible;
the box is the tight box of the five points.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from ...imageio import DEFAULT_EXIF_ORIENTATION
from ._common import (DEFAULT_MAX_OUTSIDE, InvalidAnnotationError, Problems, image_sizes, join_image,
                      make_instance, make_record, size_or_raise)

MTFL_POINTS = 5
MTFL_ATTRIBUTES = ("gender", "smile", "glasses", "head_pose")


def looks_like_mtfl(fields: list) -> bool:
    if len(fields) not in (1 + 2 * MTFL_POINTS, 1 + 2 * MTFL_POINTS + len(MTFL_ATTRIBUTES)):
        return False
    try:
        [float(v) for v in fields[1:]]
    except ValueError:
        return False
    try:
        float(fields[0])
        return False  # a number where the path should be
    except ValueError:
        return True


def read_mtfl(
    path: Union[str, Path],
    *,
    image_root: Optional[Union[str, Path]] = None,
    max_outside: Optional[float] = DEFAULT_MAX_OUTSIDE,
    skip_invalid: bool = False,
    exif_orientation: str = DEFAULT_EXIF_ORIENTATION,
):
    """Read an MTFL txt (see the module doc). ``image_root`` defaults to the txt's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    src = str(path)
    root = Path(image_root) if image_root is not None else path.parent
    problems = Problems(skip_invalid, src)

    def parse(lineno, s):
        where = f"{src}, line {lineno}"
        fields = s.split()
        if len(fields) not in (11, 15):
            raise InvalidAnnotationError(where, "fields", f"expected 11 fields (path, 5 x, 5 y) or 15 "
                                         f"(plus 4 attributes), got {len(fields)}")
        try:
            numbers = np.array([float(v) for v in fields[1:]])
        except ValueError:
            raise InvalidAnnotationError(where, "keypoints", "non-numeric coordinate") from None
        points = np.stack([numbers[:MTFL_POINTS], numbers[MTFL_POINTS:2 * MTFL_POINTS]], axis=1)
        attrs = {n: int(v) for n, v in zip(MTFL_ATTRIBUTES, numbers[2 * MTFL_POINTS:])}
        return where, fields[0], points, attrs

    parsed = []
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            item = problems.call(parse, lineno, s)
            if item is not None:
                parsed.append(item)

    image_paths = [join_image(root, p[1]) for p in parsed]
    sizes = image_sizes(image_paths, exif_orientation)
    records = []
    for (where, _, points, attrs), image_path, size in zip(parsed, image_paths, sizes):
        def build():
            width, height = size_or_raise(size, where, image_path)
            extra = {"line": int(where.rsplit(" ", 1)[1])}
            if attrs:
                extra["attributes"] = attrs
            inst = make_instance(points, np.ones(MTFL_POINTS, bool), width, height, where, extra=extra,
                                 max_outside=max_outside)
            return make_record(image_path, width, height, [inst], exif_orientation=exif_orientation)
        record = problems.call(build)
        if record is not None:
            records.append(record)
    return problems.finish(records)
