#!/usr/bin/env python
"""Benchmark our targets, loss and decoding beside reference-style baselines:
``python tools/benchmark.py [--json PATH] [--cases NAME ...] [--repeats N] [--quick] [--device cpu|cuda]``.

The same as ``heatmapnet bench``, for people who prefer scripts.
"""
import sys

from heatmapnet.bench import main

if __name__ == "__main__":
    sys.exit(main())
