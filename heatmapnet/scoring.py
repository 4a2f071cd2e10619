"""Each mode's metrics: predictions in original image pixels against the records' annotations.

Faces (top-down): NME (inter-ocular, from the scheme's metadata), failure rate and AUC at
``eval.failure_threshold``. Bodies (top-down): PCK (torso-normalised where the scheme names a
torso, else box size) and OKS AP/AR (:func:`heatmapnet.cocoeval.oks_average_precision`). People
decoded from whole images (bottom-up): OKS AP/AR. Multi-instance maps: per-keypoint-type detection
AP with a distance threshold relative to each person's size (:func:`keypoint_detection_ap`).

Top-down faces and bodies also get the confidence of their keypoint scores
(:mod:`heatmapnet.confidence`: ``confidence/auroc``, ``confidence/spearman``, ``confidence/ece``
and the reliability bins), a hit being a normalised error within NME's failure threshold (faces)
or PCK's threshold (bodies); bottom-up people get ``confidence/oks_ap_unranked``.

The numbers themselves are :mod:`heatmapnet.metrics`'s. Every record is read once; the
:class:`heatmapnet.evaluation.Evaluator` passes a generated set's ``annotations``, so scoring
draws no image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from . import confidence, metrics
from .cocoeval import coco_results, oks_average_precision, people_results
from .evaluation import PeakPredictions, PeoplePredictions, TopDownPredictions
from .metadata import KeypointScheme


def is_face_scheme(scheme: KeypointScheme) -> bool:
    return scheme.interocular is not None


@dataclass
class InstanceTruth:
    """The annotated instance of each row of top-down predictions."""

    keypoints: np.ndarray  # (N, K, 2)
    visible: np.ndarray  # (N, K) bool
    boxes: np.ndarray  # (N, 4) x, y, w, h


def ground_truth(records, predictions: TopDownPredictions) -> InstanceTruth:
    """Row n: instance ``instance_index[n]`` of record ``record_index[n]`` (each record read once)."""
    read = {r: records[r] for r in sorted(set(int(r) for r in predictions.record_index))}
    instances = [read[int(r)].instances[i] for r, i in zip(predictions.record_index, predictions.instance_index)]
    return InstanceTruth(np.stack([inst.keypoints for inst in instances]), np.stack([inst.visible for inst in instances]),
                         np.stack([inst.bbox for inst in instances]))


def keypoint_confidence(predictions: TopDownPredictions, truth: InstanceTruth, normaliser: np.ndarray,
                        threshold: float) -> confidence.ConfidenceResult:
    """:func:`heatmapnet.confidence.measure_confidence` of the visible keypoints of the instances
    whose normaliser is valid: each one's error its distance over its instance's normaliser, a hit
    when that is <= ``threshold`` (NME's failure threshold for faces, PCK's for bodies)."""
    valid = np.isfinite(normaliser) & (normaliser > 0)
    counted = np.asarray(truth.visible, bool) & valid[:, None]
    distance = np.linalg.norm(predictions.keypoints - truth.keypoints, axis=-1)
    errors = distance[counted] / np.broadcast_to(normaliser[:, None], distance.shape)[counted]
    return confidence.measure_confidence(predictions.scores[counted], errors, threshold)


def face_metrics(records, predictions: TopDownPredictions, scheme: KeypointScheme, eval_section) -> dict:
    truth = ground_truth(records, predictions)
    gt, visible = truth.keypoints, truth.visible
    nme_values = metrics.nme(predictions.keypoints, gt, norm_indices=scheme.interocular, visible=visible)
    normaliser = metrics.scheme_normaliser(scheme, truth.keypoints, truth.visible, truth.boxes).values
    offset = metrics.mean_offset(predictions.keypoints, gt, normaliser, visible)
    threshold = eval_section.failure_threshold
    return {"nme": float(nme_values.mean()), f"failure_rate@{threshold:g}": metrics.failure_rate(nme_values, threshold),
            f"auc@{threshold:g}": metrics.auc(nme_values, threshold), "num_samples": int(len(nme_values)),
            "offset_x": float(offset[0]), "offset_y": float(offset[1]),
            **keypoint_confidence(predictions, truth, normaliser, threshold).as_metrics()}


#: the name of a body's normalised joint error by its normaliser (metrics.scheme_normaliser's name)
BODY_ERROR_NAMES = {"torso": "nme_torso", "bbox": "nme_box"}


def body_error(pred, gt, visible, normaliser) -> float:
    """The mean over instances of :func:`heatmapnet.metrics.joint_error` (NaN where none counts)."""
    per_instance = metrics.joint_error(pred, gt, visible, normaliser)
    counted = per_instance[np.isfinite(per_instance)]
    return float(counted.mean()) if counted.size else float("nan")


def pose_metrics(records, predictions: TopDownPredictions, scheme: KeypointScheme, eval_section) -> dict:
    truth = ground_truth(records, predictions)
    gt, visible = truth.keypoints, truth.visible
    threshold = eval_section.pck_threshold
    found = metrics.scheme_normaliser(scheme, truth.keypoints, truth.visible, truth.boxes)
    normaliser, name = found.values, found.name
    pck = metrics.pck(predictions.keypoints, gt, visible, normaliser, threshold, invalid="skip")
    offset = metrics.mean_offset(predictions.keypoints, gt, normaliser, visible)
    result = {f"pck@{threshold:g}": pck.overall, "pck_normaliser": name, "pck_skipped_instances": pck.num_skipped,
              BODY_ERROR_NAMES[name]: body_error(predictions.keypoints, gt, visible, normaliser),
              "num_instances": int(len(gt)), "offset_x": float(offset[0]), "offset_y": float(offset[1]),
              **keypoint_confidence(predictions, truth, normaliser, threshold).as_metrics()}
    used = sorted(set(int(r) for r in predictions.record_index))
    result.update(oks_average_precision(records, used, coco_results(records, predictions, use_record_index=True),
                                        scheme))
    return result


def people_metrics(records, predictions: PeoplePredictions, record_indices: Sequence[int],
                   scheme: KeypointScheme) -> dict:
    """OKS AP/AR of people decoded from whole images (every evaluated image counts, also those
    where no one was found), and ``confidence/oks_ap_unranked``: the same people ranked by chance,
    what the person score's ranking is worth."""
    results = people_results(records, predictions, True)
    result = oks_average_precision(records, record_indices, results, scheme)
    result["num_people_predicted"] = int(len(predictions.record_index))
    chance = oks_average_precision(records, record_indices, randomly_ranked(results), scheme)
    if "oks_ap" in chance:
        result["confidence/oks_ap_unranked"] = chance["oks_ap"]
    return result


def randomly_ranked(results: List[dict], seed: int = 0) -> List[dict]:
    """COCO results with each ``score`` replaced by a uniform random number (seeded): the same
    people and keypoints, ranked by chance within and across images."""
    scores = np.random.default_rng(seed).random(len(results))
    return [{**entry, "score": float(score)} for entry, score in zip(results, scores)]


def keypoint_detection_ap(records, predictions: PeakPredictions, scheme: KeypointScheme,
                          distance: float = 0.1) -> dict:
    """Per keypoint type, peaks ranked by score are matched greedily to unmatched visible ground
    truth of that type in the same image within ``distance * sqrt(w * h)`` of its person's box
    (:func:`heatmapnet.metrics.detection_average_precision`); the images are those with a peak."""
    images = sorted(set(int(r) for r in predictions.record_index))
    instances = [(r, inst) for r in images for inst in records[r].instances]  # each record read once
    if not instances:
        return {}
    points = np.stack([inst.keypoints for _, inst in instances])  # (I, K, 2)
    visible = np.stack([inst.visible for _, inst in instances])  # (I, K)
    boxes = np.stack([inst.bbox for _, inst in instances])
    radius = distance * np.sqrt(np.maximum(boxes[:, 2] * boxes[:, 3], 1e-12))  # (I,)
    image = np.array([r for r, _ in instances])
    per_type = []
    for k in range(scheme.num_keypoints):
        labelled = visible[:, k]
        if not labelled.any():
            continue
        mine = predictions.keypoint_type == k
        per_type.append(metrics.detection_average_precision(
            points[labelled, k], radius[labelled], image[labelled], predictions.points[mine],
            predictions.scores[mine], predictions.record_index[mine]))
    if not per_type:
        return {}
    return {"keypoint_ap": float(np.mean(per_type)), "keypoint_ap_per_type": [float(v) for v in per_type]}
