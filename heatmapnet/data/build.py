"""Config sections to records and keypoint schemes (datasets: :func:`heatmapnet.build.build_dataset`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import DataError
from ..imageio import DEFAULT_EXIF_ORIENTATION
from ..metadata import KeypointScheme, load_scheme, scheme_from_coco_category
from .flip import resolve_flip_pairs
from .readers import InvalidAnnotationError, RecordList, read
from .readers.coco import load_json

SYNTHETIC_SOURCES = ("synthetic_faces", "synthetic_faces5", "synthetic_people")
MOSAIC_SOURCES = ("mosaic",)  # generated from files: crowds of the files' single-person records
#: How many generated records a synthetic split lends to inferring flip pairs (they are drawn on access).
SYNTHETIC_SHAPE_SAMPLES = 500


def select_subset(records: Sequence, subset: Optional[str]):
    if not subset:
        return records
    parts = subset.split(":")
    if len(parts) != 2:
        raise ValueError(f"data subset {subset!r} must be a slice 'start:stop'")
    start, stop = (int(p) if p.strip() else None for p in parts)
    chosen = records[slice(start, stop)]
    return RecordList(chosen, records.skipped, records.source) if isinstance(records, RecordList) else chosen


def read_split(split, skip_invalid: bool = False, name: str = "data.train",
               exif_orientation: str = DEFAULT_EXIF_ORIENTATION):
    """The records of one split section, ``cfg.data.train`` or ``cfg.data.val`` (``name``), their
    images read under ``exif_orientation`` (``data.exif_orientation``); a split of several sources
    is read by :func:`heatmapnet.build.read_records`, which knows the union."""
    if getattr(split, "sources", None):
        raise ValueError(f"{name} lists sources: read it through heatmapnet.build.read_records (data.scheme=union)")
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
    return frame_file_records(split, read_files(split, skip_invalid, name, exif_orientation), name)


def frame_file_records(split, records, name: str = "data.train"):
    """What a split of files serves from its file ``records``: the records, or (source ``mosaic``)
    mosaics of them (:class:`MosaicPeople`, whose ``sources`` are the records)."""
    if split.source in MOSAIC_SOURCES:
        from pathlib import Path

        from .mosaic import MosaicPeople  # mosaics of the (subset's) records, drawn on demand

        ann = Path(split.ann_file)
        label = (ann if ann.is_dir() else ann.parent).name + (f"[{split.subset}]" if split.subset else "")
        return MosaicPeople(records, split.num_samples, seed=split.seed, people=tuple(split.people),
                            canvas=tuple(split.canvas), name=label)
    return records


def read_files(split, skip_invalid: bool = False, name: str = "data.train",
               exif_orientation: str = DEFAULT_EXIF_ORIENTATION):
    """The (subset of the) records of a split's annotation files, as the reader gives them (sizes
    from image headers, and the records' own reading, under ``exif_orientation``)."""
    _require_ann_file(split, name)
    options = {"skip_invalid": skip_invalid, "exif_orientation": exif_orientation}
    if split.img_dir:
        options["image_root"] = split.img_dir
    return select_subset(read(split.ann_file, format=split.format, **options), split.subset)


def shape_records(split, skip_invalid: bool = False, name: str = "data.train",
                  exif_orientation: str = DEFAULT_EXIF_ORIENTATION):
    """Records whose instances show the split's typical shape: a file or mosaic split's file
    records, a synthetic split's first :data:`SYNTHETIC_SHAPE_SAMPLES` records."""
    if split.source in SYNTHETIC_SOURCES:
        records = read_split(split, skip_invalid, name)
        return records[:min(len(records), SYNTHETIC_SHAPE_SAMPLES)]
    return read_files(split, skip_invalid, name, exif_orientation)


def _require_ann_file(split, name: str) -> None:
    if not split.ann_file:
        raise ValueError(f"{name}.ann_file is not set (e.g. --set {name}.ann_file=PATH)")


def resolve_scheme(data_section, split, name: str = "data.train") -> KeypointScheme:
    """``data.scheme`` by name or path (``coco`` takes names and skeleton from the json of
    ``split``, the training split), with the flip pairs the run uses: ``data.flip_pairs`` if set,
    else the scheme's, else inferred from the split's records; with none, a scheme that is not
    mirrorable (see :mod:`heatmapnet.data.flip`). ``union``: the union of ``data.train.sources``'
    schemes (:func:`heatmapnet.multisource.source_layout`)."""
    if data_section.scheme == "union":
        from ..multisource import source_layout

        return source_layout(data_section).scheme
    configured = data_section.get("flip_pairs")
    if isinstance(configured, (ListConfig, DictConfig)):
        configured = OmegaConf.to_container(configured)
    skip_invalid = bool(data_section.get("skip_invalid", False))
    orientation = str(data_section.get("exif_orientation", DEFAULT_EXIF_ORIENTATION))
    return resolve_flip_pairs(_named_scheme(data_section, split, name), configured,
                              lambda: shape_records(split, skip_invalid, name, orientation))


def _named_scheme(data_section, split, name: str) -> KeypointScheme:
    if data_section.scheme != "coco":
        return load_scheme(data_section.scheme)
    _require_ann_file(split, name)
    categories = [c for c in load_json(split.ann_file).get("categories", []) if c.get("keypoints")]
    if len(categories) != 1:
        raise ValueError(f"{split.ann_file}: data.scheme=coco needs exactly one category with keypoints, "
                         f"found {len(categories)}")
    return scheme_from_coco_category(categories[0])


def read_source_records(config: DictConfig, split_name: str):
    """The records of ``data.<split_name>.sources``, in the union scheme
    (:class:`heatmapnet.multisource.SourceRecord`), source
    after source; a source that cannot be read is a :class:`DataError` naming its index and key."""
    from ..multisource import embed, source_layout, source_name

    layout = source_layout(config.data)
    records, skipped = [], []
    for index, section in enumerate(config.data[split_name].sources):
        key = f"data.{split_name}.sources[{index}]"
        source = layout.index(source_name(section))
        if not section.ann_file:
            raise DataError(f"{key}.ann_file: not set")
        if not Path(section.ann_file).exists():
            raise DataError(f"{key}.ann_file: no such file or folder: {section.ann_file}")
        try:
            found = read_files(section, bool(config.data.skip_invalid), key, config.data.exif_orientation)
        except InvalidAnnotationError as error:
            raise DataError(f"{key} ({source_name(section)}): {error}") from None
        except (ValueError, OSError) as error:  # the file as a whole: not the format, unreadable, a bad subset
            raise DataError(f"{key}.ann_file: {error}") from None
        if not len(found):
            raise DataError(f"{key}: no records in {section.ann_file}"
                            + (f" (subset {section.subset!r})" if section.subset else ""))
        expected = layout.schemes[source].num_keypoints
        for record in found:
            for instance in record.instances:
                if instance.keypoints.shape[0] != expected:
                    raise DataError(f"{key}: {record.image_path} has {instance.keypoints.shape[0]} points per "
                                    f"instance, its scheme {layout.schemes[source].name} has {expected}")
        records += [embed(record, source, layout) for record in found]
        skipped += [f"{key}: {reason}" for reason in getattr(found, "skipped", [])]
    return RecordList(records, skipped, f"data.{split_name}.sources")
