"""Checkpoints to keypoints: evaluation of a checkpoint, a predictor for new images, and the
``predict`` command (images, folders or a video; PyTorch or an ONNX export).

The command's torch-free parts (framing, boxes, sources, json, rendering, the loop over inputs)
live in :mod:`heatmapnet.deploy`, which both backends share; ``--backend onnx`` runs
:class:`heatmapnet.deploy.runtime.OnnxPredictor`, this module's :class:`Predictor` is the
PyTorch backend.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from omegaconf import DictConfig

from .baselines import baseline_for_config, report_lines
from .build import build_codec, build_dataset, build_evaluator, build_mode, build_model, build_scheme
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .confidence import PREFIX, Reliability, plot_reliability
from .preflight import check_split, first_problem_error
from .config import config_from_dict
from .data.records import annotations_of
from .deploy.cli import add_predict_arguments, chosen_backend, predict_with
from .deploy.errors import DeployError
from .deploy.framing import Frame, image_size_of, network_inputs
from .deploy.sources import as_pixels
from .evaluation import heatmap_probabilities, invert_affine_batch


#: The metric holding the reliability bins of top-down keypoint scores.
RELIABILITY_KEY = f"{PREFIX}reliability"
#: The reliability diagram ``heatmapnet eval`` writes beside ``metrics.json`` (top-down runs).
RELIABILITY_PLOT = "reliability.png"


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


def evaluate_checkpoint(config: DictConfig, checkpoint_path, out_dir, baseline: bool = True) -> dict:
    """Evaluate a checkpoint on ``config``'s validation split; writes ``metrics.json`` and
    ``predictions.json`` (the mode's json results, original image coordinates) into ``out_dir``;
    top-down runs also ``reliability.png``, the reliability diagram of their keypoint scores
    (:mod:`heatmapnet.confidence`, whose measures are in the metrics as ``confidence/...``).

    Top-down runs also get ``mean_shape_baseline`` (unless ``baseline`` is False): the training
    set's mean shape placed in each box and scored alike (:mod:`heatmapnet.baselines`), printed
    beside the model's metrics with model / baseline for NME or model - baseline for PCK; where the
    training split has no annotations it holds the reason it was skipped."""
    checkpoint = load_checkpoint(checkpoint_path)
    scheme = build_scheme(config) if config.data.scheme != "coco" or config.data.train.ann_file else checkpoint.scheme
    checkpoint.check_fits(scheme)
    codec = build_codec(config, scheme)
    # every image opened first: a bad one is one line (or, with data.skip_invalid, left out and listed)
    split = check_split(config, "val", scheme)
    if split.problems:
        raise first_problem_error(split.problems, others="`heatmapnet check` lists them all")
    if split.skipped:
        print(f"data.val: {len(split.skipped)} sample(s) skipped: " + "; ".join(split.skipped[:3])
              + (" ..." if len(split.skipped) > 3 else ""))
    records = split.records
    dataset = build_dataset(config, records, codec, scheme, train=False)
    model = model_from_checkpoint(config, checkpoint, torch.device("cpu"))
    evaluator = build_evaluator(config, records, dataset, codec, scheme)
    predictions = evaluator.predict(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"metrics": evaluator.score(predictions), "checkpoint": str(checkpoint_path), "step": checkpoint.step}
    if baseline and evaluator.mode.mean_shape_baseline:
        # what the training set's mean shape placed in each box scores, by the same metric function
        found = baseline_for_config(config, annotations_of(records), scheme, summary["metrics"], evaluator.score)
        summary["mean_shape_baseline"] = found.as_json()
        print("\n".join(report_lines(summary["metrics"], found, config)), flush=True)
    if RELIABILITY_KEY in summary["metrics"]:  # top-down: the keypoint scores' reliability diagram
        shown = {name: "undefined" if summary["metrics"][PREFIX + name] is None else
                 f"{summary['metrics'][PREFIX + name]:.4f}" for name in ("ece", "auroc")}
        plot_reliability(Reliability.from_json(summary["metrics"][RELIABILITY_KEY]), out / RELIABILITY_PLOT,
                         f"{config.loss.name} loss: ECE {shown['ece']}, AUROC {shown['auroc']}")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "predictions.json").write_text(json.dumps(evaluator.mode.results(annotations_of(records), predictions)), encoding="utf-8")
    return summary


def _rows(predictions, keep: np.ndarray):
    """The rows ``keep`` (a mask) of a mode's predictions (a dataclass of per-row arrays)."""
    return type(predictions)(**{field.name: getattr(predictions, field.name)[keep]
                                for field in dataclasses.fields(predictions)})


class Predictor:
    """A trained checkpoint as a function: images (with or without boxes) -> keypoints and scores
    in original image pixels, framed by the checkpoint's data mode (top-down models crop each box,
    the whole image when none is given, and return K keypoints per box; multi-instance models
    return every peak of every keypoint type; bottom-up models return people, no boxes needed).
    Image files are read as the checkpoint's training read them (its ``data.exif_orientation``,
    :mod:`heatmapnet.imageio`)."""

    def __init__(self, checkpoint, device: Union[str, torch.device] = "cpu", flip_test: Optional[bool] = None):
        loaded = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        self.config = config_from_dict(loaded.config, f"{loaded.path}: its config", validate=False)
        self.scheme = loaded.scheme
        self.device = torch.device(device)
        self.codec = build_codec(self.config, self.scheme)
        self.mode = build_mode(self.config, self.scheme)
        self.model = model_from_checkpoint(self.config, loaded, self.device)
        self.flip_test = self.config.eval.flip_test if flip_test is None else flip_test
        #: how image files are read: the checkpoint's data.exif_orientation, as its training read them
        self.exif_orientation = str(self.config.data.exif_orientation)

    @property
    def mode_name(self) -> str:
        return str(self.config.data.mode)

    @torch.no_grad()
    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """Input tensors (B, 3, H, W) -> heatmaps, flip-tested if the predictor is."""
        flip = self.scheme.flip_permutation if self.flip_test else None
        return heatmap_probabilities(self.model, images.to(self.device), flip, self.codec)

    @torch.no_grad()
    def predict_frames(self, frames: Sequence[Frame], batch_size: Optional[int] = None) -> List[List[dict]]:
        """Each frame's json entry; the crops of all frames go through the model together,
        ``batch_size`` at a time (default: all at once)."""
        size = self.codec.input_size
        framed = [self.mode.image_matrices(image_size_of(frame.pixels), frame.boxes, size) for frame in frames]
        counts = [len(matrices) for matrices, _ in framed]
        inputs = torch.from_numpy(np.concatenate([network_inputs(frame.pixels, matrices, size)
                                                  for frame, (matrices, _) in zip(frames, framed)]))
        matrices = np.stack([matrix for own, _ in framed for matrix in own])
        back = invert_affine_batch(torch.tensor(matrices, dtype=torch.float64, device=self.device))
        record_index = np.repeat(np.arange(len(frames)), counts)
        instance_index = np.concatenate([np.arange(count) for count in counts])
        step = batch_size or len(matrices)
        predictions = self.mode.concatenate([
            self.mode.decode_batch(self.codec, self.heatmaps(inputs[start:start + step]), back[start:start + step],
                                   record_index[start:start + step], instance_index[start:start + step])
            for start in range(0, len(matrices), step)])
        return [self.mode.image_results(_rows(predictions, predictions.record_index == index), self.scheme, boxes)
                for index, (_, boxes) in enumerate(framed)]

    def __call__(self, image: Union[str, np.ndarray], boxes: Optional[Sequence] = None) -> List[dict]:
        """One image's json entry (a path or uint8 BGR pixels)."""
        name = "image" if isinstance(image, np.ndarray) else str(image)
        return self.predict_frames([Frame(self._read(image), boxes, name)])[0]

    def _read(self, image) -> np.ndarray:
        return as_pixels(image, self.exif_orientation)


def run_predict(args: argparse.Namespace) -> int:
    """``heatmapnet predict``: a checkpoint through PyTorch or an ONNX export through onnxruntime."""
    if chosen_backend(args) == "onnx":
        from .deploy.runtime import OnnxPredictor

        return predict_with(OnnxPredictor(args.model, args.threads), args)
    if Path(args.checkpoint).suffix.lower() == ".onnx":  # torch.load would call it corrupt
        raise DeployError(f"{args.checkpoint}: an ONNX model, not a PyTorch checkpoint; --checkpoint takes a "
                          f"heatmapnet .pt file, an export runs as --model {args.checkpoint}")
    return predict_with(Predictor(args.checkpoint, args.device), args)


def add_predict_parser(commands) -> argparse.ArgumentParser:
    """Registers ``heatmapnet predict`` on an ``add_subparsers()`` object; returns its parser."""
    predict = commands.add_parser(
        "predict", help="keypoints for images, folders or a video, from a checkpoint or an ONNX export, as json",
        description="Keypoints in original image pixels, one json entry per image (or video frame). Top-down models "
                    "take boxes (--boxes; default: the whole image), whole-image models none. --render draws them.")
    add_predict_arguments(predict)
    predict.add_argument("--checkpoint", help="a heatmapnet checkpoint (--backend torch)")
    predict.add_argument("--device", default="cpu", help="PyTorch device (--backend torch)")
    predict.set_defaults(handler=run_predict)
    return predict
