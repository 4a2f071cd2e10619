"""The heatmap codec: one object owns keypoints -> heatmaps and heatmaps -> keypoints.

Input-image coordinates are 0-based pixels (the centre of the top-left pixel is (0, 0)). With
stride s, heatmap pixel j is the average of input pixels [j*s, (j+1)*s), whose centre is
x_in = j*s + (s - 1)/2; hence x_heat = (x_in - (s - 1)/2) / s, applied in both directions, so an
encode -> decode round trip returns the point.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple, Optional

import numpy as np
import torch

from .stride import OUTPUT_STRIDE
from .decode import REFINEMENTS, DecodedKeypoints, Peaks, decode_keypoints, decode_peaks
from .registry import Registry
from .targets import SIGMA_POLICIES, FixedSigma, render_heatmaps

#: Codecs by name; each has ``from_config(config, scheme, output_activation)``.
CODECS: Registry = Registry("codec")


class EncodedTargets(NamedTuple):
    heatmaps: torch.Tensor  # (K, H, W) one channel per keypoint type
    keypoint_weights: torch.Tensor  # (N, K) 1.0 where the keypoint is labelled and on the map
    sigmas: torch.Tensor  # (N, K) the Gaussian widths used, in heatmap pixels


def checked_input_size(input_size, stride: int) -> tuple:
    """``input_size`` as ints (width, height); both must divide by ``stride``."""
    width, height = (int(v) for v in input_size)
    if width % stride or height % stride:
        raise ValueError(f"input_size {tuple(input_size)} must be divisible by stride {stride}")
    return width, height


class StrideGeometry:
    """Input pixels <-> heatmap pixels for a codec with ``input_size`` (w, h) and ``stride``:
    heatmap pixel j is the average of input pixels [j s, (j + 1) s), centred at j s + (s - 1) / 2."""

    input_size: tuple
    stride: int

    @property
    def heatmap_size(self) -> tuple:
        """(height, width) of the heatmaps."""
        return self.input_size[1] // self.stride, self.input_size[0] // self.stride

    def input_to_heatmap(self, points):
        return (points - (self.stride - 1) / 2.0) / self.stride

    def heatmap_to_input(self, points):
        return points * self.stride + (self.stride - 1) / 2.0


def targets_from_config(target, scheme, output_activation: str):
    """The sigma policy and ``exact_peak`` of ``config.target``: unless set, targets follow the
    model's activation: sigmoid (focal) models get the size-adaptive radius target with an exact
    1.0 peak, identity (regression) models the fixed-sigma sub-pixel Gaussian."""
    sigmoid = output_activation == "sigmoid"
    name = target.sigma_policy if target.sigma_policy != "auto" else ("radius" if sigmoid else "fixed")
    exact_peak = sigmoid if target.exact_peak is None else bool(target.exact_peak)
    return SIGMA_POLICIES.get(name).from_config(target, scheme), exact_peak


@CODECS.register("heatmap")
@dataclass
class HeatmapCodec(StrideGeometry):
    """Encodes keypoints in input pixels to stride-``stride`` heatmaps and decodes them back.

    ``sigma_policy`` maps box sizes (N, 2) in heatmap pixels to sigmas (N, K) (see
    :mod:`heatmapnet.targets`). ``exact_peak`` marks each keypoint's nearest pixel as exactly 1.0
    (for the focal loss); MSE wants the untouched Gaussian. ``refine`` and ``blur_sigma`` are the
    decoding options of :func:`heatmapnet.decode.decode_keypoints`.
    """

    #: the sub-pixel decoders this codec can use (``refine``)
    refinements: ClassVar[tuple] = REFINEMENTS

    input_size: tuple  # (width, height) of the network input in pixels
    stride: int = 4
    sigma_policy: object = field(default_factory=FixedSigma)
    exact_peak: bool = True
    refine: str = "dark"
    blur_sigma: Optional[float] = None

    @classmethod
    def from_config(cls, config, scheme, output_activation: str) -> "HeatmapCodec":
        """From ``config.target`` (see :func:`targets_from_config`), ``config.data.input_size`` and
        ``config.eval``."""
        policy, exact_peak = targets_from_config(config.target, scheme, output_activation)
        return cls(tuple(config.data.input_size), OUTPUT_STRIDE, policy, exact_peak, config.eval.refine,
                   config.eval.blur_sigma)

    def __post_init__(self):
        self.input_size = checked_input_size(self.input_size, self.stride)

    def encode(self, keypoints, visible, boxes=None) -> EncodedTargets:
        """keypoints (N, K, 2) and visible (N, K) in input pixels; boxes (N, 4) as (x, y, w, h),
        used by size-adaptive sigma policies (default: the visible keypoints' tight box)."""
        keypoints = torch.as_tensor(np.asarray(keypoints) if not isinstance(keypoints, torch.Tensor) else keypoints,
                                    dtype=torch.float32)
        if keypoints.dim() != 3 or keypoints.shape[-1] != 2:
            raise ValueError(f"keypoints must have shape (N, K, 2), got {tuple(keypoints.shape)}")
        num_instances, num_keypoints = keypoints.shape[:2]
        visible = torch.as_tensor(visible, device=keypoints.device).bool().reshape(num_instances, num_keypoints)
        if torch.isnan(keypoints[visible]).any():
            raise ValueError("keypoints: a visible keypoint has a NaN coordinate")
        points = self.input_to_heatmap(torch.where(visible[..., None], keypoints, torch.zeros(())))
        box_sizes = self._box_sizes(keypoints, visible, boxes) / self.stride
        sigmas = self.sigma_policy(box_sizes, num_keypoints)
        height, width = self.heatmap_size
        on_map = visible & (points[..., 0] >= -0.5) & (points[..., 0] < width - 0.5) \
            & (points[..., 1] >= -0.5) & (points[..., 1] < height - 0.5)
        labels = torch.arange(num_keypoints).expand(num_instances, num_keypoints)
        heatmaps = render_heatmaps(points.reshape(-1, 2), labels.reshape(-1), sigmas.reshape(-1),
                                   num_keypoints, self.heatmap_size, weights=on_map.reshape(-1).float(),
                                   exact_peak=self.exact_peak)
        return EncodedTargets(heatmaps, on_map.float(), sigmas)

    @staticmethod
    def _box_sizes(keypoints: torch.Tensor, visible: torch.Tensor, boxes) -> torch.Tensor:
        """(N, 2) box (w, h) in input pixels."""
        if boxes is not None:
            boxes = torch.as_tensor(np.asarray(boxes) if not isinstance(boxes, torch.Tensor) else boxes,
                                    dtype=torch.float32).reshape(-1, 4)
            if boxes.shape[0] != keypoints.shape[0]:
                raise ValueError(f"boxes has {boxes.shape[0]} rows for {keypoints.shape[0]} instances")
            return boxes[:, 2:4]
        big = torch.tensor(float("inf"))
        low = torch.where(visible[..., None], keypoints, big).amin(dim=1)
        high = torch.where(visible[..., None], keypoints, -big).amax(dim=1)
        sizes = high - low
        return torch.where(torch.isfinite(sizes), sizes, torch.zeros(()))

    def flip_back(self, heatmaps: torch.Tensor, flip_permutation) -> torch.Tensor:
        return mirror_heatmaps(heatmaps, flip_permutation)

    def decode(self, heatmaps: torch.Tensor) -> DecodedKeypoints:
        """(B, K, H, W) heatmaps (probabilities, not logits) -> keypoints (B, K, 2) in input pixels
        and their scores (B, K)."""
        decoded = decode_keypoints(heatmaps, self.refine, self.blur_sigma)
        return DecodedKeypoints(self.heatmap_to_input(decoded.coordinates), decoded.scores)

    def decode_instances(self, heatmaps: torch.Tensor, k: int = 100) -> Peaks:
        """Several instances per channel: the top-k peaks of all channels, in input pixels."""
        peaks = decode_peaks(heatmaps, k=k, refine=self.refine)
        return Peaks(peaks.scores, peaks.classes, self.heatmap_to_input(peaks.points))


def mirror_heatmaps(heatmaps: torch.Tensor, flip_permutation) -> torch.Tensor:
    """The heatmaps (B, K, H, W) of a mirrored image, mirrored back: columns reversed, left/right
    channels swapped."""
    return heatmaps.flip(dims=[3])[:, torch.as_tensor(np.asarray(flip_permutation), device=heatmaps.device)]
