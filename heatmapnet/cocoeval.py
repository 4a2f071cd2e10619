"""Predictions as results json, and COCO's OKS AP/AR through pycocotools.

:func:`keypoint_results` (and :func:`coco_results`, :func:`people_results` over the modes'
predictions) are COCO keypoint results, one entry per instance or person; :func:`peak_results`
lists a multi-instance model's peaks with the same ``image_id`` convention.
:func:`oks_average_precision` scores COCO keypoint results against records with a scheme's OKS
sigmas. Each reads every record it needs once: pass a generated set's ``annotations``
(:func:`heatmapnet.data.records.annotations_of`) and nothing is drawn.
"""
from __future__ import annotations

import contextlib
import io
from typing import List, Sequence

import numpy as np

from .evaluation import PeakPredictions, PeoplePredictions, TopDownPredictions
from .metadata import KeypointScheme

#: the names of pycocotools' ten keypoint statistics, in its order
OKS_NAMES = ("oks_ap", "oks_ap50", "oks_ap75", "oks_ap_medium", "oks_ap_large",
             "oks_ar", "oks_ar50", "oks_ar75", "oks_ar_medium", "oks_ar_large")


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
            return {name: 0.0 for name in OKS_NAMES}
        detections = ground_truth.loadRes(results)
        evaluator = COCOeval(ground_truth, detections, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(scheme.oks_sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(OKS_NAMES, evaluator.stats)}


def keypoint_results(records, record_index: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                     instance_scores: np.ndarray, use_record_index: bool = False) -> List[dict]:
    """COCO keypoint results, one entry per row: ``keypoints`` as x, y, score triples, ``image_id``
    the record's own id (or its index). Each record is read once."""
    images = {}
    for index in sorted(set(int(r) for r in record_index)):
        record = records[index]
        image_id = index if use_record_index or record.image_id is None else int(record.image_id)
        images[index] = {"image_id": image_id, "category_id": 1, "image_path": record.image_path}
    triples = np.concatenate([keypoints, scores[..., None]], axis=-1).reshape(len(record_index), keypoints.shape[1] * 3).round(3)
    return [{**images[int(r)], "keypoints": row.tolist(), "score": float(score)}
            for r, row, score in zip(record_index, triples, instance_scores)]


def coco_results(records, predictions: TopDownPredictions, use_record_index: bool = False) -> List[dict]:
    """COCO keypoint results of top-down predictions: one entry per instance, ``score`` the mean
    of its keypoint scores."""
    return keypoint_results(records, predictions.record_index, predictions.keypoints, predictions.scores,
                            predictions.scores.mean(axis=1), use_record_index)


def people_results(records, predictions: PeoplePredictions, use_record_index: bool = False) -> List[dict]:
    """COCO keypoint results of decoded people: one entry per person, ``score`` its own score."""
    return keypoint_results(records, predictions.record_index, predictions.keypoints, predictions.scores,
                            predictions.person_scores, use_record_index)


def peak_results(records, predictions: PeakPredictions, min_score: float = 0.05) -> List[dict]:
    """The peaks scoring at least ``min_score``, each with its image's id and path (each record read once)."""
    keep = predictions.scores >= min_score
    images = {}
    for r in sorted(set(int(r) for r in predictions.record_index[keep])):
        record = records[r]
        images[r] = {"image_id": int(record.image_id if record.image_id is not None else r),
                     "image_path": record.image_path}
    return [{**images[int(r)], "keypoint_type": int(k),
             "x": round(float(p[0]), 3), "y": round(float(p[1]), 3), "score": float(s)}
            for r, k, p, s in zip(predictions.record_index[keep], predictions.keypoint_type[keep],
                                  predictions.points[keep], predictions.scores[keep])]
