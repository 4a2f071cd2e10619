"""Records to training batches: top-down crops and multi-instance whole images.

Each sample is a dict of named tensors. Targets are encoded here, in the DataLoader workers, by
the codec; ``collate_samples`` batches samples whose instance counts differ.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..codec import HeatmapCodec
from ..errors import DataError
from ..imageio import read_image
from .records import Instance, Record
from .transforms import (NO_AUGMENTATION, AffineParams, Augmentation, box_to_center_size, crop_matrix,
                         jitter_colour, letterbox_matrix, to_input_tensor, transform_points, warp_image)


def load_image(record: Record) -> np.ndarray:
    """The record's pixels as uint8 BGR, read by :func:`heatmapnet.imageio.read_image` under the
    record's ``exif_orientation`` (``data.exif_orientation``); a missing, unreadable or refused
    file, or one whose size (as that convention shows it) is not the annotated one, is an error
    naming it."""
    if record.image is not None:
        return record.image
    image = read_image(record.image_path, record.exif_orientation)
    height, width = image.shape[:2]
    if (width, height) != (record.width, record.height):
        from ..causes import size_finding  # the pre-flight's line for the same mismatch

        raise DataError(size_finding(record.image_path, (width, height), (record.width, record.height),
                                     exif_orientation=record.exif_orientation).text)
    return image


class _KeypointDataset(Dataset):
    #: training-label noise (:class:`heatmapnet.data.label_noise.LabelNoise`), set by the build
    #: layer on training sets; None: the labels as annotated
    label_noise = None

    def __init__(self, records: Sequence[Record], codec: HeatmapCodec, flip_permutation=None,
                 augmentation: Augmentation = NO_AUGMENTATION, seed: int = 0):
        self.records = records  # any random-access sequence (synthetic sets generate on access)
        self.codec = codec
        self.flip_permutation = None if flip_permutation is None else np.asarray(flip_permutation)
        self.augmentation = augmentation
        self.seed = seed

    def __getitem__(self, key) -> dict:
        """``key`` is an index (augmented as in epoch 0) or an ``(index, epoch)`` pair, as the
        training loop's step sampler yields, so a sample never depends on worker state: the
        augmentation draws depend on (seed, epoch, index), repeatable and new each epoch."""
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        index = int(index)
        return self._make_sample(index, np.random.default_rng([self.seed, int(epoch), index]))

    def _labels(self, instances: Sequence[Instance], index: int) -> Sequence[Instance]:
        """Item ``index``'s instances as annotated, or with :attr:`label_noise` (a function of the
        seed and ``index`` only)."""
        return instances if self.label_noise is None else self.label_noise.apply(instances, index)

    def _sample_params(self, rng: np.random.Generator) -> AffineParams:
        params = AffineParams.sample(rng, self.augmentation)
        if params.flip and self.flip_permutation is None:
            return AffineParams(params.scale, params.rotation, params.shift, False)
        return params

    def _mirror_order(self, keypoints: np.ndarray, visible: np.ndarray, params: AffineParams):
        """After a mirror, the point drawn where 'left' was is the old 'right': swap the pairs."""
        if not params.flip:
            return keypoints, visible
        return keypoints[..., self.flip_permutation, :], visible[..., self.flip_permutation]

    def _heatmap_weights(self, keypoint_weights: torch.Tensor) -> torch.Tensor:
        """(K,) the loss weight of each heatmap channel, from the instances' (N, K) weights."""
        raise NotImplementedError

    def _targets(self, keypoints, visible, boxes) -> dict:
        """The codec's training targets for the sample's instances (input pixels)."""
        encoded = self.codec.encode(keypoints, visible, boxes)
        return {"heatmaps": encoded.heatmaps, "heatmap_weights": self._heatmap_weights(encoded.keypoint_weights),
                "keypoint_weights": encoded.keypoint_weights}

    def _finish(self, image, keypoints, visible, boxes, matrix, rng, index, extra):
        image = jitter_colour(image, rng, self.augmentation)
        sample = {
            "image": torch.from_numpy(to_input_tensor(image)),
            **self._targets(keypoints, visible, boxes),
            "keypoints": torch.from_numpy(keypoints.astype(np.float32)),
            "visible": torch.from_numpy(visible),
            "matrix": torch.from_numpy(matrix.astype(np.float64)),
            "index": torch.tensor(index),
        }
        sample.update(extra)
        return sample


class TopDownDataset(_KeypointDataset):
    """One sample per instance: its box, padded to the input's aspect ratio, cropped by one affine
    matrix (``matrix`` maps original pixels to input pixels; its inverse maps predictions back)."""

    def __init__(self, records: Sequence[Record], codec: HeatmapCodec, flip_permutation=None,
                 augmentation: Augmentation = NO_AUGMENTATION, padding: float = 1.25, seed: int = 0,
                 instance_counts: Optional[np.ndarray] = None):
        super().__init__(records, codec, flip_permutation, augmentation, seed)
        self.padding = padding
        counts = np.asarray(instance_counts if instance_counts is not None
                            else [len(r.instances) for r in self.records], dtype=np.int64)
        self.record_of_item = np.repeat(np.arange(len(self.records)), counts)
        self.instance_of_item = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)

    def __len__(self) -> int:
        return len(self.record_of_item)

    def _heatmap_weights(self, keypoint_weights: torch.Tensor) -> torch.Tensor:
        """A crop's one instance: unlabelled keypoints and those off the crop are left out of the loss."""
        return keypoint_weights[0]

    def _make_sample(self, index: int, rng: np.random.Generator) -> dict:
        record = self.records[self.record_of_item[index]]
        instance: Instance = self._labels([record.instances[self.instance_of_item[index]]], index)[0]
        width, height = self.codec.input_size
        center, size = box_to_center_size(instance.bbox, width / height, self.padding)
        params = self._sample_params(rng)
        matrix = crop_matrix(center, size, (width, height), params)
        image = warp_image(load_image(record), matrix, (width, height))
        keypoints, visible = self._mirror_order(transform_points(instance.keypoints, matrix),
                                                instance.visible.copy(), params)
        zoom = float(np.hypot(*matrix[:, 0]))
        boxes = np.array([[0.0, 0.0, instance.bbox[2] * zoom, instance.bbox[3] * zoom]])
        extra = {"record_index": torch.tensor(int(self.record_of_item[index])),
                 "instance_index": torch.tensor(int(self.instance_of_item[index]))}
        sample = self._finish(image, keypoints[None], visible[None], boxes, matrix, rng, index, extra)
        for key in ("keypoint_weights", "keypoints", "visible"):
            sample[key] = sample[key][0]
        return sample


class MultiInstanceDataset(_KeypointDataset):
    """One sample per image (CenterNet style): the whole image letterboxed to the input size, one
    heatmap channel per keypoint type, each instance's Gaussians sized by its own box."""

    def __init__(self, records: Sequence[Record], codec: HeatmapCodec, num_keypoints: int, flip_permutation=None,
                 augmentation: Augmentation = NO_AUGMENTATION, seed: int = 0):
        super().__init__(records, codec, flip_permutation, augmentation, seed)
        self.num_keypoints = num_keypoints

    def __len__(self) -> int:
        return len(self.records)

    def _instance_boxes(self, record: Record, matrix: np.ndarray) -> np.ndarray:
        """Each instance's box (x, y, w, h) after ``matrix``; only its size is used (it sizes the
        instance's Gaussians), so the box is scaled by the transform's zoom."""
        zoom = float(np.hypot(*matrix[:, 0]))
        return np.array([i.bbox for i in record.instances], dtype=np.float64).reshape(-1, 4) * zoom

    def _heatmap_weights(self, keypoint_weights: torch.Tensor) -> torch.Tensor:
        """A channel mixes every instance's points of one type: all channels count in full."""
        return torch.ones(self.num_keypoints)

    def _make_sample(self, index: int, rng: np.random.Generator) -> dict:
        record = self.records[index]
        width, height = self.codec.input_size
        params = self._sample_params(rng)
        fit = np.vstack([letterbox_matrix((record.width, record.height), (width, height)), [0, 0, 1]])
        centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
        around_centre = crop_matrix(centre, np.array([width, height], dtype=np.float64), (width, height), params)
        matrix = (np.vstack([around_centre, [0, 0, 1]]) @ fit)[:2]
        image = warp_image(load_image(record), matrix, (width, height))
        instances = self._labels(record.instances, index)
        keypoints = np.stack([i.keypoints for i in instances]) if instances \
            else np.zeros((0, self.num_keypoints, 2))
        visible = np.stack([i.visible for i in instances]) if instances \
            else np.zeros((0, self.num_keypoints), bool)
        if keypoints.shape[1] != self.num_keypoints:
            raise ValueError(f"{record.image_path}: instances have {keypoints.shape[1]} keypoints, "
                             f"expected {self.num_keypoints}")
        keypoints, visible = self._mirror_order(transform_points(keypoints, matrix), visible, params)
        boxes = self._instance_boxes(record, matrix)
        extra = {"record_index": torch.tensor(index), "boxes": torch.from_numpy(boxes.astype(np.float32)),
                 "num_instances": torch.tensor(len(record.instances))}
        return self._finish(image, keypoints, visible, boxes, matrix, rng, index, extra)


class BottomUpDataset(MultiInstanceDataset):
    """Whole images as :class:`MultiInstanceDataset` frames them, with the bottom-up codec's
    targets (centre and joint heatmaps, per-person regression rows); boxes follow the image's
    affine transform (the axis-aligned box of the four moved corners)."""

    def _targets(self, keypoints, visible, boxes) -> dict:
        return self.codec.encode(keypoints, visible, boxes)

    def _instance_boxes(self, record: Record, matrix: np.ndarray) -> np.ndarray:
        if not record.instances:
            return np.zeros((0, 4))
        x, y, w, h = np.array([i.bbox for i in record.instances], dtype=np.float64).T
        corners = np.stack([np.stack([x, y], -1), np.stack([x + w, y], -1), np.stack([x, y + h], -1),
                            np.stack([x + w, y + h], -1)], axis=1)  # (N, 4, 2)
        moved = transform_points(corners, matrix)
        low, high = moved.min(axis=1), moved.max(axis=1)
        return np.concatenate([low, high - low], axis=1)


def collate_samples(samples: Sequence[dict]) -> dict:
    """Stack same-shaped fields; pad per-instance fields (keypoints, visible, boxes, ...) along their
    first axis with zeros, so a batch may mix images with different numbers of people (each
    multi-instance sample carries its own ``num_instances``)."""
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) == 1:
            batch[key] = torch.stack(values)
            continue
        longest = max(v.shape[0] for v in values)
        padded = values[0].new_zeros((len(values), longest) + tuple(values[0].shape[1:]))
        for row, value in enumerate(values):
            padded[row, :value.shape[0]] = value
        batch[key] = padded
    return batch
