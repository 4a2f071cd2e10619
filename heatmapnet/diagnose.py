"""``heatmapnet diagnose``: where a bottom-up model loses its OKS AP, told apart by oracles.

Every row is scored by the evaluator the trainer uses (:func:`heatmapnet.scoring.people_metrics`,
OKS AP through pycocotools) on the same validation images, so the rows differ only in what part of
the prediction comes from the model and what part from the ground truth:

==========================  ===================================================================
row                         people submitted
==========================  ===================================================================
model                       the model's maps decoded as the evaluator decodes them
gt_centres+pred_joints      one per annotated person whose centre is on the map: the model's
                            joint offsets read at the GT centre pixel, snapped to the joint peaks
                            inside the GT box as the decoder snaps (:meth:`BottomUpCodec.people_at`);
                            scored as the decoder scores with a centre peak of 1
gt_centres+regressed        the same people before snapping (the joint offsets alone)
pred_centres+gt_joints      one per decoded centre candidate (a positive, finite centre score):
                            the GT joints of the annotated person whose box centre is nearest,
                            scored by the centre peak (duplicates are false positives)
gt_boxes+mean_pose          every annotated box holding the mean pose of the evaluated people
                            (relative to the box centre, in box widths and heights): the AP of
                            knowing the boxes and nothing of the poses, a floor for the rows above
gt_maps                     the training targets drawn as a perfect network's maps, decoded: what
                            the representation and the decoder can reach at all
gt_self                     the annotations themselves (must be 1.0: else the evaluation is wrong)
==========================  ===================================================================

Besides OKS: ``centre AP``, the centre heatmap as a detector (the decoded centre candidates, by
score, each a hit when within ``centre_distance * sqrt(w * h)`` of the box centre of a not yet
matched annotated person of its image, nearest first in those units; VOC area under the curve),
and the joint heatmaps' per-type keypoint AP (each type's ``eval.max_people`` best peaks, at the
pixel plus the joint offset read there, through
:func:`heatmapnet.scoring.keypoint_detection_ap` with ``eval.detection_distance``). All points
are compared in the original image's pixels. Nothing loops over people: per batch the oracles are
tensor operations; only the ground truth is gathered per image.

:func:`target_pictures` draws the targets of a few validation samples (people and boxes | centre
heatmap | the joint heatmaps' maximum) so that a wrong target shows before any training.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from .bottomup import BottomUpCodec, BottomUpLayout, People, top_peaks
from .data.pipelines import collate_samples
from .data.records import annotations_of
from .errors import ConfigError
from .evaluation import PeakPredictions, PeoplePredictions, apply_affine_batch, heatmap_probabilities, invert_affine_batch
from .metrics import detection_average_precision
from .scoring import keypoint_detection_ap, people_metrics

#: default hit distance of a predicted centre, a fraction of sqrt(w * h) of the person's box
CENTRE_DISTANCE = 0.2

ROW_MEANINGS = {
    "model": "the model's maps, decoded as the evaluator decodes them",
    "gt_centres+pred_joints": "GT centres and boxes, the model's joints read there and snapped",
    "gt_centres+regressed": "GT centres, the model's joint offsets read there, not snapped",
    "pred_centres+gt_joints": "the model's centres, each the GT joints of the nearest person",
    "gt_boxes+mean_pose": "the val set's mean pose placed in each GT box (knows boxes, no pose)",
    "gt_maps": "the training targets as a perfect network's maps, decoded",
    "gt_self": "the annotations scored against themselves (must be 1)",
}


class DiagnoseError(ConfigError):
    """A config or checkpoint that ``heatmapnet diagnose`` cannot diagnose."""


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OracleRow:
    """One row of the table: OKS AP of one way of making people, by the trainer's evaluator."""

    name: str
    oks_ap: float
    oks_ap50: float
    oks_ar: float
    people_submitted: int
    meaning: str

    @classmethod
    def scored(cls, name: str, records, predictions: PeoplePredictions, record_indices, scheme) -> "OracleRow":
        found = people_metrics(records, predictions, record_indices, scheme)
        return cls(name, found.get("oks_ap", math.nan), found.get("oks_ap50", math.nan),
                   found.get("oks_ar", math.nan), int(len(predictions.record_index)), ROW_MEANINGS[name])


@dataclass
class Diagnosis:
    """The oracle rows, the centre heatmap's detection AP and the joint heatmaps' keypoint AP."""

    rows: List[OracleRow]
    centre_ap: Optional[float]
    centre_distance: float
    keypoint_ap: Optional[float]
    keypoint_ap_per_type: Dict[str, float]
    num_images: int
    num_people: int
    centres_off_map: int  # annotated people whose centre's nearest pixel is off the map (undetectable)
    info: Dict[str, object] = field(default_factory=dict)

    def row(self, name: str) -> OracleRow:
        return next(r for r in self.rows if r.name == name)

    def as_json(self) -> dict:
        return {**dataclasses.asdict(self), "rows": [dataclasses.asdict(r) for r in self.rows]}

    def table(self) -> str:
        lines = [f"{self.num_images} val images, {self.num_people} people "
                 f"({self.centres_off_map} with their centre off the map)",
                 f"{'row':<24}{'oks_ap':>8}{'ap50':>8}{'oks_ar':>8}{'people':>8}  what"]
        for r in self.rows:
            lines.append(f"{r.name:<24}{r.oks_ap:>8.4f}{r.oks_ap50:>8.4f}{r.oks_ar:>8.4f}{r.people_submitted:>8d}"
                         f"  {r.meaning}")
        if self.centre_ap is not None:
            lines.append(f"{'centre AP':<24}{self.centre_ap:>8.4f}  centre peaks, a hit within "
                         f"{self.centre_distance:g} x sqrt(w h) of an unmatched GT box centre")
        if self.keypoint_ap is not None:
            lines.append(f"{'keypoint AP (mean)':<24}{self.keypoint_ap:>8.4f}  joint heatmap peaks per type")
            lines.extend(f"  {name:<22}{value:>8.4f}" for name, value in self.keypoint_ap_per_type.items())
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# ground truth, in original image pixels
# ----------------------------------------------------------------------------------------------
@dataclass
class Truth:
    """The annotated people of a batch's images, padded to N per image (``present`` marks real ones)."""

    keypoints: np.ndarray  # (B, N, K, 2)
    visible: np.ndarray  # (B, N, K) bool
    boxes: np.ndarray  # (B, N, 4) x, y, w, h
    present: np.ndarray  # (B, N) bool

    @classmethod
    def of(cls, records, record_index: Sequence[int], num_keypoints: int) -> "Truth":
        people = [records[int(r)].instances for r in record_index]
        count = max([len(p) for p in people] + [1])
        batch = len(people)
        truth = cls(np.zeros((batch, count, num_keypoints, 2)), np.zeros((batch, count, num_keypoints), bool),
                    np.zeros((batch, count, 4)), np.zeros((batch, count), bool))
        for row, instances in enumerate(people):  # per image: the ground truth is a list per record
            if instances:
                truth.keypoints[row, :len(instances)] = np.stack([i.keypoints for i in instances])
                truth.visible[row, :len(instances)] = np.stack([i.visible for i in instances])
                truth.boxes[row, :len(instances)] = np.stack([i.bbox for i in instances])
                truth.present[row, :len(instances)] = True
        return truth

    @property
    def centres(self) -> np.ndarray:
        return self.boxes[..., :2] + self.boxes[..., 2:] / 2.0


def plain_records(records, limit: Optional[int] = None) -> list:
    """The records (the first ``limit``) without their in-memory pixels, held in a list: a generated
    set's (mosaics) from its ``annotations``, no image drawn."""
    count = len(records) if limit is None else min(int(limit), len(records))
    annotated = annotations_of(records)
    return [dataclasses.replace(annotated[i], image=None) for i in range(count)]


def self_predictions(records) -> PeoplePredictions:
    """Every annotated person as a prediction scoring 1 (joint scores: its visibility)."""
    rows = [(index, instance) for index, record in enumerate(records) for instance in record.instances]
    num_keypoints = rows[0][1].keypoints.shape[0] if rows else 0
    return PeoplePredictions(np.array([r for r, _ in rows], np.int64),
                             np.array([i.keypoints for _, i in rows]).reshape(len(rows), num_keypoints, 2),
                             np.array([i.visible for _, i in rows], np.float64).reshape(len(rows), num_keypoints),
                             np.ones(len(rows)))


def mean_pose_predictions(records) -> PeoplePredictions:
    """Every annotated person's box holding the mean pose of all of them (each joint type's mean
    visible position relative to the box centre, in units of the box's width and height), scoring
    1: what OKS AP knowing the people's boxes and nothing of their poses gets."""
    truth = self_predictions(records)
    boxes = np.array([i.bbox for record in records for i in record.instances]).reshape(-1, 4)
    centres, sizes = boxes[:, None, :2] + boxes[:, None, 2:] / 2.0, np.maximum(boxes[:, None, 2:], 1e-12)
    visible = truth.scores > 0  # (N, K)
    relative = np.where(visible[..., None], (truth.keypoints - centres) / sizes, 0.0)
    mean = relative.sum(axis=0) / np.maximum(visible.sum(axis=0), 1)[:, None]  # (K, 2)
    return dataclasses.replace(truth, keypoints=centres + mean[None] * sizes, scores=np.ones_like(truth.scores))


# ----------------------------------------------------------------------------------------------
# maps
# ----------------------------------------------------------------------------------------------
def target_maps(batch: dict, layout: BottomUpLayout) -> torch.Tensor:
    """The (B, 7 + 3K, H, W) maps a perfect network gives for a collated bottom-up batch: the
    target heatmaps, each labelled person's regression row at its centre pixel, each labelled
    joint's sub-pixel offset at its pixel, 0 elsewhere."""
    heatmaps = batch["heatmaps"].float()
    size, (height, width) = heatmaps.shape[0], heatmaps.shape[-2:]
    maps = heatmaps.new_zeros(size, layout.num_outputs, height * width)
    maps[:, layout.centre] = heatmaps[:, :1].flatten(2)
    maps[:, layout.joints] = heatmaps[:, 1:].flatten(2)
    rows = torch.cat([batch["centre_offset"], batch["size"], batch["joint_offsets"].flatten(2)], dim=-1).float()
    image, person = torch.nonzero(batch["centre_mask"] > 0, as_tuple=True)
    channels = torch.arange(layout.centre_offset.start, layout.joint_offsets.stop)
    maps[image[:, None], channels[None, :], batch["centre_index"][image, person][:, None]] = rows[image, person]
    image, person, joint = torch.nonzero(batch["joint_mask"] > 0, as_tuple=True)
    channels = torch.arange(layout.joint_offset.start, layout.joint_offset.stop)
    maps[image[:, None], channels[None, :], batch["joint_index"][image, person, joint][:, None]] = \
        batch["joint_offset"][image, person, joint].float()
    return maps.view(size, layout.num_outputs, height, width)


def model_maps(model, flip_permutation=None, codec=None, device="cpu") -> Callable[[dict], torch.Tensor]:
    """batch -> the model's activated maps, as the evaluator computes them (flip test optional)."""
    def maps_of(batch: dict) -> torch.Tensor:
        return heatmap_probabilities(model, batch["image"].to(device), flip_permutation, codec).float().cpu()
    return maps_of


# ----------------------------------------------------------------------------------------------
# the oracles of one batch
# ----------------------------------------------------------------------------------------------
def _to_original(points: torch.Tensor, back: torch.Tensor) -> np.ndarray:
    return apply_affine_batch(points.double(), back).numpy()


def _people(record_index, keypoints: np.ndarray, joint_scores: np.ndarray, scores: np.ndarray,
            keep: np.ndarray) -> PeoplePredictions:
    """(B, T, ...) arrays -> the kept rows as predictions."""
    record = np.broadcast_to(np.asarray(record_index)[:, None], keep.shape)
    return PeoplePredictions(record[keep], keypoints[keep], joint_scores[keep], scores[keep])


def truth_centre_people(codec: BottomUpCodec, maps: torch.Tensor, batch: dict) -> People:
    """The people at the batch's ground-truth centres (B, N): centre pixel, sub-pixel centre and
    box size from the targets, the joints from the maps (:meth:`BottomUpCodec.people_at`), the
    person scored as the decoder scores it with a centre peak of 1."""
    index = batch["centre_index"]
    width = maps.shape[-1]
    pixel = torch.stack([index % width, index // width], dim=-1).float()
    centres = pixel + batch["centre_offset"].float()
    ones = torch.ones(index.shape)
    people = codec.people_at(maps, ones, index, centres, batch["size"].float())
    if codec.person_score == "centre_x_joints":
        people = people._replace(scores=people.keypoint_scores.mean(dim=-1))
    return people


def nearest_truth(centres: np.ndarray, truth: Truth) -> np.ndarray:
    """(B, T) index of the annotated person whose box centre is nearest each of ``centres`` (B, T, 2)."""
    distance = np.linalg.norm(centres[:, :, None, :] - truth.centres[:, None, :, :], axis=-1)
    return np.where(truth.present[:, None, :], distance, np.inf).argmin(axis=2)


def joint_peaks(codec: BottomUpCodec, maps: torch.Tensor, back: torch.Tensor, record_index, count: int
                ) -> PeakPredictions:
    """Each joint type's ``count`` best peaks (3x3 local maxima) per image, at the pixel plus the
    joint offset read there, in original pixels."""
    layout = codec.layout
    values, index = top_peaks(maps, layout.joints, count)  # (B, K, J)
    batch, num_keypoints, _ = index.shape
    flat = index.clamp_min(0)
    width = maps.shape[-1]
    offsets = maps[:, layout.joint_offset].flatten(2).gather(2, flat.view(batch, 1, -1).expand(-1, 2, -1))
    points = torch.stack([flat % width, flat // width], dim=-1).float() \
        + offsets.transpose(1, 2).reshape(batch, num_keypoints, -1, 2)
    points = _to_original(codec.heatmap_to_input(points), back)
    found = (index >= 0).numpy()
    kind = np.broadcast_to(np.arange(num_keypoints)[None, :, None], found.shape)
    record = np.broadcast_to(np.asarray(record_index)[:, None, None], found.shape)
    return PeakPredictions(record[found], kind[found], points[found], values.numpy()[found])


@dataclass
class CentreDetections:
    """Decoded centre candidates of positive, finite score, in original pixels."""

    record_index: np.ndarray  # (M,)
    points: np.ndarray  # (M, 2)
    scores: np.ndarray  # (M,)


@dataclass
class BatchOracles:
    """What one batch contributes to each row."""

    people: Dict[str, PeoplePredictions]
    centres: Optional[CentreDetections]
    joints: Optional[PeakPredictions]


def batch_oracles(codec: BottomUpCodec, mode, maps: Optional[torch.Tensor], batch: dict, records,
                  num_peaks: int) -> BatchOracles:
    """Every row's predictions for one collated batch; ``maps`` None: the ground-truth rows only."""
    record_index = batch["record_index"].numpy()
    back = invert_affine_batch(batch["matrix"].double())
    people = {"gt_maps": mode.decode_batch(codec, target_maps(batch, codec.layout), back, record_index)}
    if maps is None:
        return BatchOracles(people, None, None)
    people["model"] = mode.decode_batch(codec, maps, back, record_index)

    at_truth = truth_centre_people(codec, maps, batch)
    labelled = (batch["centre_mask"] > 0).numpy()
    scores, joint_scores = at_truth.scores.numpy(), at_truth.keypoint_scores.numpy()
    people["gt_centres+pred_joints"] = _people(record_index, _to_original(at_truth.keypoints, back), joint_scores,
                                               scores, labelled)
    people["gt_centres+regressed"] = _people(record_index, _to_original(at_truth.regressed, back), joint_scores,
                                             scores, labelled)

    decoded = codec.decode(maps)
    centre_scores = decoded.centre_scores.numpy()
    centres = _to_original(decoded.boxes[..., :2] + decoded.boxes[..., 2:] / 2.0, back)  # (B, T, 2)
    truth = Truth.of(records, record_index, codec.layout.num_keypoints)
    candidate = np.isfinite(centre_scores) & (centre_scores > 0) & truth.present.any(axis=1)[:, None]
    nearest = nearest_truth(centres, truth)
    rows = np.arange(len(record_index))[:, None]
    people["pred_centres+gt_joints"] = _people(record_index, truth.keypoints[rows, nearest],
                                               truth.visible[rows, nearest].astype(np.float64), centre_scores,
                                               candidate)
    record = np.broadcast_to(record_index[:, None], candidate.shape)
    detections = CentreDetections(record[candidate], centres[candidate], centre_scores[candidate])
    return BatchOracles(people, detections, joint_peaks(codec, maps, back, record_index, num_peaks))


def _joined(kind, parts: Sequence):
    return kind(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(kind)})


def centre_average_precision(records, detections: CentreDetections, distance: float) -> float:
    """The centre candidates as detections of the annotated people's box centres (see the module doc)."""
    rows = [(index, instance.bbox) for index, record in enumerate(records) for instance in record.instances]
    boxes = np.array([box for _, box in rows]).reshape(-1, 4)
    radius = distance * np.sqrt(np.maximum(boxes[:, 2] * boxes[:, 3], 1e-12))
    return detection_average_precision(boxes[:, :2] + boxes[:, 2:] / 2.0, radius,
                                       np.array([index for index, _ in rows]), detections.points,
                                       detections.scores, detections.record_index)


# ----------------------------------------------------------------------------------------------
# the diagnosis
# ----------------------------------------------------------------------------------------------
ROW_ORDER = ("model", "gt_centres+pred_joints", "gt_centres+regressed", "pred_centres+gt_joints",
             "gt_boxes+mean_pose", "gt_maps", "gt_self")


def diagnose(records, dataset, codec: BottomUpCodec, mode, scheme, eval_section,
             maps_of: Optional[Callable[[dict], torch.Tensor]] = None, batch_size: int = 8,
             centre_distance: float = CENTRE_DISTANCE, limit: Optional[int] = None) -> Diagnosis:
    """The oracle table of ``dataset`` (the validation samples of ``records``; the first ``limit``),
    ``maps_of(batch)`` giving the activated maps (:func:`model_maps`; None: ground-truth rows only)."""
    plain = plain_records(records, limit)
    indices = list(range(len(plain)))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                        collate_fn=collate_samples)
    parts: List[BatchOracles] = []
    off_map = 0
    with torch.no_grad():
        for batch in loader:
            maps = None if maps_of is None else maps_of(batch)
            parts.append(batch_oracles(codec, mode, maps, batch, plain, int(eval_section.max_people)))
            present = torch.arange(batch["centre_mask"].shape[1])[None, :] < batch["num_instances"][:, None]
            off_map += int((present & (batch["centre_mask"] <= 0)).sum())
    people = {name: _joined(PeoplePredictions, [p.people[name] for p in parts]) for name in parts[0].people}
    people["gt_self"] = self_predictions(plain)
    people["gt_boxes+mean_pose"] = mean_pose_predictions(plain)
    rows = [OracleRow.scored(name, plain, people[name], indices, scheme) for name in ROW_ORDER if name in people]
    centre_ap = keypoint_ap = None
    per_type: Dict[str, float] = {}
    if maps_of is not None:
        centre_ap = centre_average_precision(plain, _joined(CentreDetections, [p.centres for p in parts]),
                                             centre_distance)
        joints = keypoint_detection_ap(plain, _joined(PeakPredictions, [p.joints for p in parts]), scheme,
                                       eval_section.detection_distance)
        keypoint_ap = joints.get("keypoint_ap")
        per_type = _per_type(plain, scheme, joints.get("keypoint_ap_per_type", []))
    return Diagnosis(rows, centre_ap, float(centre_distance), keypoint_ap, per_type, len(plain),
                     sum(len(r.instances) for r in plain), off_map)


def _per_type(records, scheme, values: Sequence[float]) -> Dict[str, float]:
    """keypoint_detection_ap's list (types with visible ground truth only) by keypoint name."""
    labelled = [k for k in range(scheme.num_keypoints)
                if any(inst.visible[k] for record in records for inst in record.instances)]
    return {scheme.keypoint_names[k]: float(v) for k, v in zip(labelled, values)}


# ----------------------------------------------------------------------------------------------
# pictures of the targets
# ----------------------------------------------------------------------------------------------
def target_pictures(dataset, codec: BottomUpCodec, scheme, indices: Sequence[int], out_dir) -> List[str]:
    """One PNG per sample ``indices`` of ``dataset``: the input with the annotated people (visible
    joints only) and their boxes | the target centre heatmap with the boxes and their centres |
    the maximum of the target joint heatmaps with the visible joints. Returns the paths."""
    from .drawing import (display_factor, draw_boxes, draw_keypoints, draw_people, input_image, magnify_image,
                          magnify_points, overlay_heatmap, tile, titled, write_png)

    written = []
    for index in indices:
        sample = dataset[int(index)]
        image = input_image(sample["image"])
        factor = display_factor(image.shape[1], image.shape[0], 384)
        big = magnify_image(image, factor)
        boxes = sample["boxes"].numpy()
        points = magnify_points(sample["keypoints"].numpy().astype(np.float64), factor)
        visible = sample["visible"].numpy().astype(bool)
        centres = magnify_points(boxes[:, :2] + boxes[:, 2:] / 2.0, factor)
        stride = codec.stride * factor
        heatmaps = sample["heatmaps"].numpy()
        people = draw_boxes(draw_people(big, points, visible, scheme.skeleton), boxes, factor)
        centre = draw_keypoints(draw_boxes(overlay_heatmap(big, heatmaps[0], stride, 0.8), boxes, factor), centres,
                                color=(255, 255, 255), marker="ring", radius=6.0)
        joints = draw_boxes(overlay_heatmap(big, heatmaps[1:].max(axis=0), stride, 0.8), boxes, factor)
        joints = draw_keypoints(joints, points, visible, color=(255, 255, 255), marker="ring", radius=2.0)
        panels = [titled(people, f"val #{index}: {len(boxes)} people, visible joints, boxes"),
                  titled(centre, "target centre heatmap, box centres (rings)"),
                  titled(joints, "target joint heatmaps (max), visible joints")]
        written.append(write_png(Path(out_dir) / f"targets_{int(index):04d}.png", tile(panels, 3, gap=4)))
    return written


# ----------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------
def run_diagnose(args: argparse.Namespace) -> int:
    from .build import build_codec, build_dataset, build_mode, build_scheme, read_records
    from .checkpoint import load_checkpoint
    from .config import load_config
    from .predict import model_from_checkpoint

    config = load_config(args.config, args.set)
    if config.data.mode != "bottomup":
        raise DiagnoseError(f"{args.config}: data.mode is {config.data.mode!r}; diagnose needs a bottomup config")
    scheme = build_scheme(config)
    codec, mode = build_codec(config, scheme), build_mode(config, scheme)
    records = read_records(config, "val")
    dataset = build_dataset(config, records, codec, scheme, train=False)
    out = Path(args.out)
    maps_of, info = None, {"config": str(args.config)}
    if args.checkpoint:
        checkpoint = load_checkpoint(args.checkpoint)
        checkpoint.check_fits(scheme)
        device = torch.device(args.device)
        model = model_from_checkpoint(config, checkpoint, device)
        flip = scheme.flip_permutation if config.eval.flip_test else None
        maps_of = model_maps(model, flip, codec, device)
        info.update(checkpoint=str(args.checkpoint), step=checkpoint.step)
    result = diagnose(records, dataset, codec, mode, scheme, config.eval, maps_of, int(config.eval.batch_size),
                      args.centre_distance, args.limit)
    result.info = info
    count = min(args.pictures, result.num_images)
    pictures = target_pictures(dataset, codec, scheme, np.linspace(0, result.num_images - 1, count).round()
                               .astype(int).tolist() if count else [], out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diagnose.json").write_text(json.dumps(result.as_json(), indent=2), encoding="utf-8")
    print(result.table())
    print(f"diagnose.json and {len(pictures)} target picture(s) written to {out}")
    return 0


def add_diagnose_parser(subparsers) -> argparse.ArgumentParser:
    from .config import add_override_argument

    parser = subparsers.add_parser("diagnose", help="bottom-up: OKS AP of the model beside oracles (GT centres, "
                                                    "GT joints, GT maps, GT itself) on the val split")
    parser.add_argument("config", help="a bottom-up YAML file (e.g. the run's config.yaml) or a name in configs/")
    parser.add_argument("--checkpoint", help="the model to diagnose (without one: the ground-truth rows only)")
    parser.add_argument("--out", default="diagnose", help="folder for diagnose.json and the target pictures")
    parser.add_argument("--centre-distance", type=float, default=CENTRE_DISTANCE,
                        help="centre AP: a hit within this fraction of sqrt(w h) of the person's box")
    parser.add_argument("--pictures", type=int, default=4, help="val samples whose targets are drawn")
    parser.add_argument("--limit", type=int, default=None, help="only the first N val images")
    parser.add_argument("--device", default="cpu")
    add_override_argument(parser)
    parser.set_defaults(handler=run_diagnose)
    return parser
