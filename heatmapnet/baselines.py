"""The mean-shape baseline of top-down models: what the box alone scores.

Definition. For every training instance whose box has a positive width and height, each visible
keypoint is expressed in the box's normalised frame, ``((x - box_x) / box_w, (y - box_y) / box_h)``;
each keypoint is averaged over the training instances where it is visible: that is the *mean
shape* (an invisible keypoint never enters the mean). For every validation instance the mean
shape is placed in its box, ``box_x + u * box_w``, ``box_y + v * box_h``, and scored with the
metric function the model is scored with (:func:`heatmapnet.scoring.face_metrics` for face
schemes: NME, failure rate, AUC; :func:`heatmapnet.scoring.pose_metrics` for bodies: PCK and
OKS AP, every point with score 1). A keypoint visible in no training instance is placed at the
box's centre and listed.

The box is the record's own ``bbox`` (x, y, w, h), the one the top-down crop starts from, before
the crop grows it to the input's aspect ratio and pads it by ``data.padding``; train and val use
it alike. Where a reader derives the box from the points (``.pts``, MTFL, LSP: the tight box of
the visible points) the baseline knows each face's or body's extent, which is exactly what a
top-down model is given too: a model should be well below it (faces) or above it (PCK).

``heatmapnet eval`` adds the row for top-down runs (``mean_shape_baseline`` in ``metrics.json``):
:func:`baseline_for_config` reads the training split's annotations only (readers take image sizes
from the headers, no image is decoded), :func:`mean_shape_baseline` computes and scores it, and
:func:`compare` sets the model against it: model / baseline for NME, model - baseline for PCK.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np

from .errors import DataError, UserError
from .evaluation import TopDownPredictions
from .metadata import KeypointScheme
from .scoring import face_metrics, is_face_scheme, pose_metrics

DEFINITION = ("the training set's mean shape (each visible keypoint in its box's normalised frame, averaged over "
              "the training instances where it is visible) placed in each validation box (the record's box, "
              "before padding), scored like the model")
#: Where a keypoint never seen in training is placed, in the box's normalised frame.
UNSEEN_PLACE = 0.5
#: Metrics printed side by side, by kind; any that a result lacks is left out.
PRINTED = {"face": ("nme", "failure_rate@{failure}", "auc@{failure}"),
           "body": ("pck@{pck}", "oks_ap", "oks_ar")}
#: Where data come from without being read from annotation files (their records are drawn on access).
GENERATED_SOURCES = ("synthetic_faces", "synthetic_faces5", "synthetic_people", "mosaic")


@dataclass(frozen=True)
class InstanceTable:
    """Every instance of some records, stacked: row n is instance ``instance_index[n]`` of record
    ``record_index[n]``, in the order of the top-down dataset (records in order, instances in order)."""

    record_index: np.ndarray  # (N,)
    instance_index: np.ndarray  # (N,)
    keypoints: np.ndarray  # (N, K, 2) pixels
    visible: np.ndarray  # (N, K) bool
    boxes: np.ndarray  # (N, 4) x, y, w, h

    def __len__(self) -> int:
        return len(self.record_index)


@dataclass(frozen=True)
class MeanShape:
    """The mean shape in the box's normalised frame (0 at the box's left/top edge, 1 at its right/bottom)."""

    points: np.ndarray  # (K, 2); NaN for a keypoint visible in no training instance
    counts: np.ndarray  # (K,) training instances in which each keypoint is visible
    num_instances: int  # training instances with a usable box

    @property
    def unseen(self) -> np.ndarray:
        """Indices of the keypoints visible in no training instance."""
        return np.flatnonzero(self.counts == 0)


@dataclass(frozen=True)
class Comparison:
    """The model against the baseline on the primary metric: a ratio for an error (NME), a
    difference for an accuracy (PCK)."""

    metric: str
    model: float
    baseline: float
    ratio: Optional[float] = None  # model / baseline
    difference: Optional[float] = None  # model - baseline

    def as_json(self) -> dict:
        values = {"metric": self.metric, "model": self.model, "baseline": self.baseline}
        if self.ratio is not None:
            values["ratio"] = self.ratio
        if self.difference is not None:
            values["difference"] = self.difference
        return values

    def describe(self) -> str:
        if self.ratio is not None:
            return f"{self.metric}: model / mean shape = {self.ratio:.3f}"
        if self.difference is not None:
            return f"{self.metric}: model - mean shape = {self.difference:+.4f}"
        return f"{self.metric}: no comparison (baseline {self.baseline:g})"


@dataclass
class BaselineResult:
    """The baseline's metrics and the shape they come from."""

    metrics: dict
    shape: MeanShape
    scheme: KeypointScheme
    comparison: Optional[Comparison] = None
    notes: List[str] = field(default_factory=list)

    def as_json(self) -> dict:
        values = {"definition": DEFINITION, "train_instances": self.shape.num_instances, "metrics": self.metrics}
        if self.shape.unseen.size:
            values["keypoints_never_visible_in_training"] = [self.scheme.keypoint_names[k] for k in self.shape.unseen]
        if self.comparison is not None:
            values["model_vs_baseline"] = self.comparison.as_json()
        if self.notes:
            values["notes"] = list(self.notes)
        return values


@dataclass(frozen=True)
class SkippedBaseline:
    """Why no baseline could be computed (reported, never raised: it does not stop an evaluation)."""

    reason: str

    def as_json(self) -> dict:
        return {"skipped": self.reason}


# ----------------------------------------------------------------------------------------------
# the shape
# ----------------------------------------------------------------------------------------------
def instance_table(records: Sequence, name: str = "records") -> InstanceTable:
    """Every instance of ``records`` stacked (each record read once). A record whose instances
    have another point count than the first one's is a :class:`DataError` naming it."""
    rows, instances = [], []
    for r in range(len(records)):
        record = records[r]
        for i, instance in enumerate(record.instances):
            rows.append((r, i))
            instances.append(instance)
    if not instances:
        raise DataError(f"{name}: no annotated instance")
    expected = instances[0].keypoints.shape[0]
    for (r, i), instance in zip(rows, instances):
        if instance.keypoints.shape[0] != expected:
            raise DataError(f"{name}: {records[r].image_path}, instance {i}: {instance.keypoints.shape[0]} points, "
                            f"the first instance has {expected}")
    index = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    return InstanceTable(index[:, 0], index[:, 1], np.stack([inst.keypoints for inst in instances]),
                         np.stack([inst.visible for inst in instances]), np.stack([inst.bbox for inst in instances]))


def usable_boxes(boxes: np.ndarray) -> np.ndarray:
    """(N,) mask of the boxes with a finite position and a positive, finite width and height."""
    return np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def normalised_points(keypoints: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, K, 2) pixels -> each box's normalised frame, ``(p - box_xy) / box_wh``."""
    return (keypoints - boxes[:, None, :2]) / boxes[:, None, 2:]


def fit_mean_shape(table: InstanceTable, name: str = "data.train") -> MeanShape:
    """The mean shape of ``table``'s instances: each keypoint averaged over the instances with a
    usable box in which it is visible."""
    usable = usable_boxes(table.boxes)
    if not usable.any():
        raise DataError(f"{name}: no instance with a box of positive width and height")
    shapes = normalised_points(table.keypoints[usable], table.boxes[usable])
    visible = table.visible[usable] & np.isfinite(shapes).all(axis=2)
    counts = visible.sum(axis=0)
    sums = np.where(visible[..., None], shapes, 0.0).sum(axis=0)
    points = np.full(sums.shape, np.nan)
    np.divide(sums, counts[:, None], out=points, where=counts[:, None] > 0)
    return MeanShape(points, counts, int(usable.sum()))


def place_mean_shape(shape: MeanShape, boxes: np.ndarray) -> np.ndarray:
    """The mean shape in each box: (N, 4) boxes -> (N, K, 2) pixels; a keypoint never seen in
    training at the box's centre."""
    points = np.where(np.isnan(shape.points), UNSEEN_PLACE, shape.points)
    return boxes[:, None, :2] + points[None] * boxes[:, None, 2:]


def mean_shape_predictions(shape: MeanShape, table: InstanceTable) -> TopDownPredictions:
    """The baseline as a top-down model's predictions of ``table``'s instances (every score 1)."""
    keypoints = place_mean_shape(shape, table.boxes)
    return TopDownPredictions(table.record_index, table.instance_index, keypoints, np.ones(keypoints.shape[:2]))


# ----------------------------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------------------------
def topdown_metrics(records, predictions: TopDownPredictions, scheme: KeypointScheme, eval_section) -> dict:
    """The top-down mode's metrics: :func:`face_metrics` for face schemes, :func:`pose_metrics` else."""
    if is_face_scheme(scheme):
        return face_metrics(records, predictions, scheme, eval_section)
    return pose_metrics(records, predictions, scheme, eval_section)


def mean_shape_baseline(train_records: Sequence, val_records: Sequence, scheme: KeypointScheme, eval_section,
                        score: Optional[Callable[[TopDownPredictions], dict]] = None) -> BaselineResult:
    """The mean shape of ``train_records`` placed in every instance box of ``val_records`` and
    scored by ``score`` (predictions -> metrics; default :func:`topdown_metrics` on ``val_records``)."""
    train = instance_table(train_records, "data.train")
    _check_point_count(train, scheme, "data.train")
    val = instance_table(val_records, "data.val")
    _check_point_count(val, scheme, "data.val")
    shape = fit_mean_shape(train)
    predictions = mean_shape_predictions(shape, val)
    scored = score(predictions) if score is not None else topdown_metrics(val_records, predictions, scheme,
                                                                           eval_section)
    notes = []
    if shape.unseen.size:
        notes.append(f"{shape.unseen.size} keypoint(s) visible in no training instance, placed at the box centre: "
                     + ", ".join(scheme.keypoint_names[k] for k in shape.unseen[:5]))
    return BaselineResult(scored, shape, scheme, notes=notes)


def _check_point_count(table: InstanceTable, scheme: KeypointScheme, name: str) -> None:
    if table.keypoints.shape[1] != scheme.num_keypoints:
        raise DataError(f"{name}: instances have {table.keypoints.shape[1]} points, the scheme {scheme.name} has "
                        f"{scheme.num_keypoints}")


def compare(model_metrics: dict, baseline_metrics: dict) -> Optional[Comparison]:
    """The model against the baseline: NME as model / baseline, else PCK as model - baseline;
    None when neither metric is in both."""
    if "nme" in model_metrics and "nme" in baseline_metrics:
        model, baseline = float(model_metrics["nme"]), float(baseline_metrics["nme"])
        return Comparison("nme", model, baseline, ratio=model / baseline if baseline > 0 else None)
    pck = next((key for key in baseline_metrics if key.startswith("pck@") and key in model_metrics), None)
    if pck is None:
        return None
    model, baseline = float(model_metrics[pck]), float(baseline_metrics[pck])
    return Comparison(pck, model, baseline, difference=model - baseline)


# ----------------------------------------------------------------------------------------------
# a run's config
# ----------------------------------------------------------------------------------------------
def training_annotations(config):
    """The training split's records, annotations only (the readers take image sizes from the
    headers and decode no image), or a :class:`SkippedBaseline` saying why there are none."""
    from .build import read_records

    split = config.data.train
    if split.get("sources"):
        return SkippedBaseline("data.train lists several sources (data.scheme=union); a mean shape is one scheme's")
    if split.source in GENERATED_SOURCES:
        return SkippedBaseline(f"data.train is generated (source {split.source}), not read from annotation "
                               "files; its annotations come only with its images")
    if not split.ann_file:
        return SkippedBaseline("data.train has no annotations (data.train.ann_file is not set)")
    try:
        return read_records(config, "train")
    except (UserError, ValueError, OSError) as error:  # the readers' errors name the file
        return SkippedBaseline(f"data.train could not be read: {str(error).splitlines()[0]}")


def baseline_for_config(config, val_records: Sequence, scheme: KeypointScheme, model_metrics: dict,
                        score: Optional[Callable[[TopDownPredictions], dict]] = None):
    """The mean-shape baseline of a top-down run (a :class:`BaselineResult` compared with
    ``model_metrics``), or a :class:`SkippedBaseline`."""
    train = training_annotations(config)
    if isinstance(train, SkippedBaseline):
        return train
    try:
        result = mean_shape_baseline(train, val_records, scheme, config.eval, score)
    except (UserError, ValueError) as error:
        return SkippedBaseline(str(error).splitlines()[0])
    result.comparison = compare(model_metrics, result.metrics)
    return result


def report_lines(model_metrics: dict, baseline, config) -> List[str]:
    """The baseline beside the model, as printed by ``heatmapnet eval``."""
    if isinstance(baseline, SkippedBaseline):
        return [f"mean-shape baseline skipped: {baseline.reason}"]
    kind = "face" if "nme" in baseline.metrics else "body"
    names = [name.format(failure=f"{config.eval.failure_threshold:g}", pck=f"{config.eval.pck_threshold:g}")
             for name in PRINTED[kind]]
    names = [name for name in names if name in baseline.metrics and name in model_metrics]
    width = max([len("metric")] + [len(name) for name in names])
    lines = [f"mean-shape baseline (the training set's mean shape placed in each box; "
             f"{baseline.shape.num_instances:,} training instances):"]
    lines += [f"  {'metric':<{width}}  {'model':>8}  {'mean shape':>10}"] if names else []
    lines += [f"  {name:<{width}}  {float(model_metrics[name]):>8.4f}  {float(baseline.metrics[name]):>10.4f}"
              for name in names]
    if baseline.comparison is not None:
        lines.append(f"  {baseline.comparison.describe()}")
    lines += [f"  note: {note}" for note in baseline.notes]
    return lines
