"""Data: the record type, the dataset readers, and (in submodules) transforms and pipelines.

``heatmapnet.data.read(path)`` reads any supported annotation format into a list of
:class:`Record`; see :mod:`heatmapnet.data.readers`. The torch pipelines live in
:mod:`heatmapnet.data.pipelines` and are not imported here, so reading data needs no torch.
"""
from .readers import (FORMATS, InvalidAnnotationError, MissingImageError, RecordList, guess_format, read,
                      read_coco, read_lsp, read_mpii_json, read_mtfl, read_pts, read_wflw)
from .records import Instance, Record

__all__ = [
    "Record",
    "Instance",
    "read",
    "guess_format",
    "FORMATS",
    "RecordList",
    "InvalidAnnotationError",
    "MissingImageError",
    "read_coco",
    "read_pts",
    "read_wflw",
    "read_mpii_json",
    "read_lsp",
    "read_mtfl",
]
