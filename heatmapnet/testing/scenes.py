"""Random inputs for the tests and ``heatmapnet bench``: keypoints of people boxes
(:func:`crowd_scene`), focal-loss logits and targets (:func:`focal_inputs`), network-like heatmaps
to decode (:func:`decode_inputs`) and the bottom-up maps a trained network might give
(:func:`people_maps`)."""
from __future__ import annotations

import numpy as np
import torch

from ..bottomup import BottomUpCodec
from ..targets import render_heatmaps_batched
from .reference import centernet_keypoint_radius


def crowd_scene(batch: int, people: int, keypoints: int, size: int, seed: int = 0):
    """COCO-like keypoints in heatmap pixels: ``people`` boxes per image of varied size, each with
    ``keypoints`` points inside it. Returns points (B, P, K, 2) float32 and each person's integer
    radius (B, P) as CenterNet's multi-pose sample computes it from the box
    (:func:`heatmapnet.testing.reference.centernet_keypoint_radius`)."""
    rng = np.random.default_rng(seed)
    widths = rng.uniform(size / 20, size / 2.5, (batch, people))
    heights = np.minimum(widths * rng.uniform(1.0, 2.5, (batch, people)), size * 0.9)
    corners = rng.uniform(0, 1, (batch, people, 2)) * (size - np.stack([widths, heights], -1))
    inside = rng.uniform(0, 1, (batch, people, keypoints, 2))
    points = corners[:, :, None, :] + inside * np.stack([widths, heights], -1)[:, :, None, :]
    radii = np.vectorize(centernet_keypoint_radius, otypes=[np.int64])(heights, widths)
    return points.astype(np.float32), radii



def people_maps(batch: int, num_keypoints: int, map_size: int, people=(4, 16), stride: int = 4, seed: int = 0):
    """Activated bottom-up maps (B, 7 + 3K, S, S) of random crowds, as a trained network might
    give them, and the codec that made them (input S x stride square, ``max_people`` 32).

    Per image ``people`` (low, high) persons: boxes from 6% to 45% of the image wide, 1.2 to 2.5
    times as high (at most 95% of it), inside the image; joints uniform in their box, 90%
    labelled. :meth:`BottomUpCodec.encode` gives the heatmaps, drawn at 0.9 plus a background
    of distinct values below 0.04 (so no two background pixels tie), and the regression rows,
    written at their pixels: the centre offset and size as encoded, the joint offsets from the
    centre with N(0, 0.4) px of error (so that snapping has something to correct), the joint
    offset as encoded. Elsewhere the regression channels hold what an untrained pixel might
    predict: offsets N(0, 0.25), sizes U(0, 4), joint offsets N(0, 2) heatmap pixels. The
    background's local maxima are the low-scoring candidates that fill each image's top K."""
    codec = BottomUpCodec((map_size * stride, map_size * stride), num_keypoints, stride, max_people=32)
    layout, size = codec.layout, map_size * stride
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, layout.num_outputs, map_size, map_size)
    maps = torch.empty(shape)
    maps[:, layout.centre_offset] = 0.25 * torch.randn((batch, 2, map_size, map_size), generator=generator)
    maps[:, layout.size] = 4.0 * torch.rand((batch, 2, map_size, map_size), generator=generator)
    maps[:, layout.joint_offsets] = 2.0 * torch.randn((batch, 2 * num_keypoints, map_size, map_size),
                                                      generator=generator)
    maps[:, layout.joint_offset] = 0.25 * torch.randn((batch, 2, map_size, map_size), generator=generator)
    pixels = map_size * map_size
    levels = torch.rand((batch, 1 + num_keypoints, pixels), generator=generator).argsort(dim=-1)
    background = (0.04 * (levels.float() + 0.5) / pixels).view(batch, 1 + num_keypoints, map_size, map_size)
    heatmap_channels = list(layout.heatmap_channels)
    for b in range(batch):
        count = int(rng.integers(people[0], people[1] + 1))
        widths = rng.uniform(0.06, 0.45, count) * size
        heights = np.minimum(widths * rng.uniform(1.2, 2.5, count), 0.95 * size)
        corners = rng.uniform(0, 1, (count, 2)) * (size - np.stack([widths, heights], -1))
        sides = np.stack([widths, heights], -1)
        keypoints = corners[:, None, :] + rng.uniform(0, 1, (count, num_keypoints, 2)) * sides[:, None, :]
        visible = rng.uniform(0, 1, (count, num_keypoints)) < 0.9
        targets = codec.encode(keypoints, visible, np.concatenate([corners, sides], -1))
        maps[b, heatmap_channels] = 0.9 * targets["heatmaps"] + background[b]
        flat = maps[b].view(layout.num_outputs, -1)
        on_map = targets["centre_mask"] > 0
        where = targets["centre_index"][on_map]
        flat[layout.centre_offset, where] = targets["centre_offset"][on_map].T
        flat[layout.size, where] = targets["size"][on_map].T
        person, joint = torch.nonzero(targets["joint_offsets_mask"] > 0, as_tuple=True)
        error = 0.4 * torch.randn((len(person), 2), generator=generator)
        values = targets["joint_offsets"][person, joint] + error
        for axis in (0, 1):
            flat[layout.joint_offsets.start + 2 * joint + axis, targets["centre_index"][person]] = values[:, axis]
        person, joint = torch.nonzero(targets["joint_mask"] > 0, as_tuple=True)
        flat[layout.joint_offset, targets["joint_index"][person, joint]] = targets["joint_offset"][person, joint].T
    return maps, codec


def focal_inputs(shape, device: torch.device, seed: int = 0):
    """Logits of a network early in training (around the prior bias, within +-9) and CenterNet
    targets: a few Gaussians per channel with exact 1.0 peaks."""
    batch, channels, height, width = shape
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=generator) * 2.0 - 2.0).clamp(-9.0, 9.0)
    per_image = 3 * channels
    points = torch.rand(batch, per_image, 2, generator=generator) * torch.tensor([width - 1.0, height - 1.0])
    labels = torch.randint(0, channels, (batch, per_image), generator=generator)
    sigmas = 0.75 + 2.0 * torch.rand(batch, per_image, generator=generator)
    target = render_heatmaps_batched(points, labels, sigmas, channels, (height, width))
    return logits.to(device), target.to(device)


def decode_inputs(shape, seed: int = 0):
    """Network-like heatmaps: one Gaussian (sigma 2) per map at a random sub-pixel point at least
    3 pixels from the border, plus a faint uniform background. Returns maps and the points."""
    batch, keypoints, height, width = shape
    generator = torch.Generator().manual_seed(seed)
    points = 3 + torch.rand(batch, keypoints, 2, generator=generator) * torch.tensor([width - 7.0, height - 7.0])
    labels = torch.arange(keypoints).expand(batch, -1)
    maps = render_heatmaps_batched(points, labels, 2.0, keypoints, (height, width), exact_peak=False)
    maps = maps + 0.01 * torch.rand(shape, generator=generator)
    return maps, points
