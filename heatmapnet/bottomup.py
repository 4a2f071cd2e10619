"""Bottom-up multi-person pose, CenterNet style: whole images in, people out.

The network predicts, at stride 4, ``7 + 3K`` channels (:class:`BottomUpLayout`):

====================  ==========  ==============================================================
channels              activation  meaning
====================  ==========  ==============================================================
centre                heatmap     each person's box centre, a Gaussian sized by the person's box
centre_offset (2)     none        sub-pixel offset of the centre from its nearest pixel
size (2)              none        the person's box (w, h) in heatmap pixels
joint_offsets (2K)    none        each joint minus the centre's nearest pixel, read at that pixel
joints (K)            heatmap     each joint type's Gaussians, each sized by its own person's box
joint_offset (2)      none        sub-pixel offset of a joint from its nearest pixel
====================  ==========  ==============================================================

:class:`BottomUpCodec` encodes a sample's people into these targets (the heatmaps drawn by the
same vectorised splatting as every other target; regression targets as per-person rows with the
flat index of the pixel they are read at) and decodes maps into people without a Python loop
over people: centre peaks (3x3 local maxima) and top-k, each candidate's regressed joints, each
joint snapped to the nearest joint-heatmap peak of its type inside the candidate's box and
above a threshold, else kept where it was regressed (:meth:`BottomUpCodec.people_at` does this for
any given centres, e.g. an oracle's ground-truth ones: :mod:`heatmapnet.diagnose`). On CPU the
peaks come from the C kernel ``top_peaks`` (heatmapnet/_kernels.c) in one pass over each map;
elsewhere, or where the kernel is not built, from :func:`_top_peaks_torch`, which gives the same
values and indices.
:class:`BottomUpCriterion` is the training loss: the configured heatmap loss (distance-aware
focal, or MSE for the ablation) on both heatmaps, and L1 on offsets and sizes at labelled
pixels only.

Coordinates follow :mod:`heatmapnet.codec`: pixel centres at integers, heatmap pixel j covers
input pixels [j s, (j + 1) s), so x_heat = (x_in - (s - 1) / 2) / s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .codec import CODECS, StrideGeometry, checked_input_size, targets_from_config
from .stride import OUTPUT_STRIDE
from .kernels import active as active_kernels
from .targets import OKSSigma, RadiusSigma, render_heatmaps


_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


@dataclass(frozen=True)
class BottomUpLayout:
    """Where each output lies among the ``7 + 3K`` channels."""

    num_keypoints: int

    @property
    def centre(self) -> slice:
        return slice(0, 1)

    @property
    def centre_offset(self) -> slice:
        return slice(1, 3)

    @property
    def size(self) -> slice:
        return slice(3, 5)

    @property
    def joint_offsets(self) -> slice:
        return slice(5, 5 + 2 * self.num_keypoints)

    @property
    def joints(self) -> slice:
        k = self.num_keypoints
        return slice(5 + 2 * k, 5 + 3 * k)

    @property
    def joint_offset(self) -> slice:
        k = self.num_keypoints
        return slice(5 + 3 * k, 7 + 3 * k)

    @property
    def num_outputs(self) -> int:
        return 7 + 3 * self.num_keypoints

    @property
    def heatmap_channels(self) -> tuple:
        """The channels the output activation applies to (the two heatmaps)."""
        return (0,) + tuple(range(self.joints.start, self.joints.stop))


class People(NamedTuple):
    """Decoded people, ``T`` candidates per image (sorted by score; low scores are weak ones)."""

    scores: torch.Tensor  # (B, T) the person's score (BottomUpCodec.person_score says which)
    keypoints: torch.Tensor  # (B, T, K, 2) input pixels
    keypoint_scores: torch.Tensor  # (B, T, K) the joint heatmap at the chosen point
    snapped: torch.Tensor  # (B, T, K) bool: taken from a joint peak (else regressed)
    boxes: torch.Tensor  # (B, T, 4) x, y, w, h in input pixels
    regressed: torch.Tensor  # (B, T, K, 2) input pixels: the joints as regressed, before snapping
    centre_scores: torch.Tensor  # (B, T) the centre heatmap's peak


def _nearest_pixel(points: torch.Tensor) -> torch.Tensor:
    return torch.floor(points + 0.5)


def _local_maxima(maps: torch.Tensor, pool: int = 3) -> torch.Tensor:
    """``maps`` with every value that is not the maximum of its pool x pool neighbourhood at -inf
    (``pool`` odd): -inf wherever ``maps`` differs from ``F.max_pool2d(maps, pool, 1, pool // 2)``
    (-inf padding; a NaN in the window makes the pool NaN). That max-pool is taken here along rows,
    then columns, by ``torch.maximum``, which propagates NaN the same way: on CPU about half the
    time of ``max_pool2d``, which computes indices it does not return."""
    reach = pool // 2
    height, width = maps.shape[-2:]
    padded = F.pad(maps, (reach, reach, reach, reach), value=-math.inf)
    rows = padded[..., :width]
    for step in range(1, pool):
        rows = torch.maximum(rows, padded[..., step:step + width])
    pooled = rows[..., :height, :]
    for step in range(1, pool):
        pooled = torch.maximum(pooled, rows[..., step:step + height, :])
    return torch.where(pooled == maps, maps, torch.full_like(maps, -math.inf))


def top_peaks(maps: torch.Tensor, channels: slice, k: int, threshold: float = -math.inf):
    """The ``k`` best peaks of each map ``maps[:, channels]`` (maps (B, C, H, W)): values (B, n, k)
    float32 and flat pixel indices (B, n, k) int64 for the n channels.

    A peak is a pixel that :func:`_local_maxima` keeps (equal to its 3x3 max-pool with -inf padding,
    so every pixel of a flat top is one; a NaN is none and makes its neighbours none) whose value
    is >= ``threshold`` (compared in float32) and > -inf. Order: value descending, equal values by
    the lower flat index first. A map with fewer than k peaks is padded with value -inf, index -1.
    On CPU the C kernel (one pass over each map, no temporaries), else :func:`_top_peaks_torch`."""
    maps = maps.float()
    batch, num_channels, height, width = maps.shape
    first, stop, _ = channels.indices(num_channels)
    count = max(stop - first, 0)
    kernels = active_kernels()
    if kernels is not None and maps.device.type == "cpu" and height * width > 0:
        values = torch.empty(batch, count, k)
        index = torch.empty(batch, count, k, dtype=torch.int64)
        kernels.top_peaks(maps.detach().contiguous().numpy(), height, width, num_channels, first, count, k,
                          float(threshold), values.numpy(), index.numpy())
        return values, index
    return _top_peaks_torch(maps[:, first:first + count], k, threshold)


def _top_peaks_torch(maps: torch.Tensor, k: int, threshold: float = -math.inf):
    """:func:`top_peaks` of every map of ``maps`` (B, n, H, W) in PyTorch (any device). ``topk`` does
    not order equal values: maps whose best k + 1 hold two equal finite values are ranked again
    by :func:`_ordered_top`."""
    batch, count, height, width = maps.shape
    pixels = height * width
    taken = min(k, pixels)
    peaks = _local_maxima(maps)
    values = torch.where(peaks >= threshold, peaks, torch.full_like(peaks, -math.inf)).flatten(2)
    best, index = values.topk(min(k + 1, pixels), dim=2)  # sorted; one more shows a tie at the cut
    tied = ((best[..., 1:] == best[..., :-1]) & (best[..., 1:] > -math.inf)).any(dim=2)
    best, index = best[..., :taken], index[..., :taken]
    if bool(tied.any()):
        best, index = best.clone(), index.clone()
        best[tied], index[tied] = _ordered_top(values[tied], taken)
    index = torch.where(best == -math.inf, torch.full_like(index, -1), index)
    values = best
    if k > pixels:
        values = torch.cat([values, values.new_full((batch, count, k - pixels), -math.inf)], dim=2)
        index = torch.cat([index, index.new_full((batch, count, k - pixels), -1)], dim=2)
    return values, index


def _ordered_top(values: torch.Tensor, k: int):
    """The k best of each row of ``values`` (N, P), no NaN: value descending, equal values by the
    lower index first. ``topk`` ranks int64 keys: the float's bits made monotone in the high half
    (-0.0 as +0.0, so that equal values share them), the reversed index in the low half."""
    pixels = values.shape[1]
    bits = (values + 0.0).view(torch.int32)  # -0.0 + 0.0 = +0.0
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()  # a value's order as an integer's
    keys = ordered * (1 << 32) + (pixels - 1 - torch.arange(pixels, device=values.device))
    index = pixels - 1 - (keys.topk(k, dim=1).values & 0xFFFFFFFF)
    return values.gather(1, index), index


def _gather(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """maps (B, C, H, W), index (B, N) flat pixel indices -> (B, N, C)."""
    flat = maps.flatten(2)
    return flat.gather(2, index[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)


@CODECS.register("bottomup")
class BottomUpCodec(StrideGeometry):
    """People (keypoints, visibility, boxes in input pixels) <-> the bottom-up outputs.

    ``sigma_policy`` sizes each person's joint Gaussians from its box; ``centre_policy`` its
    centre's (the same policy unless it is per keypoint type, OKS, where the centre takes
    CornerNet's radius). ``max_people`` centre candidates are decoded per image; a joint snaps to
    a peak of ``joint_threshold`` or more, inside the person's box and within ``snap_distance`` times
    its longer side (CenterNet's 0.3); ``joint_candidates`` peaks per joint type are considered."""

    joint_candidates = 100  # CenterNet's K
    snap_distance = 0.3
    #: how a person is scored: ``centre`` (CenterNet: its centre peak) or ``centre_x_joints`` (the
    #: centre peak times the mean of its K joint scores, so a person whose joints the joint heatmaps
    #: do not confirm ranks lower)
    person_scores = ("centre", "centre_x_joints")

    #: no heatmap sub-pixel decoders: the centre and joint offsets are regressed
    refinements: tuple = ()

    def __init__(self, input_size, num_keypoints: int, stride: int = 4, sigma_policy=None, centre_policy=None,
                 exact_peak: bool = True, max_people: int = 20, joint_threshold: float = 0.1,
                 person_score: str = "centre"):
        self.stride = int(stride)
        self.input_size = checked_input_size(input_size, self.stride)
        self.layout = BottomUpLayout(int(num_keypoints))
        self.sigma_policy = sigma_policy or RadiusSigma()
        self.centre_policy = centre_policy or self.sigma_policy
        self.exact_peak = bool(exact_peak)
        self.max_people = int(max_people)
        self.joint_threshold = float(joint_threshold)
        if person_score not in self.person_scores:
            raise ValueError(f"unknown eval.person_score {person_score!r}; choose one of {self.person_scores}")
        self.person_score = person_score

    @classmethod
    def from_config(cls, config, scheme, output_activation: str) -> "BottomUpCodec":
        target = config.target
        policy, exact_peak = targets_from_config(target, scheme, output_activation)
        centre = RadiusSigma(float(target.min_overlap), str(target.radius_formula)) \
            if isinstance(policy, OKSSigma) else policy
        return cls(tuple(config.data.input_size), scheme.num_keypoints, OUTPUT_STRIDE, policy, centre, exact_peak,
                   config.eval.max_people, config.eval.joint_threshold, config.eval.person_score)

    # -- geometry (heatmap_size, input_to_heatmap, heatmap_to_input: StrideGeometry) --------------
    @property
    def num_outputs(self) -> int:
        return self.layout.num_outputs

    @property
    def heatmap_channels(self) -> tuple:
        return self.layout.heatmap_channels

    # -- encode --------------------------------------------------------------------------------
    def encode(self, keypoints, visible, boxes) -> dict:
        """One image's N people: keypoints (N, K, 2) and visible (N, K) in input pixels, boxes
        (N, 4) as (x, y, w, h) in input pixels. Returns the sample's targets:

        ``heatmaps`` (1 + K, H, W): centre, then joints; ``centre_index`` (N,) flat index of each
        centre's nearest pixel, ``centre_mask`` (N,) 1 where that pixel is on the map; targets read
        there: ``centre_offset`` (N, 2), ``size`` (N, 2), ``joint_offsets`` (N, K, 2) with
        ``joint_offsets_mask`` (N, K) (labelled joints of people whose centre is on the map, also
        joints outside the image); ``joint_index`` (N, K), ``joint_offset`` (N, K, 2) and
        ``joint_mask`` (N, K) for the sub-pixel offset at each on-map labelled joint."""
        keypoints = torch.as_tensor(np.asarray(keypoints, dtype=np.float32))
        num_people, num_keypoints = keypoints.shape[:2]
        if keypoints.dim() != 3 or num_keypoints != self.layout.num_keypoints:
            raise ValueError(f"keypoints must have shape (N, {self.layout.num_keypoints}, 2), "
                             f"got {tuple(keypoints.shape)}")
        visible = torch.as_tensor(np.asarray(visible, dtype=bool)).reshape(num_people, num_keypoints)
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(num_people, 4)
        height, width = self.heatmap_size
        points = self.input_to_heatmap(torch.where(visible[..., None], keypoints, torch.zeros(())))
        centres = self.input_to_heatmap(boxes[:, :2] + boxes[:, 2:] / 2.0)
        sizes = boxes[:, 2:] / self.stride
        people = (sizes > 0).all(dim=1)

        centre_pixel = _nearest_pixel(centres)
        centre_on_map = people & _on_map(centre_pixel, height, width)
        joint_pixel = _nearest_pixel(points)
        joint_on_map = visible & _on_map(joint_pixel, height, width)

        centre_sigma = self.centre_policy(sizes, 1)[:, 0]
        joint_sigma = self.sigma_policy(sizes, num_keypoints)
        labels = torch.arange(num_keypoints).expand(num_people, num_keypoints) + 1
        heatmaps = render_heatmaps(torch.cat([centres, points.reshape(-1, 2)]),
                                   torch.cat([torch.zeros(num_people, dtype=torch.long), labels.reshape(-1)]),
                                   torch.cat([centre_sigma, joint_sigma.reshape(-1)]), 1 + num_keypoints,
                                   (height, width), weights=torch.cat([centre_on_map, joint_on_map.reshape(-1)]).float(),
                                   exact_peak=self.exact_peak)
        centre_pixel = torch.where(centre_on_map[:, None], centre_pixel, torch.zeros(()))
        joint_pixel = torch.where(joint_on_map[..., None], joint_pixel, torch.zeros(()))
        return {
            "heatmaps": heatmaps,
            "centre_index": (centre_pixel[:, 1] * width + centre_pixel[:, 0]).long(),
            "centre_mask": centre_on_map.float(),
            "centre_offset": (centres - centre_pixel) * centre_on_map[:, None],
            "size": sizes * centre_on_map[:, None],
            "joint_offsets": (points - centre_pixel[:, None, :]) * (visible & centre_on_map[:, None])[..., None],
            "joint_offsets_mask": (visible & centre_on_map[:, None]).float(),
            "joint_index": (joint_pixel[..., 1] * width + joint_pixel[..., 0]).long(),
            "joint_offset": (points - joint_pixel) * joint_on_map[..., None],
            "joint_mask": joint_on_map.float(),
        }

    # -- decode --------------------------------------------------------------------------------
    def flip_back(self, maps: torch.Tensor, flip_permutation) -> torch.Tensor:
        """The maps of a mirrored image, mirrored back: columns reversed, left/right joints
        swapped, every x offset negated (pixel j of the mirror is pixel W - 1 - j)."""
        layout, perm = self.layout, torch.as_tensor(np.asarray(flip_permutation), device=maps.device).long()
        maps = maps.flip(dims=[3])
        centre_offset = maps[:, layout.centre_offset] * maps.new_tensor([-1.0, 1.0])[:, None, None]
        joint_offsets = maps[:, layout.joint_offsets].unflatten(1, (layout.num_keypoints, 2))[:, perm]
        joint_offsets = joint_offsets * maps.new_tensor([-1.0, 1.0])[:, None, None]
        joint_offset = maps[:, layout.joint_offset] * maps.new_tensor([-1.0, 1.0])[:, None, None]
        return torch.cat([maps[:, layout.centre], centre_offset, maps[:, layout.size], joint_offsets.flatten(1, 2),
                          maps[:, layout.joints][:, perm], joint_offset], dim=1)

    @torch.no_grad()
    def decode(self, maps: torch.Tensor, max_people: Optional[int] = None) -> People:
        """Activated maps (B, 7 + 3K, H, W) -> ``max_people`` candidates per image, best first.

        Candidates: the centre map's best peaks (:func:`top_peaks`: 3x3 local maxima, equal scores
        by the lower pixel index first); where a map has fewer peaks than candidates asked for, the
        rest score -inf and are read at pixel 0. Each candidate's joint k is the nearest of the
        ``joint_candidates`` best peaks of joint map k (at its pixel plus the joint offset read there)
        that is >= ``joint_threshold``, inside the candidate's box and within ``snap_distance`` x
        the box's longer side of the regressed joint (equal distances: the better peak), scored by
        that peak; else the regressed joint, scored by the joint map at its nearest pixel (0 off
        the map). With ``person_score`` ``centre_x_joints`` the candidates are
        then scored by their centre peak times their mean joint score and sorted again (equal
        scores keep their order)."""
        layout = self.layout
        batch, channels, height, width = maps.shape
        if channels != layout.num_outputs:
            raise ValueError(f"maps have {channels} channels, the layout {layout.num_outputs}")
        maps = maps.float()
        people = min(max_people or self.max_people, height * width)
        scores, centre_index = top_peaks(maps, layout.centre, people)
        decoded = self.people_at(maps, scores[:, 0], centre_index[:, 0].clamp_min(0))  # (B, T)
        if self.person_score == "centre":
            return decoded
        return self.rescored(decoded)

    def rescored(self, decoded: People) -> People:
        """``decoded`` scored by its centre peak times its mean joint score (``centre_x_joints``),
        sorted again (equal scores keep their order)."""
        scores, keypoint_scores = decoded.scores, decoded.keypoint_scores
        rescored = torch.where(torch.isfinite(scores), scores * keypoint_scores.mean(dim=-1), scores)
        order = rescored.sort(dim=1, descending=True, stable=True).indices
        return People(*(field.gather(1, order.view(order.shape + (1,) * (field.dim() - 2)).expand_as(field))
                        for field in decoded._replace(scores=rescored)))

    @torch.no_grad()
    def people_at(self, maps: torch.Tensor, scores: torch.Tensor, centre_index: torch.Tensor,
                  centres: Optional[torch.Tensor] = None, sizes: Optional[torch.Tensor] = None) -> People:
        """The people whose centres lie at the flat pixel indices ``centre_index`` (B, T) of the
        activated ``maps`` (B, 7 + 3K, H, W), scored ``scores`` (B, T), in that order (no
        rescoring): each one's joints regressed from its centre pixel (the joint offsets read
        there) and snapped to the joint peaks as :meth:`decode` says. ``centres`` and ``sizes``
        (B, T, 2, heatmap pixels) replace the centre and box size read from the maps (an oracle's
        ground truth); the joint offsets are read at ``centre_index`` either way."""
        layout = self.layout
        maps = maps.float()
        batch, _, height, width = maps.shape
        people = centre_index.shape[1]
        # the regression rows read at the centres: centre offset, size, joint offsets (channels 1 to 5 + 2K)
        rows = slice(layout.centre_offset.start, layout.joint_offsets.stop)
        at_centre = _gather(maps[:, rows], centre_index)  # (B, T, 4 + 2K)

        def read(part: slice) -> torch.Tensor:
            return at_centre[..., part.start - rows.start:part.stop - rows.start]

        centre_pixel = torch.stack([centre_index % width, centre_index // width], dim=-1).float()
        centres = centre_pixel + read(layout.centre_offset) if centres is None else centres.float()
        sizes = (read(layout.size) if sizes is None else sizes.float()).clamp_min(0)
        regressed = centre_pixel[:, :, None, :] + read(layout.joint_offsets).unflatten(-1, (-1, 2))
        low, high = centres - sizes / 2.0, centres + sizes / 2.0  # (B, T, 2)

        joints = maps[:, layout.joints]  # (B, K, H, W)
        num_keypoints = joints.shape[1]
        # joint candidates per type do not depend on how many people are decoded (the best person's
        # joints must not change when fewer candidates are asked for)
        candidates = min(max(people, self.joint_candidates), height * width)
        peak_scores, peak_index = top_peaks(maps, layout.joints, candidates, self.joint_threshold)  # (B, K, J)
        # only the peaks >= the threshold can be taken, and they come first: the padding is dropped
        found = int((peak_index >= 0).sum(dim=2).max()) if peak_index.numel() else 0
        snapped = torch.zeros(batch, people, num_keypoints, dtype=torch.bool, device=maps.device)
        points, chosen_score = regressed, torch.zeros_like(snapped, dtype=maps.dtype)
        if found:
            points, chosen_score, snapped = self._snap(maps, regressed, low, high, sizes,
                                                       peak_scores[..., :found], peak_index[..., :found])
        pixel = _nearest_pixel(regressed)
        x, y = pixel[..., 0].long(), pixel[..., 1].long()
        on_map = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        channel = torch.arange(num_keypoints, device=maps.device) * (height * width)
        flat = channel + y.clamp(0, height - 1) * width + x.clamp(0, width - 1)  # (B, T, K) into K*H*W
        regressed_score = joints.flatten(1).gather(1, flat.flatten(1)).view_as(flat)
        regressed_score = torch.where(on_map, regressed_score, torch.zeros(()))
        keypoint_scores = torch.where(snapped, chosen_score, regressed_score)
        boxes = torch.cat([self.heatmap_to_input(low), sizes * self.stride], dim=-1)
        return People(scores, self.heatmap_to_input(points), keypoint_scores, snapped, boxes,
                      self.heatmap_to_input(regressed), scores)

    def _snap(self, maps, regressed, low, high, sizes, peak_scores, peak_index):
        """Each regressed joint (B, T, K, 2) snapped to the nearest usable peak of its type, over
        (B, T, K, J) and no wider: peaks (B, K, J) are the ones >= the threshold, then padding
        (index -1); x and y are compared apart, distances squared. Returns points (B, T, K, 2),
        the chosen peaks' scores and whether a peak was taken (B, T, K)."""
        batch, num_keypoints, found = peak_index.shape
        people, width = regressed.shape[1], maps.shape[3]
        flat = peak_index.clamp_min(0)
        offsets = maps[:, self.layout.joint_offset].flatten(2).gather(2, flat.view(batch, 1, -1).expand(-1, 2, -1))
        padding = torch.where(peak_index >= 0, maps.new_zeros(()), maps.new_full((), math.nan))  # fails every test
        peak_x = ((flat % width).float() + offsets[:, 0].view_as(flat) + padding)[:, None]  # (B, 1, K, J)
        peak_y = ((flat // width).float() + offsets[:, 1].view_as(flat) + padding)[:, None]

        def edge(corner, axis):  # (B, T, 1, 1)
            return corner[..., axis, None, None]

        usable = (peak_x >= edge(low, 0)) & (peak_x <= edge(high, 0))
        usable &= (peak_y >= edge(low, 1)) & (peak_y <= edge(high, 1))  # inside the box
        distance = (peak_x - regressed[..., 0, None]).square_()  # (B, T, K, J)
        dy = peak_y - regressed[..., 1, None]
        distance.addcmul_(dy, dy)
        # CenterNet's gate: a peak farther than 0.3 x the box's longer side from the regressed joint
        # is someone else's (a joint outside the image or unlabelled keeps its regressed point)
        limit = self.snap_distance * sizes.amax(dim=-1)
        usable &= distance <= (limit * limit)[:, :, None, None]
        # the nearest usable peak, of equal distances the first (better) one; a usable peak whose
        # squared distance overflows still beats the unusable ones
        distance = torch.where(usable, distance.clamp_max_(_FLOAT32_MAX), math.inf)
        nearest_distance, nearest = distance.min(dim=-1)  # (B, T, K)
        snapped = nearest_distance <= _FLOAT32_MAX
        choice = (torch.arange(num_keypoints, device=maps.device) * found + nearest).view(batch, -1)

        def chosen(values):  # (B, [1,] K, J) -> (B, T, K)
            return values.reshape(batch, -1).gather(1, choice).view(batch, people, num_keypoints)

        points = torch.where(snapped[..., None], torch.stack([chosen(peak_x), chosen(peak_y)], dim=-1), regressed)
        return points, chosen(peak_scores), snapped


def _on_map(pixel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return (pixel[..., 0] >= 0) & (pixel[..., 0] <= width - 1) & (pixel[..., 1] >= 0) & (pixel[..., 1] <= height - 1)


# ----------------------------------------------------------------------------------------------
# the training loss
# ----------------------------------------------------------------------------------------------
def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum |prediction - target| over the labelled rows (``mask`` broadcast over the trailing
    coordinate axis) / max(1, labelled rows): CenterNet's RegL1Loss, without its 1e-4."""
    mask = mask.to(prediction.dtype)
    total = ((prediction - target).abs() * mask[..., None]).sum()
    return total / mask.sum().clamp_min(1.0)


class BottomUpCriterion(nn.Module):
    """The bottom-up training loss on raw outputs (B, 7 + 3K, H, W) and a collated batch:

    ``heatmap_loss(centre) + heatmap_loss(joints)`` (each divided by its own positives for the
    focal loss) ``+ centre_offset * L1 + size * L1 + joint_offsets * L1 + joint_offset * L1``,
    the L1 terms at labelled pixels only, each divided by its number of labelled rows. The
    default weights are CenterNet's multi-pose ones (1, 0.1, 1, 1)."""

    target_keys = ("heatmaps", "centre_index", "centre_mask", "centre_offset", "size", "joint_offsets",
                   "joint_offsets_mask", "joint_index", "joint_offset", "joint_mask")

    def __init__(self, heatmap_loss: nn.Module, layout: BottomUpLayout, centre_offset: float = 1.0,
                 size: float = 0.1, joint_offsets: float = 1.0, joint_offset: float = 1.0):
        super().__init__()
        self.heatmap_loss = heatmap_loss
        self.layout = layout
        self.weights = {"centre_offset": float(centre_offset), "size": float(size),
                        "joint_offsets": float(joint_offsets), "joint_offset": float(joint_offset)}

    def forward(self, output: torch.Tensor, batch: dict) -> torch.Tensor:
        return sum(self.terms(output, batch).values())

    def terms(self, output: torch.Tensor, batch: dict) -> dict:
        """Each weighted term of the loss by name."""
        layout = self.layout
        target = batch["heatmaps"]
        at_centre = _gather(output, batch["centre_index"])  # (B, N, C)
        joint_index = batch["joint_index"].flatten(1)
        at_joints = _gather(output[:, layout.joint_offset], joint_index).unflatten(1, batch["joint_index"].shape[1:])
        regressed = at_centre[..., layout.joint_offsets].unflatten(-1, (-1, 2))
        w = self.weights
        return {
            "centre": self.heatmap_loss(output[:, layout.centre], target[:, :1]),
            "joints": self.heatmap_loss(output[:, layout.joints], target[:, 1:]),
            "centre_offset": w["centre_offset"] * masked_l1(at_centre[..., layout.centre_offset],
                                                            batch["centre_offset"], batch["centre_mask"]),
            "size": w["size"] * masked_l1(at_centre[..., layout.size], batch["size"], batch["centre_mask"]),
            "joint_offsets": w["joint_offsets"] * masked_l1(regressed, batch["joint_offsets"],
                                                            batch["joint_offsets_mask"]),
            "joint_offset": w["joint_offset"] * masked_l1(at_joints, batch["joint_offset"], batch["joint_mask"]),
        }

