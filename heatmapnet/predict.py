"""Checkpoints to keypoints: evaluation of a checkpoint, and a predictor for new images."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .build import build_codec, build_dataset, build_evaluator, build_mode, build_model, build_scheme, read_records
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .data.pipelines import load_image
from .data.records import Record
from .data.transforms import to_input_tensor, warp_image
from .evaluation import heatmap_probabilities, invert_affine_batch


def model_from_checkpoint(config: DictConfig, checkpoint: Checkpoint, device) -> torch.nn.Module:
    """The config's model with the checkpoint's weights, in eval mode on ``device``."""
    model = build_model(config, checkpoint.scheme)
    try:
        model.load_state_dict(checkpoint.model)
    except RuntimeError as error:
        raise CheckpointError(f"{checkpoint.path}: does not fit the config's model ({config.model.backbone}, "
                              f"{config.model.head}, {checkpoint.num_keypoints} keypoints): "
                              f"{str(error).splitlines()[0][:300]}") from None
    return model.to(device).eval()


def evaluate_checkpoint(config: DictConfig, checkpoint_path, out_dir) -> dict:
    """Evaluate a checkpoint on ``config``'s validation split; writes ``metrics.json`` and
    ``predictions.json`` (the mode's json results, original image coordinates) into ``out_dir``."""
    checkpoint = load_checkpoint(checkpoint_path)
    scheme = build_scheme(config) if config.data.scheme != "coco" or config.data.train.ann_file else checkpoint.scheme
    checkpoint.check_fits(scheme)
    codec = build_codec(config, scheme)
    records = read_records(config, "val")
    dataset = build_dataset(config, records, codec, scheme, train=False)
    model = model_from_checkpoint(config, checkpoint, torch.device("cpu"))
    evaluator = build_evaluator(config, records, dataset, codec, scheme)
    predictions = evaluator.predict(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"metrics": evaluator.score(predictions), "checkpoint": str(checkpoint_path), "step": checkpoint.step}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "predictions.json").write_text(json.dumps(evaluator.mode.results(records, predictions)), encoding="utf-8")
    return summary


class Predictor:
    """A trained checkpoint as a function: images (with or without boxes) -> keypoints and scores
    in original image pixels, framed by the checkpoint's data mode (top-down models crop each box,
    the whole image when none is given, and return K keypoints per box; multi-instance models
    return every peak of every keypoint type; bottom-up models return people, no boxes needed)."""

    def __init__(self, checkpoint, device: Union[str, torch.device] = "cpu", flip_test: Optional[bool] = None):
        loaded = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        self.config = OmegaConf.create(loaded.config)
        self.scheme = loaded.scheme
        self.device = torch.device(device)
        self.codec = build_codec(self.config, self.scheme)
        self.mode = build_mode(self.config, self.scheme)
        self.model = model_from_checkpoint(self.config, loaded, self.device)
        self.flip_test = self.config.eval.flip_test if flip_test is None else flip_test

    @torch.no_grad()
    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """Input tensors (B, 3, H, W) -> heatmaps, flip-tested if the predictor is."""
        flip = self.scheme.flip_permutation if self.flip_test else None
        return heatmap_probabilities(self.model, images.to(self.device), flip, self.codec)

    @torch.no_grad()
    def __call__(self, image: Union[str, np.ndarray], boxes: Optional[Sequence] = None) -> List[dict]:
        pixels = self._read(image)
        height, width = pixels.shape[:2]
        size = self.codec.input_size
        matrices, boxes = self.mode.image_matrices((width, height), boxes, size)
        images = torch.from_numpy(np.stack([to_input_tensor(warp_image(pixels, m, size)) for m in matrices]))
        back = invert_affine_batch(torch.tensor(np.stack(matrices), dtype=torch.float64, device=self.device))
        count = len(matrices)
        predictions = self.mode.decode_batch(self.codec, self.heatmaps(images), back, np.zeros(count, np.int64),
                                             np.arange(count))
        return self.mode.image_results(predictions, self.scheme, boxes)

    @staticmethod
    def _read(image) -> np.ndarray:
        if isinstance(image, np.ndarray):
            return image
        path = str(image)
        probe = cv2.imread(path, cv2.IMREAD_COLOR) if Path(path).is_file() else None
        if probe is None:
            return load_image(Record(path, -1, -1, []))  # raises the missing/corrupt error naming it
        return probe


def predict_images(checkpoint, images: Sequence[str], boxes: Optional[dict] = None, device: str = "cpu") -> list:
    """Images -> a json-ready list, one entry per image, keypoints in original image pixels.
    ``boxes`` maps an image path to its [x, y, w, h] boxes (top-down models)."""
    predictor = Predictor(checkpoint, device)
    boxes = boxes or {}
    return [{"image_path": str(path), "predictions": predictor(str(path), boxes.get(str(path)))} for path in images]
