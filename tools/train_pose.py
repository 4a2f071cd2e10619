#!/usr/bin/env python
"""Train a human-pose model: ``python tools/train_pose.py [CONFIG] [--set KEY=VALUE ...] [--out DIR]``.

CONFIG defaults to ``lsp`` (14 joints, LSPET); ``coco`` (17 joints), ``coco_custom`` (your own
COCO-format json) and ``synthetic_people`` work the same way. Under
``torchrun --nproc_per_node=N tools/train_pose.py ...`` it trains with DDP.
"""
import sys

from heatmapnet.cli import main

DEFAULT_CONFIG = "lsp"

if __name__ == "__main__":
    arguments = sys.argv[1:]
    if not arguments or arguments[0].startswith("-"):
        arguments = [DEFAULT_CONFIG, *arguments]
    sys.exit(main(["train", *arguments]))
