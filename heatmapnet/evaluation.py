"""Prediction over a dataset, in original image coordinates, and the :class:`Evaluator` that
scores it by the data mode's metrics (:mod:`heatmapnet.scoring`; the numbers are
:mod:`heatmapnet.metrics`'s, COCO's OKS AP :mod:`heatmapnet.cocoeval`'s).

The evaluator renders each sample of a generated validation set (synthetic, mosaics) once, to
predict it; scoring reads the set's ``annotations``, which draw nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from .codec import mirror_heatmaps
from .data.pipelines import collate_samples
from .data.records import annotations_of
from .distributed import DistInfo, gather_objects
from .metadata import KeypointScheme


@dataclass
class TopDownPredictions:
    record_index: np.ndarray  # (N,)
    instance_index: np.ndarray  # (N,)
    keypoints: np.ndarray  # (N, K, 2) original image pixels
    scores: np.ndarray  # (N, K)


@dataclass
class PeoplePredictions:
    record_index: np.ndarray  # (N,) one row per decoded person
    keypoints: np.ndarray  # (N, K, 2) original image pixels
    scores: np.ndarray  # (N, K) keypoint scores
    person_scores: np.ndarray  # (N,) the person's score (its centre peak)


@dataclass
class PeakPredictions:
    record_index: np.ndarray  # (M,) one row per peak
    keypoint_type: np.ndarray  # (M,)
    points: np.ndarray  # (M, 2) original image pixels
    scores: np.ndarray  # (M,)


def invert_affine_batch(matrices: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) affine matrices -> their inverses, (B, 2, 3)."""
    linear_inverse = torch.linalg.inv(matrices[:, :, :2])
    return torch.cat([linear_inverse, -(linear_inverse @ matrices[:, :, 2:])], dim=2)


def apply_affine_batch(points: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """(B, ..., 2) points through (B, 2, 3) matrices."""
    flat = points.reshape(points.shape[0], -1, 2)
    moved = flat @ matrices[:, :, :2].transpose(1, 2) + matrices[:, None, :, 2]
    return moved.reshape(points.shape)


def heatmap_probabilities(model, images: torch.Tensor, flip_permutation=None, codec=None) -> torch.Tensor:
    """The model's maps (its own output activation applied), optionally averaged with the maps
    of the mirrored image mirrored back by ``codec.flip_back`` (default: columns reversed and
    left/right channels swapped, right for maps that are all heatmaps)."""
    maps = model.heatmaps(images)
    if flip_permutation is None:
        return maps
    flip_back = mirror_heatmaps if codec is None else codec.flip_back
    mirrored = flip_back(model.heatmaps(torch.flip(images, dims=[3])), flip_permutation)
    return (maps + mirrored) / 2.0


@torch.no_grad()
def predict_dataset(model, dataset, codec, mode, batch_size: int, dist: DistInfo, flip_permutation=None,
                    num_workers: int = 0):
    """Every sample of ``dataset`` decoded by ``mode`` (this rank's share, then gathered on all
    ranks), in original image pixels. ``flip_permutation`` set: flip test."""
    indices = list(range(dist.rank, len(dataset), dist.world_size))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=collate_samples)
    was_training = model.training
    model.eval()
    device = dist.device
    parts = []
    for batch in loader:
        maps = heatmap_probabilities(model, batch["image"].to(device), flip_permutation, codec)
        back = invert_affine_batch(batch["matrix"].to(device, torch.float64))
        instance = batch["instance_index"].numpy() if "instance_index" in batch else None
        parts.append(mode.decode_batch(codec, maps, back, batch["record_index"].numpy(), instance))
    model.train(was_training)
    return mode.concatenate([p for rank_parts in gather_objects(parts, dist) for p in rank_parts])


class Evaluator:
    """Validation of a model on one split: predictions decoded by ``mode`` with ``codec`` (another
    codec may be passed per call, e.g. to compare refinements on the same weights), scored by the
    mode's metrics against ``records``' annotations (``self.records``: a generated set's
    ``annotations``, so scoring draws no image)."""

    def __init__(self, mode, dataset, records, codec, scheme: KeypointScheme, eval_section,
                 dist: Optional[DistInfo] = None):
        self.mode, self.dataset, self.codec, self.scheme = mode, dataset, codec, scheme
        self.records = annotations_of(records)
        self.eval_section = eval_section
        self.dist = dist or DistInfo()

    def predict(self, model, codec=None):
        flip = self.scheme.flip_permutation if self.eval_section.flip_test else None
        return predict_dataset(model, self.dataset, codec or self.codec, self.mode, self.eval_section.batch_size,
                               self.dist, flip)

    def score(self, predictions) -> dict:
        return self.mode.evaluate(self.records, predictions, self.scheme, self.eval_section)

    def __call__(self, model, codec=None) -> dict:
        return self.score(self.predict(model, codec))


def primary_metric(result: dict) -> tuple:
    """(name, value, higher_is_better) of the number a run is selected by."""
    for name, higher in (("nme", False), ("keypoint_ap", True)):
        if name in result:
            return name, result[name], higher
    pck_name = next((k for k in result if k.startswith("pck@")), None)
    if pck_name is not None:
        return pck_name, result[pck_name], True
    if "oks_ap" in result:
        return "oks_ap", result["oks_ap"], True
    raise ValueError(f"no primary metric among {sorted(result)}")
