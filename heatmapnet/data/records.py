"""The one record type every reader and generator yields.

Coordinates are 0-based pixels: the centre of the top-left pixel is (0, 0), so a point at
x = 3.0 lies on the centre of column 3. Readers convert each format's own convention to this.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

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
