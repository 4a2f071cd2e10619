"""What an ablation compares: the arms (config overrides), the built-in settings and the
decoders each run is evaluated with. Shared by the runner, the report and the command line."""
from __future__ import annotations

import json
from typing import Dict, List, Sequence

# Arms as data: config overrides on top of the setting's config. ``mse`` and ``focal`` are the two
# standard recipes; the others change the loss or the target alone, so the two effects separate.
ARMS: Dict[str, Dict[str, object]] = {
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
DEFAULT_ARMS = ("mse", "focal")
# With no config: the top-down setting (faces, NME) and the multi-instance one (people).
BUILTIN_SETTINGS = ("synthetic_faces", "synthetic_people")
REFINEMENTS = ("none", "quarter", "dark")


def check_arms(names: Sequence[str]) -> List[str]:
    """``names`` without repeats, in order; an unknown name is an error listing the valid ones."""
    from ..config import ConfigError

    unknown = [n for n in names if n not in ARMS]
    if unknown:
        raise ConfigError(f"unknown arm(s) {unknown}; valid arms: {list(ARMS)}")
    arms = list(dict.fromkeys(names))
    if len(arms) < 2:
        raise ConfigError(f"an ablation compares at least two arms, got {arms}; valid arms: {list(ARMS)}")
    return arms


def dotlist(overrides: Dict[str, object]) -> List[str]:
    """``{key: value}`` -> ``["key=value"]`` with values as JSON, which the YAML parser reads back."""
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
