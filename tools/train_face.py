#!/usr/bin/env python
"""Train a facial-landmark model: ``python tools/train_face.py [CONFIG] [--set KEY=VALUE ...] [--out DIR]``.

CONFIG defaults to ``ytf68`` (68 iBUG points); ``mtfl5`` (5 points) and ``synthetic_faces`` work
the same way. The same as ``heatmapnet train``, for people who prefer scripts.
"""
import sys

from heatmapnet.cli import main

DEFAULT_CONFIG = "ytf68"

if __name__ == "__main__":
    arguments = sys.argv[1:]
    if not arguments or arguments[0].startswith("-"):
        arguments = [DEFAULT_CONFIG, *arguments]
    sys.exit(main(["train", *arguments]))
