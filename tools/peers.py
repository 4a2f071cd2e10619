#!/usr/bin/env python
"""What users would otherwise use, scored exactly as heatmapnet scores itself.

Three peers, each on the test split of heatmapnet's own config and scored as heatmapnet scores
that config, in the reader's 0-based pixel coordinates. The face peers by
:func:`heatmapnet.scoring.face_metrics` (inter-ocular NME from the scheme's
``nme_normalisation``, FR@0.1, AUC@0.1):

* ``dlib``: dlib's 68-point shape predictor (``shape_predictor_68_face_landmarks.dat`` as the
  ``face_recognition_models`` package ships it, the model ``face_recognition`` uses), placed by
  dlib's own HOG detector ``dlib.get_frontal_face_detector()`` with one upsampling, as
  ``face_recognition.face_landmarks`` runs it, on ytf68 test (config ``ytf68``, ``data.val``).
* ``mtcnn``: the five landmarks of facenet-pytorch's MTCNN (its shipped P/R/O-net weights, default
  settings: min_face_size 20, thresholds 0.6/0.7/0.7, factor 0.709) on the MTFL AFLW test
  (config ``mtfl5``, ``data.val``, 2,995 80 x 80 images). MTCNN's order (left eye, right eye, nose,
  mouth left, mouth right, in image coordinates) is MTFL's; the script checks it by scoring the
  mirrored order too. MTFL's crops are tight (the face fills the 80 x 80 frame), which MTCNN's
  boxes cannot cover, so it runs twice by default: on the image as it is (``mtcnn``) and with a
  20-pixel black border (``mtcnn_pad20``; ``--mtcnn-pad`` chooses the widths), points shifted back.

The body peer by torso-normalised PCK@0.2:

* ``mediapipe``: MediaPipe's BlazePose "full" (``mp.solutions.pose.Pose(static_image_mode=True,
  model_complexity=1)``, its detector and landmark model as the 0.10.21 wheel ships them) on the
  LSP held-out set (config ``lsp``, ``data.val``: LSPET images 2500-2999), each whole image given to
  it as it is. Of its 33 landmarks the 12 limb joints LSP shares with it by name (ankles, knees,
  hips, wrists, elbows, shoulders; both name the person's own left and right) are scored by PCK@0.2
  exactly as heatmapnet scores LSP (:func:`heatmapnet.metrics.pck`, torso-normalised by the
  scheme's torso, people with an unlabelled torso joint skipped), over those 12 joints only: LSP's
  neck and head top are left out for every contender. The script checks the sides by scoring the
  left/right-swapped joints too. ``--ours-checkpoint`` scores a heatmapnet LSP checkpoint on the
  same 12 joints of the same images (given each person's box from the labels, as ``heatmapnet
  eval`` is). MediaPipe 0.10.21 needs numpy < 2 and protobuf < 5, so it runs in an environment of
  its own: ``--mediapipe-python`` names that interpreter, which runs ``tools/mediapipe_pose.py``.

Where a detector finds several faces the largest box is used. Where it finds none, the
"fallback" rows still predict something: dlib runs the shape predictor on the whole image as the
face box (ytf68 images are 128 x 128 face crops); MTCNN's miss gets the MTFL training set's mean
shape placed in the image box. Each peer reports NME on the detected faces only and on every
image with the fallback; dlib also reports the predictor on the whole-crop box for every image
(no detector at all). BlazePose reports PCK on the images where it found a pose, on every image
with the same fallback as MTCNN's (the LSP training set's mean pose placed in the image box), and
on every image with each miss's joints counted wrong.

Usage::

    python tools/peers.py dlib  [--limit N] [--upsample 1] [--out tools/peers_results.json]
    python tools/peers.py mtcnn [--limit N] [--batch 64] [--mtcnn-pad 0 20] [--out tools/peers_results.json]
    python tools/peers.py mediapipe [--limit N] [--mediapipe-python /work/venv_mp/bin/python]
                                    [--ours-checkpoint runs/lsp/last.pt] [--out tools/peers_results.json]
    python tools/peers.py all [--mediapipe-python /work/venv_mp/bin/python]

``--limit N`` scores N evenly spaced test images (a fixed subset) instead of all. Results merge
into the ``--out`` json under the peer's name, with the command, versions and wall time.

Requirements (not heatmapnet dependencies; install them by hand)::

    pip install dlib-bin                            # prebuilt dlib wheels, imported as ``dlib``
    pip install face_recognition_models --no-deps
    pip install facenet-pytorch --no-deps           # it pins an old torch; torch/torchvision/PIL suffice

MediaPipe, in a virtual environment of its own (the main one keeps numpy 2 and its protobuf)::

    python -m venv /work/venv_mp
    /work/venv_mp/bin/pip install mediapipe==0.10.21 "numpy<2" "opencv-contrib-python<4.12"

``face_recognition_models`` imports ``pkg_resources``, which recent setuptools no longer has, so the
model file is located without importing the package.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from heatmapnet import metrics
from heatmapnet.config import load_config
from heatmapnet.data.build import read_split
from heatmapnet.data.pipelines import load_image
from heatmapnet.evaluation import TopDownPredictions
from heatmapnet.metadata import KeypointScheme, load_scheme
from heatmapnet.scoring import face_metrics

TOOLS = Path(__file__).resolve().parent
DEFAULT_OUT = TOOLS / "peers_results.json"
DLIB_MODEL = "models/shape_predictor_68_face_landmarks.dat"


class MissingPeer(RuntimeError):
    """A peer's package or model is not installed; the message says what to install."""


@dataclass(frozen=True)
class TestSet:
    """The test split heatmapnet evaluates a config on, with what its metrics need."""

    config_name: str
    records: Sequence
    scheme: KeypointScheme
    eval_section: object
    indices: np.ndarray  # (N,) the record indices scored (all, or a fixed subset)

    def gt(self) -> np.ndarray:
        """(N, K, 2) ground-truth points of the scored records, reader coordinates."""
        return np.stack([self.records[i].instances[0].keypoints for i in self.indices])

    def visible(self) -> np.ndarray:
        """(N, K) bool: the scored records' labelled points."""
        return np.stack([self.records[i].instances[0].visible for i in self.indices])

    def boxes(self) -> np.ndarray:
        """(N, 4) the scored records' boxes, x, y, w, h."""
        return np.stack([self.records[i].instances[0].bbox for i in self.indices])

    def sizes(self) -> np.ndarray:
        """(N, 2) the scored images' width and height."""
        return np.array([(self.records[i].width, self.records[i].height) for i in self.indices], dtype=np.float64)


@dataclass(frozen=True)
class PeerOutput:
    """A peer's predictions on a test set: points for every scored image, the detector's verdict."""

    points: np.ndarray  # (N, K, 2) detected where ``detected``, the fallback elsewhere
    detected: np.ndarray  # (N,) bool
    inference_s: float


def load_test_set(config_name: str, limit: Optional[int]) -> TestSet:
    """``config_name``'s ``data.val`` records, its scheme and eval section; ``limit`` keeps that many
    evenly spaced records (always the same ones)."""
    cfg = load_config(config_name)
    records = read_split(cfg.data.val, name="data.val")
    n = len(records)
    if limit is None or limit >= n:
        indices = np.arange(n)
    else:
        indices = np.unique(np.linspace(0, n - 1, max(int(limit), 1)).round().astype(np.int64))
    return TestSet(config_name, records, load_scheme(cfg.data.scheme), cfg.eval, indices)


def rgb(record, pad: int = 0) -> np.ndarray:
    """The record's pixels as heatmapnet loads them, in RGB order (contiguous uint8), with a black
    border of ``pad`` pixels on every side (a point's coordinates grow by ``pad``)."""
    image = np.ascontiguousarray(load_image(record)[..., ::-1])
    if pad <= 0:
        return image
    return np.pad(image, ((pad, pad), (pad, pad), (0, 0)))


def score(test: TestSet, points: np.ndarray, keep: np.ndarray) -> dict:
    """heatmapnet's face metrics of ``points`` (N, K, 2) on the scored records where ``keep``."""
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        return {"num_samples": 0}
    predictions = TopDownPredictions(record_index=test.indices[rows], instance_index=np.zeros(rows.size, np.int64),
                                     keypoints=points[rows], scores=np.ones(points[rows].shape[:2]))
    return face_metrics(test.records, predictions, test.scheme, test.eval_section)


def mean_offset(points: np.ndarray, gt: np.ndarray, keep: np.ndarray) -> list:
    """Mean signed (dx, dy) of prediction minus ground truth in pixels over ``keep``: a convention
    mismatch (0- vs 1-based, pixel corner vs centre) shows up here."""
    if not keep.any():
        return [float("nan"), float("nan")]
    return [round(float(v), 3) for v in (points[keep] - gt[keep]).reshape(-1, 2).mean(axis=0)]


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def detection_summary(test: TestSet, output: PeerOutput) -> dict:
    gt = test.gt()
    return {
        "images": int(test.indices.size),
        "subset": bool(test.indices.size < len(test.records)),
        "detected": int(output.detected.sum()),
        "detection_rate": float(output.detected.mean()),
        "detected_only": score(test, output.points, output.detected),
        "with_fallback": score(test, output.points, np.ones_like(output.detected)),
        "mean_offset_px_detected": mean_offset(output.points, gt, output.detected),
        "inference_s": round(output.inference_s, 2),
    }


# ------------------------------------------------------------------------------------------------
# dlib


def dlib_modules():
    """(dlib, path of the 68-point model), or MissingPeer naming what to install."""
    try:
        import dlib
    except ImportError:
        raise MissingPeer("dlib is not installed: pip install dlib-bin") from None
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPeer("face_recognition_models is not installed: pip install face_recognition_models --no-deps")
    model = Path(list(spec.submodule_search_locations)[0]) / DLIB_MODEL
    if not model.is_file():
        raise MissingPeer(f"face_recognition_models has no {DLIB_MODEL} (looked at {model})")
    return dlib, model


def largest(rects) -> Optional[object]:
    """The largest-area rectangle of dlib's detections, or None."""
    if len(rects) == 0:
        return None
    areas = np.array([r.width() * r.height() for r in rects])
    return rects[int(areas.argmax())]


def run_dlib(test: TestSet, upsample: int) -> tuple[PeerOutput, np.ndarray]:
    """dlib detector + predictor on every scored image; also the predictor on the whole-image box
    for every image. Returns (detector output with whole-image fallback, whole-image points)."""
    dlib, model = dlib_modules()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model))

    def landmarks(image, rect) -> np.ndarray:
        return np.array([(p.x, p.y) for p in predictor(image, rect).parts()], dtype=np.float64)

    k = test.scheme.num_keypoints
    points = np.empty((test.indices.size, k, 2))
    whole = np.empty((test.indices.size, k, 2))
    detected = np.zeros(test.indices.size, bool)
    start = time.perf_counter()
    for row, index in enumerate(test.indices):
        record = test.records[index]
        image = rgb(record)
        box = dlib.rectangle(0, 0, record.width - 1, record.height - 1)
        whole[row] = landmarks(image, box)
        face = largest(detector(image, upsample))
        detected[row] = face is not None
        points[row] = landmarks(image, face) if face is not None else whole[row]
    return PeerOutput(points, detected, time.perf_counter() - start), whole


def dlib_results(args) -> dict:
    """``{"dlib": result}`` on ytf68 test."""
    start = time.perf_counter()
    test = load_test_set("ytf68", args.limit)
    output, whole = run_dlib(test, args.upsample)
    result = detection_summary(test, output)
    result["no_detector_whole_crop_box"] = score(test, whole, np.ones(test.indices.size, bool))
    result.update({
        "test_set": "ytf68 test (configs/ytf68.yaml data.val)",
        "model": "face_recognition_models " + DLIB_MODEL,
        "detector": f"dlib.get_frontal_face_detector(), upsample {args.upsample}, largest box",
        "fallback": "shape predictor on the whole image (the 128x128 face crop) as the box",
        "versions": {"dlib": dlib_modules()[0].__version__,
                     "face_recognition_models": package_version("face_recognition_models")},
        "wall_s": round(time.perf_counter() - start, 1),
    })
    return {"dlib": result}


# ------------------------------------------------------------------------------------------------
# MTCNN


def mtcnn_class():
    try:
        from facenet_pytorch import MTCNN
    except ImportError as exc:
        raise MissingPeer(f"facenet_pytorch cannot be imported ({exc}): pip install facenet-pytorch --no-deps") \
            from None
    return MTCNN


def mean_shape(config_name: str) -> np.ndarray:
    """(K, 2) mean training shape of ``config_name`` as fractions of the image width and height,
    each point averaged over the images where it is labelled."""
    cfg = load_config(config_name)
    records = read_split(cfg.data.train, name="data.train")
    points = np.stack([r.instances[0].keypoints for r in records])
    visible = np.stack([r.instances[0].visible for r in records])
    sizes = np.array([(r.width, r.height) for r in records], dtype=np.float64)
    fractions = points / sizes[:, None, :]
    weights = np.broadcast_to(visible[..., None], fractions.shape).astype(np.float64)
    return (fractions * weights).sum(axis=0) / weights.sum(axis=0)


def run_mtcnn(test: TestSet, batch: int, fallback: np.ndarray, pad: int) -> PeerOutput:
    """MTCNN's largest face's five points per image (batches of equal-size images), each image given a
    black border of ``pad`` pixels first; ``fallback`` (K, 2 fractions of the image size) where it
    finds no face."""
    detector = mtcnn_class()(device="cpu")
    sizes = np.array([(test.records[i].width, test.records[i].height) for i in test.indices], dtype=np.float64)
    points = fallback[None] * sizes[:, None, :]
    detected = np.zeros(test.indices.size, bool)
    elapsed = 0.0
    for shape in np.unique(sizes, axis=0):  # MTCNN batches only equal-size images
        rows = np.flatnonzero((sizes == shape).all(axis=1))
        for chunk in np.array_split(rows, max(1, -(-rows.size // batch))):
            images = np.stack([rgb(test.records[test.indices[r]], pad) for r in chunk])
            start = time.perf_counter()
            _, _, found = detector.detect(images, landmarks=True)
            elapsed += time.perf_counter() - start
            for row, face_points in zip(chunk, found):
                if face_points is not None:  # sorted largest box first (select_largest=True)
                    points[row] = np.asarray(face_points[0], dtype=np.float64) - pad
                    detected[row] = True
    return PeerOutput(points, detected, elapsed)


def mtcnn_result(test: TestSet, fallback: np.ndarray, args, pad: int) -> dict:
    output = run_mtcnn(test, args.batch, fallback, pad)
    result = detection_summary(test, output)
    mirrored = output.points[:, test.scheme.flip_permutation]
    swapped = score(test, mirrored, output.detected)
    result["order_check"] = {
        "nme_detected_as_is": result["detected_only"].get("nme"),
        "nme_detected_left_right_swapped": swapped.get("nme"),
        "order_matches_mtfl": bool(swapped.get("nme", np.inf) > result["detected_only"].get("nme", np.inf)),
    }
    result.update({
        "test_set": "MTFL AFLW test (configs/mtfl5.yaml data.val)",
        "model": "facenet-pytorch MTCNN shipped weights (pnet/rnet/onet.pt), defaults, largest box",
        "input": f"the 80x80 image with a {pad}-pixel black border" if pad else "the 80x80 image as it is",
        "fallback": "MTFL training set's mean shape (fractions of image size) placed in the image box",
        "versions": {"facenet_pytorch": package_version("facenet-pytorch"), "torch": torch.__version__},
    })
    return result


def mtcnn_results(args) -> dict:
    """``{"mtcnn": ..., "mtcnn_pad20": ...}``: one result per ``--mtcnn-pad`` on the MTFL AFLW test.
    Each wall time includes reading the test and training sets (done once, shared)."""
    start = time.perf_counter()
    test = load_test_set("mtfl5", args.limit)
    fallback = mean_shape("mtfl5")
    setup = time.perf_counter() - start
    results = {}
    for pad in args.mtcnn_pad:
        begin = time.perf_counter()
        result = mtcnn_result(test, fallback, args, pad)
        result["wall_s"] = round(setup + time.perf_counter() - begin, 1)
        results["mtcnn" if pad == 0 else f"mtcnn_pad{pad}"] = result
    return results


# ------------------------------------------------------------------------------------------------
# MediaPipe BlazePose

#: BlazePose's 33 landmarks in MediaPipe's order (``mediapipe.solutions.pose.PoseLandmark``, names
#: lower-cased); "left"/"right" are the person's own sides, as in LSP.
BLAZEPOSE_LANDMARKS = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
MEDIAPIPE_INSTALL = ('python -m venv /work/venv_mp && /work/venv_mp/bin/pip install mediapipe==0.10.21 "numpy<2" '
                     '"opencv-contrib-python<4.12", then pass --mediapipe-python /work/venv_mp/bin/python')
MEDIAPIPE_WORKER = TOOLS / "mediapipe_pose.py"
EXIT_NO_MEDIAPIPE = 3  # tools/mediapipe_pose.py: mediapipe cannot be imported


@dataclass(frozen=True)
class JointMap:
    """The scheme joints a peer predicts and the peer's landmark for each, matched by name."""

    names: tuple[str, ...]  # (J,) the shared joint names, in the scheme's order
    scheme_index: np.ndarray  # (J,) each one's index in the scheme
    landmark_index: np.ndarray  # (J,) each one's index among the peer's landmarks


def joint_map(scheme: KeypointScheme, landmarks: Sequence[str] = BLAZEPOSE_LANDMARKS) -> JointMap:
    """The joints of ``scheme`` that ``landmarks`` names too (for LSP and BlazePose: the 12 limb
    joints; neck and head top have no BlazePose landmark). Both must name the person's sides."""
    if scheme.sides != "person":
        raise ValueError(f"scheme {scheme.name} names the image's sides; BlazePose names the person's")
    names = tuple(name for name in scheme.keypoint_names if name in landmarks)
    if not names:
        raise ValueError(f"scheme {scheme.name} shares no joint name with BlazePose's landmarks")
    return JointMap(names, np.array([scheme.keypoint_names.index(n) for n in names], dtype=np.int64),
                    np.array([landmarks.index(n) for n in names], dtype=np.int64))


def landmarks_to_scheme(landmarks: np.ndarray, joints: JointMap, num_keypoints: int) -> np.ndarray:
    """(N, num_keypoints, 2) scheme points from (N, L, 2) landmarks: the mapped joints filled, the
    others NaN (they are never scored)."""
    points = np.full((landmarks.shape[0], num_keypoints, 2), np.nan)
    points[:, joints.scheme_index] = landmarks[:, joints.landmark_index]
    return points


def normalised_to_pixels(normalised: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """MediaPipe's normalised (N, L, 2) x, y (the image's edges at 0 and 1) -> the readers' 0-based
    pixel coordinates (pixel centres on integers, the image's edges at -0.5 and size - 0.5)."""
    return normalised * sizes[:, None, :] - 0.5


@dataclass(frozen=True)
class PoseTruth:
    """The labels PCK needs, for the scored records."""

    keypoints: np.ndarray  # (N, K, 2)
    visible: np.ndarray  # (N, K) bool
    normaliser: np.ndarray  # (N,) the scheme's (the torso for LSP); NaN where undefined


def pose_truth(test: TestSet) -> PoseTruth:
    gt, visible = test.gt(), test.visible()
    found = metrics.scheme_normaliser(test.scheme, gt, visible, test.boxes())
    return PoseTruth(gt, visible, found.values)


@dataclass(frozen=True)
class JointsPCK:
    """PCK over some joints of some images, with what it counted."""

    pck: float  # NaN where nothing was counted
    per_joint: dict  # joint name -> PCK of that joint
    correct: int  # correct visible joints
    counted: int  # visible joints of the images with a valid normaliser
    images: int  # images asked for
    skipped: int  # of those, left out for an invalid normaliser (an unlabelled torso joint)

    def as_json(self, threshold: float) -> dict:
        return {f"pck@{threshold:g}": None if np.isnan(self.pck) else self.pck, "correct": self.correct,
                "counted_joints": self.counted, "images": self.images, "skipped_no_torso": self.skipped,
                "per_joint": self.per_joint}


def joints_pck(truth: PoseTruth, points: np.ndarray, rows: np.ndarray, joints: JointMap,
               threshold: float) -> JointsPCK:
    """:func:`heatmapnet.metrics.pck` of ``points`` (N, K, 2) on ``rows`` (a mask), over the joints
    ``joints`` only, each instance normalised as the scheme says (``truth.normaliser``)."""
    rows = np.flatnonzero(rows)
    columns = joints.scheme_index
    empty = JointsPCK(float("nan"), {}, 0, 0, int(rows.size), 0)
    if rows.size == 0:
        return empty
    normaliser = truth.normaliser[rows]
    valid = np.isfinite(normaliser) & (normaliser > 0)
    visible = truth.visible[rows][:, columns]
    if not (visible & valid[:, None]).any():
        return JointsPCK(float("nan"), {}, 0, 0, int(rows.size), int((~valid).sum()))
    result = metrics.pck(points[rows][:, columns], truth.keypoints[rows][:, columns], visible, normaliser,
                         threshold, invalid="skip")
    counted = int(result.num_visible.sum())
    correct = int(round(result.overall * counted))
    per_joint = {name: None if np.isnan(value) else float(value) for name, value in zip(joints.names, result.per_keypoint)}
    return JointsPCK(result.overall, per_joint, correct, counted, int(rows.size), result.num_skipped)


def misses_wrong(detected_only: JointsPCK, every_image: JointsPCK) -> JointsPCK:
    """PCK on every image with each missed image's joints counted wrong: the correct joints of the
    detected images over the joints counted on every image."""
    pck = detected_only.correct / every_image.counted if every_image.counted else float("nan")
    return JointsPCK(pck, {}, detected_only.correct, every_image.counted, every_image.images, every_image.skipped)


@dataclass(frozen=True)
class PoseSummary:
    """A body peer's PCK three ways: on the images it found a pose in, on every image with its
    fallback for the misses (as the face peers' "all"), and on every image with the misses wrong."""

    detected_only: JointsPCK
    with_fallback: JointsPCK
    misses_wrong: JointsPCK


def pose_summary(truth: PoseTruth, output: PeerOutput, joints: JointMap, threshold: float) -> PoseSummary:
    every = np.ones_like(output.detected)
    detected = joints_pck(truth, output.points, output.detected, joints, threshold)
    fallback = joints_pck(truth, output.points, every, joints, threshold)
    return PoseSummary(detected, fallback, misses_wrong(detected, fallback))


def pose_offset(truth: PoseTruth, points: np.ndarray, rows: np.ndarray, joints: JointMap) -> list:
    """Mean signed (dx, dy) of prediction minus label over ``joints`` on ``rows``, in units of the
    normaliser (:func:`heatmapnet.metrics.mean_offset`, the eval's ``offset_x`` / ``offset_y``)."""
    rows = np.flatnonzero(rows)
    columns = joints.scheme_index
    try:
        offset = metrics.mean_offset(points[rows][:, columns], truth.keypoints[rows][:, columns],
                                     truth.normaliser[rows], truth.visible[rows][:, columns])
    except ValueError:  # no image with a labelled joint and a torso
        return [float("nan"), float("nan")]
    return [round(float(v), 4) for v in offset]


def write_images(test: TestSet, path: Path) -> None:
    """The scored images, RGB uint8 as heatmapnet loads them, into an ``.npz`` for the worker."""
    np.savez(path, **{f"image_{row:05d}": rgb(test.records[index]) for row, index in enumerate(test.indices)})


@dataclass(frozen=True)
class BlazePoseRun:
    """What ``tools/mediapipe_pose.py`` returned."""

    landmarks: np.ndarray  # (N, 33, 2) normalised x, y; NaN where no pose was found
    detected: np.ndarray  # (N,) bool
    seconds: np.ndarray  # (N,) each image's Pose.process time
    mediapipe_version: str


def run_blazepose(test: TestSet, python: str, model_complexity: int, threads: int) -> BlazePoseRun:
    """BlazePose on every scored image, by ``tools/mediapipe_pose.py`` under ``python``."""
    with tempfile.TemporaryDirectory(prefix="peers_mediapipe_") as folder:
        images, out = Path(folder) / "images.npz", Path(folder) / "landmarks.npz"
        write_images(test, images)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        try:
            done = subprocess.run([python, str(MEDIAPIPE_WORKER), str(images), str(out), "--model-complexity",
                                   str(model_complexity)], capture_output=True, text=True, env=env)
        except OSError as exc:
            raise MissingPeer(f"cannot run {python} ({exc.strerror}): {MEDIAPIPE_INSTALL}") from None
        if done.returncode == EXIT_NO_MEDIAPIPE:
            raise MissingPeer(f"{done.stderr.strip().splitlines()[-1]}: {MEDIAPIPE_INSTALL}")
        if done.returncode != 0:
            raise RuntimeError(f"{MEDIAPIPE_WORKER.name} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        with np.load(out) as found:
            return BlazePoseRun(found["landmarks"], found["detected"].astype(bool), found["seconds"],
                                str(found["mediapipe_version"]))


def ours_on_test(test: TestSet, checkpoint_path: Path) -> np.ndarray:
    """(N, K, 2) a heatmapnet checkpoint's points on the scored records, predicted as ``heatmapnet
    eval`` predicts the test set's config (each person's box from the labels; its flip test and
    decoding)."""
    from heatmapnet.build import build_codec, build_dataset, build_evaluator, build_scheme
    from heatmapnet.checkpoint import load_checkpoint
    from heatmapnet.predict import model_from_checkpoint

    cfg = load_config(test.config_name)
    checkpoint = load_checkpoint(checkpoint_path)
    scheme = build_scheme(cfg)
    checkpoint.check_fits(scheme)
    codec = build_codec(cfg, scheme)
    records = [test.records[i] for i in test.indices]
    dataset = build_dataset(cfg, records, codec, scheme, train=False)
    model = model_from_checkpoint(cfg, checkpoint, torch.device("cpu"))
    predictions = build_evaluator(cfg, records, dataset, codec, scheme).predict(model)
    points = np.full((len(records), scheme.num_keypoints, 2), np.nan)
    points[predictions.record_index] = predictions.keypoints
    return points


def ours_result(test: TestSet, truth: PoseTruth, checkpoint_path: Path, detected: np.ndarray, joints: JointMap,
                threshold: float) -> dict:
    """The checkpoint's PCK on the 12 joints of every image and of the images BlazePose found a pose
    in, and on all the scheme's joints (heatmapnet eval's own number) for reference."""
    start = time.perf_counter()
    points = ours_on_test(test, checkpoint_path)
    seconds = time.perf_counter() - start
    every = np.ones(test.indices.size, bool)
    all_joints = JointMap(test.scheme.keypoint_names, np.arange(test.scheme.num_keypoints),
                          np.arange(test.scheme.num_keypoints))
    return {
        "checkpoint": str(checkpoint_path),
        "all_images": joints_pck(truth, points, every, joints, threshold).as_json(threshold),
        "blazepose_detected_images": joints_pck(truth, points, detected, joints, threshold).as_json(threshold),
        "all_images_all_joints": joints_pck(truth, points, every, all_joints, threshold).as_json(threshold),
        "offset_all_images": pose_offset(truth, points, every, joints),
        "inference_s": round(seconds, 2),
    }


def mediapipe_results(args) -> dict:
    """``{"mediapipe_blazepose_full": result}`` on the LSP held-out set."""
    start = time.perf_counter()
    test = load_test_set("lsp", args.limit)
    truth = pose_truth(test)
    joints = joint_map(test.scheme)
    threshold = float(test.eval_section.pck_threshold)
    run = run_blazepose(test, args.mediapipe_python, args.model_complexity, args.threads)
    detected_points = landmarks_to_scheme(normalised_to_pixels(run.landmarks, test.sizes()), joints,
                                          test.scheme.num_keypoints)
    fallback = mean_shape("lsp")[None] * test.sizes()[:, None, :]
    points = np.where(run.detected[:, None, None], detected_points, fallback)
    output = PeerOutput(points, run.detected, float(run.seconds.sum()))
    summary = pose_summary(truth, output, joints, threshold)
    swapped = joints_pck(truth, points[:, test.scheme.flip_permutation], run.detected, joints, threshold)
    result = {
        "images": int(test.indices.size),
        "subset": bool(test.indices.size < len(test.records)),
        "detected": int(run.detected.sum()),
        "detection_rate": float(run.detected.mean()),
        "joints": list(joints.names),
        "landmark_of_joint": {name: int(i) for name, i in zip(joints.names, joints.landmark_index)},
        "detected_only": summary.detected_only.as_json(threshold),
        "with_fallback": summary.with_fallback.as_json(threshold),
        "misses_wrong": summary.misses_wrong.as_json(threshold),
        "side_check": {
            "pck_detected_as_is": summary.detected_only.as_json(threshold)[f"pck@{threshold:g}"],
            "pck_detected_left_right_swapped": swapped.as_json(threshold)[f"pck@{threshold:g}"],
            "sides_match_lsp": bool(swapped.pck < summary.detected_only.pck),
        },
        "offset_detected": pose_offset(truth, points, run.detected, joints),
        "inference_s": round(output.inference_s, 2),
        "test_set": "LSP held out: LSPET images 2500-2999 (configs/lsp.yaml data.val)",
        "model": f"mediapipe.solutions.pose.Pose(static_image_mode=True, model_complexity={args.model_complexity}): "
                 "BlazePose detector + landmark model as the wheel ships them, the whole image as input",
        "metric": f"PCK@{threshold:g} normalised by the torso (right shoulder - left hip), "
                  f"{len(joints.names)} limb joints (neck and head top left out)",
        "fallback": "LSP training set's mean pose (fractions of image size) placed in the image box",
        "versions": {"mediapipe": run.mediapipe_version},
    }
    if args.ours_checkpoint is not None:
        result["heatmapnet"] = ours_result(test, truth, args.ours_checkpoint, run.detected, joints, threshold)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return {"mediapipe_blazepose_full" if args.model_complexity == 1 else
            f"mediapipe_blazepose_c{args.model_complexity}": result}




#: peer -> its runner, which returns {result name: result}
PEERS: dict[str, Callable[[argparse.Namespace], dict]] = {"dlib": dlib_results, "mtcnn": mtcnn_results,
                                                           "mediapipe": mediapipe_results}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=[*PEERS, "all"])
    parser.add_argument("--limit", type=int, default=None, help="score N evenly spaced test images")
    parser.add_argument("--upsample", type=int, default=1, help="dlib detector upsampling (face_recognition: 1)")
    parser.add_argument("--batch", type=int, default=64, help="MTCNN images per batch")
    parser.add_argument("--mtcnn-pad", type=int, nargs="+", default=[0, 20],
                        help="MTCNN runs, one per black border width in pixels (0: the image as it is)")
    parser.add_argument("--mediapipe-python", default=sys.executable,
                        help="the interpreter that has mediapipe 0.10.21 (default: this one)")
    parser.add_argument("--model-complexity", type=int, default=1, choices=[0, 1],
                        help="BlazePose lite (0) or full (1, the default)")
    parser.add_argument("--ours-checkpoint", type=Path, default=None,
                        help="a heatmapnet LSP checkpoint to score on the same joints of the same images")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch / OpenCV threads (and the MediaPipe worker's OMP_NUM_THREADS)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="json to merge the results into")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import cv2
    cv2.setNumThreads(args.threads)
    command = "python tools/peers.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    names = list(PEERS) if args.peer == "all" else [args.peer]
    missing = None
    try:
        for name in names:
            for key, result in PEERS[name](args).items():
                result["command"] = command
                results[key] = result
                print(json.dumps({key: result}, indent=1))
    except MissingPeer as exc:
        missing = exc
    args.out.write_text(json.dumps(results, indent=1) + "\n")  # the peers that ran keep their results
    if missing is not None:
        print(f"peers: {missing}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
