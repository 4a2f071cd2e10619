"""Tiny models for the export and predict tests (not a test module): a mobilenetv3_small_050 at
64 x 64 with its final 1x1 convolution widened (std 0.3 instead of the init's 0.001), so that even
untrained heatmaps have clear, well separated peaks and decoding is not decided by rounding."""
from __future__ import annotations

import cv2
import numpy as np
import torch
from omegaconf import OmegaConf

from heatmapnet.build import build_model, build_scheme
from heatmapnet.checkpoint import save_checkpoint
from heatmapnet.config import load_config

TINY = ["model.backbone=mobilenetv3_small_050", "model.head_channels=16", "data.input_size=[64,64]"]


def tiny_checkpoint(path, config_name: str, overrides=()) -> str:
    """A checkpoint of ``config_name``'s model (made tiny) with sharpened output weights."""
    config = load_config(config_name, [*TINY, *overrides])
    scheme = build_scheme(config)
    torch.manual_seed(0)
    model = build_model(config, scheme)
    with torch.no_grad():  # the head's last 1x1 convolution(s), whatever the classifier holds
        for conv in model.head.classifier.modules():
            if isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (1, 1):
                conv.weight.normal_(0.0, 0.3)
    save_checkpoint(path, config=OmegaConf.to_container(config), scheme=scheme, model=model.state_dict(), step=7)
    return str(path)


def textured_image(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth random uint8 BGR image (coarse noise scaled up)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
