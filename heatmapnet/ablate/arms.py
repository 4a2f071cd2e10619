"""What an ablation compares: the arms (config overrides, or a continuation of another arm's
model), the designs that group them (which arms, which factors, which pairs are tested), the
built-in settings and the decoders each run is evaluated with. Shared by the runner, the report
and the command line."""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..decode import REFINEMENTS  # the decoders every run is evaluated with (re-exported by heatmapnet.ablate)

# Recipes as data: config overrides on top of the setting's config. ``mse`` and ``focal`` are the
# two standard recipes (each with its own target); the others change one part of them.
RECIPES: Dict[str, Dict[str, object]] = {
    "mse": {"loss.name": "mse", "target.sigma_policy": "fixed", "target.exact_peak": False},
    "focal": {"loss.name": "focal", "target.sigma_policy": "radius", "target.exact_peak": True},
    "awing": {"loss.name": "awing", "target.sigma_policy": "fixed", "target.exact_peak": False},
    "focal_beta0": {"loss.name": "focal", "loss.focal.beta": 0.0, "target.sigma_policy": "radius",
                    "target.exact_peak": True},
    "focal_fixed": {"loss.name": "focal", "target.sigma_policy": "fixed", "target.exact_peak": True},
    "mse_radius": {"loss.name": "mse", "target.sigma_policy": "radius", "target.exact_peak": False},
    # the radius policy alone (focal loss, exact peak): CenterNet's published radius, OKS sigmas
    "focal_centernet": {"loss.name": "focal", "target.sigma_policy": "radius", "target.radius_formula": "centernet",
                        "target.exact_peak": True},
    "focal_oks": {"loss.name": "focal", "target.sigma_policy": "oks", "target.exact_peak": True},
}

# The 2 x 2 design's factors. Both target levels mark the nearest pixel exactly 1 (exact peak):
# the focal loss counts only such pixels as positives, so without it a fixed-sigma target would
# give focal no positive at all, and the target factor would change the peak along with the width.
# The fixed level's sigma is the config's target.sigma (2 unless set: --set target.sigma=1).
LOSS_LEVELS: Dict[str, Dict[str, object]] = {"mse": {"loss.name": "mse"}, "focal": {"loss.name": "focal"}}
TARGET_LEVELS: Dict[str, Dict[str, object]] = {
    "fixed": {"target.sigma_policy": "fixed", "target.exact_peak": True},
    "radius": {"target.sigma_policy": "radius", "target.exact_peak": True},
}
FACTORIAL_ARMS: Dict[str, Dict[str, object]] = {
    f"{loss}+{target}": {**LOSS_LEVELS[loss], **TARGET_LEVELS[target]}
    for loss, target in itertools.product(LOSS_LEVELS, TARGET_LEVELS)}

# The focal loss's exponents: alpha on the prediction, beta on the penalty reduction near a peak
# (CornerNet's 2 and 4 are the config's defaults), on the focal recipe's target.
FOCAL_ALPHAS = (1.0, 2.0, 3.0)
FOCAL_BETAS = (2.0, 4.0, 8.0)


def sensitivity_arm(alpha: float, beta: float) -> str:
    return f"focal_a{alpha:g}_b{beta:g}"


SENSITIVITY_ARMS: Dict[str, Dict[str, object]] = {
    sensitivity_arm(alpha, beta): {**RECIPES["focal"], "loss.focal.alpha": alpha, "loss.focal.beta": beta}
    for alpha, beta in itertools.product(FOCAL_ALPHAS, FOCAL_BETAS)}


@dataclass(frozen=True)
class NoiseLevel:
    """One level of training-label noise (``data.label_noise``, :mod:`heatmapnet.data.label_noise`):
    its name in arm names, how the report shows it and its overrides (none: the clean labels)."""

    name: str
    label: str
    overrides: Dict[str, object] = field(default_factory=dict)


# The noise design's levels, the clean labels first: Gaussian jitter of every labelled point by
# sigma x the instance's normaliser (inter-ocular distance, torso), and a left/right swap of 5% of
# the instances. Validation (and the sweep's holdout) labels stay clean.
NOISE_SIGMAS = (0.005, 0.01, 0.02, 0.04)
NOISE_SWAP = 0.05
NOISE_LEVELS: Tuple[NoiseLevel, ...] = (
    NoiseLevel("clean", "clean"),
    *(NoiseLevel(f"sigma{sigma:g}", f"σ {sigma:.1%}".replace(".0%", "%"), {"data.label_noise.sigma": sigma})
      for sigma in NOISE_SIGMAS),
    NoiseLevel(f"swap{NOISE_SWAP:g}", f"swap {NOISE_SWAP:.0%}", {"data.label_noise.swap": NOISE_SWAP}))
NOISE_RECIPES = ("mse", "focal")  # each loss on its own target, as the recipes design trains them
# The target pair: at sigma 2%, the focal loss on a fixed sigma (focal_fixed) against the focal
# recipe's size-adaptive CornerNet radius, both on an exact peak: does the radius carry the noise?
NOISE_TARGET_RECIPE, NOISE_TARGET_LEVEL = "focal_fixed", "sigma0.02"


def noise_arm(recipe: str, level: str) -> str:
    """``mse_sigma0.01``, ``focal_swap0.05``; the clean level is the recipe itself (``mse``)."""
    return recipe if level == "clean" else f"{recipe}_{level}"


NOISE_ARMS: Dict[str, Dict[str, object]] = {
    noise_arm(recipe, level.name): {**RECIPES[recipe], **level.overrides}
    for recipe in NOISE_RECIPES + (NOISE_TARGET_RECIPE,) for level in NOISE_LEVELS[1:]}

# Every arm that trains from scratch, by name.
ARMS: Dict[str, Dict[str, object]] = {**RECIPES, **FACTORIAL_ARMS, **SENSITIVITY_ARMS, **NOISE_ARMS}


@dataclass(frozen=True)
class Continuation:
    """An arm that starts from another arm's final model (the same seed's) and trains it further
    with a third arm's overrides, for the budget's extra steps."""

    base: str  # the arm trained first
    then: str  # the arm whose overrides the extra steps train with


CONTINUATIONS: Dict[str, Continuation] = {
    f"{base}_then_{then}": Continuation(base, then) for base, then in itertools.product(("mse", "focal"), repeat=2)}
BUILTIN_SETTINGS = ("synthetic_faces", "synthetic_people")  # with no config: top-down faces, multi-instance people


def arm_names() -> List[str]:
    return list(ARMS) + list(CONTINUATIONS)


def arm_overrides(name: str) -> Dict[str, object]:
    """The config overrides an arm trains with (a continuation's: those of its extra steps)."""
    return ARMS[CONTINUATIONS[name].then] if name in CONTINUATIONS else ARMS[name]


def arm_base(name: str) -> Optional[str]:
    """The arm whose final model ``name`` starts from; None for an arm trained from scratch."""
    return CONTINUATIONS[name].base if name in CONTINUATIONS else None


@dataclass(frozen=True)
class Factor:
    """One factor of a factorial design: its name and levels (the first is the baseline that a
    contrast subtracts)."""

    name: str
    levels: Tuple[str, ...]
    labels: Tuple[str, ...] = ()  # how the report shows each level (default: its name)

    def label(self, level: str) -> str:
        return self.labels[self.levels.index(level)] if self.labels else level


@dataclass(frozen=True)
class Design:
    """Which arms an ablation trains and how it compares them.

    ``factors`` (two, or none) with ``cells`` (arm -> {factor name: level}) make it factorial: the
    report then tabulates the arms as a grid and, where both factors have two levels, gives both
    main effects and the interaction. ``pairs`` are the arm pairs tested (first - second); None:
    every pair, in order. ``relative_to``: a factor's name, whose first level is the reference of
    the others: per level of the other factor, the report gives each cell's metric relative to the
    reference cell's, seed by seed (the noise design: each noisy arm over its loss's clean arm).
    Arms outside ``cells`` (a design's extra arm) are trained and tested in ``pairs`` only.
    ``rate_from``: arm -> an earlier arm whose picked learning rate it trains at, with no sweep of
    its own (the noise design: each noisy arm at its recipe's clean rate, see :func:`noise_design`).
    """

    name: str
    arms: Tuple[str, ...]
    question: str
    factors: Tuple[Factor, ...] = ()
    cells: Dict[str, Dict[str, str]] = field(default_factory=dict)
    pairs: Optional[Tuple[Tuple[str, str], ...]] = None
    relative_to: Optional[str] = None
    rate_from: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for arm, source in self.rate_from.items():
            if arm not in self.arms or source not in self.arms[:self.arms.index(arm)]:
                raise ValueError(f"design {self.name!r}: arm {arm!r} takes the learning rate of {source!r}, "
                                 "which must be an arm trained before it")

    def compared_pairs(self) -> List[Tuple[str, str]]:
        return list(self.pairs) if self.pairs is not None else list(itertools.combinations(self.arms, 2))

    def bases(self) -> List[str]:
        """Arms trained only as the starting point of a continuation arm, in order."""
        needed = dict.fromkeys(arm_base(arm) for arm in self.arms if arm_base(arm))
        return [arm for arm in needed if arm not in self.arms]

    def grid(self) -> Dict[str, Dict[str, str]]:
        """The arms of a two-factor design by level: ``grid[level of factor 1][level of factor 2]``."""
        first, second = self.factors
        by_levels = {(cell[first.name], cell[second.name]): arm for arm, cell in self.cells.items()}
        return {a: {b: by_levels[a, b] for b in second.levels} for a in first.levels}

    def two_by_two(self) -> bool:
        return len(self.factors) == 2 and all(len(factor.levels) == 2 for factor in self.factors)

    def references(self) -> Dict[str, str]:
        """With ``relative_to``: each cell's arm -> the arm at the reference (first) level of that
        factor and the same level of the other factor (the reference arm itself left out)."""
        if self.relative_to is None:
            return {}
        factor = next(f for f in self.factors if f.name == self.relative_to)
        other = next(f for f in self.factors if f.name != self.relative_to)
        at = {(cell[other.name], cell[factor.name]): arm for arm, cell in self.cells.items()}
        return {at[row, level]: at[row, factor.levels[0]] for row in other.levels for level in factor.levels[1:]}


def factorial_design(name: str, question: str, first: Factor, second: Factor, arm_of, pairs=None) -> Design:
    """A two-factor design whose arm at levels (a, b) is ``arm_of(a, b)``; by default the pairs
    tested are those that differ in one factor (the simple effects)."""
    cells = {arm_of(a, b): {first.name: a, second.name: b} for a in first.levels for b in second.levels}
    arms = tuple(cells)
    if pairs is None:
        pairs = tuple((x, y) for x, y in itertools.combinations(arms, 2)
                      if sum(cells[x][f.name] != cells[y][f.name] for f in (first, second)) == 1)
    return Design(name, arms, question, (first, second), cells, tuple(pairs))


def noise_design() -> Design:
    """The label-noise design: each recipe (``mse`` on a fixed sigma, ``focal`` on the CornerNet
    radius) trained on clean labels and at every noise level of :data:`NOISE_LEVELS`, evaluated on
    clean labels; plus ``focal_fixed_sigma0.02``. The pairs tested: each noisy arm against its
    recipe's clean arm (what the noise costs), mse against focal at every level (does one loss
    cope better), and at sigma 2% focal on a fixed sigma against focal on the radius (does the
    size-adaptive target carry the noise). Holm's correction runs over all of them.

    Each noisy arm trains at the learning rate its recipe's clean arm picked, without a sweep of its
    own: the sweep's holdout labels are clean, which a user whose labels are noisy does not have, so
    a noisy arm's own sweep would tune against information it is not meant to see; and what noise
    costs a recipe is then measured at the recipe's rate. ``focal_fixed_sigma0.02``, another target,
    sweeps its own: 3 sweeps instead of 13."""
    loss = Factor("loss", NOISE_RECIPES)
    noise = Factor("label noise", tuple(level.name for level in NOISE_LEVELS), tuple(level.label for level in NOISE_LEVELS))
    cells = {noise_arm(recipe, level): {loss.name: recipe, noise.name: level}
             for recipe in loss.levels for level in noise.levels}
    extra = noise_arm(NOISE_TARGET_RECIPE, NOISE_TARGET_LEVEL)
    against_clean = [(noise_arm(recipe, level), recipe) for recipe in loss.levels for level in noise.levels[1:]]
    between_losses = [(noise_arm("mse", level), noise_arm("focal", level)) for level in noise.levels]
    target = [(extra, noise_arm("focal", NOISE_TARGET_LEVEL))]
    return Design("noise", tuple(cells) + (extra,),
                  "how does the error grow with training-label noise (Gaussian sigma 0.5-4% of the normaliser, 5% "
                  "left/right swaps; evaluated on clean labels), per recipe: mse on a fixed sigma, focal on the "
                  "CornerNet radius; and at sigma 2%, focal on a fixed sigma against the radius",
                  (loss, noise), cells, tuple(against_clean + between_losses + target), relative_to=noise.name,
                  rate_from=dict(against_clean))


SENSITIVITY_REFERENCE = sensitivity_arm(2.0, 4.0)
DESIGNS: Dict[str, Design] = {
    "2x2": factorial_design(
        "2x2", "the loss apart from the target: loss {mse, focal} x target {fixed sigma, CornerNet radius}, "
               "exact peak in both", Factor("loss", ("mse", "focal")), Factor("target", ("fixed", "radius")),
        lambda loss, target: f"{loss}+{target}"),
    "recipes": Design("recipes", ("mse", "focal"), "the two standard recipes, each loss with its own target"),
    "continuation": factorial_design(
        "continuation", "can a trained model be refined with another loss? Each recipe's model, continued with "
                        "either recipe for the same extra steps",
        Factor("trained with", ("mse", "focal")), Factor("continued with", ("mse", "focal")),
        lambda base, then: f"{base}_then_{then}",
        pairs=(("mse_then_mse", "mse_then_focal"), ("focal_then_focal", "focal_then_mse"))),
    "sensitivity": factorial_design(
        "sensitivity", "how sensitive is the focal loss to its exponents alpha and beta? (focal recipe's target)",
        Factor("alpha", tuple(f"{a:g}" for a in FOCAL_ALPHAS)), Factor("beta", tuple(f"{b:g}" for b in FOCAL_BETAS)),
        lambda alpha, beta: f"focal_a{alpha}_b{beta}",
        pairs=tuple((SENSITIVITY_REFERENCE, arm) for arm in SENSITIVITY_ARMS if arm != SENSITIVITY_REFERENCE)),
    "noise": noise_design(),
}
DEFAULT_DESIGN = "2x2"
DEFAULT_ARMS = DESIGNS[DEFAULT_DESIGN].arms


def check_arms(names: Sequence[str]) -> List[str]:
    """``names`` without repeats, in order; an unknown name is an error listing the valid ones."""
    from ..config import ConfigError

    unknown = [n for n in names if n not in ARMS and n not in CONTINUATIONS]
    if unknown:
        raise ConfigError(f"unknown arm(s) {unknown}; valid arms: {arm_names()}")
    arms = list(dict.fromkeys(names))
    if len(arms) < 2:
        raise ConfigError(f"an ablation compares at least two arms, got {arms}; valid arms: {arm_names()}")
    return arms


def resolve_design(design: Optional[str] = None, arms: Optional[Sequence[str]] = None) -> Design:
    """A named design of :data:`DESIGNS`, or, given ``arms``, a design comparing every pair of
    them; not both."""
    from ..config import ConfigError

    if arms:
        if design is not None:
            raise ConfigError(f"give a design (--design {design}) or arms (--arms), not both")
        return Design("custom", tuple(check_arms(arms)), "the arms given, every pair compared")
    design = design or DEFAULT_DESIGN
    if design not in DESIGNS:
        raise ConfigError(f"unknown design {design!r}; choose one of {list(DESIGNS)}")
    return DESIGNS[design]


def dotlist(overrides: Dict[str, object]) -> List[str]:
    """``{key: value}`` -> ``["key=value"]`` with values as JSON, which the YAML parser reads back."""
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
