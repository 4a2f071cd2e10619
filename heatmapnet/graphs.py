"""The export graph of each data mode: the network, its activation, the flip test and the decoding.

Each data mode names its graph (:attr:`heatmapnet.modes.DataMode.graph`); :mod:`heatmapnet.export`
traces it to ONNX and checks the file against the graph's ``reference``, PyTorch's own decoding
(the module :mod:`heatmapnet.export` says what each graph decodes and what the check compares).
A graph's outputs are its mode's :attr:`heatmapnet.deploy.modes.ModeSpec.outputs`, in that order.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .decode import gaussian_blur, refine_peaks
from .evaluation import heatmap_probabilities

TIE_GAP = 1e-5  # scores this close may swap places between onnxruntime and PyTorch (peaks, candidates)
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


class DecodingGraph(nn.Module):
    """The network with its activation and (optionally) the flip test: images -> maps. Subclasses
    decode the maps; ``reference`` decodes them with the codec in PyTorch for the check."""

    #: output names (the mode's :attr:`heatmapnet.deploy.modes.ModeSpec.outputs`) that hold points in input pixels
    point_outputs: Tuple[str, ...] = ()
    #: whether the outputs are candidates ranked by score (peaks, people), whose scores the check
    #: compares sorted, rather than one row per channel
    ranked = False

    def __init__(self, model: nn.Module, codec, mode, flip_permutation=None):
        super().__init__()
        self.model, self.codec, self.mode = model, codec, mode
        self.flip_permutation = flip_permutation

    def maps(self, images: torch.Tensor) -> torch.Tensor:
        return heatmap_probabilities(self.model, images, self.flip_permutation, self.codec)

    def settled(self, reference: dict) -> Tuple[np.ndarray, np.ndarray]:
        """Of the reference's decoded rows (numpy outputs by name): the ones the check compares,
        and the ones it leaves out because float rounding alone decides them (see the module)."""
        raise NotImplementedError

    def steps(self) -> dict:
        """What the graph decodes (``in_graph``, a list) and its ``settings``, for the metadata."""
        raise NotImplementedError

    def decoding(self) -> dict:
        flip = self.flip_permutation is not None
        steps = self.steps()
        return {"in_graph": ["network", "output activation"] + (["flip test (mirrored batch averaged)"] if flip else [])
                + steps["in_graph"],
                "host": ["crop each box or letterbox the image", "normalise (mean, std)",
                         "map points back to image pixels"],
                "flip_test": flip, **steps["settings"]}


class RankedGraph(DecodingGraph):
    """Graphs whose outputs are candidates ranked by score (peaks, people)."""

    ranked = True

    def settled(self, reference: dict) -> Tuple[np.ndarray, np.ndarray]:
        scores = reference["scores"]
        reported = np.isfinite(scores) & (scores >= self.mode.min_score)  # what predict reports
        tied = reported & _tied(scores)
        return reported & ~tied, tied


class TopDownGraph(DecodingGraph):
    """One keypoint per channel: outputs heatmaps, keypoints (B, K, 2) and scores (B, K)."""

    point_outputs = ("keypoints",)

    def forward(self, images: torch.Tensor):
        maps = self.maps(images)
        batch, channels, height, width = maps.shape
        scores, flat = maps.flatten(2).max(dim=2)
        flat = flat.reshape(-1)
        blur = self.codec.blur_sigma
        source = gaussian_blur(maps, float(blur)) if blur else maps
        points = refine_peaks(source.reshape(-1, height, width), flat % width,
                              torch.div(flat, width, rounding_mode="floor"), self.codec.refine)
        return maps, self.codec.heatmap_to_input(points.reshape(batch, channels, 2)), scores

    def reference(self, maps: torch.Tensor) -> tuple:
        decoded = self.codec.decode(maps)
        return decoded.coordinates, decoded.scores

    def settled(self, reference: dict) -> Tuple[np.ndarray, np.ndarray]:
        flat = _on_plateau(reference["heatmaps"])
        return ~flat, flat

    def steps(self) -> dict:
        refine, blur = self.codec.refine, self.codec.blur_sigma
        step = {"none": [], "quarter": ["quarter-pixel step"],
                "dark": (["DARK Gaussian modulation"] if blur else []) + ["DARK Taylor step"]}[refine]
        return {"in_graph": ["argmax per channel"] + step + ["heatmap -> input pixels"],
                "settings": {"refine": refine, "blur_sigma": blur}}


class PeaksGraph(RankedGraph):
    """Several instances per channel: outputs heatmaps, scores (B, k), classes (B, k), points (B, k, 2)."""

    point_outputs = ("points",)

    def forward(self, images: torch.Tensor):
        maps = self.maps(images)
        return (maps, *self.reference(maps))

    def reference(self, maps: torch.Tensor) -> tuple:
        return tuple(self.codec.decode_instances(maps, k=self.mode.max_peaks))

    def steps(self) -> dict:
        return {"in_graph": ["3x3 max-pool suppression", f"top {self.mode.max_peaks} peaks of all channels",
                             f"sub-pixel refinement ({self.codec.refine})", "heatmap -> input pixels"],
                "settings": {"refine": self.codec.refine, "max_peaks": self.mode.max_peaks}}


def _top_peaks(maps: torch.Tensor, k: int, threshold: float):
    """The k best 3x3 local maxima >= ``threshold`` of each map (B, n, H, W): values (B, n, k),
    flat indices (B, n, k), -inf and -1 where a map has fewer (ONNX TopK puts equal values in
    index order, as :func:`heatmapnet.bottomup.top_peaks` does)."""
    pooled = F.max_pool2d(maps, 3, stride=1, padding=1)
    keep = (pooled == maps) & (maps >= threshold)
    values, index = torch.where(keep, maps, torch.full_like(maps, -math.inf)).flatten(2).topk(k, dim=2)
    return values, torch.where(values == -math.inf, torch.full_like(index, -1), index)


def _read_at(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """maps (B, C, H, W) read at flat pixel indices (B, N) -> (B, N, C)."""
    flat = maps.flatten(2)
    return flat.gather(2, index[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)


class PeopleGraph(RankedGraph):
    """People: outputs the maps, scores (B, T), keypoints (B, T, K, 2), keypoint_scores (B, T, K)
    and boxes (B, T, 4), as :meth:`heatmapnet.bottomup.BottomUpCodec.decode` gives them."""

    point_outputs = ("keypoints", "boxes")

    def forward(self, images: torch.Tensor):
        maps = self.maps(images).float()
        codec, layout = self.codec, self.codec.layout
        _, _, height, width = maps.shape
        people = min(codec.max_people, height * width)
        scores, centre_index = _top_peaks(maps[:, layout.centre], people, -math.inf)
        scores, centre_index = scores[:, 0], centre_index[:, 0].clamp_min(0)  # (B, T)
        at_centre = _read_at(maps[:, layout.centre_offset.start:layout.joint_offsets.stop], centre_index)
        centre_pixel = torch.stack([centre_index % width, torch.div(centre_index, width, rounding_mode="floor")],
                                   dim=-1).float()
        centres = centre_pixel + at_centre[..., 0:2]
        sizes = at_centre[..., 2:4].clamp_min(0)
        joints = maps[:, layout.joints]  # (B, K, H, W)
        num_keypoints = joints.shape[1]
        regressed = centre_pixel[:, :, None, :] + at_centre[..., 4:].reshape(-1, people, num_keypoints, 2)
        low, high = centres - sizes / 2.0, centres + sizes / 2.0  # (B, T, 2)
        points, chosen_score, snapped = self._snap(maps, regressed, low, high, sizes, people, num_keypoints)

        pixel = torch.floor(regressed + 0.5)
        x, y = pixel[..., 0].long(), pixel[..., 1].long()
        on_map = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        channel = torch.arange(num_keypoints) * (height * width)
        flat = channel + y.clamp(0, height - 1) * width + x.clamp(0, width - 1)  # (B, T, K) into K*H*W
        regressed_score = joints.flatten(1).gather(1, flat.flatten(1)).reshape(-1, people, num_keypoints)
        regressed_score = torch.where(on_map, regressed_score, torch.zeros(()))
        keypoint_scores = torch.where(snapped, chosen_score, regressed_score)
        boxes = torch.cat([codec.heatmap_to_input(low), sizes * codec.stride], dim=-1)
        outputs = [scores, codec.heatmap_to_input(points), keypoint_scores, boxes]
        if getattr(codec, "person_score", "centre") == "centre_x_joints":
            rescored = torch.where(torch.isfinite(scores), scores * keypoint_scores.mean(dim=-1), scores)
            order = rescored.topk(people, dim=1).indices  # equal scores keep their order (ONNX TopK)
            outputs = [value.gather(1, order.reshape(order.shape + (1,) * (value.dim() - 2)).expand_as(value))
                       for value in [rescored] + outputs[1:]]
        return (maps, *outputs)

    def _snap(self, maps, regressed, low, high, sizes, people: int, num_keypoints: int):
        """Each regressed joint snapped to the nearest usable peak of its type (see the module)."""
        codec, layout = self.codec, self.codec.layout
        height, width = maps.shape[2], maps.shape[3]
        candidates = min(max(people, codec.joint_candidates), height * width)
        peak_scores, peak_index = _top_peaks(maps[:, layout.joints], candidates, codec.joint_threshold)  # (B, K, J)
        valid = peak_index >= 0
        flat = peak_index.clamp_min(0)
        offsets = maps[:, layout.joint_offset].flatten(2).gather(
            2, flat.reshape(-1, 1, num_keypoints * candidates).expand(-1, 2, -1))
        peak_x = ((flat % width).float() + offsets[:, 0].reshape(-1, num_keypoints, candidates))[:, None]
        peak_y = (torch.div(flat, width, rounding_mode="floor").float()
                  + offsets[:, 1].reshape(-1, num_keypoints, candidates))[:, None]  # (B, 1, K, J)
        usable = valid[:, None] & (peak_x >= low[..., 0, None, None]) & (peak_x <= high[..., 0, None, None])
        usable = usable & (peak_y >= low[..., 1, None, None]) & (peak_y <= high[..., 1, None, None])
        dx, dy = peak_x - regressed[..., 0, None], peak_y - regressed[..., 1, None]  # (B, T, K, J)
        distance = dx * dx + dy * dy
        limit = codec.snap_distance * sizes.amax(dim=-1)
        usable = usable & (distance <= (limit * limit)[:, :, None, None])
        distance = torch.where(usable, distance.clamp_max(_FLOAT32_MAX), torch.full_like(distance, math.inf))
        nearest_distance, nearest = distance.min(dim=-1)  # (B, T, K)
        snapped = nearest_distance <= _FLOAT32_MAX

        def chosen(values):  # (B, 1 or T, K, J) -> (B, T, K)
            return values.expand_as(distance).gather(3, nearest[..., None])[..., 0]

        points = torch.where(snapped[..., None], torch.stack([chosen(peak_x), chosen(peak_y)], dim=-1), regressed)
        return points, chosen(peak_scores[:, None]), snapped

    def reference(self, maps: torch.Tensor) -> tuple:
        people = self.codec.decode(maps)
        return people.scores, people.keypoints, people.keypoint_scores, people.boxes

    def steps(self) -> dict:
        codec = self.codec
        return {"in_graph": ["centre 3x3 local maxima", f"top {codec.max_people} centres",
                             "regressed centre offset, size and joints read at each centre",
                             f"top {codec.joint_candidates} peaks of each joint map >= {codec.joint_threshold:g}",
                             f"snap to the nearest peak inside the box, within {codec.snap_distance:g} x its "
                             "longer side",
                             f"person scores: {getattr(codec, 'person_score', 'centre')}", "heatmap -> input pixels"],
                "settings": {"max_people": codec.max_people, "joint_candidates": codec.joint_candidates,
                             "joint_threshold": codec.joint_threshold, "snap_distance": codec.snap_distance,
                             "person_score": getattr(codec, "person_score", "centre")}}


def _on_plateau(maps: np.ndarray) -> np.ndarray:
    """Which maps (B, K, H, W) peak on a plateau: a neighbour of the argmax within TIE_GAP of it
    (there the argmax pixel and DARK's step, from near-zero differences, are left to rounding)."""
    batch, channels, height, width = maps.shape
    flat = maps.reshape(-1, height * width).astype(np.float64)
    peak = flat.argmax(axis=1)
    padded = np.pad(flat.reshape(-1, height, width), ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    steps = np.arange(3)
    rows, cols = (peak // width)[:, None] + steps, (peak % width)[:, None] + steps
    windows = padded[np.arange(flat.shape[0])[:, None, None], rows[:, :, None], cols[:, None, :]].reshape(-1, 9)
    windows[:, 4] = -np.inf  # the peak itself
    top = flat[np.arange(flat.shape[0]), peak]
    return (top - windows.max(axis=1) <= TIE_GAP).reshape(batch, channels)


def _tied(scores: np.ndarray) -> np.ndarray:
    """Which ranked candidates (..., T) score within TIE_GAP of a neighbour in the ranking."""
    with np.errstate(invalid="ignore"):
        close = np.abs(np.diff(scores.astype(np.float64), axis=-1)) <= TIE_GAP
    tied = np.zeros(scores.shape, dtype=bool)
    tied[..., 1:] |= close
    tied[..., :-1] |= close
    return tied
