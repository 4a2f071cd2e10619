"""COCO keypoints json (any keypoint scheme; also mmpose's COCO-layout face/body files).

Conventions:

* Coordinates: COCO keypoint (x, y) are taken as 0-based pixel-centre coordinates, unchanged, as
  mmpose and pycocotools-based pipelines do. (COCO's boxes and polygons are continuous
  coordinates whose origin is the image corner, i.e. half a pixel off; the half pixel is ignored
  for boxes too.)
* Visibility: v = 0 "not labelled" -> ``visible=False``; v = 1 (labelled, occluded) and v = 2
  (labelled, visible) -> ``visible=True``, meaning "the coordinates are meaningful". The raw flags
  are kept in ``extra["coco_visibility"]``.
* Instances that COCO's evaluation ignores (``iscrowd=1``, or ``num_keypoints == 0``) are not
  training targets. By default they are dropped; with ``include_ignored=True`` they are kept
  with ``extra["ignore"] = True`` (and ``extra["iscrowd"]``). Images left with no instance are
  dropped unless ``keep_empty=True``.
* ``bbox`` is the annotation's own ``[x, y, w, h]``; files without one (e.g. MPII-TRB) get the tight
  box of the visible points. ``box="points"`` (the format ``coco_points_box``) gives every instance
  the tight box of its visible points, the box ``.pts``, MTFL and LSP records have: mmpose's 300W
  json boxes are that box grown 1.2x, so a model trained on ``.pts`` crops sees its faces framed
  as in training only with it.
* Records carry ``image_id``; each instance's ``extra`` has ``annotation_id`` and ``category_id``.
* Values are checked (:func:`keypoint_values`, :func:`checked_num_keypoints`, :func:`box_values`):
  a keypoints field holds finite numbers only (no NaN or Infinity, which Python's json parses, no
  strings, nulls, booleans or nested lists), a multiple of 3 of them, every flag 0, 1 or 2;
  ``num_keypoints`` is a count no larger than the points flagged 1 or 2, and 0 only when none is
  (smaller is allowed: CrowdPose counts 12 of its 14 points); ``bbox`` is four finite numbers.
  COCO-WholeBody's foot, face and hand fields may hold a number from 0 to 2 in place of a flag (its
  json has confidences such as 0.05 there); a point counts as labelled from 1 up. Each
  problem is one :class:`InvalidAnnotationError` naming the annotation id and the field (skipped
  and listed with ``skip_invalid``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ...imageio import DEFAULT_EXIF_ORIENTATION
from ._common import (DEFAULT_MAX_OUTSIDE, InvalidAnnotationError, MissingImageError, Problems, check_size,
                      image_sizes, join_image, make_instance, make_record, resolve_image_root, size_or_raise)

#: COCO-WholeBody part fields, in mmpose's 133-point order (body, feet, face, left hand, right hand).
WHOLEBODY_FIELDS = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")


#: Where ``read_coco`` takes each instance's box from (its ``box`` argument).
BOX_SOURCES = ("annotation", "points")


def load_json(path: Union[str, Path]) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None


def is_coco(data: Any) -> bool:
    return isinstance(data, dict) and "images" in data and "annotations" in data


def coco_image_roots(path: Path, image_root) -> list[Path]:
    if image_root is not None:
        return [Path(image_root)]
    folder = path.parent
    split = path.stem.split("_")[-1]  # person_keypoints_val2017 -> val2017
    return [folder, folder.parent / split, folder.parent / "images" / split, folder.parent / "images",
            folder / "images", folder / split]


def repeated_images(images: dict, position: dict, root: Path) -> list:
    """Image entries that name the same file (after joining to ``root`` and normalising the path):
    ``(first id, [later ids])`` per repeated file, in file order. ``images`` maps id -> entry
    (None: already dropped), ``position`` id -> index in the json's list."""
    by_file: dict = {}
    for image_key in position:
        if images[image_key] is not None:
            by_file.setdefault(join_image(root, str(images[image_key]["file_name"])), []).append(image_key)
    return [(keys[0], keys[1:]) for keys in by_file.values() if len(keys) > 1]


#: The visibility flags of COCO: 0 not labelled, 1 labelled but occluded, 2 labelled and visible.
VISIBILITY_FLAGS = (0, 1, 2)


def _is_number(value) -> bool:
    """A JSON number (bool is an int in Python, not a number in JSON)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def keypoint_values(ann: dict, fld: str, where: str, exact_flags: bool = True) -> np.ndarray:
    """The flat ``x, y, v`` list ``ann[fld]`` as float64, checked: a list whose length is a
    multiple of 3, of finite numbers only (no strings, nulls, booleans, lists, NaN or infinity),
    every ``v`` a COCO flag (0, 1 or 2; with ``exact_flags=False`` any number from 0 to 2, as
    COCO-WholeBody's foot, face and hand fields hold confidences in place of flags). Anything
    else is an :class:`InvalidAnnotationError` naming the field and the first offending point."""
    if fld not in ann:
        raise InvalidAnnotationError(where, fld, "missing")
    value = ann[fld]
    if not isinstance(value, list):
        raise InvalidAnnotationError(where, fld, f"expected a flat list of x, y, v, got {_kind(value)}")
    if len(value) % 3:
        raise InvalidAnnotationError(where, fld, f"length {len(value)} is not a multiple of 3 (x, y, v)")
    wrong = [i for i, item in enumerate(value) if not _is_number(item)]  # annotation values, not pixels
    if wrong:
        i = wrong[0]
        raise InvalidAnnotationError(where, fld, f"point {i // 3}'s {'xyv'[i % 3]} is {value[i]!r} "
                                                 f"({_kind(value[i])}), not a number ({len(wrong)} such value(s))")
    numbers = np.array(value, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if bad.size:
        i = int(bad[0])
        raise InvalidAnnotationError(where, fld, f"point {i // 3}'s {'xyv'[i % 3]} is {numbers[i]}: NaN and inf are "
                                                 f"not finite numbers ({bad.size} such value(s))")
    flags = numbers[2::3]
    odd = np.flatnonzero(~np.isin(flags, VISIBILITY_FLAGS) if exact_flags else (flags < 0) | (flags > 2))
    if odd.size:
        shown = [float(f) for f in flags[odd[:5]]]
        raise InvalidAnnotationError(where, fld, f"visibility flag(s) {shown} at point(s) {odd[:5].tolist()}"
                                                 f"{' ...' if odd.size > 5 else ''}: COCO's flags are 0 (not "
                                                 "labelled), 1 (labelled, occluded) and 2 (labelled, visible)")
    return numbers


def checked_num_keypoints(ann: dict, labelled: int, where: str) -> int:
    """``ann["num_keypoints"]`` (``labelled``, the points whose flag is 1 or 2, where it has none),
    checked against the flags: a whole number, never more than ``labelled``, and 0 only when no
    point is labelled (COCO ignores such instances). Fewer than ``labelled`` is allowed: CrowdPose
    counts only its first 12 of 14 points."""
    if "num_keypoints" not in ann:
        return labelled
    value = ann["num_keypoints"]
    if not (_is_number(value) and np.isfinite(value) and float(value).is_integer() and value >= 0):
        raise InvalidAnnotationError(where, "num_keypoints", f"{value!r} ({_kind(value)}) is not a count of points")
    count = int(value)
    if count > labelled:
        raise InvalidAnnotationError(where, "num_keypoints", f"says {count} labelled point(s), but only {labelled} "
                                                             "have a visibility flag of 1 or 2")
    if count == 0 and labelled:
        raise InvalidAnnotationError(where, "num_keypoints", f"is 0 (an instance COCO ignores), but {labelled} "
                                                             "point(s) have a visibility flag of 1 or 2")
    return count


def crowd_flag(ann: dict, where: str) -> int:
    """``ann["iscrowd"]``, 0 or 1 (0 where it is missing or null)."""
    value = ann.get("iscrowd", 0)
    if value is None:
        return 0
    if value not in (0, 1) or isinstance(value, str):
        raise InvalidAnnotationError(where, "iscrowd", f"{value!r} ({_kind(value)}): expected 0 or 1")
    return int(value)


def box_values(ann: dict, where: str) -> Optional[list]:
    """``ann["bbox"]``: None where it is missing or null (the points' tight box is used), else a
    list of four numbers (their finiteness and size are checked with the instance)."""
    value = ann.get("bbox")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 4:
        shown = f"{len(value)} values" if isinstance(value, list) else _kind(value)
        raise InvalidAnnotationError(where, "bbox", f"expected [x, y, w, h], four numbers, got {shown}")
    wrong = [i for i, item in enumerate(value) if not _is_number(item)]
    if wrong:
        raise InvalidAnnotationError(where, "bbox", f"{'xywh'[wrong[0]]} is {value[wrong[0]]!r} "
                                                    f"({_kind(value[wrong[0]])}), not a number")
    return value


def read_coco(
    path: Union[str, Path],
    *,
    image_root: Optional[Union[str, Path]] = None,
    category_id: Optional[int] = None,
    num_keypoints: Optional[int] = None,
    include_ignored: bool = False,
    keep_empty: bool = False,
    wholebody: bool = False,
    check_images: bool = True,
    max_outside: Optional[float] = DEFAULT_MAX_OUTSIDE,
    skip_invalid: bool = False,
    box: str = "annotation",
    exif_orientation: str = DEFAULT_EXIF_ORIENTATION,
    _data: Any = None,
):
    """Read a COCO keypoints json into records, one per image (see the module doc).

    Args:
        image_root: folder the ``file_name`` entries are relative to. Default: the first of the
            json's folder, ``../<split>`` (``person_keypoints_val2017.json`` -> ``../val2017``),
            ``../images/<split>``, ``../images``, ``./images`` in which the first image exists.
        category_id: which category to read. Default: the only category that lists keypoint
            names, else the only category.
        num_keypoints: expected points per instance. Default: the category's number of names, or
            (when it lists none, as mmpose's face files) the first annotation's. Passing it
            overrides the category's list (for files whose category metadata is wrong).
        include_ignored / keep_empty: see the module doc.
        wholebody: read COCO-WholeBody's 133 points (body, foot, face, hands, in mmpose order)
            instead of the 17 body ones.
        check_images: a missing image file is an error (``MissingImageError``). Sizes come from the
            json, or from the image header where the json has none.
        max_outside, skip_invalid: see :func:`heatmapnet.data.read`.
        box: ``"annotation"``: each annotation's ``bbox`` (the tight box of the visible points
            where it has none); ``"points"``: always the tight box of the visible points.
        exif_orientation: ``apply`` or ``ignore``, how the images' EXIF orientation is read
            (:mod:`heatmapnet.imageio`): sizes from image headers are the displayed ones under
            ``apply``; the records carry it, so their images are read the same way.
    """
    if box not in BOX_SOURCES:
        raise ValueError(f"read_coco: box={box!r}: choose one of {list(BOX_SOURCES)}")
    path = Path(path)
    data = load_json(path) if _data is None else _data
    src = str(path)
    if not isinstance(data, dict):
        raise ValueError(f"{src}: expected a COCO json object with 'images' and 'annotations', "
                         f"got a {type(data).__name__}")
    for fld in ("images", "annotations"):
        if fld not in data:
            raise ValueError(f"{src}: missing top-level field {fld!r} (not a COCO annotation file?)")
        if not isinstance(data[fld], list):
            raise ValueError(f"{src}: field {fld!r} must be a list")
    categories = data.get("categories") or []

    # -------------------------------------------------------------- category and K
    if category_id is None:
        with_names = [c for c in categories if c.get("keypoints")]
        if len(with_names) == 1:
            category = with_names[0]
        elif len(with_names) == 0 and len(categories) == 1:
            category = categories[0]
        elif not categories:
            category = None
        else:
            ids = [c.get("id") for c in (with_names or categories)]
            raise ValueError(f"{src}: several categories {ids}; pass category_id= to pick one")
    else:
        matches = [c for c in categories if c.get("id") == category_id]
        if not matches:
            raise ValueError(f"{src}: field 'categories': no category with id {category_id} "
                             f"(ids: {[c.get('id') for c in categories]})")
        category = matches[0]
    cat_id = None if category is None else category.get("id")
    names = [] if category is None else list(category.get("keypoints") or [])
    expected = num_keypoints
    if expected is None and names and not wholebody:
        expected = len(names)
    if wholebody and expected is None:
        expected = 133

    problems = Problems(skip_invalid, src)

    # -------------------------------------------------------------- images
    images = {}
    position = {}  # image id -> its index in 'images'
    for n, img in enumerate(data["images"]):
        where = f"{src}, images[{n}]"
        if not isinstance(img, dict) or "id" not in img:
            problems.add(InvalidAnnotationError(where, "id", "image entry has no 'id'"))
            continue
        if "file_name" not in img:
            problems.add(InvalidAnnotationError(f"{where} (image id {img['id']})", "file_name", "missing"))
            continue
        if img["id"] in position:
            images[img["id"]] = None  # which of the entries an annotation means is unknown: none is read
            problems.add(InvalidAnnotationError(
                f"{where} ({img['file_name']})", "id",
                f"image id {img['id']!r} is also images[{position[img['id']]}] "
                f"({data['images'][position[img['id']]]['file_name']}); ids must be unique, so annotations "
                "cannot tell the two apart"))
            continue
        images[img["id"]] = img
        position[img["id"]] = n
    root = resolve_image_root(coco_image_roots(path, image_root),
                              [img["file_name"] for img in images.values() if img is not None][:3])
    for first, later in repeated_images(images, position, root):
        for image_key in later:
            problems.add(InvalidAnnotationError(
                f"{src}, images[{position[image_key]}] (image id {image_key})", "file_name",
                f"image {images[image_key]['file_name']!r} is also images[{position[first]}] (image id {first}): "
                "an image may be listed once"))
        for image_key in (first, *later):
            images[image_key] = None
    order = [i for i in position if images[i] is not None]

    # -------------------------------------------------------------- annotations
    per_image: dict = {i: [] for i in order}
    first_k = expected
    for n, ann in enumerate(data["annotations"]):
        ann_label = ann.get("id", f"#{n}") if isinstance(ann, dict) else f"#{n}"
        where = f"{src}, annotation id {ann_label}"
        if not isinstance(ann, dict):
            problems.add(InvalidAnnotationError(where, "annotations", "entry is not an object"))
            continue
        if cat_id is not None and "category_id" in ann and ann["category_id"] != cat_id:
            continue
        if "image_id" not in ann:
            problems.add(InvalidAnnotationError(where, "image_id", "missing"))
            continue
        if ann["image_id"] not in images:
            problems.add(InvalidAnnotationError(where, "image_id", f"no image with id {ann['image_id']!r}"))
            continue
        if images[ann["image_id"]] is None:
            problems.add(InvalidAnnotationError(where, "image_id", f"image id {ann['image_id']!r} is not read: "
                                                "its id is repeated or its file is listed twice"))
            continue
        per_image[ann["image_id"]].append((n, where, ann))

    # -------------------------------------------------------------- sizes (json, else header)
    need_header = [i for i in order if not ("width" in images[i] and "height" in images[i])]
    header = dict(zip(need_header, image_sizes([join_image(root, images[i]["file_name"]) for i in need_header],
                                                   exif_orientation)))

    def build_annotation(where, ann, width, height):
        nonlocal first_k
        fields = WHOLEBODY_FIELDS if wholebody else ("keypoints",)
        parts = [keypoint_values(ann, fld, where, exact_flags=fld == "keypoints") for fld in fields]
        raw = np.concatenate(parts).reshape(-1, 3)
        k = raw.shape[0]
        if first_k is None:
            first_k = k
        if k != first_k:
            hint = (f" (the category lists {len(names)} names; pass num_keypoints={k} if the file's "
                    "category metadata is wrong)") if names and num_keypoints is None else ""
            raise InvalidAnnotationError(where, "keypoints", f"wrong number of points: {k}, expected {first_k}{hint}")
        v = raw[:, 2].astype(np.int64)  # flags checked: 0, 1 or 2 (WholeBody's part confidences: labelled from 1)
        visible = v > 0
        iscrowd = crowd_flag(ann, where)
        # COCO-WholeBody's num_keypoints counts its body points, the 'keypoints' field
        labelled = checked_num_keypoints(ann, int((parts[0][2::3] > 0).sum()), where)
        ignore = bool(iscrowd) or labelled == 0
        if ignore and not include_ignored:
            return None
        extra = {"annotation_id": ann.get("id"), "category_id": ann.get("category_id"),
                 "coco_visibility": v, "iscrowd": iscrowd}
        if "area" in ann:
            extra["area"] = ann["area"]
        if ignore:
            extra["ignore"] = True
        bbox = box_values(ann, where) if box == "annotation" else None
        return make_instance(raw[:, :2], visible, width, height, where, bbox=bbox, extra=extra,
                             max_outside=max_outside, require_visible=not ignore)

    records = []
    for image_key in order:
        img = images[image_key]
        image_path = join_image(root, img["file_name"])
        img_where = f"{src}, image id {image_key} ({img['file_name']})"

        def build_image():
            if image_key in header:
                width, height = size_or_raise(header[image_key], img_where, image_path)
            else:
                width, height = check_size(img["width"], img["height"], img_where)
                if check_images and not os.path.isfile(image_path):
                    raise MissingImageError(img_where, image_path)
            return width, height

        size = problems.call(build_image)
        if size is None:
            continue
        instances = []
        for n, where, ann in per_image[image_key]:
            inst = problems.call(build_annotation, where, ann, *size)
            if inst is not None:
                instances.append(inst)
        if not instances and not keep_empty:
            continue
        records.append(make_record(image_path, size[0], size[1], instances, image_id=image_key,
                                   exif_orientation=exif_orientation))
    return problems.finish(records)


def read_coco_points_box(path: Union[str, Path], **options):
    """:func:`read_coco` with every box the tight box of the instance's visible points (format
    ``coco_points_box``), whatever box the json gives."""
    return read_coco(path, box="points", **options)
