"""Label noise: training labels wrong by a known amount (``data.label_noise: {sigma, swap}``), to
measure how a loss copes with annotation errors while it is evaluated on the clean labels.

- ``sigma``: each labelled (visible) point of a training instance moves by Gaussian noise whose
  standard deviation, in x and in y independently, is ``sigma`` times the instance's normaliser:
  the length the scheme's metric divides errors by
  (:func:`heatmapnet.metrics.scheme_normaliser`: the inter-ocular distance of faces, as NME;
  the torso of bodies whose scheme names one, as PCK; else the box's longer side). ``0.01`` is
  1% of the normaliser. An instance whose normaliser is undefined (a torso joint unlabelled, as
  PCK skips it) keeps its points where they are.
- ``swap``: the probability that an instance's left and right labels are exchanged: every flip
  pair of the scheme (the point annotated as the left eye is labelled the right eye and the other
  way round; the points stay where they are), as ``points[flip_permutation]``.

The draws depend on (``train.seed``, the dataset index) only: not on the epoch (a label is wrong
the same way every epoch, as an annotation error is), nor on the worker or the augmentation
(their own stream, :data:`LABEL_NOISE_STREAM`), so a resumed run sees exactly the labels an
uninterrupted one does. The same standard normals are scaled by every ``sigma`` and compared
with every ``swap``: two runs that differ in ``sigma`` differ in the scale of the same noise.
Only training sets get noise; validation and ``heatmapnet eval`` labels stay as annotated.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Sequence

import numpy as np

from ..errors import ConfigError
from ..metrics import scheme_normaliser
from ..metadata import KeypointScheme
from .records import Instance

#: Spawn key of the label-noise draws: a stream apart from the augmentation's (seed, epoch, index).
LABEL_NOISE_STREAM = 0x1AB31


@dataclass(frozen=True)
class LabelNoise:
    sigma: float  # jitter std in x and y, as a fraction of the instance's normaliser
    swap: float  # probability that an instance's left/right labels are exchanged
    scheme: KeypointScheme  # its normaliser and flip pairs
    seed: int = 0

    def __post_init__(self):
        permutation = self.scheme.flip_permutation
        if self.swap > 0 and (permutation is None or (permutation == np.arange(len(permutation))).all()):
            raise ConfigError(f"data.label_noise.swap={self.swap}: scheme {self.scheme.name} has no left/right "
                              "flip pairs to swap (set data.flip_pairs, or swap=0)")

    def rng(self, index: int) -> np.random.Generator:
        """The generator of dataset item ``index``'s noise."""
        return np.random.default_rng(np.random.SeedSequence([int(self.seed), int(index)],
                                                            spawn_key=(LABEL_NOISE_STREAM,)))

    def apply(self, instances: Sequence[Instance], index: int) -> List[Instance]:
        """The noisy copies of dataset item ``index``'s ``instances`` (boxes unchanged)."""
        if not instances:
            return []
        keypoints = np.stack([i.keypoints for i in instances])
        visible = np.stack([i.visible for i in instances])
        boxes = np.stack([i.bbox for i in instances])
        rng = self.rng(index)
        swapped = rng.random(len(instances)) < self.swap
        normal = rng.standard_normal(keypoints.shape)
        normaliser = scheme_normaliser(self.scheme, keypoints, visible, boxes).values
        scale = np.where(np.isfinite(normaliser) & (normaliser > 0), normaliser, 0.0) * self.sigma
        moved = keypoints + np.where(visible[..., None], normal * scale[:, None, None], 0.0)
        noisy = []
        for instance, points, shown, swap in zip(instances, moved, visible, swapped):
            if swap:
                points, shown = points[self.scheme.flip_permutation], shown[self.scheme.flip_permutation]
            noisy.append(replace(instance, keypoints=points, visible=shown))
        return noisy


def label_noise_from_config(data_section, scheme: KeypointScheme, seed: int):
    """The :class:`LabelNoise` of ``data.label_noise``, or None where both settings are 0."""
    section = data_section.label_noise
    if not (section.sigma or section.swap):
        return None
    return LabelNoise(float(section.sigma), float(section.swap), scheme, int(seed))
