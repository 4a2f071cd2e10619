"""What ``--resume`` may change: a resumed run's config compared with its checkpoint's.

A resumed run continues the checkpoint's optimisation, so the settings that define what is being
optimised (the model, the data, the targets, the loss, the batch, the seed, the optimiser, the
warm-up and AMP) must be the checkpoint's. The settings listed in :data:`RESUMABLE` act only from
the resumed step on, and the trainer applies them (:meth:`heatmapnet.engine.Trainer.resume`):
the learning rate and weight decay in the optimiser and its schedule, the rest where they are read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List

from .config import ConfigError

#: Keys a resumed run may change (a key ending in "." stands for its whole section): the
#: optimiser's step size and decay from the resumed step on, gradient clipping, the step count
#: (the cosine schedule is stretched or shortened to it), when to log, evaluate and save, the
#: evaluation itself, and two settings that change only speed (the data order is a function of
#: the seed and step, whatever the number of loader workers).
RESUMABLE = ("train.lr", "train.weight_decay", "train.clip_grad", "train.steps", "train.eval_every",
             "train.log_every", "train.checkpoint_every", "train.threads", "data.num_workers", "eval.")


@dataclass(frozen=True)
class ConfigChange:
    """One setting whose value in the resumed run's config differs from the checkpoint's."""

    key: str  # dotted, e.g. "train.lr"
    saved: Any  # the checkpoint's value
    new: Any  # the resumed run's value

    @property
    def resumable(self) -> bool:
        return any(self.key == key or (key.endswith(".") and self.key.startswith(key)) for key in RESUMABLE)

    def __str__(self) -> str:
        return f"{self.key} {self.saved!r} -> {self.new!r}"


def flatten_config(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A nested config dict as {dotted key: value}; lists are values, not sections."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(saved: Dict[str, Any], new: Dict[str, Any], where: str) -> List[ConfigChange]:
    """The settings of ``new`` (the resumed run's config, a plain dict) that differ from the
    checkpoint's ``saved``, all :data:`RESUMABLE`; any other difference is a :class:`ConfigError`
    from ``where`` (the checkpoint) naming each such key with both values. A key that only one of
    the two has (a config schema older or newer than the checkpoint) is not compared."""
    old, current = flatten_config(saved), flatten_config(new)
    changes = [ConfigChange(key, old[key], current[key]) for key in sorted(old.keys() & current.keys())
               if old[key] != current[key]]
    refused = [change for change in changes if not change.resumable]
    if refused:
        listed = "; ".join(f"{change.key} (checkpoint {change.saved!r}, now {change.new!r})" for change in refused)
        raise ConfigError(f"{where}: --resume cannot change {listed}. A resumed run may change only "
                          f"{', '.join(key + '*' if key.endswith('.') else key for key in RESUMABLE)}; "
                          "start a new run (without --resume) to change the others")
    return changes
