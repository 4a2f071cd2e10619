"""WFLW annotation txt (``list_98pt_rect_attr_train.txt`` / ``..._test.txt``).

Each line: 98 ``x y`` pairs, then ``x_min y_min x_max y_max`` of the face box, then six 0/1
attribute flags (pose, expression, illumination, make-up, occlusion, blur), then the image path
relative to the ``WFLW_images`` folder: 196 + 4 + 6 + 1 = 207 fields.

Coordinates are used as written, as 0-based pixel coordinates (mmpose's WFLW conversion does the
same). The box is the file's own, as (x_min, y_min, x_max - x_min, y_max - y_min). The attributes
go to ``extra["attributes"]`` (a dict of name -> bool). Faces of one image (one line each) are
grouped into one record, in first-seen order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from ...imageio import DEFAULT_EXIF_ORIENTATION
from ._common import DEFAULT_MAX_OUTSIDE, InvalidAnnotationError, Problems, make_instance, records_by_image

WFLW_POINTS = 98
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make_up", "occlusion", "blur")
WFLW_FIELDS = 2 * WFLW_POINTS + 4 + len(WFLW_ATTRIBUTES) + 1  # 207


def _wflw_roots(path: Path, image_root) -> list[Path]:
    if image_root is not None:
        return [Path(image_root)]
    roots = [path.parent]
    for ancestor in [path.parent, *path.parents]:
        roots.append(ancestor / "WFLW_images")
    return roots


def read_wflw(
    path: Union[str, Path],
    *,
    image_root: Optional[Union[str, Path]] = None,
    max_outside: Optional[float] = DEFAULT_MAX_OUTSIDE,
    skip_invalid: bool = False,
    exif_orientation: str = DEFAULT_EXIF_ORIENTATION,
):
    """Read a WFLW annotation txt (see the module doc).

    Args:
        image_root: folder the image paths are relative to. Default: the txt's folder, else the
            nearest ``WFLW_images`` folder beside it or beside one of its parents (the published
            layout is ``WFLW_annotations/list_98pt_rect_attr_train_test/*.txt`` next to
            ``WFLW_images/``), whichever holds the first image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    src = str(path)
    problems = Problems(skip_invalid, src)
    lines = []
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            s = line.strip()
            if s and not s.startswith("#"):
                lines.append((lineno, s))

    def parse(lineno, s):
        where = f"{src}, line {lineno}"
        fields = s.split()
        if len(fields) != WFLW_FIELDS:
            raise InvalidAnnotationError(where, "fields", f"expected {WFLW_FIELDS} fields (98 x y pairs, "
                                         f"4 box, 6 attributes, image name), got {len(fields)}")
        try:
            numbers = np.array([float(v) for v in fields[:-1]])
        except ValueError:
            raise InvalidAnnotationError(where, "keypoints", "non-numeric value before the image name") from None
        points = numbers[:2 * WFLW_POINTS].reshape(WFLW_POINTS, 2)
        x0, y0, x1, y1 = numbers[2 * WFLW_POINTS:2 * WFLW_POINTS + 4]
        attrs = numbers[2 * WFLW_POINTS + 4:]
        extra = {"attributes": {n: bool(a) for n, a in zip(WFLW_ATTRIBUTES, attrs)}, "line": lineno}
        return where, fields[-1], (points, np.array([x0, y0, x1 - x0, y1 - y0]), extra)

    parsed = []
    for lineno, s in lines:
        item = problems.call(parse, lineno, s)
        if item is not None:
            parsed.append(item)

    def make(where, item, width, height):
        points, box, extra = item
        return make_instance(points, np.ones(WFLW_POINTS, bool), width, height, where, bbox=box, extra=extra,
                             max_outside=max_outside)

    return problems.finish(records_by_image(problems, _wflw_roots(path, image_root), parsed, make,
                                              exif_orientation))
