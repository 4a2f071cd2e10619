"""A stage trained first, in the run's own directory: ``pretrain.config`` (a named config or a
path) with its ``pretrain.set`` overrides trains into ``<run dir>/pretrain``, then the run starts
from that stage's ``last.pt`` (``model.init_from``). So one command runs a whole recipe, e.g.
``heatmapnet train lsp_mosaic`` trains the ``lsp`` top-down model and then the bottom-up one.

A finished stage whose recorded config is the one asked for is reused (not trained again); a
stage stopped part-way resumes exactly; a stage directory of another config is an error naming
it, never silently reused. The main run's config is checked before the stage starts, so a
mistake in it is found before minutes of pretraining, not after.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from omegaconf import DictConfig, OmegaConf

from .checkpoint import load_checkpoint
from .errors import ConfigError

STAGE_DIRECTORY = "pretrain"
#: set by the trainer after a run starts (the file's hash), so not part of what a stage is
_RECORDED_BY_THE_RUN = (("model", "init_from_sha256"),)


@dataclass
class StageResult:
    """What the stage did: ``trained`` (steps run now; 0 when a finished stage was reused) and the
    wall time it took now, beside the checkpoint the run starts from."""

    checkpoint: Path
    steps: int
    trained: int
    wall_time_s: float

    def as_dict(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "steps": self.steps, "trained_now": self.trained,
                "wall_time_s": round(self.wall_time_s, 1)}

    def summary(self) -> str:
        if not self.trained:
            return f"pretrain: reusing the finished stage {self.checkpoint} ({self.steps} steps)"
        return f"pretrain: trained {self.trained} steps into {self.checkpoint} in {self.wall_time_s:.0f} s"


def stage_config(config: DictConfig, out_dir) -> Optional[DictConfig]:
    """The stage's own config (``pretrain.config`` with ``pretrain.set``) for a run in ``out_dir``,
    or None without one."""
    from .config import load_config

    if not config.pretrain.config:
        if config.pretrain.set:
            raise ConfigError(f"pretrain.set={list(config.pretrain.set)} without pretrain.config: name the config "
                              "the stage trains")
        return None
    # a run's own config.yaml names its stage's checkpoint as init_from: that one is no conflict
    last = Path(out_dir) / STAGE_DIRECTORY / "last.pt"
    if config.model.init_from and Path(config.model.init_from).resolve() != last.resolve():
        raise ConfigError(f"pretrain.config={config.pretrain.config!r} and model.init_from={config.model.init_from!r} "
                          "both say where the run's first weights come from: keep one")
    stage = load_config(config.pretrain.config, list(config.pretrain.set))
    if stage.pretrain.config:
        raise ConfigError(f"pretrain.config={config.pretrain.config!r} has a pretrain stage of its own "
                          f"({stage.pretrain.config!r}): a recipe has at most one stage before its run")
    return stage


def _comparable(values: dict, where: str) -> dict:
    """``values`` on today's schema (a setting added since the stage was saved takes its default)."""
    from .config import config_from_dict

    values = OmegaConf.to_container(config_from_dict(values, where, validate=False), resolve=True)
    for section, key in _RECORDED_BY_THE_RUN:
        values.get(section, {}).pop(key, None)
    return values


def _differences(asked: dict, recorded: dict, prefix: str = "") -> list:
    keys = sorted(set(asked) | set(recorded))
    found = []
    for key in keys:
        left, right = asked.get(key, "<absent>"), recorded.get(key, "<absent>")
        if isinstance(left, dict) and isinstance(right, dict):
            found += _differences(left, right, f"{prefix}{key}.")
        elif left != right:
            found.append(f"{prefix}{key}={left!r} (the stage holds {right!r})")
    return found


def run_stage(config: DictConfig, stage: DictConfig, out_dir, train: Callable) -> StageResult:
    """Train (or reuse, or resume) ``stage`` (:func:`stage_config` of ``config``) in
    ``<out_dir>/pretrain`` with ``train(stage, stage_dir, resume)`` and point
    ``config.model.init_from`` at its ``last.pt``."""
    stage_dir = Path(out_dir) / STAGE_DIRECTORY
    last = stage_dir / "last.pt"
    resume = None
    if last.is_file():
        saved = load_checkpoint(last)
        differences = _differences(_comparable(OmegaConf.to_container(stage, resolve=True), "pretrain.config"),
                                   _comparable(saved.config, str(last)))
        if differences:
            raise ConfigError(f"{stage_dir}: holds a pretrain stage of another config ({'; '.join(differences[:3])}): "
                              "remove that folder to train the stage again, or give the run another --out")
        resume = str(last) if saved.step < stage.train.steps else None
        if resume is None:
            config.model.init_from = str(last)
            return StageResult(last, saved.step, 0, 0.0)
    started = time.perf_counter()
    before = load_checkpoint(last).step if resume else 0
    summary = train(stage, stage_dir, resume)
    config.model.init_from = str(last)
    return StageResult(last, int(summary["steps"]), int(summary["steps"]) - before, time.perf_counter() - started)
