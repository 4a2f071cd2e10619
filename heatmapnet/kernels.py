"""The optional C kernels (``heatmapnet/_kernels.c``) and the one switch that turns them off.

``setup.py`` builds the extension where a C compiler is found; without it, or with the kernels
turned off, target drawing (:mod:`heatmapnet.targets`), DARK decoding (:mod:`heatmapnet.decode`)
and the bottom-up peak search (:mod:`heatmapnet.bottomup`) take their PyTorch paths, which give
the same values. :func:`active` is what those modules ask before each CPU call.

``use_kernels(False)`` turns them off for the whole process; used in a ``with`` block it turns
them back to what they were when the block ends::

    with heatmapnet.kernels.use_kernels(False):
        maps = codec.encode(...)  # the PyTorch path
"""
from __future__ import annotations

from types import ModuleType
from typing import Optional

try:  # built by setup.py where a C compiler is found
    from . import _kernels as _built
except ImportError:
    _built = None

_enabled = True


def built() -> Optional[ModuleType]:
    """The compiled extension, whether or not it is turned on; None where it was not built."""
    return _built


def active() -> Optional[ModuleType]:
    """The extension to call: None where it was not built or :func:`use_kernels` turned it off."""
    return _built if _enabled else None


class use_kernels:
    """Turn the C kernels on or off from now on (``use_kernels(False)``); as a context manager the
    setting before the call comes back when the block ends."""

    def __init__(self, enabled: bool):
        global _enabled
        self._previous = _enabled
        _enabled = bool(enabled)

    def __enter__(self) -> "use_kernels":
        return self

    def __exit__(self, *exc) -> None:
        global _enabled
        _enabled = self._previous
