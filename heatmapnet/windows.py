"""Every S x S window of a stack of maps as a strided view, without copying: ``view[c, t, l]`` is
``maps[c, t:t + S, l:l + S]``. Decoding reads the windows around peaks through it; target
drawing writes Gaussians through it."""
from __future__ import annotations

import numpy as np
import torch


def _window_shape(maps_shape, size: int) -> tuple:
    count, height, width = maps_shape
    return count, height - size + 1, width - size + 1, size, size


def window_view_numpy(maps: np.ndarray, size: int, writeable: bool = False) -> np.ndarray:
    """(C, H - S + 1, W - S + 1, S, S) view of contiguous ``maps`` (C, H, W); needs H, W >= S.
    Indexed by arrays (c, t, l), numpy copies each window line as a block."""
    return np.lib.stride_tricks.as_strided(maps, _window_shape(maps.shape, size), maps.strides + maps.strides[1:],
                                           writeable=writeable)


def window_view_torch(maps: torch.Tensor, size: int) -> torch.Tensor:
    """As :func:`window_view_numpy`, for a contiguous tensor on any device."""
    return maps.as_strided(_window_shape(maps.shape, size), maps.stride() + maps.stride()[1:])
