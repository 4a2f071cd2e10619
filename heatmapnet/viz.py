"""The ``heatmapnet viz`` command: a config or a checkpoint -> samples -> predictions -> pictures.

Without an image it draws samples of a config's split exactly as the network sees them, with
their ground truth, target heatmaps and (with a checkpoint) the predictions; with an image, that
image through a checkpoint. Everything is built through :mod:`heatmapnet.build`, checkpoints are
read by :mod:`heatmapnet.checkpoint` (via :mod:`heatmapnet.predict`), heatmaps come from the
model (:func:`heatmapnet.evaluation.heatmap_probabilities`) and are decoded by the data mode
(:mod:`heatmapnet.modes`); the pictures are drawn by :mod:`heatmapnet.drawing`.

Bottom-up models (``data.mode=bottomup``, :mod:`heatmapnet.bottomup`) get pictures of people:
each person's skeleton in its own colour (:data:`heatmapnet.drawing.PERSON_PALETTE`, by rank:
annotation order for the ground truth, score order for predictions), joints snapped to a joint
peak filled and joints left where they were regressed hollow; the centre heatmap laid over the
image with an arrow from each predicted person's centre to each of its regressed joints (the
offsets, before snapping); and the joint channels' heatmaps as for the other modes.

:func:`predict_maps` and :func:`decode_for_display` are the public way from a model to points
to draw; the ablation's example image uses them too.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from omegaconf import DictConfig

from .bottomup import BottomUpCodec
from .build import build_codec, build_dataset, build_mode, build_scheme, read_records
from .checkpoint import Checkpoint, load_checkpoint
from .config import ConfigError, add_override_argument, config_from_dict, load_config
from .data.transforms import to_input_tensor, warp_image
from .drawing import (DEFAULT_COLORMAP, MAX_AUTO_PANELS, NEUTRAL_COLOR, PRED_COLOR, SPREAD_PANELS, add_legend,
                      display_factor, draw_arrows, draw_boxes, draw_ground_truth_and_prediction, draw_keypoints,
                      draw_people, heatmap_grid, input_image, magnify_image, magnify_points, overlay_heatmap,
                      peak_rows, person_color, target_vs_prediction, tile, titled, write_png)
from .deploy.results import listed_people
from .evaluation import (PeakPredictions, PeoplePredictions, apply_affine_batch, heatmap_probabilities,
                         invert_affine_batch)
from .imageio import read_image
from .predict import Predictor, model_from_checkpoint

CheckpointLike = Union[str, Path, Checkpoint]


# ----------------------------------------------------------------------------------------------
# model -> points to draw
# ----------------------------------------------------------------------------------------------
class DisplayPoints(NamedTuple):
    """Points to draw: ``points`` (N, K, 2) float64 and their (N, K) mask ``visible``.
    ``instances``: each row is one instance (a skeleton may join it); False: peaks grouped by
    keypoint type (row p = each type's (p+1)-th best peak), which no skeleton joins.

    Bottom-up people (one row per person, best first) also carry ``scores`` (N,) the person
    scores, ``snapped`` (N, K) True where a joint was taken from a joint-heatmap peak (else it is
    where it was regressed), ``centres`` (N, 2) each person's decoded centre and ``regressed``
    (N, K, 2) its joints as regressed from the centre, before snapping; None for other modes."""

    points: np.ndarray
    visible: np.ndarray
    instances: bool
    scores: Optional[np.ndarray] = None
    snapped: Optional[np.ndarray] = None
    centres: Optional[np.ndarray] = None
    regressed: Optional[np.ndarray] = None


def display_points(predictions, num_keypoints: int, peak_threshold: float = 0.3) -> DisplayPoints:
    """A data mode's predictions of one image -> points to draw: top-down predictions, one row
    per instance; peak predictions, those scoring above ``peak_threshold``, grouped by type
    (:func:`heatmapnet.drawing.peak_rows`). (Bottom-up people: :func:`decode_for_display`.)"""
    if isinstance(predictions, PeakPredictions):
        keep = np.asarray(predictions.scores) > peak_threshold
        points, visible = peak_rows(predictions.keypoint_type[keep], predictions.points[keep], num_keypoints)
        return DisplayPoints(points, visible, False)
    points = np.asarray(predictions.keypoints, dtype=np.float64)
    return DisplayPoints(points, np.ones(points.shape[:2], bool), True)


@torch.no_grad()
def predict_maps(model, images: torch.Tensor, flip_permutation=None, codec=None) -> torch.Tensor:
    """A model's maps of input tensors (B, 3, H, W), its output activation applied (and
    flip-tested with ``flip_permutation``, the mirrored maps mirrored back by ``codec.flip_back``
    when a codec is given, as :func:`heatmapnet.evaluation.heatmap_probabilities` does), as
    float32 on the CPU. The images go to the model's device."""
    device = next(model.parameters()).device
    return heatmap_probabilities(model, images.to(device), flip_permutation, codec).float().cpu()


def is_bottomup(codec) -> bool:
    """Whether ``codec`` is the bottom-up one (whose maps are centre, regression and joint channels)."""
    return isinstance(codec, BottomUpCodec)


def _bottomup_channels(codec, maps) -> Optional[str]:
    """``"outputs"`` for a bottom-up model's (..., 7 + 3K, h, w) maps, ``"targets"`` for its
    codec's (..., 1 + K, h, w) target heatmaps (centre first), None for other codecs."""
    if not is_bottomup(codec):
        return None
    channels = maps.shape[-3]
    if channels == codec.layout.num_outputs:
        return "outputs"
    if channels == 1 + codec.layout.num_keypoints:
        return "targets"
    raise ValueError(f"bottom-up maps have {codec.layout.num_outputs} channels (outputs) or "
                     f"{1 + codec.layout.num_keypoints} (target heatmaps), got {channels}")


def joint_heatmaps(codec, maps):
    """The per-keypoint heatmaps of ``maps`` (..., C, h, w): for the bottom-up codec, the joint
    channels (``codec.layout.joints`` of a model's outputs, or the channels after the centre of
    its target heatmaps); for other codecs, ``maps`` as they are."""
    kind = _bottomup_channels(codec, maps)
    if kind is None:
        return maps
    return maps[..., codec.layout.joints, :, :] if kind == "outputs" else maps[..., 1:, :, :]


def centre_heatmap(codec, maps):
    """The bottom-up centre heatmap (..., h, w) of a model's outputs or of target heatmaps."""
    if _bottomup_channels(codec, maps) is None:
        raise ValueError("only bottom-up maps have a centre heatmap")
    return maps[..., codec.layout.centre.start, :, :]


def _num_keypoints(codec, maps) -> int:
    return codec.layout.num_keypoints if is_bottomup(codec) else maps.shape[1]


@torch.no_grad()
def _people_details(codec, maps: torch.Tensor, back: torch.Tensor) -> dict:
    """What a bottom-up codec decodes from (B, 7 + 3K, h, w) maps besides the points, one row per
    candidate (B x T, best first per image), moved through ``back``: ``snapped`` (B T, K),
    ``centres`` (B T, 2) and ``regressed`` (B T, K, 2), the joints before snapping."""
    people = codec.decode(maps)
    regressed = people.regressed
    centres = people.boxes[..., :2] + people.boxes[..., 2:] / 2.0  # the box is centred on its centre
    batch, count = people.scores.shape
    regressed = apply_affine_batch(regressed.double(), back).cpu().numpy().reshape(batch * count, -1, 2)
    centres = apply_affine_batch(centres.double(), back).cpu().numpy().reshape(batch * count, 2)
    return {"snapped": people.snapped.cpu().numpy().reshape(batch * count, -1), "centres": centres,
            "regressed": regressed}


def decode_for_display(mode, codec, maps: torch.Tensor, peak_threshold: float = 0.3, back=None) -> DisplayPoints:
    """The maps of one image, (B, C, h, w) (top-down: one crop per instance; multi-instance and
    bottom-up: B = 1), decoded by the data ``mode`` with ``codec`` -> the points to draw
    (:func:`display_points`; bottom-up: the people the mode lists, those scoring at least its
    ``min_score`` (as ``heatmapnet predict`` does), with which
    joints were snapped, their centres and regressed joints). Points are in input pixels, or with
    ``back``, the (B, 2, 3) input -> image matrices, in the original image's pixels."""
    count = maps.shape[0]
    if back is None:
        back = torch.eye(2, 3, dtype=torch.float64).expand(count, 2, 3)
    back = torch.as_tensor(back, dtype=torch.float64).to(maps.device)
    predictions = mode.decode_batch(codec, maps, back, np.zeros(count, np.int64), np.arange(count))
    if not isinstance(predictions, PeoplePredictions):
        return display_points(predictions, _num_keypoints(codec, maps), peak_threshold)
    keep = listed_people(predictions.person_scores, mode.min_score)  # ``heatmapnet predict``'s rule
    details = _people_details(codec, maps, back)
    if len(details["centres"]) != len(keep):
        raise ValueError(f"the mode decoded {len(keep)} people, the codec {len(details['centres'])}")
    points = np.asarray(predictions.keypoints, dtype=np.float64)[keep]
    return DisplayPoints(points, np.isfinite(points).all(-1), True,
                         scores=np.asarray(predictions.person_scores, dtype=np.float64)[keep],
                         **{name: value[keep] for name, value in details.items()})


# ----------------------------------------------------------------------------------------------
# bottom-up pictures: people in their own colours, the centre heatmap and the offsets
# ----------------------------------------------------------------------------------------------
PEOPLE_LEGEND = [("colour: one person", NEUTRAL_COLOR, "none"), ("snapped to a peak", NEUTRAL_COLOR, "circle"),
                 ("regressed", NEUTRAL_COLOR, "ring")]


def _radius(factor: int) -> float:
    return max(2.0, 0.8 * factor + 0.5)


def people_panel(image, people_points, visible=None, skeleton: Sequence = (), factor: int = 1,
                 hollow=None) -> np.ndarray:
    """``image`` magnified by ``factor`` with each person of ``people_points`` (N, K, 2), in
    ``image``'s pixels, in its own colour by rank (:func:`heatmapnet.drawing.draw_people`):
    joints filled, or hollow where ``hollow`` (N, K) is True."""
    panel = magnify_image(image, factor)
    points = np.asarray(people_points, dtype=np.float64).reshape(-1, *np.shape(people_points)[-2:])
    return draw_people(panel, magnify_points(points, factor), visible, skeleton, radius=_radius(factor),
                       hollow=hollow, thickness=2 if factor >= 3 else 1)


def centre_panel(image, centre_map, codec_or_stride, factor: int = 1, centres=None, regressed=None,
                 alpha: float = 0.8, colormap=DEFAULT_COLORMAP, vmax: Optional[float] = 1.0,
                 vmin: Optional[float] = 0.0, mark_centres: bool = True) -> np.ndarray:
    """``image`` (input pixels) magnified by ``factor`` with the stride-s ``centre_map`` (h, w)
    laid exactly over the pixels it describes (stride s x factor,
    :func:`heatmapnet.drawing.overlay_heatmap`), each person's centre of ``centres`` (N, 2) marked
    with a cross in its colour by rank and, with ``regressed`` (N, K, 2), an arrow from the
    centre to each of its regressed joints (the centre-to-joint offsets); ``mark_centres=False``
    leaves the crosses out (the arrows alone). Points are in ``image``'s pixels."""
    stride = float(getattr(codec_or_stride, "stride", codec_or_stride))
    panel = overlay_heatmap(magnify_image(image, factor), centre_map, stride * factor, alpha, colormap, vmax, vmin)
    if centres is None:
        return panel
    centres = magnify_points(np.asarray(centres, dtype=np.float64).reshape(-1, 2), factor)
    if regressed is not None and len(centres):  # no people: no arrows
        ends = magnify_points(np.asarray(regressed, dtype=np.float64).reshape(len(centres), -1, 2), factor)
        joints = ends.shape[1]
        colors = [person_color(rank) for rank in range(len(centres)) for _ in range(joints)]
        panel = draw_arrows(panel, np.repeat(centres, joints, axis=0), ends.reshape(-1, 2),
                            np.asarray(colors, dtype=np.int64).reshape(-1, 3), thickness=2 if factor >= 3 else 1,
                            tip_size=max(4.0, 1.5 * factor))
    for rank, centre in enumerate(centres if mark_centres else ()):
        panel = draw_keypoints(panel, centre[None], color=person_color(rank), radius=_radius(factor) + 1.0,
                               marker="cross", thickness=2)
    return panel


def bottomup_pictures(image, codec, scheme, target=None, gt=None, gt_visible=None, gt_boxes=None, maps=None,
                      shown: Optional[DisplayPoints] = None, caption: str = "", keypoints=None,
                      panel_size: int = 384) -> dict:
    """The pictures of one bottom-up input ``image`` (H, W, 3, input pixels): ``"keypoints"``,
    ground-truth people (``gt`` (N, K, 2), ``gt_visible``) | predicted people (``shown``, from
    :func:`decode_for_display` in input pixels; joints snapped to a peak filled, regressed ones
    hollow), each person in its own colour; ``"centres"``, the target centre heatmap with the
    ground-truth centres (the ``gt_boxes``' centres) | the predicted centre heatmap with each
    person's centre and arrows to its regressed joints; ``"heatmaps"``, the joint heatmaps
    (target, or target vs prediction with ``maps``). ``target``: the codec's (1 + K, h, w)
    target heatmaps; ``maps``: the model's (7 + 3K, h, w) activated maps. Returns name -> picture."""
    factor = display_factor(image.shape[1], image.shape[0], panel_size)
    names = scheme.keypoint_names
    people, centres = [], []
    if gt is not None:
        gt = np.asarray(gt, dtype=np.float64)
        people.append(titled(people_panel(image, gt, gt_visible, scheme.skeleton, factor),
                             f"ground truth: {len(gt)} people"))
        if target is not None:
            gt_centres = None
            if gt_boxes is not None:
                boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
                gt_centres = boxes[:, :2] + boxes[:, 2:] / 2.0
            centres.append(titled(centre_panel(image, centre_heatmap(codec, target), codec, factor, gt_centres),
                                  "target centre heatmap, ground-truth centres"))
    if shown is not None:
        hollow = None if shown.snapped is None else ~np.asarray(shown.snapped, bool)
        scores = "" if shown.scores is None or not len(shown.scores) else \
            "  scores " + " ".join(f"{v:.2f}" for v in shown.scores[:6]) + (" ..." if len(shown.scores) > 6 else "")
        people.append(titled(people_panel(image, shown.points, shown.visible, scheme.skeleton, factor, hollow),
                             f"predicted: {len(shown.points)} people{scores}"))
    if maps is not None:
        centres.append(titled(centre_panel(image, centre_heatmap(codec, maps), codec, factor,
                                           None if shown is None else shown.centres,
                                           None if shown is None else shown.regressed, vmax=None, vmin=None),
                              f"predicted centre heatmap (max {float(centre_heatmap(codec, maps).max()):.2f}), "
                              "offsets to regressed joints"))
    pictures = {}
    if people:
        legend = PEOPLE_LEGEND if shown is not None else PEOPLE_LEGEND[:1]
        picture = add_legend(tile(people, len(people), gap=4), legend)
        pictures["keypoints"] = titled(picture, caption) if caption else picture
    if centres:
        legend = [("cross: a person's centre", NEUTRAL_COLOR, "cross")]
        if maps is not None:
            legend.append(("arrows: centre -> regressed joints", NEUTRAL_COLOR, "none"))
        picture = add_legend(tile(centres, len(centres), gap=4), legend)
        pictures["centres"] = titled(picture, caption) if caption else picture
    if target is not None and maps is not None:
        pictures["heatmaps"] = target_vs_prediction(
            image, joint_heatmaps(codec, target), joint_heatmaps(codec, maps), names, codec, gt, gt_visible,
            None if shown is None else shown.points, None if shown is None else shown.visible, scheme.skeleton,
            keypoints=keypoints, title=caption, pred_skeleton=True)
    elif target is not None:
        pictures["heatmaps"] = heatmap_grid(image, joint_heatmaps(codec, target), names, codec, keypoints=keypoints,
                                            points=gt, visible=gt_visible,
                                            title=f"{caption}  target joint heatmaps".strip(), show_max=False)
    elif maps is not None:
        pictures["heatmaps"] = heatmap_grid(image, joint_heatmaps(codec, maps), names, codec, keypoints=keypoints,
                                            points=None if shown is None else shown.points,
                                            visible=None if shown is None else shown.visible,
                                            point_color=PRED_COLOR, vmax=None, vmin=None,
                                            title=f"{caption}  predicted joint heatmaps".strip())
    return pictures


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
    (:func:`heatmapnet.drawing.target_vs_prediction`). Bottom-up configs also write
    ``sample_XXX_centres.png`` (:func:`bottomup_pictures`); their keypoints show people in their
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
    names = scheme.keypoint_names
    bottomup = is_bottomup(codec)
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
        if bottomup:
            pictures = bottomup_pictures(image, codec, scheme, sample["heatmaps"].numpy(), gt, gt_visible,
                                         sample["boxes"].numpy(), maps, shown, caption, keypoints)
            for name in ("keypoints", "centres", "heatmaps"):
                written.append(write_png(out / f"sample_{number:03d}_{name}.png", pictures[name]))
            continue
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
    joints (:func:`bottomup_pictures`), and the heatmaps of the joint channels. Returns the
    written paths."""
    predictor = Predictor(checkpoint, device)
    source = checkpoint.path if isinstance(checkpoint, Checkpoint) else checkpoint
    pixels = read_image(image_path, predictor.exif_orientation)  # as the checkpoint's training read images
    height, width = pixels.shape[:2]
    scheme, codec, mode = predictor.scheme, predictor.codec, predictor.mode
    boxes = [list(map(float, b)) for b in boxes] if boxes else None
    size = codec.input_size
    matrices, framed = mode.image_matrices((width, height), boxes, size)
    crops = [warp_image(pixels, matrix, size) for matrix in matrices]
    maps = predictor.heatmaps(torch.from_numpy(np.stack([to_input_tensor(crop) for crop in crops]))).float().cpu()
    back = invert_affine_batch(torch.tensor(np.stack(matrices), dtype=torch.float64))
    shown = decode_for_display(mode, codec, maps, peak_threshold, back)
    first = decode_for_display(mode, codec, maps[:1], peak_threshold)  # in the first crop's pixels

    factor = display_factor(width, height, 480) if max(width, height) < 480 else 1
    stem = Path(image_path).stem
    out = Path(out_dir)
    if is_bottomup(codec):
        picture = people_panel(pixels, shown.points, shown.visible, scheme.skeleton, factor, ~shown.snapped)
        picture = add_legend(picture, PEOPLE_LEGEND)
        title = f"{Path(image_path).name}  {source}  {len(shown.points)} people scoring >= {mode.min_score:g}"
        written = [write_png(out / f"{stem}_keypoints.png", titled(picture, title))]
        pictures = bottomup_pictures(crops[0], codec, scheme, maps=maps[0].numpy(), shown=first,
                                     caption=f"{Path(image_path).name}  network input", keypoints=keypoints)
        written.append(write_png(out / f"{stem}_centres.png", pictures["centres"]))
        written.append(write_png(out / f"{stem}_heatmaps.png", pictures["heatmaps"]))
        return written
    picture = magnify_image(pixels, factor)
    if boxes and framed:  # the boxes the user gave, where the mode crops them
        picture = draw_boxes(picture, framed, factor)
    picture = draw_ground_truth_and_prediction(picture, predicted=magnify_points(shown.points, factor),
                                               pred_visible=shown.visible,
                                               skeleton=scheme.skeleton if shown.instances else (),
                                               pred_skeleton=shown.instances, radius=max(2.0, 0.8 * factor + 0.5))
    written = [write_png(out / f"{stem}_keypoints.png", titled(picture, f"{Path(image_path).name}  {source}"))]

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
