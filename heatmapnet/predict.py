"""Checkpoints to keypoints: evaluation of a checkpoint, and a predictor for new images."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .data.build import build_dataset, read_split
from .data.pipelines import load_image
from .data.records import Record
from .data.transforms import box_to_center_size, crop_matrix, letterbox_matrix, to_input_tensor, warp_image
from .distributed import DistInfo
from .engine import build_codec, build_model_from_config, uses_logits
from .evaluation import (PeakPredictions, apply_affine_batch, coco_results, evaluate_predictions,
                         heatmap_probabilities, invert_affine_batch, peak_results, predict_dataset)


def load_checkpoint(path) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def _model_from_state(config: DictConfig, state: dict, scheme, device) -> torch.nn.Module:
    model = build_model_from_config(config.model, scheme.num_keypoints, uses_logits(config.loss))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise ValueError(f"the checkpoint does not fit the config's model ({config.model.backbone}, "
                         f"{config.model.head}, {scheme.num_keypoints} keypoints): {str(error)[:300]}") from None
    return model.to(device).eval()


def evaluate_checkpoint(config: DictConfig, checkpoint, out_dir) -> dict:
    """Evaluate ``checkpoint`` on ``config``'s validation split; writes ``metrics.json`` and
    ``predictions.json`` (COCO keypoint results, original image coordinates) into ``out_dir``."""
    state = load_checkpoint(checkpoint)
    scheme = state["scheme"]
    codec = build_codec(config, scheme)
    records = read_split(config.data.val, config.data.skip_invalid, "data.val")
    dataset = build_dataset(config.data, config.data.val, records, codec, scheme, train=False)
    model = _model_from_state(config, state, scheme, torch.device("cpu"))
    predictions = predict_dataset(model, dataset, codec, uses_logits(config.loss), config.eval, DistInfo(),
                                  scheme.flip_permutation, max_peaks=config.eval.max_instances * scheme.num_keypoints)
    result = evaluate_predictions(records, predictions, scheme, config.eval)
    results = peak_results(records, predictions) if isinstance(predictions, PeakPredictions) \
        else coco_results(records, predictions)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"metrics": result, "checkpoint": str(checkpoint), "step": state["step"]}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "predictions.json").write_text(json.dumps(results), encoding="utf-8")
    return summary


class Predictor:
    """A trained checkpoint as a function: images (with or without boxes) -> keypoints and scores
    in original image pixels.

    Top-down models crop each box (the whole image when none is given) and return one set of K
    keypoints per box; multi-instance models return every peak of every keypoint type.
    """

    def __init__(self, checkpoint, device: Union[str, torch.device] = "cpu", flip_test: Optional[bool] = None):
        state = load_checkpoint(checkpoint)
        self.config = OmegaConf.create(state["config"])
        self.scheme = state["scheme"]
        self.device = torch.device(device)
        self.codec = build_codec(self.config, self.scheme)
        self.model = _model_from_state(self.config, state, self.scheme, self.device)
        self.logits = uses_logits(self.config.loss)
        self.flip_test = self.config.eval.flip_test if flip_test is None else flip_test
        self.multi_instance = self.config.data.mode == "multi"

    @torch.no_grad()
    def __call__(self, image: Union[str, np.ndarray], boxes: Optional[Sequence] = None) -> List[dict]:
        pixels = self._read(image)
        height, width = pixels.shape[:2]
        size = self.codec.input_size
        if self.multi_instance:
            matrices = [letterbox_matrix((width, height), size)]
        else:
            boxes = [[0.0, 0.0, float(width), float(height)]] if boxes is None or len(boxes) == 0 else boxes
            matrices = [crop_matrix(*box_to_center_size(box, size[0] / size[1], self.config.data.padding), size)
                        for box in boxes]
        images = torch.from_numpy(np.stack([to_input_tensor(warp_image(pixels, m, size)) for m in matrices]))
        flip = self.scheme.flip_permutation if self.flip_test else None
        maps = heatmap_probabilities(self.model, images.to(self.device), self.logits, flip)
        back = invert_affine_batch(torch.tensor(np.stack(matrices), dtype=torch.float64, device=self.device))
        names = self.scheme.keypoint_names
        if self.multi_instance:
            peaks = self.codec.decode_instances(maps, k=self.config.eval.max_instances * self.scheme.num_keypoints)
            points = apply_affine_batch(peaks.points.double(), back)[0].cpu().numpy()
            return [{"keypoint_type": int(k), "name": names[int(k)], "x": float(p[0]), "y": float(p[1]),
                     "score": float(s)}
                    for k, p, s in zip(peaks.classes[0].tolist(), points, peaks.scores[0].tolist()) if s > 0.05]
        decoded = self.codec.decode(maps)
        points = apply_affine_batch(decoded.coordinates.double(), back).cpu().numpy()
        scores = decoded.scores.cpu().numpy()
        return [{"bbox": [float(v) for v in box], "keypoints": points[i].tolist(), "scores": scores[i].tolist(),
                 "keypoint_names": list(names)} for i, box in enumerate(boxes)]

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
