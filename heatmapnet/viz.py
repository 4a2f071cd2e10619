"""The ``heatmapnet viz`` command: a config or a checkpoint -> samples -> predictions -> pictures.

Without an image it draws samples of a config's split exactly as the network sees them, with
their ground truth, target heatmaps and (with a checkpoint) the predictions; with an image, that
image through a checkpoint. Everything is built through :mod:`heatmapnet.build`, checkpoints are
read by :mod:`heatmapnet.checkpoint` (via :mod:`heatmapnet.predict`), heatmaps come from the
model (:func:`heatmapnet.evaluation.heatmap_probabilities`) and are decoded once by the data
mode (:meth:`heatmapnet.modes.DataMode.display`), which also picks the pictures
(:meth:`~heatmapnet.modes.DataMode.sample_pictures`, :meth:`~heatmapnet.modes.DataMode.image_pictures`:
:mod:`heatmapnet.pictures`; bottom-up models get pictures of people, their centres and offsets).

:func:`predict_maps` and :func:`decode_for_display` are the public way from a model to points
to draw; the ablation's example image uses them too.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from omegaconf import DictConfig

from .build import build_codec, build_dataset, build_mode, build_scheme, read_records
from .checkpoint import Checkpoint, load_checkpoint
from .config import ConfigError, add_override_argument, config_from_dict, load_config
from .data.transforms import to_input_tensor, warp_image
from .drawing import MAX_AUTO_PANELS, SPREAD_PANELS, input_image, write_png
from .evaluation import heatmap_probabilities, invert_affine_batch
from .imageio import read_image
from .pictures import DisplayPoints
from .predict import Predictor, model_from_checkpoint

CheckpointLike = Union[str, Path, Checkpoint]


@torch.no_grad()
def predict_maps(model, images: torch.Tensor, flip_permutation=None, codec=None) -> torch.Tensor:
    """A model's maps of input tensors (B, 3, H, W), its output activation applied (and
    flip-tested with ``flip_permutation``, the mirrored maps mirrored back by ``codec.flip_back``
    when a codec is given, as :func:`heatmapnet.evaluation.heatmap_probabilities` does), as
    float32 on the CPU. The images go to the model's device."""
    device = next(model.parameters()).device
    return heatmap_probabilities(model, images.to(device), flip_permutation, codec).float().cpu()


def decode_for_display(mode, codec, maps: torch.Tensor, peak_threshold: float = 0.3, back=None) -> DisplayPoints:
    """The maps of one image, (B, C, h, w) (top-down: one crop per instance; multi-instance and
    bottom-up: B = 1), decoded once by the data ``mode`` with ``codec`` -> the points to draw
    (:meth:`heatmapnet.modes.DataMode.display`: instances, peaks above ``peak_threshold``, or
    the people the mode lists with their snapped joints, centres and regressed joints). Points
    are in input pixels, or with ``back``, the (B, 2, 3) input -> image matrices, in the original
    image's pixels."""
    count = maps.shape[0]
    if back is None:
        back = torch.eye(2, 3, dtype=torch.float64).expand(count, 2, 3)
    return mode.display(codec, maps, torch.as_tensor(back, dtype=torch.float64).to(maps.device), peak_threshold)


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
    return config_from_dict(checkpoint.config, f"{checkpoint.path}: its config", overrides, validate=False)


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
    (:func:`heatmapnet.drawing.target_vs_prediction`); the data mode draws them
    (:meth:`heatmapnet.modes.DataMode.sample_pictures`). Bottom-up configs also write
    ``sample_XXX_centres.png`` (:func:`heatmapnet.pictures.bottomup_pictures`); their keypoints show people in their
    own colours and their heatmaps are the joint channels. ``config`` is a loaded config or a
    config name/path; ``checkpoint`` a path or a loaded checkpoint, whose keypoint scheme is
    used. Multi-instance predictions show the peaks above ``peak_threshold``, bottom-up ones the
    people scoring above it. Returns the written paths.
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
            maps = predict_maps(model, sample["image"][None], flip, codec)
            shown = decode_for_display(mode, codec, maps, peak_threshold)
            maps = maps[0].numpy()
        pictures = mode.sample_pictures(image, codec, scheme, sample, gt, gt_visible, maps, shown, caption, keypoints)
        written += [write_png(out / f"sample_{number:03d}_{name}.png", picture) for name, picture in pictures.items()]
    return written


def visualize_image(checkpoint: CheckpointLike, image_path, out_dir, boxes: Optional[Sequence] = None, keypoints=None,
                    device: str = "cpu", peak_threshold: float = 0.3) -> List[str]:
    """One image through a checkpoint (a path or a loaded checkpoint): ``NAME_keypoints.png``,
    the image with the predicted keypoints in original pixels (framed by the checkpoint's data
    mode, as :class:`heatmapnet.predict.Predictor` does: top-down models crop each ``[x, y, w, h]``
    box, or the whole image without boxes) and ``NAME_heatmaps.png``, the predicted heatmaps of
    the first crop with their decoded points. Multi-instance predictions show the peaks above
    ``peak_threshold``; bottom-up ones the people the mode lists, each in its own colour (joints
    snapped to a peak filled, regressed ones hollow), plus ``NAME_centres.png``, the network's
    input with the predicted centre heatmap and the offsets from each centre to its regressed
    joints (:func:`heatmapnet.pictures.bottomup_pictures`), and the heatmaps of the joint
    channels (:meth:`heatmapnet.modes.DataMode.image_pictures`). Returns the written paths."""
    predictor = Predictor(checkpoint, device)
    source = checkpoint.path if isinstance(checkpoint, Checkpoint) else checkpoint
    pixels = read_image(image_path, predictor.exif_orientation)  # as the checkpoint's training read images
    height, width = pixels.shape[:2]
    scheme, codec, mode = predictor.scheme, predictor.codec, predictor.mode
    boxes = [list(map(float, b)) for b in boxes] if boxes else None
    size = codec.input_size
    matrices, framed = mode.image_matrices((width, height), boxes, size, "--box")
    crops = [warp_image(pixels, matrix, size) for matrix in matrices]
    maps = predictor.heatmaps(torch.from_numpy(np.stack([to_input_tensor(crop) for crop in crops]))).float().cpu()
    back = invert_affine_batch(torch.tensor(np.stack(matrices), dtype=torch.float64))
    shown = decode_for_display(mode, codec, maps, peak_threshold, back)  # decoded once, in original pixels
    # the first crop's points in its own pixels: a mode that crops has one row per crop
    first = (shown if len(matrices) == 1 else shown.take(slice(0, 1))).moved(matrices[0])
    pictures = mode.image_pictures(pixels, crops[0], codec, scheme, maps[0].numpy(), shown, first,
                                   framed if boxes else None, Path(image_path).name, str(source), keypoints)
    stem = Path(image_path).stem
    return [write_png(Path(out_dir) / f"{stem}_{kind}.png", picture) for kind, picture in pictures.items()]


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
    add_override_argument(viz, help="dotted overrides, e.g. data.val.subset=0:100")
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
