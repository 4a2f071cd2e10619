"""The optimisers a run may name (``train.optimizer``), registered in :data:`OPTIMIZERS`;
:func:`heatmapnet.build.build_optimizer` builds the one a config names over the model's parameter
groups (:func:`heatmapnet.finetune.parameter_groups`)."""
from __future__ import annotations

import torch

from .registry import Registry

#: ``train.optimizer`` -> a ``torch.optim.Optimizer`` class, constructed as ``(groups, lr=, weight_decay=)``
OPTIMIZERS: Registry = Registry("train.optimizer")
OPTIMIZERS.register("adam")(torch.optim.Adam)
OPTIMIZERS.register("adamw")(torch.optim.AdamW)
