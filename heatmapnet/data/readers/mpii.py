"""MPII-style json as distributed by HRNet / mmpose (``mpii_train.json``, ``mpii_val.json``).

A list of person entries::

    {"image": "005808361.jpg", "joints": [[x, y], ...16], "joints_vis": [0/1, ...16],
     "center": [x, y], "scale": s}

Coordinates are MPII's MATLAB 1-based values; as HRNet and mmpose do, 1 is subtracted
(``one_based=True``). ``joints_vis`` 0 marks a joint that is not annotated (its coordinates
are -1): ``visible=False``. Entries of one image are grouped into one record (first-seen order).
The box is the tight box of the visible joints (the file has none); ``center`` (converted to
0-based) and ``scale`` (person height / 200 px) go to ``extra``. Image sizes come from the
image headers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ...imageio import DEFAULT_EXIF_ORIENTATION
from ._common import DEFAULT_MAX_OUTSIDE, InvalidAnnotationError, Problems, make_instance, records_by_image
from .coco import load_json


def is_mpii_json(data: Any) -> bool:
    return (isinstance(data, list) and len(data) > 0 and isinstance(data[0], dict)
            and "joints" in data[0] and "image" in data[0])


def read_mpii_json(
    path: Union[str, Path],
    *,
    image_root: Optional[Union[str, Path]] = None,
    num_keypoints: Optional[int] = None,
    one_based: bool = True,
    max_outside: Optional[float] = DEFAULT_MAX_OUTSIDE,
    skip_invalid: bool = False,
    exif_orientation: str = DEFAULT_EXIF_ORIENTATION,
    _data: Any = None,
):
    """Read an HRNet/mmpose MPII json (see the module doc).

    Args:
        image_root: folder of the images. Default: the first of the json's folder, ``../images``,
            ``./images`` in which the first image exists (mmpose's layout is
            ``mpii/annotations/*.json`` beside ``mpii/images/``).
        num_keypoints: expected joints per person (default: the first entry's count, 16 for MPII).
    """
    path = Path(path)
    data = load_json(path) if _data is None else _data
    src = str(path)
    if not isinstance(data, list):
        raise ValueError(f"{src}: expected a list of person entries with 'image', 'joints', 'joints_vis'")
    offset = 1.0 if one_based else 0.0
    problems = Problems(skip_invalid, src)
    expected = num_keypoints

    def parse(n, entry):
        nonlocal expected
        where = f"{src}, entry {n}"
        if not isinstance(entry, dict):
            raise InvalidAnnotationError(where, "entry", "not an object")
        for fld in ("image", "joints", "joints_vis"):
            if fld not in entry:
                raise InvalidAnnotationError(where, fld, "missing")
        where = f"{src}, entry {n} ({entry['image']})"
        try:
            joints = np.array(entry["joints"], dtype=np.float64)
            vis = np.array(entry["joints_vis"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InvalidAnnotationError(where, "joints", "not a list of [x, y] numbers") from None
        if joints.ndim != 2 or joints.shape[1] != 2:
            raise InvalidAnnotationError(where, "joints", f"expected a list of [x, y], got shape {joints.shape}")
        if vis.shape[0] != joints.shape[0]:
            raise InvalidAnnotationError(where, "joints_vis", f"{vis.shape[0]} flags for {joints.shape[0]} joints")
        if expected is None:
            expected = joints.shape[0]
        if joints.shape[0] != expected:
            raise InvalidAnnotationError(where, "joints", f"wrong number of points: {joints.shape[0]}, "
                                         f"expected {expected}")
        extra = {"entry": n}
        if "center" in entry:
            extra["center"] = np.asarray(entry["center"], dtype=np.float64) - offset
        if "scale" in entry:
            extra["scale"] = float(entry["scale"])
        return where, str(entry["image"]), (joints - offset, vis > 0, extra)

    parsed = []
    for n, entry in enumerate(data):
        item = problems.call(parse, n, entry)
        if item is not None:
            parsed.append(item)

    def make(where, item, width, height):
        joints, visible, extra = item
        return make_instance(joints, visible, width, height, where, extra=extra, max_outside=max_outside,
                             keypoint_field="joints")

    if image_root is not None:
        roots = [Path(image_root)]
    else:
        roots = [path.parent, path.parent.parent / "images", path.parent / "images"]
    return problems.finish(records_by_image(problems, roots, parsed, make, exif_orientation))
