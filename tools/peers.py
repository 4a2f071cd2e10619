#!/usr/bin/env python
"""What users would otherwise use, scored exactly as heatmapnet scores itself.

Two peers, each on the test split of heatmapnet's own config and scored by
:func:`heatmapnet.scoring.face_metrics` (inter-ocular NME from the scheme's
``nme_normalisation``, FR@0.1, AUC@0.1), in the reader's 0-based pixel coordinates:

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

Where a detector finds several faces the largest box is used. Where it finds none, the
"fallback" rows still predict something: dlib runs the shape predictor on the whole image as the
face box (ytf68 images are 128 x 128 face crops); MTCNN's miss gets the MTFL training set's mean
shape placed in the image box. Each peer reports NME on the detected faces only and on every
image with the fallback; dlib also reports the predictor on the whole-crop box for every image
(no detector at all).

Usage::

    python tools/peers.py dlib  [--limit N] [--upsample 1] [--out tools/peers_results.json]
    python tools/peers.py mtcnn [--limit N] [--batch 64] [--mtcnn-pad 0 20] [--out tools/peers_results.json]
    python tools/peers.py all

``--limit N`` scores N evenly spaced test images (a fixed subset) instead of all. Results merge
into the ``--out`` json under the peer's name, with the command, versions and wall time.

Requirements (not heatmapnet dependencies; install them by hand)::

    pip install dlib-bin                            # prebuilt dlib wheels, imported as ``dlib``
    pip install face_recognition_models --no-deps
    pip install facenet-pytorch --no-deps           # it pins an old torch; torch/torchvision/PIL suffice

``face_recognition_models`` imports ``pkg_resources``, which recent setuptools no longer has, so the
model file is located without importing the package.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from heatmapnet.config import load_config
from heatmapnet.data.build import read_split
from heatmapnet.data.pipelines import load_image
from heatmapnet.evaluation import TopDownPredictions
from heatmapnet.metadata import KeypointScheme, load_scheme
from heatmapnet.scoring import face_metrics

DEFAULT_OUT = Path(__file__).resolve().parent / "peers_results.json"
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
    """(K, 2) mean training shape of ``config_name`` as fractions of the image width and height."""
    cfg = load_config(config_name)
    records = read_split(cfg.data.train, name="data.train")
    points = np.stack([r.instances[0].keypoints for r in records])
    sizes = np.array([(r.width, r.height) for r in records], dtype=np.float64)
    return (points / sizes[:, None, :]).mean(axis=0)


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


#: peer -> its runner, which returns {result name: result}
PEERS: dict[str, Callable[[argparse.Namespace], dict]] = {"dlib": dlib_results, "mtcnn": mtcnn_results}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=[*PEERS, "all"])
    parser.add_argument("--limit", type=int, default=None, help="score N evenly spaced test images")
    parser.add_argument("--upsample", type=int, default=1, help="dlib detector upsampling (face_recognition: 1)")
    parser.add_argument("--batch", type=int, default=64, help="MTCNN images per batch")
    parser.add_argument("--mtcnn-pad", type=int, nargs="+", default=[0, 20],
                        help="MTCNN runs, one per black border width in pixels (0: the image as it is)")
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads")
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
    try:
        for name in names:
            for key, result in PEERS[name](args).items():
                result["command"] = command
                results[key] = result
                print(json.dumps({key: result}, indent=1))
    except MissingPeer as exc:
        print(f"peers: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
