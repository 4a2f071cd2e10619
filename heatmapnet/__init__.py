"""heatmapnet: keypoint heatmap models in the CornerNet/CenterNet style.

Targets (:mod:`heatmapnet.targets`), losses (:mod:`heatmapnet.losses`), decoding
(:mod:`heatmapnet.decode`), the codec that ties them together (:mod:`heatmapnet.codec`) and the
field's metrics (:mod:`heatmapnet.metrics`).
"""
__version__ = "0.1.0"
