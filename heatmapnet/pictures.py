"""What viz draws of a data mode's predictions: the points to draw, and the pictures of one
sample or one image, per kind of prediction. numpy and OpenCV only, with the primitives of
:mod:`heatmapnet.drawing`; each data mode (:class:`heatmapnet.modes.DataMode`) picks its pictures
here, and :mod:`heatmapnet.viz` feeds them samples, checkpoints and images.

- instances (top-down crops) and peaks (multi-instance): the input with the ground truth and the
  predictions, and the heatmaps overlaid (target, or target vs prediction);
- bottom-up people: each person's skeleton in its own colour
  (:data:`heatmapnet.drawing.PERSON_PALETTE`, by rank: annotation order for the ground truth,
  score order for predictions), joints snapped to a joint peak filled and joints left where they
  were regressed hollow; the centre heatmap laid over the image with an arrow from each predicted
  person's centre to each of its regressed joints (the offsets, before snapping); and the joint
  channels' heatmaps as for the other modes.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Sequence

import numpy as np

from .drawing import (DEFAULT_COLORMAP, NEUTRAL_COLOR, PRED_COLOR, add_legend, display_factor, draw_arrows,
                      draw_boxes, draw_ground_truth_and_prediction, draw_keypoints, draw_people, heatmap_grid,
                      magnify_image, magnify_points, overlay_heatmap, person_color, target_vs_prediction, tile, titled)


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


    def take(self, rows) -> "DisplayPoints":
        """The rows ``rows`` (an index, slice or mask) of every per-row array."""
        def pick(value):
            return None if value is None else np.asarray(value)[rows]

        return self._replace(points=pick(self.points), visible=pick(self.visible), scores=pick(self.scores),
                             snapped=pick(self.snapped), centres=pick(self.centres), regressed=pick(self.regressed))

    def moved(self, matrix) -> "DisplayPoints":
        """Every point (points, centres, regressed joints) through one (2, 3) affine ``matrix``."""
        matrix = np.asarray(matrix, dtype=np.float64)

        def move(points):
            return None if points is None else np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]

        return self._replace(points=move(self.points), centres=move(self.centres), regressed=move(self.regressed))


# ----------------------------------------------------------------------------------------------
# instances and peaks
# ----------------------------------------------------------------------------------------------
def _marker_radius(factor: int) -> float:
    return max(2.0, 0.8 * factor + 0.5)


def instance_sample_pictures(image, codec, scheme, target, gt, gt_visible, maps=None,
                             shown: Optional[DisplayPoints] = None, caption: str = "", keypoints=None
                             ) -> Dict[str, np.ndarray]:
    """The pictures of one sample as the network sees it (``image`` (H, W, 3), input pixels):
    ``"keypoints"``, the ground truth ``gt`` (N, K, 2) with its skeleton and the predictions
    ``shown`` (with a checkpoint; a skeleton joins instances, not peaks); ``"heatmaps"``, the
    ``target`` heatmaps overlaid (:func:`heatmapnet.drawing.heatmap_grid`), or with the model's
    ``maps``, target vs prediction (:func:`heatmapnet.drawing.target_vs_prediction`)."""
    factor = display_factor(image.shape[1], image.shape[0], 384)
    picture = draw_ground_truth_and_prediction(
        magnify_image(image, factor), magnify_points(gt, factor), gt_visible,
        None if shown is None else magnify_points(shown.points, factor), None if shown is None else shown.visible,
        scheme.skeleton, radius=_marker_radius(factor), pred_skeleton=shown is None or shown.instances)
    names = scheme.keypoint_names
    if shown is None:
        grid = heatmap_grid(image, target, names, codec, keypoints=keypoints, points=gt, visible=gt_visible,
                            title=f"{caption}  target heatmaps", show_max=False)
    else:
        grid = target_vs_prediction(image, target, maps, names, codec, gt, gt_visible, shown.points, shown.visible,
                                    scheme.skeleton, keypoints=keypoints, title=caption, pred_skeleton=shown.instances)
    return {"keypoints": titled(picture, caption), "heatmaps": grid}


def instance_image_pictures(pixels, crop, codec, scheme, maps, shown: DisplayPoints, first: DisplayPoints, boxes,
                            name: str, source: str, keypoints=None) -> Dict[str, np.ndarray]:
    """The pictures of one image (file ``name``) through a checkpoint (``source``):
    ``"keypoints"``, the predictions ``shown`` on the image ``pixels`` (original pixels; the
    ``boxes`` cropped, where given); ``"heatmaps"``, the first crop's predicted ``maps`` (C, h, w)
    with its points ``first`` (``crop``'s pixels)."""
    height, width = pixels.shape[:2]
    factor = display_factor(width, height, 480) if max(width, height) < 480 else 1
    picture = magnify_image(pixels, factor)
    if boxes:
        picture = draw_boxes(picture, boxes, factor)
    picture = draw_ground_truth_and_prediction(picture, predicted=magnify_points(shown.points, factor),
                                               pred_visible=shown.visible,
                                               skeleton=scheme.skeleton if shown.instances else (),
                                               pred_skeleton=shown.instances, radius=_marker_radius(factor))
    grid = heatmap_grid(crop, maps, scheme.keypoint_names, codec, keypoints=keypoints, points=first.points,
                        visible=first.visible, point_color=PRED_COLOR, vmax=None, vmin=None,
                        title=f"{name}  predicted heatmaps (first crop)")
    return {"keypoints": titled(picture, f"{name}  {source}"), "heatmaps": grid}


# ----------------------------------------------------------------------------------------------
# bottom-up people: people in their own colours, the centre heatmap and the offsets
# ----------------------------------------------------------------------------------------------
def joint_heatmaps(codec, maps):
    """The joint heatmaps of bottom-up ``maps`` (..., C, h, w): the joint channels
    (``codec.layout.joints``) of a model's (..., 7 + 3K, h, w) outputs, or the channels after the
    centre of its codec's (..., 1 + K, h, w) target heatmaps."""
    layout = codec.layout
    channels = maps.shape[-3]
    if channels == layout.num_outputs:
        return maps[..., layout.joints, :, :]
    if channels == 1 + layout.num_keypoints:
        return maps[..., 1:, :, :]
    raise ValueError(f"bottom-up maps have {layout.num_outputs} channels (outputs) or "
                     f"{1 + layout.num_keypoints} (target heatmaps), got {channels}")


def centre_heatmap(codec, maps):
    """The centre heatmap (..., h, w) of a bottom-up model's outputs or of its target heatmaps
    (both hold it first)."""
    joint_heatmaps(codec, maps)  # checks the channels
    return maps[..., codec.layout.centre.start, :, :]


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


def people_image_pictures(pixels, crop, codec, scheme, maps, shown: DisplayPoints, first: DisplayPoints,
                          min_score: float, name: str, source: str, keypoints=None) -> Dict[str, np.ndarray]:
    """The pictures of one image (file ``name``) through a bottom-up checkpoint (``source``):
    ``"keypoints"``, the people ``shown`` (those scoring at least ``min_score``) on ``pixels``
    (joints snapped to a peak filled, regressed ones hollow); ``"centres"`` and ``"heatmaps"``,
    the network's input ``crop`` with the predicted centre heatmap and the offsets of the people
    ``first`` (``crop``'s pixels), and the joint heatmaps (:func:`bottomup_pictures`)."""
    height, width = pixels.shape[:2]
    factor = display_factor(width, height, 480) if max(width, height) < 480 else 1
    picture = add_legend(people_panel(pixels, shown.points, shown.visible, scheme.skeleton, factor, ~shown.snapped),
                         PEOPLE_LEGEND)
    pictures = bottomup_pictures(crop, codec, scheme, maps=maps, shown=first, caption=f"{name}  network input",
                                 keypoints=keypoints)
    title = f"{name}  {source}  {len(shown.points)} people scoring >= {min_score:g}"
    return {"keypoints": titled(picture, title), "centres": pictures["centres"], "heatmaps": pictures["heatmaps"]}
