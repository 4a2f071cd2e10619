"""Heatmap networks: any timm backbone (``features_only``) and a head registry, built by name.

Heads output one channel per keypoint type at stride 4. The model owns its output activation:
``model(images)`` gives the raw output the loss sees (logits for sigmoid losses), and
``model.heatmaps(images)`` the heatmaps every decoder reads (``activate`` applied). A sigmoid
head starts its final bias at RetinaNet's prior -log((1 - pi) / pi), so the first steps are not
swamped by the background; identity heads start at 0. A new head is one class registered in
:data:`HEADS` with the constructor ``(in_channels, in_strides, num_outputs, channels, norm)``
and a ``classifier`` attribute (its last 1x1 convolution).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from .stride import OUTPUT_STRIDE
from .losses import prior_bias
from .registry import Registry

HEADS: Registry = Registry("model.head")
ACTIVATIONS = ("sigmoid", "identity")
SIGMOID_PRIOR = 0.1  # the probability a fresh sigmoid head predicts everywhere


def make_norm(kind: str, channels: int) -> nn.Module:
    """BatchNorm, or GroupNorm where batch statistics must not depend on how a batch is split
    (DDP on CPU has no SyncBatchNorm)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(32, channels // 4) or 1, channels)
    raise ValueError(f"unknown head_norm {kind!r}; choose batch or group")


@HEADS.register("deconv")
class DeconvHead(nn.Module):
    """SimpleBaseline (Xiao et al., 2018): transposed convolutions from the deepest feature up to
    stride 4, then a 1x1 classifier."""

    def __init__(self, in_channels, in_strides, num_keypoints: int, channels: int = 128, norm: str = "batch"):
        super().__init__()
        layers, stride, width = [], in_strides[-1], in_channels[-1]
        while stride > OUTPUT_STRIDE:
            layers += [nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1, bias=False),
                       make_norm(norm, channels), nn.ReLU(inplace=True)]
            stride, width = stride // 2, channels
        self.upsample = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(width, num_keypoints, 1)

    def forward(self, features):
        return self.classifier(self.upsample(features[-1]))


@HEADS.register("fpn")
class FPNHead(nn.Module):
    """A light feature-pyramid merge: 1x1 laterals from stride 4 up, top-down nearest upsampling
    and addition, a 3x3 smoothing block at stride 4, then a 1x1 classifier."""

    def __init__(self, in_channels, in_strides, num_keypoints: int, channels: int = 64, norm: str = "batch"):
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                    make_norm(norm, channels), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(channels, num_keypoints, 1)

    def forward(self, features):
        merged = self.laterals[-1](features[-1])
        for lateral, feature in zip(reversed(self.laterals[:-1]), reversed(features[:-1])):
            merged = lateral(feature) + F.interpolate(merged, size=feature.shape[-2:], mode="nearest")
        return self.classifier(self.smooth(merged))


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet18"
    head: str = "fpn"
    head_channels: int = 64
    head_norm: str = "batch"  # batch | group
    num_keypoints: int = 17  # output channels (a bottom-up model has more: its codec's num_outputs)
    pretrained_path: Optional[str] = None  # a local timm checkpoint; nothing is downloaded
    output_activation: str = "identity"  # sigmoid (logits out, e.g. focal losses) | identity
    heatmap_channels: Optional[tuple] = None  # the channels that are heatmaps (activated); None: all


class HeatmapModel(nn.Module):
    """timm backbone + heatmap head: images (B, 3, H, W) -> outputs (B, K, H/4, W/4); the
    heatmaps are ``activate(outputs)``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        head = HEADS.get(config.head)
        if config.output_activation not in ACTIVATIONS:
            raise ValueError(f"unknown output_activation {config.output_activation!r}; choose one of {ACTIVATIONS}")
        self.config = config
        self.backbone = _create_backbone(config.backbone, config.pretrained_path)
        strides = self.backbone.feature_info.reduction()
        keep = [i for i, s in enumerate(strides) if s >= OUTPUT_STRIDE]
        if not keep or strides[keep[0]] != OUTPUT_STRIDE:
            raise ValueError(f"backbone {config.backbone!r} has no stride-{OUTPUT_STRIDE} feature (strides {strides})")
        self.feature_indices = keep
        channels = [self.backbone.feature_info.channels()[i] for i in keep]
        self.head = head(channels, [strides[i] for i in keep], config.num_keypoints, config.head_channels,
                         config.head_norm)
        classifier = self.head.classifier
        nn.init.normal_(classifier.weight, std=0.001)
        sigmoid = config.output_activation == "sigmoid"
        self.register_buffer("heatmap_mask", self._heatmap_mask(config), persistent=False)
        with torch.no_grad():
            classifier.bias.copy_(self.heatmap_mask * (prior_bias(SIGMOID_PRIOR) if sigmoid else 0.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The raw output (logits for a sigmoid model): what the loss compares with the targets."""
        features = self.backbone(images)
        return self.head([features[i] for i in self.feature_indices])

    @staticmethod
    def _heatmap_mask(config: ModelConfig) -> torch.Tensor:
        mask = torch.zeros(config.num_keypoints)
        channels = range(config.num_keypoints) if config.heatmap_channels is None else list(config.heatmap_channels)
        mask[list(channels)] = 1.0
        return mask

    def activate(self, outputs: torch.Tensor) -> torch.Tensor:
        """Raw outputs -> maps (float32): the heatmap channels activated, any others (offsets and
        sizes of a bottom-up model) as they are."""
        outputs = outputs.float()
        if self.config.output_activation != "sigmoid":
            return outputs
        if self.config.heatmap_channels is None:
            return torch.sigmoid(outputs)
        mask = self.heatmap_mask.to(torch.bool)[:, None, None]
        return torch.where(mask, torch.sigmoid(outputs), outputs)

    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> the heatmaps decoders read."""
        return self.activate(self(images))


def _create_backbone(name: str, pretrained_path: Optional[str]) -> nn.Module:
    # accepts tagged names such as mobilenetv3_small_050.lamb_in1k; is_model ignores the tag, so check it too
    if not timm.is_model(name) or ("." in name and name not in timm.list_pretrained(name)):
        raise ValueError(f"unknown timm model {name!r} (see timm.list_models() and timm.list_pretrained())")
    if pretrained_path is None:
        return timm.create_model(name, features_only=True, pretrained=False)
    if not os.path.isfile(pretrained_path):
        raise FileNotFoundError(f"model.pretrained_path: weight file not found: {pretrained_path}")
    return timm.create_model(name, features_only=True, pretrained=True,
                             pretrained_cfg_overlay={"file": os.path.abspath(pretrained_path)})


def build_model(**kwargs) -> HeatmapModel:
    return HeatmapModel(ModelConfig(**kwargs))
