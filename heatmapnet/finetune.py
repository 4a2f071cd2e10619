"""Fine-tuning controls: frozen modules, per-module learning rates and an unfreeze step.

As mmpose and timm users set them (``train.freeze``, ``train.lr_mult``, ``train.unfreeze_step``):

- ``freeze: [backbone]``: every parameter whose name is a listed prefix or starts with it and a
  dot gets no gradient, and every module under the prefix runs in eval mode (batch-norm
  statistics and dropout as at inference), so the frozen part stays bit-identical: AdamW skips a
  parameter without a gradient (no step, no weight decay), and gradient clipping ignores it.
- ``unfreeze_step: N`` (0: never): from step N on the frozen part trains as the rest.
- ``lr_mult: {backbone: 0.1}``: the parameters under a prefix (the longest listed prefix that
  matches wins) learn at ``train.lr`` x the multiplier; the schedule scales every group alike.

A prefix that names no parameter of the model is a :class:`~heatmapnet.errors.ConfigError` (see
:func:`prefix_problems`, which the pre-flight runs on the model it builds on the meta device).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

import torch.nn as nn

from .errors import ConfigError


def under(name: str, prefix: str) -> bool:
    """Whether the module or parameter ``name`` lies under the module-name ``prefix``."""
    return name == prefix or name.startswith(prefix + ".")


def prefix_problems(model: nn.Module, freeze: Sequence[str], lr_mult: Mapping[str, float]) -> List[str]:
    """One line for each prefix of ``train.freeze`` or ``train.lr_mult`` that names no parameter
    of ``model``, listing the model's top-level modules."""
    names = [name for name, _ in model.named_parameters()]
    tops = sorted({name.split(".")[0] for name in names})
    problems = []
    for key, prefixes in (("train.freeze", list(freeze)), ("train.lr_mult", list(lr_mult))):
        for prefix in prefixes:
            if not any(under(name, prefix) for name in names):
                problems.append(f"{key}: {prefix!r} names no parameter of the model (its modules: {tops}; a "
                                "prefix is a dotted module name such as backbone or head.classifier)")
    return problems


def parameter_groups(model: nn.Module, lr: float, lr_mult: Mapping[str, float]) -> List[dict]:
    """The optimiser's parameter groups: one per distinct multiplier (multiplier 1 first), each
    with ``lr`` = ``lr`` x its ``lr_mult``, which the group keeps so that a changed base rate can
    be re-applied (:meth:`heatmapnet.engine.Trainer.apply_learning_rate`). Every parameter is in a
    group, frozen ones too (they get no gradient, so the optimiser leaves them as they are until
    they are unfrozen)."""
    prefixes = sorted(lr_mult, key=len, reverse=True)
    by_mult: Dict[float, list] = {}
    for name, parameter in model.named_parameters():
        match = next((prefix for prefix in prefixes if under(name, prefix)), None)
        by_mult.setdefault(1.0 if match is None else float(lr_mult[match]), []).append(parameter)
    order = sorted(by_mult, key=lambda mult: (mult != 1.0, mult))
    return [{"params": by_mult[mult], "lr": lr * mult, "lr_mult": mult} for mult in order]


@dataclass
class FrozenPart:
    """What ``train.freeze`` holds still, and until when (``unfreeze_step`` 0: the whole run)."""

    prefixes: Tuple[str, ...]
    parameters: Tuple[nn.Parameter, ...]
    modules: Tuple[nn.Module, ...]
    unfreeze_step: int = 0

    @classmethod
    def of(cls, model: nn.Module, freeze: Sequence[str], unfreeze_step: int = 0) -> "FrozenPart":
        prefixes = tuple(freeze)
        problems = prefix_problems(model, prefixes, {})
        if problems:
            raise ConfigError("; ".join(problems))
        parameters = tuple(p for name, p in model.named_parameters() if any(under(name, f) for f in prefixes))
        modules = tuple(m for name, m in model.named_modules() if any(under(name, f) for f in prefixes))
        return cls(prefixes, parameters, modules, int(unfreeze_step))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters)

    def frozen_at(self, step: int) -> bool:
        """Whether the part is frozen for the optimisation step after ``step`` steps."""
        return bool(self.parameters) and (self.unfreeze_step == 0 or step < self.unfreeze_step)

    def apply(self, step: int) -> bool:
        """Set the parameters' ``requires_grad`` and the modules' mode for the step after ``step``
        steps (call it after ``model.train()``); returns whether the part is frozen."""
        frozen = self.frozen_at(step)
        for parameter in self.parameters:
            parameter.requires_grad_(not frozen)
        for module in self.modules:
            module.train(not frozen)
        return frozen

    def describe(self) -> str:
        until = f" until step {self.unfreeze_step}" if self.unfreeze_step else ""
        return f"frozen{until}: {', '.join(self.prefixes)} ({self.num_parameters:,} parameters)"
