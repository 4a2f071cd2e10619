"""The train-time augmentation ranges, ``data.augmentation``: one dataclass that is both the
config's schema section (:mod:`heatmapnet.config`) and the value the pipelines draw from
(:class:`heatmapnet.data.transforms.AffineParams`). It imports nothing heavy, so the config (no
numpy) and the transforms (no omegaconf, for the torch-free deploy path) can both use it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping

from .errors import ConfigError


@dataclass
class Augmentation:
    """Random train-time augmentation ranges; the defaults are mmpose's top-down settings."""

    scale: float = 0.25  # box scale factor drawn from [1 - scale, 1 + scale]
    rotation: float = 30.0  # degrees, drawn from [-rotation, rotation]
    rotation_probability: float = 0.6
    translation: float = 0.1  # fraction of the box size
    flip_probability: float = 0.5
    brightness: float = 0.2  # colour jitter ranges, each drawn from [1 - v, 1 + v]
    contrast: float = 0.2
    saturation: float = 0.2

    @classmethod
    def from_config(cls, section: Mapping, *changes: Mapping, where: str = "data.augmentation") -> "Augmentation":
        """The ranges of a config section (``data.augmentation``: an OmegaConf node or a mapping of
        some of its settings, the others keeping their defaults), each of ``changes`` (a training
        source's own settings) applied over it in turn. A name that is not a setting is a
        :class:`ConfigError` naming it under ``where``."""
        values = {}
        for mapping in (section, *changes):
            problems = unknown_settings(mapping, where)
            if problems:
                raise ConfigError(problems[0])
            values.update({name: float(value) for name, value in mapping.items()})
        return cls(**values)


def unknown_settings(values: Mapping, where: str) -> List[str]:
    """One line for each name of ``values`` that is not a setting of ``data.augmentation``."""
    valid = sorted(Augmentation.__dataclass_fields__)
    return [f"{where}.{name}: not a setting of data.augmentation; choose from {valid}"
            for name in values if name not in valid]


#: no augmentation at all: evaluation, and training sets made without it
NO_AUGMENTATION = Augmentation(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
