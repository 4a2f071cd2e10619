"""Data: the record type, the dataset readers, and (in submodules) transforms and pipelines.

``heatmapnet.data.read(path)`` reads any supported annotation format into a list of
:class:`Record`; see :mod:`heatmapnet.data.readers`. The torch pipelines live in
:mod:`heatmapnet.data.pipelines` and are not imported here, so reading data needs no torch.
"""
from . import readers
from .readers import *  # noqa: F401,F403  (the readers' public names, listed in readers.__all__)
from .records import Instance, Record

__all__ = ["Record", "Instance", *readers.__all__]
