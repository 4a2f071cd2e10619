"""Orchestration of an ablation: budgets, the learning-rate sweep per arm, the runs per seed and
the whole ablation over its settings.

Every run goes through the engine's public API (:class:`heatmapnet.engine.Trainer`,
:class:`heatmapnet.engine.NonFiniteLossError`) and :func:`heatmapnet.evaluation.primary_metric`;
the numbers go to :mod:`.stats`, the plots and the report to :mod:`.report`.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .arms import ARMS, BUILTIN_SETTINGS, DEFAULT_ARMS, REFINEMENTS, check_arms, dotlist
from .report import example_image, plot_curves, plot_final, write_report
from .stats import THRESHOLD_SLACK, compare_arms, convergence_threshold, steps_to_threshold, summarize, verdict


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


# One torch thread and one loader process: on a shared 2-core machine a second OpenMP thread that
# has to wait for a busy core slows these small models down by an order of magnitude.
_SMALL_CPU = {"model.backbone": "mobilenetv3_small_050", "model.head_channels": 32, "model.head": "fpn",
              "train.threads": 1, "data.num_workers": 1}
def _per_mode(steps: int, warmup: int, eval_every: int) -> Dict[str, Dict[str, object]]:
    """The small CPU model per data mode: input size and batch for each, the step budget for all."""
    schedule = {"train.steps": steps, "train.warmup_steps": warmup, "train.eval_every": eval_every}
    sizes = {"topdown": ([64, 64], 16), "multi": ([96, 96], 8), "bottomup": ([128, 128], 8)}
    return {mode: {**_SMALL_CPU, "data.input_size": size, "train.batch_size": batch, **schedule}
            for mode, (size, batch) in sizes.items()}


BUDGETS: Dict[str, Budget] = {
    # both built-in settings, default arms: about 3 minutes on 2 CPU cores
    "quick": Budget(seeds=2, lr_factors=(1.0, 2.5), sweep_fraction=0.5, holdout=48, val_samples=48, name="quick",
                    extend_sweep=1, overrides=_per_mode(steps=80, warmup=8, eval_every=16)),
    # about 15 minutes: the same sizes, 2.5x the steps, 3 seeds, a 3-rate sweep, more validation samples
    "full": Budget(seeds=3, lr_factors=(1.0, 2.5, 5.0), sweep_fraction=0.4, holdout=64, val_samples=100, name="full",
                   extend_sweep=2, overrides=_per_mode(steps=250, warmup=20, eval_every=25)),
}


# ----------------------------------------------------------------------------------------------
# the data splits of the runs
# ----------------------------------------------------------------------------------------------
def _split_range(split, skip_invalid: bool) -> range:
    """The record indices a file split's ``subset`` selects, in the unsliced file's numbering."""
    from omegaconf import OmegaConf

    from ..data.build import read_split, select_subset

    whole = read_split(OmegaConf.merge(split, {"subset": None}), skip_invalid)
    return select_subset(range(len(whole)), split.subset)


def _synthetic(split) -> bool:
    from ..data.build import SYNTHETIC_SOURCES

    return split.source in SYNTHETIC_SOURCES


def validation_overrides(config, samples: Optional[int]) -> Dict[str, object]:
    """At most ``samples`` of the validation split: a synthetic split's first ones, or the first
    ones of a file split's subset."""
    val = config.data.val
    if samples is None:
        return {}
    if _synthetic(val):
        return {"data.val.num_samples": min(int(val.num_samples), samples)}
    selected = _split_range(val, config.data.skip_invalid)
    return {"data.val.subset": f"{selected.start}:{min(selected.stop, selected.start + samples)}"}


def holdout_overrides(config, samples: int) -> Dict[str, object]:
    """A validation split held out of the training data, for the learning-rate sweep: for a
    synthetic source, ``samples`` fresh samples (a seed neither split uses); for files, the last
    ``samples`` records of the training subset (at most a fifth), which the sweep does not train on."""
    train, val = config.data.train, config.data.val
    if _synthetic(train):
        return {"data.val.source": train.source, "data.val.seed": max(int(train.seed), int(val.seed)) + 1,
                "data.val.num_samples": samples, "data.val.subset": None}
    selected = _split_range(train, config.data.skip_invalid)
    cut = selected.stop - max(1, min(samples, len(selected) // 5))
    copied = {f"data.val.{name}": train[name] for name in ("source", "format", "ann_file", "img_dir")}
    return {**copied, "data.train.subset": f"{selected.start}:{cut}", "data.val.subset": f"{cut}:{selected.stop}"}


# ----------------------------------------------------------------------------------------------
# training the runs
# ----------------------------------------------------------------------------------------------
def train_run(config_name: str, overrides: Sequence[str], out_dir: Path):
    """One run through the engine in a fresh ``out_dir``: (the trainer, model kept, its summary)."""
    from ..config import load_config
    from ..engine import Trainer

    config = load_config(config_name, overrides)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # metrics.jsonl is appended to: a rerun must not extend an old curve
    trainer = Trainer(config, out_dir)
    return trainer, trainer.run()


def read_curve(run_dir, metric: str):
    """(steps, values) of ``metric`` from a run's ``metrics.jsonl`` (one row per evaluation)."""
    steps, values = [], []
    for line in (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if f"val/{metric}" in record:
            steps.append(int(record["step"]))
            values.append(float(record[f"val/{metric}"]))
    return steps, values


def round_rate(value: float) -> float:
    """A learning rate to three significant digits (the sweep's grid)."""
    return float(f"{value:.3g}")


def sweep_rates(config_name: str, overrides: List[str], rates: Sequence[float], out: Path, log):
    """Short runs at each rate on the holdout: (metric name, higher is better, {rate: value or
    None where the run diverged})."""
    from ..engine import NonFiniteLossError
    from ..evaluation import primary_metric

    metric = higher = None
    values = {}
    for lr in rates:
        try:
            _, summary = train_run(config_name, overrides + dotlist({"train.lr": lr}), out / f"lr{lr:g}")
        except NonFiniteLossError as error:
            log(f"{out}: lr {lr:g} diverged ({error})")
            values[lr] = None
            continue
        metric, values[lr], higher = primary_metric(summary["final"])
        log(f"{out}: lr {lr:g}: {metric} {values[lr]:.4f} on the holdout")
    return metric, higher, values


def best_rate(values: Dict[float, Optional[float]], higher: bool) -> Optional[float]:
    """The rate with the best metric among those that did not diverge (None: all diverged)."""
    finite = {lr: v for lr, v in values.items() if v is not None}
    return (max if higher else min)(finite, key=finite.get) if finite else None


def sweep_until_bracketed(config_name: str, overrides: List[str], rates: Sequence[float], extra: int, out: Path,
                          log):
    """:func:`sweep_rates`, then while the best rate is the highest (lowest) swept, one more rate
    twice as high (half as low), at most ``extra`` times: so that no arm keeps a rate only because
    the grid stopped there. A diverged rate ends the search upwards."""
    metric, higher, values = sweep_rates(config_name, overrides, rates, out, log)
    for _ in range(extra):
        best = best_rate(values, higher)
        if best is None or len(values) < 2 or min(values) < best < max(values):
            break
        edge = max(values) if best == max(values) else min(values)
        candidate = round_rate(edge * 2 if best == max(values) else edge / 2)
        log(f"{out}: best rate {best:g} is at the edge of the sweep; trying {candidate:g}")
        metric, higher, more = sweep_rates(config_name, overrides, [candidate], out, log)
        values.update(more)
    return metric, higher, dict(sorted(values.items()))


def seed_runs(config_name: str, overrides: List[str], lr: float, seeds: Sequence[int], out: Path, log):
    """One full run per seed: (metric name, higher is better, the arm's per-seed results, the
    first seed's trainer). Each run's final weights are also decoded with every refinement."""
    from ..engine import NonFiniteLossError
    from ..evaluation import primary_metric

    finals, curves, runs, first = [], [], [], None
    by_refine = {}
    for k, seed in enumerate(seeds):
        run_dir = out / f"seed{k}"
        try:
            trainer, summary = train_run(config_name, overrides + dotlist({"train.lr": lr, "train.seed": seed}),
                                         run_dir)
        except NonFiniteLossError as error:
            raise NonFiniteLossError(f"{run_dir} (lr {lr:g}, train.seed {seed}): {error}") from None
        metric, value, higher = primary_metric(summary["final"])
        finals.append(value)
        curves.append(read_curve(run_dir, metric))
        runs.append(str(run_dir))
        for refine in trainer.codec.refinements:  # the same weights under each sub-pixel decoder
            result = summary["final"] if refine == trainer.config.eval.refine \
                else trainer.evaluate(dataclasses.replace(trainer.codec, refine=refine))
            by_refine.setdefault(refine, []).append(primary_metric(result)[1])
        first = first or trainer
        log(f"{run_dir}: lr {lr:g}: {metric} {value:.4f}")
    results = {"seeds": list(seeds), "final": finals, "stats": summarize(finals),
               "curves": {"steps": curves[0][0], "values": [values for _, values in curves]},
               "refine": {r: {"values": v, "stats": summarize(v)} for r, v in by_refine.items()}, "runs": runs}
    return metric, higher, results, first


def run_setting(config_name: str, arms: Sequence[str], budget: Budget, seeds: int, out: Path,
                user_overrides: Sequence[str] = (), rates: Optional[Sequence[float]] = None,
                thresholds: Optional[Dict[str, float]] = None, log=print) -> dict:
    """Sweep, train and evaluate every arm on one config; write its plots; return its results.

    Overrides stack as: the config file, the budget for its data mode, the arm, the user's
    ``--set``, the data split (validation size, or the sweep's holdout), then the run's own
    ``train.lr`` and ``train.seed``.
    """
    from ..config import load_config, resolve_config_path
    from ..engine import NonFiniteLossError

    name = resolve_config_path(config_name).stem
    mode = load_config(config_name, user_overrides).data.mode
    budgeted_overrides = dotlist(budget.overrides.get(mode, {}))
    config = load_config(config_name, budgeted_overrides + list(user_overrides))
    steps, first_seed = int(config.train.steps), int(config.train.seed)
    sweep_steps = max(1, round(steps * budget.sweep_fraction))
    learning_rates = [round_rate(r) for r in (rates or [config.train.lr * f for f in budget.lr_factors])]
    validation = dotlist(validation_overrides(config, budget.val_samples))
    holdout = dotlist(holdout_overrides(config, budget.holdout))
    sweep_run = dotlist({"train.steps": sweep_steps, "train.eval_every": sweep_steps, "train.seed": first_seed,
                         "train.warmup_steps": round(config.train.warmup_steps * budget.sweep_fraction)})

    extension = 0 if rates else budget.extend_sweep  # rates given with --rates are swept exactly
    results, kept = {}, {}
    for arm in arms:
        arm_overrides = budgeted_overrides + dotlist(ARMS[arm]) + list(user_overrides)
        metric, higher, sweep = sweep_until_bracketed(config_name, arm_overrides + holdout + sweep_run,
                                                      learning_rates, extension, out / name / "sweep" / arm, log)
        lr = best_rate(sweep, higher)
        if lr is None:
            raise NonFiniteLossError(f"{name}: arm {arm} diverged at every learning rate {list(sweep)}; "
                                     "try --rates with lower values")
        metric, higher, runs, kept[arm] = seed_runs(config_name, arm_overrides + validation, lr,
                                                    [first_seed + k for k in range(seeds)], out / name / arm, log)
        results[arm] = {"overrides": ARMS[arm], "lr": lr,
                        "sweep": {"steps": sweep_steps, "values": {f"{r:g}": v for r, v in sweep.items()}}, **runs}

    means = [results[arm]["stats"]["mean"] for arm in arms]
    if thresholds and metric in thresholds:
        threshold, rule = float(thresholds[metric]), "given with --threshold"
    else:
        threshold = convergence_threshold(means, higher)
        rule = f"the weakest arm's final mean, relaxed by {THRESHOLD_SLACK:.0%}"
    for arm in arms:
        curves = results[arm]["curves"]
        steps_to = [steps_to_threshold(curves["steps"], values, threshold, higher) for values in curves["values"]]
        reached = [s for s in steps_to if s is not None]
        results[arm]["steps_to_threshold"] = {"per_seed": steps_to, "reached": len(reached),
                                              "stats": summarize(reached) if reached else None}
    comparisons = compare_arms({arm: results[arm]["final"] for arm in arms}, higher)
    setting = {
        "name": name, "config": str(resolve_config_path(config_name)), "mode": mode, "metric": metric,
        "higher_is_better": higher, "scheme": config.data.scheme,
        "overrides": {"budget": budgeted_overrides, "user": list(user_overrides), "validation": validation,
                      "sweep_holdout": holdout},
        "steps": steps, "eval_every": int(config.train.eval_every), "sweep_steps": sweep_steps,
        "learning_rates": learning_rates, "sweep_extension": extension, "seeds": seeds,
        "refine_default": config.eval.refine,
        "threshold": {"value": threshold, "rule": rule}, "arms": results, "comparisons": comparisons}
    setting["verdict"] = verdict(setting)
    setting["plots"] = {"curves": plot_curves(setting, out / f"{name}_curves.png"),
                        "final": plot_final(setting, out / f"{name}_final.png"),
                        "example": example_image(name, kept, out / f"{name}_example.png")}
    return setting


# ----------------------------------------------------------------------------------------------
# the whole ablation
# ----------------------------------------------------------------------------------------------
def ablate(config: Optional[str] = None, out="runs/ablate", arms: Sequence[str] = DEFAULT_ARMS,
           seeds: Optional[int] = None, budget="full", overrides: Sequence[str] = (),
           rates: Optional[Sequence[float]] = None, thresholds: Optional[Dict[str, float]] = None,
           log=print) -> dict:
    """Run the ablation on ``config`` (default: both built-in settings) and write ``report.md``,
    ``results.json`` and the PNGs into ``out``. ``budget`` is a name of :data:`BUDGETS` or a
    :class:`Budget`; ``overrides`` (``key=value``) apply to every arm on top of the budget.
    Returns the results as written to ``results.json``."""
    from ..config import ConfigError, load_config

    arms = check_arms(arms)
    if isinstance(budget, str):
        if budget not in BUDGETS:
            raise ConfigError(f"unknown budget {budget!r}; choose one of {list(BUDGETS)}")
        budget = BUDGETS[budget]
    seeds = budget.seeds if seeds is None else int(seeds)
    if seeds < 2:
        raise ConfigError(f"a paired test over seeds needs at least 2 seeds, got {seeds}")
    configs = [config] if config else list(BUILTIN_SETTINGS)
    for name in configs:  # a bad key fails here, before anything trains
        for arm in arms:
            load_config(name, dotlist(ARMS[arm]) + list(overrides))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    settings = [run_setting(name, arms, budget, seeds, out, overrides, rates, thresholds, log) for name in configs]
    results = {"arms": arms, "seeds": seeds, "budget": dataclasses.asdict(budget),
               "settings": settings, "wall_time_s": round(time.perf_counter() - started, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    write_report(results, out / "report.md")
    return results
