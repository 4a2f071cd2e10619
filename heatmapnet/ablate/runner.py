"""Orchestration of an ablation: per setting and budget, the learning-rate sweep of each arm, its
runs per seed, the comparisons early and at the end, the plots; the whole ablation over its
settings and budgets.

Every run goes through :mod:`.runs` (the engine's :class:`heatmapnet.engine.Trainer`, cached
per run for ``--resume``); the numbers go to :mod:`.stats`, the plots and the report to
:mod:`.report`.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..stopping import deferred_signals
from .arms import BUILTIN_SETTINGS, Design, arm_base, arm_overrides, dotlist, resolve_design
from .budgets import BUDGETS, DEFAULT_BUDGET, Budget
from .confidence import confidence_block
from .report import example_image, plot_curves, plot_final, plot_noise, plot_reliabilities, write_report
from .runs import RunCache, RunResult, RunSpec, resolve_device, restore_trainer
from .stats import (THRESHOLD_SLACK, compare_arms, convergence_threshold, factorial_effects, relative_to_reference,
                    steps_to_threshold, summarize, verdict)


# ----------------------------------------------------------------------------------------------
# the data splits of the runs
# ----------------------------------------------------------------------------------------------
def _split_range(split, skip_invalid: bool) -> range:
    """The record indices a file split's ``subset`` selects, in the unsliced file's numbering (for
    a mosaic split: its source people's, not its mosaics')."""
    from omegaconf import OmegaConf

    from ..data.build import read_files, select_subset

    whole = read_files(OmegaConf.merge(split, {"subset": None}), skip_invalid)
    return select_subset(range(len(whole)), split.subset)


def _synthetic(split) -> bool:
    from ..data.build import SYNTHETIC_SOURCES

    return split.source in SYNTHETIC_SOURCES


def _mosaic(split) -> bool:
    from ..data.build import MOSAIC_SOURCES

    return split.source in MOSAIC_SOURCES


def validation_overrides(config, samples: Optional[int]) -> Dict[str, object]:
    """At most ``samples`` of the validation split: a synthetic or mosaic split's first ones (a
    mosaic split keeps all its source people), or the first ones of a file split's subset."""
    val = config.data.val
    if samples is None:
        return {}
    if _synthetic(val) or _mosaic(val):
        return {"data.val.num_samples": min(int(val.num_samples), samples)}
    selected = _split_range(val, config.data.skip_invalid)
    return {"data.val.subset": f"{selected.start}:{min(selected.stop, selected.start + samples)}"}


def holdout_overrides(config, samples: int) -> Dict[str, object]:
    """A validation split held out of the training data, for the learning-rate sweep: for a
    synthetic source, ``samples`` fresh samples (a seed neither split uses); for files, the last
    ``samples`` records of the training subset (at most a fifth), which the sweep does not train on;
    for mosaics, ``samples`` mosaics of those last records (people)."""
    train, val = config.data.train, config.data.val
    if _synthetic(train):
        return {"data.val.source": train.source, "data.val.seed": max(int(train.seed), int(val.seed)) + 1,
                "data.val.num_samples": samples, "data.val.subset": None}
    selected = _split_range(train, config.data.skip_invalid)
    cut = selected.stop - max(1, min(samples, len(selected) // 5))
    copied = {f"data.val.{name}": train[name] for name in ("source", "format", "ann_file", "img_dir")}
    mosaics = {"data.val.num_samples": samples} if _mosaic(train) else {}
    return {**copied, **mosaics, "data.train.subset": f"{selected.start}:{cut}",
            "data.val.subset": f"{cut}:{selected.stop}"}


# ----------------------------------------------------------------------------------------------
# the learning-rate sweep
# ----------------------------------------------------------------------------------------------
@dataclass
class Scores:
    """A sweep's outcome: the metric's direction (None until a run finished) and, per rate, the
    mean holdout metric over the sweep's seeds (None where a seed diverged)."""

    higher_is_better: Optional[bool]
    values: Dict[float, Optional[float]]


def round_rate(value: float) -> float:
    """A learning rate to three significant digits (the sweep's grid)."""
    return float(f"{value:.3g}")


def best_rate(values: Dict[float, Optional[float]], higher: bool) -> Optional[float]:
    """The rate with the best metric among those that did not diverge (None: all diverged)."""
    finite = {lr: v for lr, v in values.items() if v is not None}
    return (max if higher else min)(finite, key=finite.get) if finite else None


def edge_of(values: Dict[float, Optional[float]], picked: Optional[float]) -> Optional[str]:
    """"highest" / "lowest" where the picked rate is at that edge of the rates tried, "only" for a
    single rate, else None (bracketed)."""
    if picked is None:
        return None
    if len(values) < 2:
        return "only"
    return "highest" if picked == max(values) else "lowest" if picked == min(values) else None


def bracket_rates(evaluate: Callable[[List[float]], Scores], rates: Sequence[float], extra: int, log,
                  label: str = "sweep") -> Scores:
    """``evaluate(rates)``, then while the best rate is the highest (lowest) tried, one more rate
    twice as high (half as low), at most ``extra`` times: so that no arm keeps a rate only because
    the grid stopped there. A diverged rate above the best brackets it (it ends the search upwards)."""
    scores = evaluate(list(rates))
    values, higher = dict(scores.values), scores.higher_is_better
    for _ in range(extra):
        best = best_rate(values, higher)
        edge = edge_of(values, best)
        if best is None or edge not in ("highest", "lowest"):
            break
        candidate = round_rate(best * 2 if edge == "highest" else best / 2)
        log(f"{label}: best rate {best:g} is the {edge} tried; trying {candidate:g}")
        more = evaluate([candidate])
        values.update(more.values)
        higher = more.higher_is_better if higher is None else higher
    return Scores(higher, dict(sorted(values.items())))


# ----------------------------------------------------------------------------------------------
# one setting under one budget
# ----------------------------------------------------------------------------------------------
@dataclass
class Context:
    """What every run of one ablation shares."""

    out: Path
    cache: RunCache
    device: str
    user_overrides: Tuple[str, ...] = ()
    seeds: Optional[int] = None  # None: each budget's own
    rates: Optional[Tuple[float, ...]] = None  # None: the config's train.lr times the budget's factors
    thresholds: Optional[Dict[str, float]] = None
    early_step: Optional[int] = None  # None: the budget's early fraction of the steps
    extra_steps: Optional[int] = None  # a continuation's steps; None: the budget's steps
    log: Callable = print


@dataclass(frozen=True)
class Plan:
    """One setting under one budget: the override layers and the schedule every arm shares."""

    config: str
    name: str
    mode: str
    budget: Budget
    seeds: int
    budget_overrides: Tuple[str, ...]  # the budget's, for this data mode (long: the stop rule's eval_every)
    validation: Tuple[str, ...]
    holdout: Tuple[str, ...]
    steps: int  # a run's train.steps (long: the cap)
    warmup: int
    eval_every: int
    extra_steps: int  # a continuation arm's steps
    first_seed: int
    learning_rates: Tuple[float, ...]
    refine_default: str
    folder: Path  # out / setting / budget
    user_overrides: Tuple[str, ...] = ()

    def arm_schedule(self, arm: str) -> Dict[str, object]:
        """The steps and warm-up of an arm: a continuation trains ``extra_steps`` with the warm-up
        scaled alike; other arms the budget's."""
        if arm_base(arm) is None:
            return {"train.steps": self.steps, "train.warmup_steps": self.warmup}
        return {"train.steps": self.extra_steps, "train.warmup_steps": round(self.warmup * self.extra_steps / self.steps)}

    def arm_layers(self, arm: str) -> List[str]:
        """Overrides as they stack: the budget, the arm, the user's ``--set``."""
        return list(self.budget_overrides) + dotlist(arm_overrides(arm)) + list(self.user_overrides)


def plan_budget(config_name: str, budget: Budget, context: Context) -> Plan:
    from ..config import ConfigError, load_config, resolve_config_path

    user = list(context.user_overrides)
    mode = load_config(config_name, user).data.mode
    layers = dict(budget.overrides.get(mode, {}))
    config = load_config(config_name, dotlist(layers) + user)
    if budget.stop is not None:  # evaluated often enough to see a plateau (a --set train.eval_every wins)
        layers["train.eval_every"] = budget.stop.eval_every(config.train.steps)
        config = load_config(config_name, dotlist(layers) + user)
    seeds = budget.seeds if context.seeds is None else int(context.seeds)
    if seeds < 2:
        raise ConfigError(f"a paired test over seeds needs at least 2 seeds, got {seeds}")
    if budget.sweep_seeds < 2:
        raise ConfigError(f"budget {budget.name!r}: the learning rate is picked on the mean of at least 2 seeds, "
                          f"got sweep_seeds={budget.sweep_seeds}")
    steps = int(config.train.steps)
    rates = context.rates or [config.train.lr * f for f in budget.lr_factors]
    name = resolve_config_path(config_name).stem
    return Plan(config=config_name, name=name, mode=mode, budget=budget, seeds=seeds,
                budget_overrides=tuple(dotlist(layers)),
                validation=tuple(dotlist(validation_overrides(config, budget.val_samples))),
                holdout=tuple(dotlist(holdout_overrides(config, budget.holdout))), steps=steps,
                warmup=int(config.train.warmup_steps), eval_every=int(config.train.eval_every),
                extra_steps=int(context.extra_steps or steps), first_seed=int(config.train.seed),
                learning_rates=tuple(round_rate(r) for r in rates), refine_default=str(config.eval.refine),
                folder=context.out / name / budget.name, user_overrides=tuple(user))


@dataclass
class ArmOutcome:
    """An arm under one budget: its sweep (scores, runs per rate and sweep seed), the rate picked
    and its runs, one per seed."""

    name: str
    scores: Scores
    sweep_runs: Dict[float, List[RunResult]]
    sweep_steps: int
    lr: float
    runs: List[RunResult]
    rate_from: Optional[str] = None  # the arm whose picked rate this one trains at (no sweep of its own)


def sweep_arm(plan: Plan, arm: str, base: Optional[ArmOutcome], context: Context) -> Tuple[Scores, Dict, int]:
    """The arm's sweep on the holdout: each rate trained with ``budget.sweep_seeds`` seeds for a
    fraction of the arm's steps (a continuation from its base's sweep run of the same seed), scored
    by the mean; extended past an edge (:func:`bracket_rates`)."""
    schedule = plan.arm_schedule(arm)
    fraction = plan.budget.sweep_fraction
    sweep_steps = max(1, round(schedule["train.steps"] * fraction))
    layers = plan.arm_layers(arm) + list(plan.holdout) + dotlist(
        {"train.steps": sweep_steps, "train.eval_every": sweep_steps,
         "train.warmup_steps": round(schedule["train.warmup_steps"] * fraction)})
    seeds = [plan.first_seed + k for k in range(plan.budget.sweep_seeds)]
    runs: Dict[float, List[RunResult]] = {}
    folder = plan.folder / "sweep" / arm

    def evaluate(rates: List[float]) -> Scores:
        higher, values = None, {}
        for lr in rates:
            results = [context.cache.run(RunSpec(
                plan.config, tuple(layers + dotlist({"train.lr": lr, "train.seed": seed})), folder / f"lr{lr:g}_seed{k}",
                init_from=None if base is None else base.sweep_runs[base.lr][k]), context.device)
                for k, seed in enumerate(seeds)]
            runs[lr] = results
            finals = [r.final for r in results]
            values[lr] = None if None in finals else sum(finals) / len(finals)
            higher = next((r.higher_is_better for r in results if r.higher_is_better is not None), higher)
            shown = ", ".join("diverged" if v is None else f"{v:.4f}" for v in finals)
            context.log(f"{folder}: lr {lr:g}: holdout {shown}"
                        + ("" if values[lr] is None else f", mean {values[lr]:.4f}"))
        return Scores(higher, values)

    scores = bracket_rates(evaluate, plan.learning_rates, plan.budget.extend_sweep, context.log, str(folder))
    return scores, runs, sweep_steps


def seed_runs(plan: Plan, arm: str, lr: float, base: Optional[ArmOutcome], context: Context) -> List[RunResult]:
    """One run per seed at the picked rate on the validation split; a continuation starts from its
    base arm's run of the same seed. Each run's final weights are also decoded with every decoder."""
    from ..engine import NonFiniteLossError

    layers = plan.arm_layers(arm) + list(plan.validation) + dotlist(plan.arm_schedule(arm))
    stop = plan.budget.stop if arm_base(arm) is None else None  # a continuation trains exactly its extra steps
    results = []
    for k in range(plan.seeds):
        seed = plan.first_seed + k
        spec = RunSpec(plan.config, tuple(layers + dotlist({"train.lr": lr, "train.seed": seed})),
                       plan.folder / arm / f"seed{k}", init_from=None if base is None else base.runs[k], stop=stop,
                       refine=True)
        result = context.cache.run(spec, context.device)
        if result.diverged is not None:
            raise NonFiniteLossError(f"{spec.run_dir} (lr {lr:g}, train.seed {seed}): {result.diverged}")
        context.log(f"{spec.run_dir}: lr {lr:g}: {result.metric} {result.final:.4f} after {result.stopped_at} steps "
                    f"({result.stop_reason})")
        results.append(result)
    return results


def train_arm(plan: Plan, arm: str, outcomes: Dict[str, ArmOutcome], context: Context,
              rate_from: Optional[str] = None) -> ArmOutcome:
    """The arm's sweep and its runs at the picked rate; with ``rate_from``, that arm's picked rate
    and no sweep."""
    from ..engine import NonFiniteLossError

    base = outcomes[arm_base(arm)] if arm_base(arm) else None
    if rate_from is not None:
        source = outcomes[rate_from]
        context.log(f"{plan.folder / arm}: lr {source.lr:g}, the rate {rate_from} picked (no sweep of its own)")
        return ArmOutcome(arm, Scores(source.scores.higher_is_better, {}), {}, 0, source.lr,
                          seed_runs(plan, arm, source.lr, base, context), rate_from)
    scores, sweep_runs, sweep_steps = sweep_arm(plan, arm, base, context)
    lr = best_rate(scores.values, scores.higher_is_better)
    if lr is None:
        raise NonFiniteLossError(f"{plan.name}: arm {arm} diverged at every learning rate {list(scores.values)}; "
                                 "try --rates with lower values")
    return ArmOutcome(arm, scores, sweep_runs, sweep_steps, lr, seed_runs(plan, arm, lr, base, context))


def arm_json(outcome: ArmOutcome, plan: Plan, out: Path) -> dict:
    """An arm's results as ``results.json`` holds them."""
    runs = outcome.runs
    finals = [run.final for run in runs]
    refinements = [r for r in runs[0].refine if all(r in run.refine for run in runs)]
    by_refine = {r: [run.refine[r] for run in runs] for r in refinements}
    return {
        "overrides": arm_overrides(outcome.name), "base": arm_base(outcome.name), "lr": outcome.lr,
        "sweep": {"steps": outcome.sweep_steps, "seeds": len(next(iter(outcome.sweep_runs.values()), [])),
                  "values": {f"{r:g}": v for r, v in outcome.scores.values.items()},
                  "per_seed": {f"{r:g}": [run.final for run in results] for r, results in outcome.sweep_runs.items()},
                  "edge": None if outcome.rate_from else edge_of(outcome.scores.values, outcome.lr),
                  "rate_from": outcome.rate_from},
        "seeds": [plan.first_seed + k for k in range(len(runs))],
        "final": finals, "stats": summarize(finals),
        "curves": [{"steps": run.steps, "values": run.values} for run in runs],
        "stopped_at": [run.stopped_at for run in runs], "stop_reason": [run.stop_reason for run in runs],
        "refine": {r: {"values": v, "stats": summarize(v)} for r, v in by_refine.items()},
        "runs": [str(Path(run.run_dir).relative_to(out)) for run in runs],
        "wall_time_s": [run.wall_time_s for run in runs],
    }


def snapshot(plan: Plan, design: Design, outcomes: Dict[str, ArmOutcome], label: str,
             step: Optional[int]) -> dict:
    """The design's arms compared at ``step`` (None: each run's final evaluation): per arm the
    per-seed values and their summary, the paired comparisons of the design's pairs, a 2 x 2
    design's effects, and the verdict. A run not evaluated at ``step`` leaves it incomplete."""
    first = outcomes[design.arms[0]].runs[0]
    metric, higher = first.metric, first.higher_is_better
    values = {arm: [run.final if step is None else run.value_at(step) for run in outcomes[arm].runs]
              for arm in design.arms}
    result = {"label": label, "step": step, "name": f"{plan.name}, {plan.budget.name} budget, {label}",
              "metric": metric, "higher_is_better": higher, "seeds": plan.seeds}
    missing = [arm for arm, per_seed in values.items() if None in per_seed]
    if missing:
        result["missing"] = missing
        result["verdict"] = f"{result['name']}: not every run of {', '.join(missing)} was evaluated there."
        return result
    result["arms"] = {arm: {"values": per_seed, "stats": summarize(per_seed)} for arm, per_seed in values.items()}
    result["comparisons"] = compare_arms(values, higher, pairs=design.compared_pairs())
    if design.two_by_two():
        cells = {a: {b: values[arm] for b, arm in row.items()} for a, row in design.grid().items()}
        result["effects"] = factorial_effects(cells, [factor.name for factor in design.factors], higher)
    if design.relative_to is not None:  # each cell against its reference level's (noise: its clean arm)
        result["relative"] = relative_to_reference(values, design.references())
    result["verdict"] = verdict(result)
    return result


def add_steps_to_threshold(block: dict, design: Design, metric: str, higher: bool,
                           thresholds: Optional[Dict[str, float]]) -> None:
    arms = block["arms"]
    if thresholds and metric in thresholds:
        threshold, rule = float(thresholds[metric]), "given with --threshold"
    else:
        threshold = convergence_threshold([arms[arm]["stats"]["mean"] for arm in design.arms], higher)
        rule = f"the weakest arm's final mean, relaxed by {THRESHOLD_SLACK:.0%}"
    block["threshold"] = {"value": threshold, "rule": rule}
    for arm in design.arms:
        steps_to = [steps_to_threshold(c["steps"], c["values"], threshold, higher) for c in arms[arm]["curves"]]
        reached = [s for s in steps_to if s is not None]
        arms[arm]["steps_to_threshold"] = {"per_seed": steps_to, "reached": len(reached),
                                           "stats": summarize(reached) if reached else None}


def example_from_runs(name: str, runs: Dict[str, RunResult], path: Path, device: str) -> str:
    """:func:`heatmapnet.ablate.report.example_image` of finished runs, their weights read back
    from their ``last.pt`` (so a resumed ablation draws it too)."""
    return example_image(name, {arm: restore_trainer(run, device) for arm, run in runs.items()}, path)


def describe_end(runs: Sequence[RunResult], plateau_rule: bool, run_steps: int) -> str:
    """What the final comparison compares: with a plateau rule, how many runs reached their
    plateau and how many were stopped by the cap; without one, the end of training."""
    if not plateau_rule:
        return f"at the end (step {run_steps})"
    finished = [run for run in runs if run.diverged is None]
    capped = sum(run.stop_reason != "plateau" for run in finished)
    if capped == 0:
        return "at the plateau"
    if capped == len(finished):
        return f"at the cap (step {run_steps}; no run reached its plateau)"
    return f"at the plateau ({capped} of {len(finished)} runs stopped by the cap, step {run_steps})"


def run_budget(config_name: str, design: Design, budget: Budget, context: Context) -> dict:
    """Sweep, train and evaluate every arm of ``design`` (and the bases its continuations start
    from) on one config under one budget; compare them early and at the end; draw the plots."""
    plan = plan_budget(config_name, budget, context)
    outcomes: Dict[str, ArmOutcome] = {}
    for arm in design.bases() + list(design.arms):
        outcomes[arm] = train_arm(plan, arm, outcomes, context, design.rate_from.get(arm))
    continuation = all(arm_base(arm) for arm in design.arms)
    run_steps = plan.extra_steps if continuation else plan.steps
    early_step = context.early_step or budget.early_step(run_steps, plan.eval_every)
    end_label = describe_end([run for arm in design.arms for run in outcomes[arm].runs],
                             budget.stop is not None and not continuation, run_steps)
    first = outcomes[design.arms[0]].runs[0]
    block = {
        "budget": budget.name, "steps": plan.steps, "eval_every": plan.eval_every, "warmup_steps": plan.warmup,
        "stop": None if budget.stop is None else {**dataclasses.asdict(budget.stop), "rule": budget.stop.describe()},
        "continuation": continuation, "extra_steps": plan.extra_steps if continuation else None,
        "seeds": plan.seeds, "sweep_seeds": budget.sweep_seeds, "sweep_fraction": budget.sweep_fraction,
        "learning_rates": list(plan.learning_rates), "sweep_extension": budget.extend_sweep,
        "refine_default": plan.refine_default,
        "overrides": {"budget": list(plan.budget_overrides), "user": list(context.user_overrides),
                      "validation": list(plan.validation), "sweep_holdout": list(plan.holdout)},
        "arms": {arm: arm_json(outcomes[arm], plan, context.out) for arm in design.arms},
        "bases": {arm: arm_json(outcomes[arm], plan, context.out) for arm in design.bases()},
        "early": snapshot(plan, design, outcomes, f"early (step {early_step})", early_step),
        "end": snapshot(plan, design, outcomes, end_label, None),
    }
    add_steps_to_threshold(block, design, first.metric, first.higher_is_better, context.thresholds)
    block["confidence"] = confidence_block({arm: outcomes[arm].runs for arm in design.arms}, design.compared_pairs(),
                                           f"{plan.name}, {budget.name} budget", plan.seeds)
    stem = f"{plan.name}_{budget.name}"
    block["plots"] = {
        "curves": plot_curves(block, plan.name, first.metric, first.higher_is_better,
                              context.out / f"{stem}_curves.png"),
        "final": plot_final(block, plan.name, first.metric, first.higher_is_better, context.out / f"{stem}_final.png"),
        "example": example_from_runs(plan.name, {arm: outcomes[arm].runs[0] for arm in design.arms},
                                     context.out / f"{stem}_example.png", context.device)}
    if "relative" in block["end"]:
        block["plots"]["noise"] = plot_noise(block, design_json(design), plan.name, first.metric,
                                             first.higher_is_better, context.out / f"{stem}_noise.png")
    plot_reliabilities(block, plan.name, context.out, stem)  # one per arm, named in block["confidence"]
    return block


def run_setting(config_name: str, design: Design, budgets: Sequence[Budget], context: Context) -> dict:
    """Every budget on one config: the setting's entry of ``results.json``."""
    from ..config import load_config, resolve_config_path

    config = load_config(config_name, list(context.user_overrides))
    setting = {"name": resolve_config_path(config_name).stem, "config": str(resolve_config_path(config_name)),
               "mode": str(config.data.mode), "scheme": str(config.data.scheme), "budgets": {}}
    for budget in budgets:
        block = run_budget(config_name, design, budget, context)
        setting["budgets"][budget.name] = block
        setting["metric"], setting["higher_is_better"] = block["end"]["metric"], block["end"]["higher_is_better"]
    return setting


# ----------------------------------------------------------------------------------------------
# the whole ablation
# ----------------------------------------------------------------------------------------------
def resolve_budgets(budget: Union[str, Budget, Sequence[Union[str, Budget]]]) -> List[Budget]:
    """Budget names of :data:`BUDGETS` or :class:`Budget` objects, one or a list, without repeats."""
    from ..config import ConfigError

    items = [budget] if isinstance(budget, (str, Budget)) else list(budget)
    resolved = []
    for item in items:
        if isinstance(item, str):
            if item not in BUDGETS:
                raise ConfigError(f"unknown budget {item!r}; choose one of {list(BUDGETS)}")
            item = BUDGETS[item]
        if item.name not in [b.name for b in resolved]:
            resolved.append(item)
    if not resolved:
        raise ConfigError(f"no budget given; choose from {list(BUDGETS)}")
    return resolved


def design_json(design: Design) -> dict:
    return {"name": design.name, "question": design.question, "arms": list(design.arms),
            "overrides": {arm: arm_overrides(arm) for arm in list(design.arms) + design.bases()},
            "bases": {arm: arm_base(arm) for arm in design.arms if arm_base(arm)},
            "factors": [{"name": f.name, "levels": list(f.levels), "labels": [f.label(level) for level in f.levels]}
                        for f in design.factors],
            "cells": design.cells, "pairs": [list(pair) for pair in design.compared_pairs()],
            "relative_to": design.relative_to, "references": design.references()}


def ablate(config: Optional[str] = None, out="runs/ablate", arms: Optional[Sequence[str]] = None,
           seeds: Optional[int] = None, budget: Union[str, Budget, Sequence] = DEFAULT_BUDGET,
           overrides: Sequence[str] = (), rates: Optional[Sequence[float]] = None,
           thresholds: Optional[Dict[str, float]] = None, design: Optional[str] = None, resume: bool = False,
           device: str = "auto", early_step: Optional[int] = None, extra_steps: Optional[int] = None,
           log=print) -> dict:
    """Run the ablation on ``config`` (default: both built-in settings) and write ``report.md``,
    ``results.json`` and the PNGs into ``out``.

    ``design`` names one of :data:`heatmapnet.ablate.arms.DESIGNS` (default the 2 x 2 loss x
    target design); ``arms`` instead compares the arms given, every pair. ``budget`` is one or
    several names of :data:`BUDGETS` (or :class:`Budget` objects), each run and reported on its
    own; ``overrides`` (``key=value``) apply to every arm on top of the budget. ``resume`` reuses
    the runs a previous call with the same ``out`` finished with the same settings. ``device``:
    auto (a GPU when present), cpu or cuda. Returns the results as written to ``results.json``.
    SIGTERM or SIGINT stop it before its next run, or within the run under way
    (:class:`heatmapnet.stopping.StoppedBySignal`): ``resume`` then reuses every finished run."""
    from ..config import load_config

    chosen = resolve_design(design, arms)
    budgets = resolve_budgets(budget)
    device = resolve_device(device)
    configs = [config] if config else list(BUILTIN_SETTINGS)
    for name in configs:  # a bad key fails here, before anything trains
        for arm in chosen.bases() + list(chosen.arms):
            load_config(name, dotlist(arm_overrides(arm)) + list(overrides))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = RunCache(resume, log)
    context = Context(out, cache, device, tuple(overrides), seeds, tuple(rates) if rates else None, thresholds,
                      early_step, extra_steps, log)
    started = time.perf_counter()
    with deferred_signals():  # SIGTERM, SIGINT: stop before the next run (or within one), keeping the cache
        settings = [run_setting(name, chosen, budgets, context) for name in configs]
    results = {"design": design_json(chosen), "budgets": [dataclasses.asdict(b) for b in budgets],
               "device": device, "settings": settings, "runs": {"trained": cache.trained, "reused": cache.reused},
               "wall_time_s": round(time.perf_counter() - started, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    write_report(results, out / "report.md")
    return results
