"""Dataset readers: every published format to :class:`~heatmapnet.data.records.Record` lists.

One entry point, :func:`read`. Every reader converts to 0-based pixel coordinates (the centre of
the top-left pixel is (0, 0)), fills ``visible`` ("the coordinates are meaningful") and a
``bbox`` (x, y, w, h): the format's own where it has one, else the tight box of the visible
points. Each format's conventions are in its module's docstring.

Bad input (a missing image, a wrong number of points, NaN coordinates, a visible point far
outside the image, a zero-size box, a missing field) raises :class:`InvalidAnnotationError`, a
``ValueError`` whose message names the file, the place in it and the field
(:class:`MissingImageError` is also a ``FileNotFoundError``). With ``skip_invalid=True`` such
samples are skipped instead; the returned :class:`RecordList` lists them in ``.skipped`` and a
warning gives the count and the first reasons. Problems with the file as a whole (unreadable,
not the format, a missing top-level field) always raise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from ._common import (DEFAULT_MAX_OUTSIDE, InvalidAnnotationError, MissingImageError, RecordList, image_size,
                      join_image, resolve_image_root)
from .coco import coco_image_roots, is_coco, load_json, read_coco, read_coco_points_box
from .lsp import read_lsp
from .mpii import is_mpii_json, read_mpii_json
from .mtfl import looks_like_mtfl, read_mtfl
from .pts import parse_pts, read_pts
from .wflw import WFLW_FIELDS, read_wflw

__all__ = [
    "coco_image_roots", "join_image", "resolve_image_root",
    "read",
    "guess_format",
    "FORMATS",
    "RecordList",
    "InvalidAnnotationError",
    "MissingImageError",
    "read_coco",
    "read_coco_points_box",
    "read_pts",
    "read_wflw",
    "read_mpii_json",
    "read_lsp",
    "read_mtfl",
    "parse_pts",
    "image_size",
    "DEFAULT_MAX_OUTSIDE",
]

#: format name -> (reader, what it reads)
FORMATS = {
    "coco": (read_coco, "COCO keypoints json (also mmpose's COCO-layout 300W/WFLW/AFLW/COFW/CrowdPose/"
                        "MPII-TRB files and COCO-WholeBody)"),
    "coco_points_box": (read_coco_points_box, "COCO keypoints json as 'coco', but each box the tight box of its "
                                              "visible points (the box .pts files get), the json's bbox ignored"),
    "pts": (read_pts, "iBUG/300W .pts files beside their images (a .pts file or a folder of them)"),
    "wflw": (read_wflw, "WFLW annotation txt (98 x y pairs, box, 6 attributes, image name per line)"),
    "mpii_json": (read_mpii_json, "HRNet/mmpose MPII json (a list of {image, joints, joints_vis, center, scale})"),
    "lsp": (read_lsp, "LSP / LSPET joints.mat (or its folder), images/im%05d.jpg beside it"),
    "mtfl": (read_mtfl, "MTFL txt (path x1..x5 y1..y5 per line)"),
}
_ALIASES = {"mmpose_mpii": "mpii_json", "mpii": "mpii_json", "lspet": "lsp", "ibug": "pts", "coco_json": "coco"}
#: "mmpose_json": any json mmpose ships (its 300W/WFLW/AFLW/COFW/CrowdPose files are COCO layout,
#: its MPII files the HRNet list layout); the layout is read from the content.
_JSON_ANY = "mmpose_json"


def _formats_text() -> str:
    return "; ".join(f"{name!r}: {desc}" for name, (_, desc) in FORMATS.items())


def _first_data_line(path: Path) -> Optional[str]:
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            s = line.strip()
            if s and not s.startswith("#"):
                return s
    return None


def _guess_json(data, path: Path) -> str:
    if is_coco(data):
        return "coco"
    if is_mpii_json(data):
        return "mpii_json"
    if isinstance(data, list) and data and isinstance(data[0], dict) and "score" in data[0] and "bbox" in data[0]:
        raise ValueError(f"{path}: looks like detection results (a list of boxes with scores), not "
                         "keypoint annotations")
    raise ValueError(f"cannot tell the format of {path}: a json that is neither COCO (with 'images' and "
                     f"'annotations') nor an MPII-style list; pass format=. Formats: {_formats_text()}")


def guess_format(path: Union[str, Path]) -> str:
    """The format name for ``path``, or ``ValueError`` listing the formats if it is ambiguous.

    A ``.mat`` file or a folder holding ``joints.mat`` -> ``lsp``; a ``.pts`` file or a folder with
    ``.pts`` files -> ``pts``; a ``.json`` is looked into (``images`` + ``annotations`` -> ``coco``;
    a list of ``image``/``joints`` entries -> ``mpii_json``); a ``.txt`` whose first data line has
    207 fields -> ``wflw``, or ``path`` + 10 (or 14) numbers -> ``mtfl``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_dir():
        if (path / "joints.mat").is_file():
            return "lsp"
        if next(path.rglob("*.pts"), None) is not None:
            return "pts"
        raise ValueError(f"cannot tell the format of folder {path} (no joints.mat, no .pts files); pass "
                         f"format= or a file. Formats: {_formats_text()}")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return "lsp"
    if suffix == ".pts":
        return "pts"
    if suffix == ".json":
        return _guess_json(load_json(path), path)
    if suffix == ".txt":
        line = _first_data_line(path)
        if line is not None:
            fields = line.split()
            if len(fields) == WFLW_FIELDS:
                return "wflw"
            if looks_like_mtfl(fields):
                return "mtfl"
        raise ValueError(f"cannot tell the format of {path}: its first data line has "
                         f"{0 if line is None else len(line.split())} fields (WFLW has {WFLW_FIELDS}, MTFL 11 "
                         f"or 15); pass format=. Formats: {_formats_text()}")
    raise ValueError(f"cannot tell the format of {path} from its name; pass format=. Formats: {_formats_text()}")


def read(path: Union[str, Path], format: Optional[str] = None, **options) -> RecordList:
    """Read annotations into records (a :class:`RecordList`, i.e. a ``list[Record]``).

    Args:
        path: an annotation file or folder; see :func:`guess_format`.
        format: one of ``FORMATS`` (``"coco"``, ``"coco_points_box"``, ``"pts"``, ``"wflw"``, ``"mpii_json"``, ``"lsp"``,
            ``"mtfl"``), or ``"mmpose_json"`` for any of mmpose's json files (COCO or MPII layout,
            told apart by content); default: guessed from ``path``.
        **options: passed to the format's reader. All readers take ``skip_invalid=False`` (skip bad
            samples with a warning instead of raising), ``max_outside=0.25`` (how far, as a
            fraction of the image's larger side, a visible point may lie beyond the border before
            it is an error; None turns the check off) and ``exif_orientation="apply"`` (or
            ``"ignore"``: how the images' EXIF orientation is read, :mod:`heatmapnet.imageio`; sizes
            from image headers follow it and the records carry it). Others: ``image_root``,
            ``num_keypoints``, ... (see ``read_coco``, ``read_pts``, ``read_wflw``, ``read_mpii_json``, ``read_lsp``,
            ``read_mtfl``).
    """
    path = Path(path)
    data = None
    if format is not None and str(format).lower() == _JSON_ANY:
        data = load_json(path)
        format = _guess_json(data, path)
    if format is None:
        if path.is_file() and path.suffix.lower() == ".json":
            data = load_json(path)  # read once: the guess and the reader share it
            format = _guess_json(data, path)
        else:
            format = guess_format(path)
    key = _ALIASES.get(str(format).lower(), str(format).lower())
    if key not in FORMATS:
        raise ValueError(f"unknown format {format!r}. Formats: {_formats_text()}")
    reader = FORMATS[key][0]
    if data is not None and key in ("coco", "mpii_json"):
        return reader(path, _data=data, **options)
    return reader(path, **options)
