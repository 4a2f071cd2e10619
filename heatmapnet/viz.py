"""The ``heatmapnet viz`` command: a config or a checkpoint -> samples -> predictions -> pictures.

Without an image it draws samples of a config's split exactly as the network sees them, with
their ground truth, target heatmaps and (with a checkpoint) the predictions; with an image, that
image through a checkpoint. Everything is built through :mod:`heatmapnet.build`, checkpoints are
read by :mod:`heatmapnet.checkpoint` (via :mod:`heatmapnet.predict`), heatmaps come from the
model (:func:`heatmapnet.evaluation.heatmap_probabilities`) and are decoded by the data mode
(:mod:`heatmapnet.modes`); the pictures are drawn by :mod:`heatmapnet.drawing`.

:func:`predict_maps` and :func:`decode_for_display` are the public way from a model to points
to draw; the ablation's example image uses them too.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .build import build_codec, build_dataset, build_mode, build_scheme, read_records
from .checkpoint import Checkpoint, load_checkpoint
from .config import ConfigError, RunConfig, load_config, merge_config
from .data.transforms import to_input_tensor, warp_image
from .drawing import (MAX_AUTO_PANELS, PRED_COLOR, SPREAD_PANELS, display_factor, draw_boxes,
                      draw_ground_truth_and_prediction, heatmap_grid, input_image, magnify_image, magnify_points,
                      peak_rows, target_vs_prediction, titled, write_png)
from .evaluation import PeakPredictions, heatmap_probabilities, invert_affine_batch
from .predict import Predictor, model_from_checkpoint

CheckpointLike = Union[str, Path, Checkpoint]


# ----------------------------------------------------------------------------------------------
# model -> points to draw
# ----------------------------------------------------------------------------------------------
class DisplayPoints(NamedTuple):
    """Points to draw: ``points`` (N, K, 2) float64 and their (N, K) mask ``visible``.
    ``instances``: each row is one instance (a skeleton may join it); False: peaks grouped by
    keypoint type (row p = each type's (p+1)-th best peak), which no skeleton joins."""

    points: np.ndarray
    visible: np.ndarray
    instances: bool


def display_points(predictions, num_keypoints: int, peak_threshold: float = 0.3) -> DisplayPoints:
    """A data mode's predictions of one image -> points to draw: top-down predictions, one row
    per instance; peak predictions, those scoring above ``peak_threshold``, grouped by type
    (:func:`heatmapnet.drawing.peak_rows`)."""
    if isinstance(predictions, PeakPredictions):
        keep = np.asarray(predictions.scores) > peak_threshold
        points, visible = peak_rows(predictions.keypoint_type[keep], predictions.points[keep], num_keypoints)
        return DisplayPoints(points, visible, False)
    points = np.asarray(predictions.keypoints, dtype=np.float64)
    return DisplayPoints(points, np.ones(points.shape[:2], bool), True)


@torch.no_grad()
def predict_maps(model, images: torch.Tensor, flip_permutation=None) -> torch.Tensor:
    """A model's heatmaps of input tensors (B, 3, H, W), its output activation applied (and
    flip-tested with ``flip_permutation``), as float32 on the CPU. The images go to the model's
    device."""
    device = next(model.parameters()).device
    return heatmap_probabilities(model, images.to(device), flip_permutation).float().cpu()


def decode_for_display(mode, codec, maps: torch.Tensor, peak_threshold: float = 0.3, back=None) -> DisplayPoints:
    """The heatmaps of one image, (B, K, h, w) (top-down: one crop per instance; multi-instance:
    B = 1), decoded by the data ``mode`` with ``codec`` -> the points to draw
    (:func:`display_points`). Points are in input pixels, or with ``back``, the (B, 2, 3)
    input -> image matrices, in the original image's pixels."""
    count = maps.shape[0]
    if back is None:
        back = torch.eye(2, 3, dtype=torch.float64).expand(count, 2, 3)
    back = torch.as_tensor(back, dtype=torch.float64).to(maps.device)
    predictions = mode.decode_batch(codec, maps, back, np.zeros(count, np.int64), np.arange(count))
    return display_points(predictions, maps.shape[1], peak_threshold)


# ----------------------------------------------------------------------------------------------
# configs and checkpoints
# ----------------------------------------------------------------------------------------------
def _as_config(config, overrides: Sequence[str] = ()) -> DictConfig:
    if isinstance(config, DictConfig):
        return config
    return load_config(None if config is None else str(config), overrides)


def _as_checkpoint(checkpoint: Optional[CheckpointLike]) -> Optional[Checkpoint]:
    if checkpoint is None or isinstance(checkpoint, Checkpoint):
        return checkpoint
    return load_checkpoint(checkpoint)


def config_from_checkpoint(checkpoint: CheckpointLike, overrides: Sequence[str] = ()) -> DictConfig:
    """The run config stored in a checkpoint (a path or a loaded :class:`Checkpoint`), validated
    against the schema, with ``overrides``."""
    checkpoint = _as_checkpoint(checkpoint)
    config = OmegaConf.structured(RunConfig)
    OmegaConf.set_struct(config, True)
    config = merge_config(config, OmegaConf.create(checkpoint.config), "checkpoint config")
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override {override!r} must look like key.sub=value")
        config = merge_config(config, OmegaConf.from_dotlist([override]), f"override {override!r}")
    OmegaConf.resolve(config)
    return config


# ----------------------------------------------------------------------------------------------
# datasets and images
# ----------------------------------------------------------------------------------------------
def _spread_indices(total: int, count: int) -> List[int]:
    """``count`` indices spread evenly over ``range(total)`` (first and last included)."""
    if total <= 0:
        raise ValueError("the dataset is empty")
    count = max(1, min(int(count), total))
    return sorted({int(round(v)) for v in np.linspace(0, total - 1, count)})


def visualize_dataset(config, out_dir, num_samples: int = 8, checkpoint: Optional[CheckpointLike] = None,
                      split: str = "val", keypoints=None, device: str = "cpu",
                      peak_threshold: float = 0.3) -> List[str]:
    """Pictures of ``num_samples`` samples (spread evenly) of a config's ``split``, exactly as
    the network sees them (no augmentation). Per sample ``sample_XXX_keypoints.png``: the input
    with the ground truth and skeleton, plus the checkpoint's predictions when one is given;
    ``sample_XXX_heatmaps.png``: the target heatmaps overlaid
    (:func:`heatmapnet.drawing.heatmap_grid`), or with a checkpoint, target vs prediction
    (:func:`heatmapnet.drawing.target_vs_prediction`). ``config`` is a loaded
    config or a config name/path; ``checkpoint`` a path or a loaded checkpoint, whose keypoint
    scheme is used. Multi-instance predictions show the peaks above ``peak_threshold``. Returns
    the written paths.
    """
    config = _as_config(config)
    if split not in ("train", "val"):
        raise ValueError(f"split must be train or val, not {split!r}")
    checkpoint = _as_checkpoint(checkpoint)
    scheme = checkpoint.scheme if checkpoint is not None else build_scheme(config)
    codec = build_codec(config, scheme)
    mode = build_mode(config, scheme)
    records = read_records(config, split)
    dataset = build_dataset(config, records, codec, scheme, train=False)
    indices = _spread_indices(len(dataset), num_samples)
    model = flip = None
    if checkpoint is not None:
        model = model_from_checkpoint(config, checkpoint, torch.device(device))
        flip = scheme.flip_permutation if config.eval.flip_test else None
    names = scheme.keypoint_names
    out = Path(out_dir)
    written = []
    for number, index in enumerate(indices):
        sample = dataset[index]
        image = input_image(sample["image"])
        gt = sample["keypoints"].numpy().astype(np.float64)
        gt_visible = sample["visible"].numpy().astype(bool)
        record = records[int(sample["record_index"])]
        caption = f"{split} #{index}  {Path(record.image_path).name}" if record.image_path else f"{split} #{index}"
        shown = maps = None
        if model is not None:
            maps = predict_maps(model, sample["image"][None], flip)
            shown = decode_for_display(mode, codec, maps, peak_threshold)
            maps = maps[0].numpy()
        factor = display_factor(image.shape[1], image.shape[0], 384)
        picture = draw_ground_truth_and_prediction(
            magnify_image(image, factor), magnify_points(gt, factor), gt_visible,
            None if shown is None else magnify_points(shown.points, factor), None if shown is None else shown.visible,
            scheme.skeleton, radius=max(2.0, 0.8 * factor + 0.5), pred_skeleton=shown is None or shown.instances)
        written.append(write_png(out / f"sample_{number:03d}_keypoints.png", titled(picture, caption)))
        if shown is None:
            grid = heatmap_grid(image, sample["heatmaps"], names, codec, keypoints=keypoints, points=gt,
                                visible=gt_visible, title=f"{caption}  target heatmaps", show_max=False)
        else:
            grid = target_vs_prediction(image, sample["heatmaps"], maps, names, codec, gt, gt_visible, shown.points,
                                        shown.visible, scheme.skeleton, keypoints=keypoints, title=caption,
                                        pred_skeleton=shown.instances)
        written.append(write_png(out / f"sample_{number:03d}_heatmaps.png", grid))
    return written


def _read_image(path) -> np.ndarray:
    if not Path(path).is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"image file is corrupt or not an image: {path}")
    return image


def visualize_image(checkpoint: CheckpointLike, image_path, out_dir, boxes: Optional[Sequence] = None, keypoints=None,
                    device: str = "cpu", peak_threshold: float = 0.3) -> List[str]:
    """One image through a checkpoint (a path or a loaded checkpoint): ``NAME_keypoints.png``,
    the image with the predicted keypoints in original pixels (framed by the checkpoint's data
    mode, as :class:`heatmapnet.predict.Predictor` does: top-down models crop each ``[x, y, w, h]``
    box, or the whole image without boxes) and ``NAME_heatmaps.png``, the predicted heatmaps of
    the first crop with their decoded points. Multi-instance predictions show the peaks above
    ``peak_threshold``. Returns the written paths."""
    predictor = Predictor(checkpoint, device)
    source = checkpoint.path if isinstance(checkpoint, Checkpoint) else checkpoint
    pixels = _read_image(image_path)
    height, width = pixels.shape[:2]
    scheme, codec, mode = predictor.scheme, predictor.codec, predictor.mode
    boxes = [list(map(float, b)) for b in boxes] if boxes else None
    size = codec.input_size
    matrices, framed = mode.image_matrices((width, height), boxes, size)
    crops = [warp_image(pixels, matrix, size) for matrix in matrices]
    maps = predictor.heatmaps(torch.from_numpy(np.stack([to_input_tensor(crop) for crop in crops]))).float().cpu()
    back = invert_affine_batch(torch.tensor(np.stack(matrices), dtype=torch.float64))
    shown = decode_for_display(mode, codec, maps, peak_threshold, back)

    factor = display_factor(width, height, 480) if max(width, height) < 480 else 1
    picture = magnify_image(pixels, factor)
    if boxes and framed:  # the boxes the user gave, where the mode crops them
        picture = draw_boxes(picture, framed, factor)
    picture = draw_ground_truth_and_prediction(picture, predicted=magnify_points(shown.points, factor),
                                               pred_visible=shown.visible,
                                               skeleton=scheme.skeleton if shown.instances else (),
                                               pred_skeleton=shown.instances, radius=max(2.0, 0.8 * factor + 0.5))
    stem = Path(image_path).stem
    out = Path(out_dir)
    written = [write_png(out / f"{stem}_keypoints.png", titled(picture, f"{Path(image_path).name}  {source}"))]

    first = decode_for_display(mode, codec, maps[:1], peak_threshold)  # in the first crop's pixels
    grid = heatmap_grid(crops[0], maps[0], scheme.keypoint_names, codec, keypoints=keypoints, points=first.points,
                        visible=first.visible, point_color=PRED_COLOR, vmax=None, vmin=None,
                        title=f"{Path(image_path).name}  predicted heatmaps (first crop)")
    written.append(write_png(out / f"{stem}_heatmaps.png", grid))
    return written


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def _parse_box(text: str) -> List[float]:
    parts = [p for p in text.replace(",", " ").split() if p]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"a box is X,Y,W,H, got {text!r}")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a box is four numbers X,Y,W,H, got {text!r}") from None


def run_viz(args: argparse.Namespace) -> int:
    if args.image:
        if not args.checkpoint:
            raise ConfigError("viz --image needs --checkpoint (the image has no ground truth to show)")
        paths = visualize_image(args.checkpoint, args.image, args.out, args.box, args.keypoints, args.device)
    else:
        checkpoint = load_checkpoint(args.checkpoint) if args.checkpoint else None
        if args.config is None and checkpoint is not None:
            config = config_from_checkpoint(checkpoint, args.set)
        else:
            config = _as_config(args.config, args.set)
        paths = visualize_dataset(config, args.out, args.num_samples, checkpoint, args.split, args.keypoints,
                                  args.device)
    for path in paths:
        print(path)
    return 0


def add_viz_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``heatmapnet viz`` on an ``add_subparsers()`` object; returns its parser."""
    viz = subparsers.add_parser(
        "viz", help="draw samples, targets and predictions as PNGs",
        description="Without --image: N samples of a config's split as the network sees them, with their "
                    "ground truth, target heatmaps and (with --checkpoint) predictions. With --image: one "
                    "image's predicted keypoints and heatmaps from --checkpoint.")
    viz.add_argument("config", nargs="?", help="a YAML file or a name in configs/ (default: the checkpoint's "
                                               "config if --checkpoint is given, else the default config)")
    viz.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                     help="dotted overrides, e.g. data.val.subset=0:100")
    viz.add_argument("--checkpoint", help="a checkpoint (.pt) whose predictions to show")
    viz.add_argument("--image", help="one image to run --checkpoint on, instead of the dataset")
    viz.add_argument("--box", action="append", type=_parse_box, metavar="X,Y,W,H",
                     help="with --image, a top-down box to crop (repeatable; default: the whole image)")
    viz.add_argument("--num-samples", type=int, default=8, help="samples to draw, spread over the split")
    viz.add_argument("--split", choices=("val", "train"), default="val")
    viz.add_argument("--keypoints", metavar="NAMES",
                     help="heatmap panels to show: comma-separated names or indices, or 'all' (default: every "
                          f"keypoint up to {MAX_AUTO_PANELS}, else {SPREAD_PANELS} spread over the scheme; "
                          "a first panel always shows the max over all channels)")
    viz.add_argument("--device", default="cpu")
    viz.add_argument("--out", required=True, help="output folder for the PNGs")
    viz.set_defaults(handler=run_viz)
    return viz
