"""Config sections to records and keypoint schemes (datasets: :func:`heatmapnet.build.build_dataset`)."""
from __future__ import annotations

from typing import Optional, Sequence

from ..metadata import KeypointScheme, load_scheme, scheme_from_coco_category
from .readers import read
from .readers.coco import load_json

SYNTHETIC_SOURCES = ("synthetic_faces", "synthetic_faces5", "synthetic_people")
MOSAIC_SOURCES = ("mosaic",)  # generated from files: crowds of the files' single-person records


def select_subset(records: Sequence, subset: Optional[str]):
    if not subset:
        return records
    parts = subset.split(":")
    if len(parts) != 2:
        raise ValueError(f"data subset {subset!r} must be a slice 'start:stop'")
    start, stop = (int(p) if p.strip() else None for p in parts)
    return records[slice(start, stop)]


def read_split(split, skip_invalid: bool = False, name: str = "data.train"):
    """The records of one split section, ``cfg.data.train`` or ``cfg.data.val`` (``name``)."""
    if split.source in SYNTHETIC_SOURCES:
        from .synthetic import SyntheticFaces, SyntheticPeople  # generated on demand, sample by sample

        if split.num_samples <= 0:
            raise ValueError(f"{name}.num_samples must be > 0 for source {split.source}")
        if split.subset:
            raise ValueError(f"{name}.subset applies to files; synthetic splits differ by seed and num_samples")
        if split.source == "synthetic_people":
            return SyntheticPeople(split.num_samples, seed=split.seed)
        return SyntheticFaces(split.num_samples, seed=split.seed,
                              num_keypoints=5 if split.source == "synthetic_faces5" else 68)
    if split.source not in ("files",) + MOSAIC_SOURCES:
        raise ValueError(f"unknown {name}.source {split.source!r}; choose files, mosaic or one of "
                         f"{SYNTHETIC_SOURCES}")
    if split.source in MOSAIC_SOURCES and split.num_samples <= 0:
        raise ValueError(f"{name}.num_samples must be > 0 for source {split.source}")
    _require_ann_file(split, name)
    options = {"skip_invalid": skip_invalid}
    if split.img_dir:
        options["image_root"] = split.img_dir
    records = select_subset(read(split.ann_file, format=split.format, **options), split.subset)
    if split.source in MOSAIC_SOURCES:
        from pathlib import Path

        from .mosaic import MosaicPeople  # mosaics of the (subset's) records, drawn on demand

        ann = Path(split.ann_file)
        label = (ann if ann.is_dir() else ann.parent).name + (f"[{split.subset}]" if split.subset else "")
        return MosaicPeople(records, split.num_samples, seed=split.seed, people=tuple(split.people),
                            canvas=tuple(split.canvas), name=label)
    return records


def _require_ann_file(split, name: str) -> None:
    if not split.ann_file:
        raise ValueError(f"{name}.ann_file is not set (e.g. --set {name}.ann_file=PATH)")


def resolve_scheme(data_section, split, name: str = "data.train") -> KeypointScheme:
    """``data.scheme`` by name or path; ``coco`` takes names and skeleton from the json itself."""
    if data_section.scheme != "coco":
        return load_scheme(data_section.scheme)
    _require_ann_file(split, name)
    categories = [c for c in load_json(split.ann_file).get("categories", []) if c.get("keypoints")]
    if len(categories) != 1:
        raise ValueError(f"{split.ann_file}: data.scheme=coco needs exactly one category with keypoints, "
                         f"found {len(categories)}")
    return scheme_from_coco_category(categories[0])

