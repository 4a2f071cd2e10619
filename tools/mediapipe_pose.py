#!/usr/bin/env python
"""MediaPipe BlazePose on a batch of images, for ``tools/peers.py mediapipe``.

It imports numpy and mediapipe only (no heatmapnet, no torch), so it runs in an environment of
its own: MediaPipe 0.10.21, the last release with ``mediapipe.solutions``, needs numpy < 2 and
protobuf < 5 (see docs/results.md for the install). ``tools/peers.py`` writes the images (RGB,
uint8) into an ``.npz`` (keys ``image_00000``, ``image_00001``, ...), runs this file with that
environment's interpreter and reads back the ``.npz`` it writes::

    python tools/mediapipe_pose.py IMAGES.npz LANDMARKS.npz [--model-complexity 1]

The output holds ``landmarks`` (N, 33, 2): MediaPipe's normalised x, y (fractions of the image
width and height, the image's edges at 0 and 1; NaN where no pose was found), ``visibility``
(N, 33), ``detected`` (N,) bool, ``seconds`` (N,) the time of each ``Pose.process`` call, and
``mediapipe_version``. Exit status 3 with one line on stderr: mediapipe cannot be imported.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

NUM_LANDMARKS = 33
EXIT_NO_MEDIAPIPE = 3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", help=".npz of RGB uint8 images, keys image_00000, image_00001, ...")
    parser.add_argument("out", help=".npz to write the landmarks to")
    parser.add_argument("--model-complexity", type=int, default=1, choices=[0, 1, 2],
                        help="BlazePose lite (0), full (1, the default) or heavy (2; not in the wheel)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import mediapipe as mp
        solutions = mp.solutions
    except (ImportError, AttributeError) as exc:
        print(f"mediapipe cannot be imported by {sys.executable} ({exc})", file=sys.stderr)
        return EXIT_NO_MEDIAPIPE
    with np.load(args.images) as stored:
        keys = sorted(stored.files)
        images = [stored[key] for key in keys]
    n = len(images)
    landmarks = np.full((n, NUM_LANDMARKS, 2), np.nan)
    visibility = np.zeros((n, NUM_LANDMARKS))
    detected = np.zeros(n, bool)
    seconds = np.zeros(n)
    with solutions.pose.Pose(static_image_mode=True, model_complexity=args.model_complexity) as pose:
        for row, image in enumerate(images):
            start = time.perf_counter()
            result = pose.process(np.ascontiguousarray(image))
            seconds[row] = time.perf_counter() - start
            if result.pose_landmarks is None:
                continue
            found = result.pose_landmarks.landmark
            landmarks[row] = [(point.x, point.y) for point in found]
            visibility[row] = [point.visibility for point in found]
            detected[row] = True
    np.savez(args.out, landmarks=landmarks, visibility=visibility, detected=detected, seconds=seconds,
             mediapipe_version=np.array(mp.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
