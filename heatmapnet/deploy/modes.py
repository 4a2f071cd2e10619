"""Data modes as deployment sees them: one torch-free descriptor per ``data.mode``.

A data mode is one registered object with two halves. This module's :class:`ModeSpec` holds
what runs without torch: the exported graph's ``outputs``, the framing rule (a crop per box, or
the whole image letterboxed), the json entry of one image from the graph's outputs, how an entry
is drawn (``predict --render``) and the line a report says about the mode. The PyTorch half,
:class:`heatmapnet.modes.DataMode` (dataset, decoding, metrics, the export graph, viz's pictures),
names its spec as ``spec``; :func:`heatmapnet.modes.register_mode` registers both at once.
Everything else looks a mode up here (:data:`MODE_SPECS`) or in :data:`heatmapnet.modes.MODES`.

The built-in specs (``topdown``, ``multi``, ``bottomup``) are registered when this module is
imported, so an ONNX file's ``mode`` is known to an install without torch.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from ..data.transforms import letterbox_matrix
from ..metadata import KeypointScheme
from ..registry import Registry
from .errors import DeployError
from .framing import apply_affine_rows, crop_matrices
from .render import draw_instances, draw_peaks
from .results import instances_json, peaks_json, people_json

#: The torch-free half of each data mode, by its ``data.mode`` name.
MODE_SPECS: Registry = Registry("data.mode")


class ModeSpec:
    """What deployment needs of a data mode (see the module); subclasses fill it in."""

    #: the ``data.mode`` name
    name: str = ""
    #: the exported graph's output names in order, all in network-input pixels (the first, ``heatmaps``)
    outputs: Tuple[str, ...] = ()
    #: whether an image is seen whole (letterboxed, no boxes) rather than one crop per box
    whole_image: bool = False
    #: what the mode is, in one line (the ablation's report heads a setting's section with it)
    summary: str = ""
    #: the input size (w, h) and batch of the small CPU models the ablation's quick and short
    #: budgets train (:func:`heatmapnet.ablate.budgets.small_model_per_mode`)
    small_input_size: Tuple[int, int] = (64, 64)
    small_batch_size: int = 16
    #: the config settings only this mode reads (``section.*``: all of a section's); one set away
    #: from its default under another mode is a warning line at load
    #: (:func:`heatmapnet.config.ignored_settings`)
    own_settings: Tuple[str, ...] = ()

    def frame(self, image_size, boxes, input_size, padding: Optional[float], where: str = "boxes"
              ) -> Tuple[list, Optional[list]]:
        """The input matrices of one ``image_size`` (w, h) image and the boxes used (None for
        whole-image modes)."""
        raise NotImplementedError

    def entry(self, outputs: Dict[str, np.ndarray], back: np.ndarray, boxes, metadata) -> List[dict]:
        """One image's json entry from its rows of the graph's outputs (all but the heatmaps),
        ``back`` (N, 2, 3) input -> image matrices and its boxes; ``metadata``: the file's
        :class:`heatmapnet.deploy.metadata.DeployMetadata`."""
        raise NotImplementedError

    def draw(self, pixels: np.ndarray, entry: List[dict], scheme: KeypointScheme) -> np.ndarray:
        """``entry`` (this mode's json entry of the image) drawn on a copy of ``pixels`` (uint8 BGR)."""
        raise NotImplementedError


class CropSpec(ModeSpec):
    """Modes that crop each ``[x, y, w, h]`` box (grown by the model's ``padding``), the whole
    image as one box when none is given (:func:`heatmapnet.deploy.framing.crop_matrices`)."""

    def frame(self, image_size, boxes, input_size, padding: Optional[float], where: str = "boxes"
              ) -> Tuple[list, Optional[list]]:
        return crop_matrices(image_size, boxes, input_size, padding, where)


class WholeImageSpec(ModeSpec):
    """Modes that see each image whole, letterboxed; boxes given to them are an error."""

    whole_image = True

    def frame(self, image_size, boxes, input_size, padding: Optional[float] = None, where: str = "boxes"
              ) -> Tuple[list, Optional[list]]:
        if boxes is not None and len(boxes):
            raise DeployError(f"{where}: a {self.name} model takes whole images and no boxes")
        return [letterbox_matrix(image_size, input_size)], None


class TopDownSpec(CropSpec):
    name = "topdown"
    outputs = ("heatmaps", "keypoints", "scores")  # keypoints (B, K, 2), scores (B, K)
    summary = "top-down crops: every instance scaled to one size"

    def entry(self, outputs: Dict[str, np.ndarray], back: np.ndarray, boxes, metadata) -> List[dict]:
        points = apply_affine_rows(outputs["keypoints"], back)
        return instances_json(points, outputs["scores"], boxes, metadata.scheme.keypoint_names)

    def draw(self, pixels: np.ndarray, entry: List[dict], scheme: KeypointScheme) -> np.ndarray:
        return draw_instances(pixels, entry, scheme)


class MultiSpec(WholeImageSpec):
    name = "multi"
    own_settings = ("eval.max_instances",)
    outputs = ("heatmaps", "scores", "classes", "points")  # scores (B, k), classes (B, k) int64, points (B, k, 2)
    summary = "multi-instance whole-image maps: several instances per image at varied sizes"
    small_input_size, small_batch_size = (96, 96), 8

    def entry(self, outputs: Dict[str, np.ndarray], back: np.ndarray, boxes, metadata) -> List[dict]:
        points = apply_affine_rows(outputs["points"], back)
        return peaks_json(outputs["classes"].reshape(-1), points.reshape(-1, 2), outputs["scores"].reshape(-1),
                          metadata.scheme.keypoint_names, metadata.min_score)

    def draw(self, pixels: np.ndarray, entry: List[dict], scheme: KeypointScheme) -> np.ndarray:
        return draw_peaks(pixels, entry, scheme)


class BottomUpSpec(WholeImageSpec):
    name = "bottomup"
    own_settings = ("bottomup.*", "eval.joint_threshold", "eval.person_score", "eval.max_people")
    # the maps (B, 7 + 3K, h, w; offsets and sizes as they are), scores (B, T) per person,
    # keypoints (B, T, K, 2), keypoint_scores (B, T, K), boxes (B, T, 4) as x, y, w, h
    outputs = ("heatmaps", "scores", "keypoints", "keypoint_scores", "boxes")
    summary = "bottom-up whole images: people found by their centres, joints grouped by regressed offsets"
    small_input_size, small_batch_size = (128, 128), 8

    def entry(self, outputs: Dict[str, np.ndarray], back: np.ndarray, boxes, metadata) -> List[dict]:
        count = metadata.scheme.num_keypoints
        points = apply_affine_rows(outputs["keypoints"], back)
        return people_json(outputs["scores"].reshape(-1), points.reshape(-1, count, 2),
                           outputs["keypoint_scores"].reshape(-1, count), metadata.scheme.keypoint_names,
                           metadata.min_score)

    def draw(self, pixels: np.ndarray, entry: List[dict], scheme: KeypointScheme) -> np.ndarray:
        return draw_instances(pixels, entry, scheme)


def register_spec(spec: ModeSpec) -> ModeSpec:
    """Add ``spec`` to :data:`MODE_SPECS` under its name (a name taken is an error)."""
    MODE_SPECS.register(spec.name)(spec)
    return spec


TOPDOWN = register_spec(TopDownSpec())
MULTI = register_spec(MultiSpec())
BOTTOMUP = register_spec(BottomUpSpec())


def draw_entry(pixels: np.ndarray, entry: List[dict], mode: str, scheme: KeypointScheme) -> np.ndarray:
    """``pixels`` (uint8 BGR) with ``entry`` (its json entry from a ``mode`` model) drawn on a copy."""
    return MODE_SPECS.get(mode).draw(pixels, entry, scheme)
