"""Prediction over a dataset and the field's metrics, all in original image coordinates.

Faces: NME (inter-ocular, from the scheme's metadata), failure rate and AUC at 0.1. Pose
(top-down): PCK (torso-normalised where the scheme names a torso, else box size) and OKS AP/AR
through pycocotools with the scheme's sigmas. Multi-instance maps: per-keypoint-type detection
AP with a distance threshold relative to each person's size.

Top-down faces and bodies also get the confidence of their keypoint scores
(:mod:`heatmapnet.confidence`: ``confidence/auroc``, ``confidence/spearman``, ``confidence/ece``
and the reliability bins), a hit being a normalised error within NME's failure threshold (faces)
or PCK's threshold (bodies); bottom-up people get ``confidence/oks_ap_unranked``, the OKS AP with
their scores replaced by chance.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import confidence, metrics
from .codec import mirror_heatmaps
from .data.pipelines import collate_samples
from .distributed import DistInfo, gather_objects
from .metadata import KeypointScheme


@dataclass
class TopDownPredictions:
    record_index: np.ndarray  # (N,)
    instance_index: np.ndarray  # (N,)
    keypoints: np.ndarray  # (N, K, 2) original image pixels
    scores: np.ndarray  # (N, K)


@dataclass
class PeoplePredictions:
    record_index: np.ndarray  # (N,) one row per decoded person
    keypoints: np.ndarray  # (N, K, 2) original image pixels
    scores: np.ndarray  # (N, K) keypoint scores
    person_scores: np.ndarray  # (N,) the person's score (its centre peak)


@dataclass
class PeakPredictions:
    record_index: np.ndarray  # (M,) one row per peak
    keypoint_type: np.ndarray  # (M,)
    points: np.ndarray  # (M, 2) original image pixels
    scores: np.ndarray  # (M,)


def invert_affine_batch(matrices: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) affine matrices -> their inverses, (B, 2, 3)."""
    linear_inverse = torch.linalg.inv(matrices[:, :, :2])
    return torch.cat([linear_inverse, -(linear_inverse @ matrices[:, :, 2:])], dim=2)


def apply_affine_batch(points: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """(B, ..., 2) points through (B, 2, 3) matrices."""
    flat = points.reshape(points.shape[0], -1, 2)
    moved = flat @ matrices[:, :, :2].transpose(1, 2) + matrices[:, None, :, 2]
    return moved.reshape(points.shape)


def heatmap_probabilities(model, images: torch.Tensor, flip_permutation=None, codec=None) -> torch.Tensor:
    """The model's maps (its own output activation applied), optionally averaged with the maps
    of the mirrored image mirrored back by ``codec.flip_back`` (default: columns reversed and
    left/right channels swapped, right for maps that are all heatmaps)."""
    maps = model.heatmaps(images)
    if flip_permutation is None:
        return maps
    flip_back = mirror_heatmaps if codec is None else codec.flip_back
    mirrored = flip_back(model.heatmaps(torch.flip(images, dims=[3])), flip_permutation)
    return (maps + mirrored) / 2.0


@torch.no_grad()
def predict_dataset(model, dataset, codec, mode, batch_size: int, dist: DistInfo, flip_permutation=None,
                    num_workers: int = 0):
    """Every sample of ``dataset`` decoded by ``mode`` (this rank's share, then gathered on all
    ranks), in original image pixels. ``flip_permutation`` set: flip test."""
    indices = list(range(dist.rank, len(dataset), dist.world_size))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=collate_samples)
    was_training = model.training
    model.eval()
    device = dist.device
    parts = []
    for batch in loader:
        maps = heatmap_probabilities(model, batch["image"].to(device), flip_permutation, codec)
        back = invert_affine_batch(batch["matrix"].to(device, torch.float64))
        instance = batch["instance_index"].numpy() if "instance_index" in batch else None
        parts.append(mode.decode_batch(codec, maps, back, batch["record_index"].numpy(), instance))
    model.train(was_training)
    return mode.concatenate([p for rank_parts in gather_objects(parts, dist) for p in rank_parts])


class Evaluator:
    """Validation of a model on one split: predictions decoded by ``mode`` with ``codec`` (another
    codec may be passed per call, e.g. to compare refinements on the same weights), scored by the
    mode's metrics."""

    def __init__(self, mode, dataset, records, codec, scheme: KeypointScheme, eval_section,
                 dist: Optional[DistInfo] = None):
        self.mode, self.dataset, self.records, self.codec, self.scheme = mode, dataset, records, codec, scheme
        self.eval_section = eval_section
        self.dist = dist or DistInfo()

    def predict(self, model, codec=None):
        flip = self.scheme.flip_permutation if self.eval_section.flip_test else None
        return predict_dataset(model, self.dataset, codec or self.codec, self.mode, self.eval_section.batch_size,
                               self.dist, flip)

    def score(self, predictions) -> dict:
        return self.mode.evaluate(self.records, predictions, self.scheme, self.eval_section)

    def __call__(self, model, codec=None) -> dict:
        return self.score(self.predict(model, codec))


# ----------------------------------------------------------------------------------------------
# metrics from predictions
# ----------------------------------------------------------------------------------------------
def _ground_truth(records, predictions: TopDownPredictions):
    instances = [records[r].instances[i] for r, i in zip(predictions.record_index, predictions.instance_index)]
    gt = np.stack([inst.keypoints for inst in instances])
    visible = np.stack([inst.visible for inst in instances])
    boxes = np.stack([inst.bbox for inst in instances])
    return gt, visible, boxes


def is_face_scheme(scheme: KeypointScheme) -> bool:
    return scheme.interocular is not None


@dataclass
class Normaliser:
    """Each instance's length that its scheme's metric divides errors by."""

    values: np.ndarray  # (N,); NaN where undefined (a torso joint unlabelled)
    name: str  # interocular | torso | bbox


def scheme_normaliser(scheme: KeypointScheme, gt: np.ndarray, visible: np.ndarray, boxes: np.ndarray) -> Normaliser:
    """The normaliser of the scheme's metric: the inter-ocular distance of face schemes (NME), else
    the torso where the scheme names one (PCK; NaN where a torso joint is unlabelled), else the
    box's longer side. ``gt`` (N, K, 2), ``visible`` (N, K), ``boxes`` (N, 4) x, y, w, h."""
    if is_face_scheme(scheme):
        return Normaliser(metrics.pair_distance(gt, scheme.interocular), "interocular")
    if scheme.torso is not None:
        return Normaliser(metrics.torso_size(gt, scheme.torso, visible), "torso")
    return Normaliser(metrics.bbox_size(boxes), "bbox")


def keypoint_confidence(predictions: TopDownPredictions, gt: np.ndarray, visible: np.ndarray,
                        normaliser: np.ndarray, threshold: float) -> confidence.ConfidenceResult:
    """:func:`heatmapnet.confidence.measure_confidence` of the visible keypoints of the instances
    whose normaliser is valid: each one's error its distance over its instance's normaliser, a hit
    when that is <= ``threshold`` (NME's failure threshold for faces, PCK's for bodies)."""
    valid = np.isfinite(normaliser) & (normaliser > 0)
    counted = np.asarray(visible, bool) & valid[:, None]
    distance = np.linalg.norm(predictions.keypoints - gt, axis=-1)
    errors = distance[counted] / np.broadcast_to(normaliser[:, None], distance.shape)[counted]
    return confidence.measure_confidence(predictions.scores[counted], errors, threshold)


def face_metrics(records, predictions: TopDownPredictions, scheme: KeypointScheme, eval_section) -> dict:
    gt, visible, boxes = _ground_truth(records, predictions)
    nme_values = metrics.nme(predictions.keypoints, gt, norm_indices=scheme.interocular, visible=visible)
    normaliser = scheme_normaliser(scheme, gt, visible, boxes).values
    offset = metrics.mean_offset(predictions.keypoints, gt, normaliser, visible)
    threshold = eval_section.failure_threshold
    return {"nme": float(nme_values.mean()), f"failure_rate@{threshold:g}": metrics.failure_rate(nme_values, threshold),
            f"auc@{threshold:g}": metrics.auc(nme_values, threshold), "num_samples": int(len(nme_values)),
            "offset_x": float(offset[0]), "offset_y": float(offset[1]),
            **keypoint_confidence(predictions, gt, visible, normaliser, threshold).as_metrics()}


def pose_metrics(records, predictions: TopDownPredictions, scheme: KeypointScheme, eval_section) -> dict:
    gt, visible, boxes = _ground_truth(records, predictions)
    threshold = eval_section.pck_threshold
    found = scheme_normaliser(scheme, gt, visible, boxes)
    normaliser, name = found.values, found.name
    pck = metrics.pck(predictions.keypoints, gt, visible, normaliser, threshold, invalid="skip")
    offset = metrics.mean_offset(predictions.keypoints, gt, normaliser, visible)
    result = {f"pck@{threshold:g}": pck.overall, "pck_normaliser": name, "pck_skipped_instances": pck.num_skipped,
              "num_instances": int(len(gt)), "offset_x": float(offset[0]), "offset_y": float(offset[1]),
              **keypoint_confidence(predictions, gt, visible, normaliser, threshold).as_metrics()}
    used = sorted(set(int(r) for r in predictions.record_index))
    result.update(oks_average_precision(records, used, coco_results(records, predictions, use_record_index=True),
                                        scheme))
    return result


def oks_average_precision(records, record_indices: Sequence[int], results: List[dict],
                          scheme: KeypointScheme) -> dict:
    """COCO keypoint AP/AR through pycocotools, with the scheme's OKS sigmas, of ``results``
    (COCO keypoint results whose ``image_id`` is the record index) against every instance of the
    records ``record_indices``; predicted people are matched to annotated ones by OKS."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations = [], []
    for record_index in record_indices:
        record = records[record_index]
        images.append({"id": record_index, "width": record.width, "height": record.height})
        for instance in record.instances:
            flags = np.where(instance.visible, 2, 0)
            triples = np.concatenate([np.where(instance.visible[:, None], instance.keypoints, 0.0),
                                      flags[:, None]], axis=1)
            x, y, w, h = (float(v) for v in instance.bbox)
            area = float(instance.extra.get("area", w * h))
            annotations.append({"id": len(annotations) + 1, "image_id": record_index, "category_id": 1,
                                "keypoints": triples.reshape(-1).tolist(), "num_keypoints": int(instance.visible.sum()),
                                "bbox": [x, y, w, h], "area": area, "iscrowd": 0})
    if not any(a["num_keypoints"] for a in annotations):
        return {}
    ground_truth = COCO()
    ground_truth.dataset = {"images": images, "annotations": annotations,
                            "categories": [{"id": 1, "name": "object", "keypoints": list(scheme.keypoint_names)}]}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        if not results:
            return {name: 0.0 for name in _OKS_NAMES}
        detections = ground_truth.loadRes(results)
        evaluator = COCOeval(ground_truth, detections, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(scheme.oks_sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(_OKS_NAMES, evaluator.stats)}


_OKS_NAMES = ("oks_ap", "oks_ap50", "oks_ap75", "oks_ap_medium", "oks_ap_large",
              "oks_ar", "oks_ar50", "oks_ar75", "oks_ar_medium", "oks_ar_large")


def people_results(records, predictions: PeoplePredictions, use_record_index: bool = False) -> List[dict]:
    """COCO keypoint results of decoded people: one entry per person, ``score`` its own score."""
    return keypoint_results(records, predictions.record_index, predictions.keypoints, predictions.scores,
                            predictions.person_scores, use_record_index)


def people_metrics(records, predictions: PeoplePredictions, record_indices: Sequence[int],
                   scheme: KeypointScheme) -> dict:
    """OKS AP/AR of people decoded from whole images (every evaluated image counts, also those
    where no one was found)."""
    results = people_results(records, predictions, True)
    result = oks_average_precision(records, record_indices, results, scheme)
    result["num_people_predicted"] = int(len(predictions.record_index))
    chance = oks_average_precision(records, record_indices, randomly_ranked(results), scheme)
    if "oks_ap" in chance:  # what the person score's ranking is worth: the same people ranked by chance
        result["confidence/oks_ap_unranked"] = chance["oks_ap"]
    return result


def randomly_ranked(results: List[dict], seed: int = 0) -> List[dict]:
    """COCO results with each ``score`` replaced by a uniform random number (seeded): the same
    people and keypoints, ranked by chance within and across images."""
    scores = np.random.default_rng(seed).random(len(results))
    return [{**entry, "score": float(score)} for entry, score in zip(results, scores)]


def coco_results(records, predictions: TopDownPredictions, use_record_index: bool = False) -> List[dict]:
    """COCO keypoint results of top-down predictions: one entry per instance, ``score`` the mean
    of its keypoint scores."""
    return keypoint_results(records, predictions.record_index, predictions.keypoints, predictions.scores,
                            predictions.scores.mean(axis=1), use_record_index)


def keypoint_results(records, record_index: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                     instance_scores: np.ndarray, use_record_index: bool = False) -> List[dict]:
    """COCO keypoint results, one entry per row: ``keypoints`` as x, y, score triples, ``image_id``
    the record's own id (or its index). Each record is read once (generated records draw their
    image on every access)."""
    images = {}
    for index in sorted(set(int(r) for r in record_index)):
        record = records[index]
        image_id = index if use_record_index or record.image_id is None else int(record.image_id)
        images[index] = {"image_id": image_id, "category_id": 1, "image_path": record.image_path}
    triples = np.concatenate([keypoints, scores[..., None]], axis=-1).reshape(len(record_index), keypoints.shape[1] * 3).round(3)
    return [{**images[int(r)], "keypoints": row.tolist(), "score": float(score)}
            for r, row, score in zip(record_index, triples, instance_scores)]


def peak_results(records, predictions: PeakPredictions, min_score: float = 0.05) -> List[dict]:
    keep = predictions.scores >= min_score
    images = {}  # each record read once: generated records draw their image on every access
    for r in sorted(set(int(r) for r in predictions.record_index[keep])):
        record = records[r]
        images[r] = {"image_id": int(record.image_id if record.image_id is not None else r),
                     "image_path": record.image_path}
    return [{**images[int(r)], "keypoint_type": int(k),
             "x": round(float(p[0]), 3), "y": round(float(p[1]), 3), "score": float(s)}
            for r, k, p, s in zip(predictions.record_index[keep], predictions.keypoint_type[keep],
                                  predictions.points[keep], predictions.scores[keep])]


def keypoint_detection_ap(records, predictions: PeakPredictions, scheme: KeypointScheme,
                          distance: float = 0.1) -> dict:
    """Per keypoint type, peaks ranked by score are matched greedily to unmatched visible ground
    truth of that type in the same image within ``distance * sqrt(w * h)`` of its person's box;
    AP is the area under the interpolated precision-recall curve (all points, as VOC 2010+)."""
    per_type = []
    images = sorted(set(int(r) for r in predictions.record_index))
    instances = {r: records[r].instances for r in images}  # once: generated records draw on every access
    for k in range(scheme.num_keypoints):
        gt_points, gt_radius, gt_image = [], [], []
        for r in images:
            for inst in instances[r]:
                if inst.visible[k]:
                    gt_points.append(inst.keypoints[k])
                    gt_radius.append(distance * np.sqrt(max(inst.bbox[2] * inst.bbox[3], 1e-12)))
                    gt_image.append(r)
        mine = predictions.keypoint_type == k
        if not gt_points:
            continue
        per_type.append(detection_average_precision(np.asarray(gt_points), np.asarray(gt_radius),
                                                    np.asarray(gt_image), predictions.points[mine],
                                                    predictions.scores[mine], predictions.record_index[mine]))
    if not per_type:
        return {}
    return {"keypoint_ap": float(np.mean(per_type)), "keypoint_ap_per_type": [float(v) for v in per_type]}


def detection_average_precision(gt_points, gt_radius, gt_image, points, scores, image) -> float:
    """AP of point detections ``points`` (M, 2) with ``scores`` (M,) in images ``image`` (M,)
    against ground-truth points ``gt_points`` (G, 2) in ``gt_image`` (G,): by descending score
    (equal scores in the given order), each detection takes the unmatched ground truth of its
    image nearest in units of that point's ``gt_radius`` (G,), a hit when that is <= 1; the area
    under the interpolated precision-recall curve (all points, as VOC 2010+). No ground truth: 0."""
    if not len(gt_points):
        return 0.0
    order = np.argsort(-scores, kind="stable")
    matched = np.zeros(len(gt_points), bool)
    hits = np.zeros(len(order), bool)
    for rank, det in enumerate(order):  # greedy matching is sequential by definition
        candidates = np.flatnonzero((gt_image == image[det]) & ~matched)
        if candidates.size == 0:
            continue
        d = np.linalg.norm(gt_points[candidates] - points[det], axis=1) / gt_radius[candidates]
        best = int(np.argmin(d))
        if d[best] <= 1.0:
            matched[candidates[best]] = True
            hits[rank] = True
    true_positives = np.cumsum(hits)
    recall = true_positives / len(gt_points)
    precision = true_positives / np.arange(1, len(order) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(recall_steps * envelope))


def primary_metric(result: dict) -> tuple:
    """(name, value, higher_is_better) of the number a run is selected by."""
    for name, higher in (("nme", False), ("keypoint_ap", True)):
        if name in result:
            return name, result[name], higher
    pck_name = next((k for k in result if k.startswith("pck@")), None)
    if pck_name is not None:
        return pck_name, result[pck_name], True
    if "oks_ap" in result:
        return "oks_ap", result["oks_ap"], True
    raise ValueError(f"no primary metric among {sorted(result)}")
