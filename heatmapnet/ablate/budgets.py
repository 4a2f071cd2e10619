"""How much an ablation spends: :class:`Budget` (seeds, the learning-rate sweep, the model and
schedule per data mode) and :class:`StopRule`, the plateau criterion of the ``long`` budget.

- ``quick``: a small CPU model, 80 steps, 2 seeds.
- ``short``: the same model, 250 steps, 3 seeds: far from converged, it says who learns faster.
- ``long``: the config's own model, input size and schedule; each run is evaluated every
  ``train.steps / 25`` steps and stops at a plateau (:class:`StopRule`), at the latest at the
  config's ``train.steps`` (the cap: ``--set train.steps=N`` moves it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

from ..deploy.modes import MODE_SPECS


def improves(value: float, reference: float, higher_is_better: bool, min_delta: float) -> bool:
    """Whether ``value`` beats ``reference`` by more than ``min_delta`` relative to it."""
    margin = min_delta * abs(reference)
    return value > reference + margin if higher_is_better else value < reference - margin


def plateau_index(values: Sequence[float], higher_is_better: bool, patience: int, min_delta: float) -> Optional[int]:
    """The index of the evaluation at which a run stops, or None (it has not plateaued).

    The reference is the first value, then every value that improves on the reference by more
    than ``min_delta`` (relative: 0.005 = 0.5%) becomes the new reference. The run stops at the
    first evaluation that comes ``patience`` evaluations after the last such improvement. Smaller
    improvements do not reset the count, so a slow creep of 0.1% per evaluation is a plateau.
    """
    reference, since = None, 0
    for index, value in enumerate(values):
        if reference is None or improves(value, reference, higher_is_better, min_delta):
            reference, since = value, index
        elif index - since >= patience:
            return index
    return None


@dataclass(frozen=True)
class StopRule:
    """Early stopping at a plateau of the validation metric: evaluate ``evaluations`` times over
    the cap (every ``cap // evaluations`` steps); stop when no evaluation has improved on the
    reference by more than ``min_delta`` (relative) for ``patience`` evaluations
    (:func:`plateau_index`); else train to the cap."""

    patience: int = 4
    min_delta: float = 0.005
    evaluations: int = 25

    def eval_every(self, cap: int) -> int:
        return max(1, int(cap) // self.evaluations)

    def stop_index(self, values: Sequence[float], higher_is_better: bool) -> Optional[int]:
        return plateau_index(values, higher_is_better, self.patience, self.min_delta)

    def describe(self) -> str:
        return (f"stop when the validation metric has not improved by more than {self.min_delta:.1%} (relative) "
                f"on its last reference for {self.patience} evaluations, else at the cap")


@dataclass(frozen=True)
class Budget:
    """How much to spend: seeds, the learning-rate sweep and config overrides per data mode."""

    seeds: int
    lr_factors: tuple  # the sweep's rates, as multiples of the config's train.lr
    sweep_fraction: float  # a sweep run's steps (and warm-up) as a fraction of a full run's
    holdout: int  # samples held out of the training data to pick the rate on
    val_samples: Optional[int]  # validation samples evaluated (None: the whole split)
    name: str = "custom"
    overrides: Dict[str, Dict[str, object]] = field(default_factory=dict)  # data.mode -> overrides
    extend_sweep: int = 0  # extra rates (x2 or /2) an arm may try while its best one is at the sweep's edge
    sweep_seeds: int = 2  # seeds per swept rate: the rate is picked on their mean
    stop: Optional[StopRule] = None  # None: every run trains train.steps
    early_fraction: float = 0.2  # "early": the first evaluation at or after this fraction of the steps

    def early_step(self, steps: int, eval_every: int) -> int:
        """The first evaluation step at or after ``early_fraction`` of ``steps`` (at least the first
        evaluation)."""
        evaluations = math.ceil(self.early_fraction * steps / eval_every - 1e-9)
        return max(1, evaluations) * eval_every


# One torch thread and one loader process: on a shared 2-core machine a second OpenMP thread that
# has to wait for a busy core slows these small models down by an order of magnitude.
SMALL_CPU = {"model.backbone": "mobilenetv3_small_050", "model.head_channels": 32, "model.head": "fpn",
             "train.threads": 1, "data.num_workers": 1}


def small_model_per_mode(steps: int, warmup: int, eval_every: int) -> Dict[str, Dict[str, object]]:
    """The small CPU model per data mode: input size and batch for each, the step budget for all."""
    schedule = {"train.steps": steps, "train.warmup_steps": warmup, "train.eval_every": eval_every}
    specs = [MODE_SPECS.get(name) for name in MODE_SPECS]
    return {spec.name: {**SMALL_CPU, "data.input_size": list(spec.small_input_size),
                        "train.batch_size": spec.small_batch_size, **schedule} for spec in specs}


BUDGETS: Dict[str, Budget] = {
    "quick": Budget(seeds=2, lr_factors=(1.0, 2.5), sweep_fraction=0.5, holdout=48, val_samples=48, name="quick",
                    extend_sweep=1, overrides=small_model_per_mode(steps=80, warmup=8, eval_every=16)),
    "short": Budget(seeds=3, lr_factors=(1.0, 2.5, 5.0), sweep_fraction=0.4, holdout=64, val_samples=100, name="short",
                    extend_sweep=2, overrides=small_model_per_mode(steps=250, warmup=20, eval_every=25)),
    # the config's own model and input size; sweep runs of 30% of the cap, each run to its plateau
    "long": Budget(seeds=3, lr_factors=(0.5, 1.0, 2.0), sweep_fraction=0.3, holdout=200, val_samples=None, name="long",
                   extend_sweep=2, stop=StopRule()),
}
DEFAULT_BUDGET = "short"
