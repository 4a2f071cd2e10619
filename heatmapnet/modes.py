"""Data modes: what one sample is, and how a batch of heatmaps becomes predictions and metrics.

``config.data.mode`` is the one place that says how a task is framed; everything that differs
between the framings lives in one registered object per mode, in two halves: a torch-free
:class:`heatmapnet.deploy.modes.ModeSpec` (the exported graph's outputs, the framing rule, the
json entry from the graph's outputs, how an entry is drawn, the report's line; what
:mod:`heatmapnet.deploy` reads without torch) and a :class:`DataMode` subclass here, whose
``spec`` it is (dataset, criterion, decoding, metrics, json, the export graph of
:mod:`heatmapnet.graphs`, viz's pictures of :mod:`heatmapnet.pictures`). :func:`register_mode`
registers both under the spec's name; everything else looks the mode up:

- ``topdown``: one crop per annotated instance (its box padded to the input's aspect ratio), one
  keypoint per heatmap channel, decoded by argmax + sub-pixel refinement; faces are scored by NME,
  bodies by PCK and OKS AP.
- ``multi``: the whole image letterboxed, every instance's keypoints of a type share one channel
  (CenterNet), decoded as the top peaks of all channels; scored by per-type detection AP.
- ``bottomup``: whole images, people found by their centres and grouped by regressed joint
  offsets (CenterNet's multi-pose, :mod:`heatmapnet.bottomup`); scored by OKS AP of the people.

Each mode also says how many output channels the model has, which of them are heatmaps, and the
criterion that applies the configured heatmap loss to a batch.

A mode turns a batch's heatmaps, with the affine matrices that map input pixels back to the
original image, into predictions in original image pixels (:meth:`decode_batch`), joins the
batches' parts, scores them, and writes them as json (a dataset's ``predictions.json`` or one
image's prediction).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .bottomup import BottomUpCriterion, BottomUpLayout
from .cocoeval import coco_results, peak_results, people_results
from .data.pipelines import BottomUpDataset, MultiInstanceDataset, TopDownDataset
from .deploy.modes import BOTTOMUP, MODE_SPECS, MULTI, TOPDOWN, ModeSpec, register_spec
from .deploy.results import instances_json, listed_people, peaks_json, people_json
from .drawing import peak_rows
from .evaluation import PeakPredictions, PeoplePredictions, TopDownPredictions, apply_affine_batch
from .graphs import PeaksGraph, PeopleGraph, TopDownGraph
from .losses import HeatmapCriterion
from .pictures import (DisplayPoints, bottomup_pictures, instance_image_pictures, instance_sample_pictures,
                       joint_heatmaps, people_image_pictures)
from .registry import Registry
from .scoring import face_metrics, is_face_scheme, keypoint_detection_ap, people_metrics, pose_metrics

#: Data modes by their ``data.mode`` name; each has ``from_config(config, scheme)``.
MODES: Registry = Registry("data.mode")


def register_mode(mode_class):
    """Class decorator: registers a :class:`DataMode` subclass in :data:`MODES` under its spec's
    name, and the spec in :data:`heatmapnet.deploy.modes.MODE_SPECS` (where the built-in ones
    are from the start, so that deployment knows them without torch). The one registration a
    mode needs."""
    spec = mode_class.spec
    if spec.name not in MODE_SPECS:
        register_spec(spec)
    elif MODE_SPECS.get(spec.name) is not spec:
        raise ValueError(f"data.mode {spec.name!r}: another spec is registered under that name")
    return MODES.register(spec.name)(mode_class)


class DataMode:
    """The PyTorch half of a data mode (see the module). Subclasses set ``spec`` (the torch-free
    half), ``graph`` (its :class:`heatmapnet.graphs.DecodingGraph`) and ``codec`` (a
    ``model.codec`` name), and implement the dataset, decoding, scoring and json."""

    spec: ModeSpec
    graph: type
    codec = "heatmap"
    #: top-down modes: the factor a box grows by before it is cropped (None: whole images)
    padding: Optional[float] = None
    #: whole-image modes: an image's prediction lists the peaks / people scoring above it
    min_score: Optional[float] = None
    #: whether ``heatmapnet eval`` scores the training set's mean shape, placed in each box, beside the
    #: model (:mod:`heatmapnet.baselines`; a crop per annotated instance, one shape per instance)
    mean_shape_baseline = False

    def image_matrices(self, image_size, boxes, input_size, where: str = "boxes") -> tuple:
        """Input matrices for one image of ``image_size`` (w, h) and the boxes used (the spec's
        :meth:`~heatmapnet.deploy.modes.ModeSpec.frame`: a crop per box, checked, the whole
        image as one box when none is given; or the image letterboxed, boxes refused)."""
        return self.spec.frame(image_size, boxes, input_size, self.padding, where)

    @staticmethod
    def _one_image_rows(count: int) -> tuple:
        """record and instance indices of one image's ``count`` inputs (viz decodes one image)."""
        return np.zeros(count, np.int64), np.arange(count)

    def display(self, codec, maps: torch.Tensor, back: torch.Tensor, peak_threshold: float) -> DisplayPoints:
        """One image's maps (B, C, h, w) decoded once -> the points viz draws, through ``back``
        (B, 2, 3): one row per instance."""
        predictions = self.decode_batch(codec, maps, back, *self._one_image_rows(maps.shape[0]))
        points = np.asarray(predictions.keypoints, dtype=np.float64)
        return DisplayPoints(points, np.ones(points.shape[:2], bool), True)

    def joint_heatmaps(self, codec, maps):
        """The per-keypoint heatmaps of a model's ``maps`` or of target heatmaps (..., C, h, w)."""
        return maps

    def sample_pictures(self, image, codec, scheme, sample: dict, gt, gt_visible, maps=None,
                        shown: Optional[DisplayPoints] = None, caption: str = "", keypoints=None
                        ) -> Dict[str, np.ndarray]:
        """viz's pictures of one dataset ``sample`` (``image``: its input, H x W x 3), by name."""
        return instance_sample_pictures(image, codec, scheme, sample["heatmaps"], gt, gt_visible, maps, shown,
                                        caption, keypoints)

    def image_pictures(self, pixels, crop, codec, scheme, maps, shown: DisplayPoints, first: DisplayPoints, boxes,
                       name: str, source: str, keypoints=None) -> Dict[str, np.ndarray]:
        """viz's pictures of one image through a checkpoint, by name."""
        return instance_image_pictures(pixels, crop, codec, scheme, maps, shown, first, boxes, name, source,
                                       keypoints)


def _concatenate(kind, parts: Sequence):
    if not parts:
        raise ValueError("evaluation dataset is empty")
    return kind(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in kind.__dataclass_fields__})


class _HeatmapOutputs(DataMode):
    """Modes whose model outputs one heatmap per keypoint type."""

    def num_outputs(self, scheme) -> int:
        return scheme.num_keypoints

    def heatmap_channels(self, scheme):
        return None  # every channel

    def channel_names(self, keypoint_names: Sequence[str]) -> tuple:
        """What each output channel is, by keypoint name (:mod:`heatmapnet.transfer` maps a
        checkpoint's classifier rows to a model's by these names, across modes)."""
        return tuple(f"heatmap:{name}" for name in keypoint_names)

    def criterion(self, loss, config, scheme):
        return HeatmapCriterion(loss)


@register_mode
class TopDownMode(_HeatmapOutputs):
    """One crop per instance; ``padding`` grows each box before it is cropped."""

    spec = TOPDOWN
    mean_shape_baseline = True
    graph = TopDownGraph

    def __init__(self, padding: float = 1.25):
        self.padding = float(padding)

    @classmethod
    def from_config(cls, config, scheme) -> "TopDownMode":
        return cls(config.data.padding)

    def dataset(self, records, codec, scheme, augmentation, seed: int = 0) -> TopDownDataset:
        # generated sets count their instances without drawing every image
        counts = records.instance_counts() if hasattr(records, "instance_counts") else None
        return TopDownDataset(records, codec, scheme.flip_permutation, augmentation, self.padding, seed,
                              instance_counts=counts)

    def decode_batch(self, codec, maps: torch.Tensor, back: torch.Tensor, record_index, instance_index
                     ) -> TopDownPredictions:
        decoded = codec.decode(maps)
        points = apply_affine_batch(decoded.coordinates.double(), back).cpu().numpy()
        return TopDownPredictions(np.asarray(record_index), np.asarray(instance_index), points,
                                  decoded.scores.cpu().numpy())

    def concatenate(self, parts: Sequence[TopDownPredictions]) -> TopDownPredictions:
        return _concatenate(TopDownPredictions, parts)

    def evaluate(self, records, predictions: TopDownPredictions, scheme, eval_section) -> dict:
        if is_face_scheme(scheme):
            return face_metrics(records, predictions, scheme, eval_section)
        return pose_metrics(records, predictions, scheme, eval_section)

    def results(self, records, predictions: TopDownPredictions) -> List[dict]:
        return coco_results(records, predictions)

    def image_results(self, predictions: TopDownPredictions, scheme, boxes) -> List[dict]:
        """One image's prediction as json: per box its keypoints and scores."""
        return instances_json(predictions.keypoints, predictions.scores, boxes, scheme.keypoint_names)


@register_mode
class MultiInstanceMode(_HeatmapOutputs):
    """Whole images; ``max_peaks`` peaks of all channels together are kept per image, and an
    image's prediction lists those scoring at least ``min_score``."""

    spec = MULTI
    graph = PeaksGraph

    def __init__(self, max_peaks: int = 100, min_score: float = 0.05):
        self.max_peaks = int(max_peaks)
        self.min_score = float(min_score)

    @classmethod
    def from_config(cls, config, scheme) -> "MultiInstanceMode":
        return cls(int(config.eval.max_instances) * scheme.num_keypoints)

    def criterion(self, loss, config, scheme):
        return HeatmapCriterion(loss, weighted=False)  # a channel mixes instances: every one counts in full

    def dataset(self, records, codec, scheme, augmentation, seed: int = 0) -> MultiInstanceDataset:
        return MultiInstanceDataset(records, codec, scheme.num_keypoints, scheme.flip_permutation, augmentation, seed)

    def decode_batch(self, codec, maps: torch.Tensor, back: torch.Tensor, record_index, instance_index=None
                     ) -> PeakPredictions:
        peaks = codec.decode_instances(maps, k=self.max_peaks)
        points = apply_affine_batch(peaks.points.double(), back).cpu().numpy()
        record = np.broadcast_to(np.asarray(record_index)[:, None], peaks.scores.shape)
        return PeakPredictions(record.reshape(-1), peaks.classes.cpu().numpy().reshape(-1), points.reshape(-1, 2),
                               peaks.scores.cpu().numpy().reshape(-1))

    def concatenate(self, parts: Sequence[PeakPredictions]) -> PeakPredictions:
        return _concatenate(PeakPredictions, parts)

    def evaluate(self, records, predictions: PeakPredictions, scheme, eval_section) -> dict:
        return keypoint_detection_ap(records, predictions, scheme, eval_section.detection_distance)

    def results(self, records, predictions: PeakPredictions) -> List[dict]:
        return peak_results(records, predictions, self.min_score)

    def image_results(self, predictions: PeakPredictions, scheme, boxes=None) -> List[dict]:
        return peaks_json(predictions.keypoint_type, predictions.points, predictions.scores, scheme.keypoint_names,
                          self.min_score)

    def display(self, codec, maps: torch.Tensor, back: torch.Tensor, peak_threshold: float) -> DisplayPoints:
        """The peaks scoring above ``peak_threshold``, grouped by type (row p: each type's
        (p+1)-th best peak, :func:`heatmapnet.drawing.peak_rows`), which no skeleton joins."""
        predictions = self.decode_batch(codec, maps, back, *self._one_image_rows(maps.shape[0]))
        keep = np.asarray(predictions.scores) > peak_threshold
        points, visible = peak_rows(predictions.keypoint_type[keep], predictions.points[keep], maps.shape[1])
        return DisplayPoints(points, visible, False)


@register_mode
class BottomUpMode(DataMode):
    """Whole images in, people out; an image's prediction lists the people scoring at least
    ``min_score`` (evaluation keeps every decoded candidate: OKS AP ranks them by score)."""

    spec = BOTTOMUP
    graph = PeopleGraph
    codec = "bottomup"

    def __init__(self, min_score: float = 0.1):
        # the person score is by default the centre peak x the mean joint score: on 200 synthetic
        # crowds (2.5 people an image) 0.1 keeps 2.0 people an image, 0.05 keeps 4.3
        self.min_score = float(min_score)

    @classmethod
    def from_config(cls, config, scheme) -> "BottomUpMode":
        return cls()

    def num_outputs(self, scheme) -> int:
        return BottomUpLayout(scheme.num_keypoints).num_outputs

    def heatmap_channels(self, scheme) -> tuple:
        return BottomUpLayout(scheme.num_keypoints).heatmap_channels

    def channel_names(self, keypoint_names: Sequence[str]) -> tuple:
        """The ``7 + 3K`` channels of :class:`BottomUpLayout` by name, in its order; a joint's
        heatmap is named as a top-down model's channel of that keypoint."""
        names = list(keypoint_names)
        return (("centre", "centre_offset:x", "centre_offset:y", "size:w", "size:h")
                + tuple(f"joint_from_centre:{name}:{axis}" for name in names for axis in "xy")
                + tuple(f"heatmap:{name}" for name in names) + ("joint_offset:x", "joint_offset:y"))

    def criterion(self, loss, config, scheme):
        weights = config.bottomup
        return BottomUpCriterion(loss, BottomUpLayout(scheme.num_keypoints), weights.centre_offset_weight,
                                 weights.size_weight, weights.joint_offsets_weight, weights.joint_offset_weight)

    def dataset(self, records, codec, scheme, augmentation, seed: int = 0) -> BottomUpDataset:
        return BottomUpDataset(records, codec, scheme.num_keypoints, scheme.flip_permutation, augmentation, seed)

    def decode_batch(self, codec, maps: torch.Tensor, back: torch.Tensor, record_index, instance_index=None
                     ) -> PeoplePredictions:
        return self._predictions(codec.decode(maps), back, record_index)

    @staticmethod
    def _predictions(people, back: torch.Tensor, record_index) -> PeoplePredictions:
        """Decoded people (B, T, ...) as predictions, one row per candidate, moved through ``back``."""
        batch, count = people.scores.shape
        points = apply_affine_batch(people.keypoints.double(), back).cpu().numpy()
        record = np.broadcast_to(np.asarray(record_index)[:, None], (batch, count))
        return PeoplePredictions(record.reshape(-1), points.reshape(batch * count, -1, 2),
                                 people.keypoint_scores.cpu().numpy().reshape(batch * count, -1),
                                 people.scores.cpu().numpy().reshape(-1))

    @torch.no_grad()
    def display(self, codec, maps: torch.Tensor, back: torch.Tensor, peak_threshold: float) -> DisplayPoints:
        """The people the mode lists (scoring at least ``min_score``, as ``heatmapnet predict``
        does), best first, with the joints that were snapped to a joint peak, each person's
        centre and its joints as regressed from the centre, before snapping; decoded once."""
        people = codec.decode(maps)
        predictions = self._predictions(people, back, self._one_image_rows(maps.shape[0])[0])
        keep = listed_people(predictions.person_scores, self.min_score)
        rows = len(keep)
        centres = people.boxes[..., :2] + people.boxes[..., 2:] / 2.0  # the box is centred on its centre
        regressed = apply_affine_batch(people.regressed.double(), back).cpu().numpy().reshape(rows, -1, 2)
        centres = apply_affine_batch(centres.double(), back).cpu().numpy().reshape(rows, 2)
        points = np.asarray(predictions.keypoints, dtype=np.float64)[keep]
        return DisplayPoints(points, np.isfinite(points).all(-1), True,
                             scores=np.asarray(predictions.person_scores, dtype=np.float64)[keep],
                             snapped=people.snapped.cpu().numpy().reshape(rows, -1)[keep], centres=centres[keep],
                             regressed=regressed[keep])

    def joint_heatmaps(self, codec, maps):
        """The joint channels of a model's (..., 7 + 3K, h, w) maps, or the channels after the
        centre of target heatmaps (..., 1 + K, h, w)."""
        return joint_heatmaps(codec, maps)

    def sample_pictures(self, image, codec, scheme, sample: dict, gt, gt_visible, maps=None,
                        shown: Optional[DisplayPoints] = None, caption: str = "", keypoints=None
                        ) -> Dict[str, np.ndarray]:
        """People, centres and joint heatmaps (:func:`heatmapnet.pictures.bottomup_pictures`)."""
        return bottomup_pictures(image, codec, scheme, sample["heatmaps"].numpy(), gt, gt_visible,
                                 sample["boxes"].numpy(), maps, shown, caption, keypoints)

    def image_pictures(self, pixels, crop, codec, scheme, maps, shown: DisplayPoints, first: DisplayPoints, boxes,
                       name: str, source: str, keypoints=None) -> Dict[str, np.ndarray]:
        return people_image_pictures(pixels, crop, codec, scheme, maps, shown, first, self.min_score, name, source,
                                     keypoints)

    def concatenate(self, parts: Sequence[PeoplePredictions]) -> PeoplePredictions:
        return _concatenate(PeoplePredictions, parts)

    def evaluate(self, records, predictions: PeoplePredictions, scheme, eval_section) -> dict:
        return people_metrics(records, predictions, range(len(records)), scheme)

    def results(self, records, predictions: PeoplePredictions) -> List[dict]:
        return people_results(records, predictions)

    def image_results(self, predictions: PeoplePredictions, scheme, boxes=None) -> List[dict]:
        return people_json(predictions.person_scores, predictions.keypoints, predictions.scores,
                           scheme.keypoint_names, self.min_score)
