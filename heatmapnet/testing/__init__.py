"""Scenes and oracles for the tests and ``heatmapnet bench``; nothing here is used by training,
evaluation, export or deployment.

- :mod:`heatmapnet.testing.reference`: the anchors' published formulations (CenterNet, HRNet,
  mmpose) in their own style, the bench's baselines and the tests' oracles;
- :mod:`heatmapnet.testing.scenes`: random inputs to time and check on (:func:`crowd_scene`'s
  keypoints, :func:`focal_inputs`, :func:`decode_inputs`, :func:`people_maps`' bottom-up maps).
"""
from .scenes import crowd_scene, decode_inputs, focal_inputs, people_maps

__all__ = ["crowd_scene", "decode_inputs", "focal_inputs", "people_maps"]
