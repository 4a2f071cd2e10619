"""The one record type every reader and generator yields.

Coordinates are 0-based pixels: the centre of the top-left pixel is (0, 0), so a point at
x = 3.0 lies on the centre of column 3. Readers convert each format's own convention to this.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import List, Optional, Union

import numpy as np


@dataclass
class Instance:
    """One annotated object (a person or a face) in an image."""

    keypoints: np.ndarray  # (K, 2) float64, (x, y) in 0-based pixels
    visible: np.ndarray  # (K,) bool; coordinates of invisible points are meaningless
    bbox: np.ndarray  # (4,) float64, (x, y, w, h) in the same pixel convention
    extra: dict = field(default_factory=dict)  # format-specific fields (e.g. WFLW attributes)

    def __post_init__(self):
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64).reshape(-1, 2)
        self.visible = np.asarray(self.visible, dtype=bool).reshape(-1)
        self.bbox = np.asarray(self.bbox, dtype=np.float64).reshape(4)
        if self.visible.shape[0] != self.keypoints.shape[0]:
            raise ValueError(
                f"visible has {self.visible.shape[0]} entries for {self.keypoints.shape[0]} keypoints"
            )


@dataclass
class Record:
    """One image and its instances."""

    image_path: str
    width: int
    height: int
    instances: list[Instance]
    image_id: Optional[int] = None  # the source's own id where it has one (COCO)
    image: Optional[np.ndarray] = None  # in-memory pixels (synthetic data), HxWx3 uint8 BGR
    # how its file is read (heatmapnet.imageio): "apply" its EXIF orientation or "ignore" it; width
    # and height are the image's under this convention (data.exif_orientation, set by the reader)
    exif_orientation: str = "apply"

    @property
    def num_keypoints(self) -> int:
        return self.instances[0].keypoints.shape[0] if self.instances else 0


def _one_or_many(sequence, index, one):
    """``one(i)`` for an index, a list of them for a slice, of a sequence of ``len(sequence)``."""
    if isinstance(index, slice):
        return [one(i) for i in range(*index.indices(len(sequence)))]
    return one(index)


class GeneratedRecords(Sequence):
    """A fixed-length sequence of records generated on access, record ``i`` a function of (seed, i)
    alone (:class:`heatmapnet.data.synthetic.SyntheticFaces`, ``SyntheticPeople``,
    :class:`heatmapnet.data.mosaic.MosaicPeople`): indexing draws the record's pixels into its
    ``image``; :attr:`annotations` is the same sequence without them (nothing drawn), for what reads
    annotations only (evaluation's scoring, results json). A subclass sets ``num_samples`` and
    implements :meth:`render` and :meth:`annotate`."""

    kind = "generated"
    num_samples: int

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: Union[int, slice]) -> Union[Record, List[Record]]:
        return _one_or_many(self, index, lambda i: self.render(self.checked_index(i)))

    def checked_index(self, index) -> int:
        """``index`` as a position in ``[0, len)`` (negative ones count from the end), else IndexError."""
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of a {len(self)}-sample {self.kind} set")
        return index

    @property
    def annotations(self) -> "Annotations":
        return Annotations(self)

    def render(self, index: int) -> Record:
        """Record ``index`` (checked) with its pixels."""
        raise NotImplementedError

    def annotate(self, index: int) -> Record:
        """Record ``index`` (checked) without pixels (``image`` None): :meth:`render`'s record
        otherwise, with no image drawn or read."""
        raise NotImplementedError


class Annotations(Sequence):
    """A generated set's records without their pixels (:attr:`GeneratedRecords.annotations`)."""

    def __init__(self, records: GeneratedRecords):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: Union[int, slice]) -> Union[Record, List[Record]]:
        return _one_or_many(self, index, lambda i: self.records.annotate(self.records.checked_index(i)))


def annotations_of(records: Sequence[Record]) -> Sequence[Record]:
    """What reads ``records``' annotations alone should index: a generated set's
    :attr:`~GeneratedRecords.annotations` (no pixels drawn), any other records as they are."""
    return records.annotations if isinstance(records, GeneratedRecords) else records
