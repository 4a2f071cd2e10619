"""``heatmapnet ablate``: which heatmap loss should I use on my data? Answered with evidence.

Each arm is a set of config overrides (:data:`ARMS`); every arm trains on identical data, model,
step budget and seeds, after its own learning rate was picked by a short sweep on a split held out
of the training data, so no loss loses to a bad rate. Per arm and setting the report gives the
final metric's mean, standard deviation and Student-t 95% interval over seeds, paired t-tests
between arms (same seed = a pair), metric-against-step curves with the steps each seed needs to
reach a stated threshold, and the final metric under each sub-pixel decoder.

Two settings tell the effect of the size-adaptive target apart: top-down crops (every instance
scaled to one size, where the CornerNet radius is the same for all) and whole-image multi-instance
maps (people at varied sizes, where it adapts). The statistics are pure functions at the top of
this module; the orchestration (training through :class:`heatmapnet.engine.Trainer`), plots and
report follow.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import stats

# Arms as data: config overrides on top of the setting's config. ``mse`` and ``focal`` are the two
# standard recipes; the others change the loss or the target alone, so the two effects separate.
ARMS: Dict[str, Dict[str, object]] = {
    "mse": {"loss.name": "mse", "target.sigma_policy": "fixed", "target.exact_peak": False},
    "focal": {"loss.name": "focal", "target.sigma_policy": "radius", "target.exact_peak": True},
    "awing": {"loss.name": "awing", "target.sigma_policy": "fixed", "target.exact_peak": False},
    "focal_beta0": {"loss.name": "focal", "loss.beta": 0.0, "target.sigma_policy": "radius",
                    "target.exact_peak": True},
    "focal_fixed": {"loss.name": "focal", "target.sigma_policy": "fixed", "target.exact_peak": True},
    "mse_radius": {"loss.name": "mse", "target.sigma_policy": "radius", "target.exact_peak": False},
}
DEFAULT_ARMS = ("mse", "focal")
# With no config: the top-down setting (faces, NME) and the multi-instance one (people).
BUILTIN_SETTINGS = ("synthetic_faces", "synthetic_people")
REFINEMENTS = ("none", "quarter", "dark")
ALPHA = 0.05  # significance level of the paired tests
THRESHOLD_SLACK = 0.10  # default convergence threshold: within 10% of the weakest arm's final mean


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
BUDGETS: Dict[str, Budget] = {
    # both built-in settings, default arms: about 3 minutes on 2 CPU cores
    "quick": Budget(seeds=2, lr_factors=(1.0, 2.5), sweep_fraction=0.5, holdout=48, val_samples=48, name="quick",
                    extend_sweep=1,
                    overrides={"topdown": {**_SMALL_CPU, "data.input_size": [64, 64], "train.steps": 80,
                                           "train.batch_size": 16, "train.warmup_steps": 8, "train.eval_every": 16},
                               "multi": {**_SMALL_CPU, "data.input_size": [96, 96], "train.steps": 80,
                                         "train.batch_size": 8, "train.warmup_steps": 8, "train.eval_every": 16}}),
    # about 15 minutes: the same sizes, 2.5x the steps, 3 seeds, a 3-rate sweep, more validation samples
    "full": Budget(seeds=3, lr_factors=(1.0, 2.5, 5.0), sweep_fraction=0.4, holdout=64, val_samples=100, name="full",
                   extend_sweep=2,
                   overrides={"topdown": {**_SMALL_CPU, "data.input_size": [64, 64], "train.steps": 250,
                                          "train.batch_size": 16, "train.warmup_steps": 20, "train.eval_every": 25},
                              "multi": {**_SMALL_CPU, "data.input_size": [96, 96], "train.steps": 250,
                                        "train.batch_size": 8, "train.warmup_steps": 20, "train.eval_every": 25}}),
}


# ----------------------------------------------------------------------------------------------
# statistics (pure functions)
# ----------------------------------------------------------------------------------------------
def summarize(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (ddof 1) and the Student-t 95% confidence interval of the
    mean; ``std`` and ``ci95`` are None for fewer than two values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to summarize")
    mean = float(x.mean())
    if x.size < 2:
        return {"n": 1, "mean": mean, "std": None, "ci95": None}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, x.size - 1)) * std / math.sqrt(x.size)
    return {"n": int(x.size), "mean": mean, "std": std, "ci95": [mean - half, mean + half]}


def paired_test(first: Sequence[float], second: Sequence[float], higher_is_better: bool,
                names: Sequence[str] = ("first", "second"), alpha: float = ALPHA) -> dict:
    """Paired t-test of ``first`` against ``second`` (element i of each from the same seed).

    Returns the per-pair differences first - second, their summary, t and the two-sided p
    (scipy.stats.ttest_rel; with identical differences the test is degenerate: p = 1 when all are
    zero, 0 otherwise, t None), the sign of the mean difference, how many pairs each side won,
    the arm with the better mean and ``winner``: that arm when p < alpha, else None.
    """
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired values need two equal-length non-empty lists, got {a.shape} and {b.shape}")
    differences = a - b
    t_value = p_value = None
    if a.size >= 2:
        if np.all(differences == differences[0]):
            p_value = 1.0 if differences[0] == 0 else 0.0
        else:
            result = stats.ttest_rel(a, b)
            t_value, p_value = float(result.statistic), float(result.pvalue)
    mean = float(differences.mean())
    sign = int(np.sign(mean))
    first_better = differences > 0 if higher_is_better else differences < 0
    second_better = differences < 0 if higher_is_better else differences > 0
    better = None if sign == 0 else (names[0] if (sign > 0) == higher_is_better else names[1])
    significant = p_value is not None and p_value < alpha and better is not None
    return {"first": names[0], "second": names[1], "differences": differences.tolist(),
            "difference": summarize(differences), "t": t_value, "p": p_value, "sign": sign,
            "wins": {names[0]: int(first_better.sum()), names[1]: int(second_better.sum())},
            "better_mean": better, "significant": significant, "winner": better if significant else None}


def reaches(value: float, threshold: float, higher_is_better: bool) -> bool:
    return value >= threshold if higher_is_better else value <= threshold


def steps_to_threshold(steps: Sequence[int], values: Sequence[float], threshold: float,
                       higher_is_better: bool) -> Optional[int]:
    """The first evaluated step whose metric reaches ``threshold`` (None: never reached)."""
    for step, value in zip(steps, values):
        if reaches(value, threshold, higher_is_better):
            return int(step)
    return None


def convergence_threshold(final_means: Sequence[float], higher_is_better: bool,
                          slack: float = THRESHOLD_SLACK) -> float:
    """A level every arm reaches on average: the weakest arm's final mean, relaxed by ``slack``
    (x (1 - slack) for metrics where higher is better, x (1 + slack) for errors)."""
    if higher_is_better:
        return float(min(final_means)) * (1.0 - slack)
    return float(max(final_means)) * (1.0 + slack)


# ----------------------------------------------------------------------------------------------
# configs of the runs
# ----------------------------------------------------------------------------------------------
def check_arms(names: Sequence[str]) -> List[str]:
    """``names`` without repeats, in order; an unknown name is an error listing the valid ones."""
    from .config import ConfigError

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


def _split_range(split, skip_invalid: bool) -> range:
    """The record indices a file split's ``subset`` selects, in the unsliced file's numbering."""
    from omegaconf import OmegaConf

    from .data.build import _subset, read_split

    whole = read_split(OmegaConf.merge(split, {"subset": None}), skip_invalid)
    return _subset(range(len(whole)), split.subset)


def _synthetic(split) -> bool:
    from .data.build import SYNTHETIC_SOURCES

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
def _train(config_name: str, overrides: Sequence[str], out_dir: Path):
    """One run through the engine in a fresh ``out_dir``: (the trainer, model kept, its summary)."""
    from .config import load_config
    from .engine import Trainer

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


def _rate(value: float) -> float:
    return float(f"{value:.3g}")


def _sweep(config_name: str, overrides: List[str], rates: Sequence[float], out: Path, log):
    """Short runs at each rate on the holdout: (metric name, higher is better, {rate: value or
    None where the run diverged})."""
    from .engine import NonFiniteLossError
    from .evaluation import primary_metric

    metric = higher = None
    values = {}
    for lr in rates:
        try:
            _, summary = _train(config_name, overrides + dotlist({"train.lr": lr}), out / f"lr{lr:g}")
        except NonFiniteLossError as error:
            log(f"{out}: lr {lr:g} diverged ({error})")
            values[lr] = None
            continue
        metric, values[lr], higher = primary_metric(summary["final"])
        log(f"{out}: lr {lr:g}: {metric} {values[lr]:.4f} on the holdout")
    return metric, higher, values


def _best_rate(values: Dict[float, Optional[float]], higher: bool) -> Optional[float]:
    finite = {lr: v for lr, v in values.items() if v is not None}
    return (max if higher else min)(finite, key=finite.get) if finite else None


def _sweep_until_bracketed(config_name: str, overrides: List[str], rates: Sequence[float], extra: int, out: Path,
                           log):
    """``_sweep``, then while the best rate is the highest (lowest) swept, one more rate twice as
    high (half as low), at most ``extra`` times: so that no arm keeps a rate only because the
    grid stopped there. A diverged rate ends the search upwards."""
    metric, higher, values = _sweep(config_name, overrides, rates, out, log)
    for _ in range(extra):
        best = _best_rate(values, higher)
        if best is None or len(values) < 2 or min(values) < best < max(values):
            break
        edge = max(values) if best == max(values) else min(values)
        candidate = _rate(edge * 2 if best == max(values) else edge / 2)
        log(f"{out}: best rate {best:g} is at the edge of the sweep; trying {candidate:g}")
        metric, higher, more = _sweep(config_name, overrides, [candidate], out, log)
        values.update(more)
    return metric, higher, dict(sorted(values.items()))


def _seed_runs(config_name: str, overrides: List[str], lr: float, seeds: Sequence[int], out: Path, log):
    """One full run per seed: (metric name, higher is better, the arm's per-seed results, the
    first seed's trainer). Each run's final weights are also decoded with every refinement."""
    from .engine import NonFiniteLossError
    from .evaluation import primary_metric

    finals, curves, runs, first = [], [], [], None
    by_refine = {r: [] for r in REFINEMENTS}
    for k, seed in enumerate(seeds):
        run_dir = out / f"seed{k}"
        try:
            trainer, summary = _train(config_name, overrides + dotlist({"train.lr": lr, "train.seed": seed}), run_dir)
        except NonFiniteLossError as error:
            raise NonFiniteLossError(f"{run_dir} (lr {lr:g}, train.seed {seed}): {error}") from None
        metric, value, higher = primary_metric(summary["final"])
        finals.append(value)
        curves.append(read_curve(run_dir, metric))
        runs.append(str(run_dir))
        for refine in REFINEMENTS:  # the same weights under each sub-pixel decoder
            result = summary["final"] if refine == trainer.config.eval.refine \
                else trainer.evaluate(dataclasses.replace(trainer.codec, refine=refine))
            by_refine[refine].append(primary_metric(result)[1])
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
    from .config import load_config, resolve_config_path
    from .engine import NonFiniteLossError

    name = resolve_config_path(config_name).stem
    mode = load_config(config_name, user_overrides).data.mode
    budgeted_overrides = dotlist(budget.overrides.get(mode, {}))
    config = load_config(config_name, budgeted_overrides + list(user_overrides))
    steps, first_seed = int(config.train.steps), int(config.train.seed)
    sweep_steps = max(1, round(steps * budget.sweep_fraction))
    learning_rates = [_rate(r) for r in (rates or [config.train.lr * f for f in budget.lr_factors])]
    validation = dotlist(validation_overrides(config, budget.val_samples))
    holdout = dotlist(holdout_overrides(config, budget.holdout))
    sweep_run = dotlist({"train.steps": sweep_steps, "train.eval_every": sweep_steps, "train.seed": first_seed,
                         "train.warmup_steps": round(config.train.warmup_steps * budget.sweep_fraction)})

    extension = 0 if rates else budget.extend_sweep  # rates given with --rates are swept exactly
    results, kept = {}, {}
    for arm in arms:
        arm_overrides = budgeted_overrides + dotlist(ARMS[arm]) + list(user_overrides)
        metric, higher, sweep = _sweep_until_bracketed(config_name, arm_overrides + holdout + sweep_run,
                                                       learning_rates, extension, out / name / "sweep" / arm, log)
        lr = _best_rate(sweep, higher)
        if lr is None:
            raise NonFiniteLossError(f"{name}: arm {arm} diverged at every learning rate {list(sweep)}; "
                                     "try --rates with lower values")
        metric, higher, runs, kept[arm] = _seed_runs(config_name, arm_overrides + validation, lr,
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
    comparisons = [paired_test(results[a]["final"], results[b]["final"], higher, (a, b))
                   for i, a in enumerate(arms) for b in arms[i + 1:]]
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
# verdict, plots, example image, report
# ----------------------------------------------------------------------------------------------
def _direction(higher: bool) -> str:
    return "higher is better" if higher else "lower is better"


def _p(p: Optional[float]) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def verdict(setting: dict) -> str:
    """One plain line: the arm with the best mean and, per other arm, whether the paired t-test
    over seeds finds it significantly better (p < 0.05) or finds no significant difference."""
    arms, metric, higher = setting["arms"], setting["metric"], setting["higher_is_better"]
    means = {arm: data["stats"]["mean"] for arm, data in arms.items()}
    best = (max if higher else min)(means, key=means.get)
    better, level = [], []
    for other in arms:
        if other == best:
            continue
        test = paired_test(arms[best]["final"], arms[other]["final"], higher, (best, other))
        text = f"{other} ({metric} {means[best]:.4f} vs {means[other]:.4f}, p = {_p(test['p'])})"
        (better if test["winner"] == best else level).append(text)
    head = f"{setting['name']} ({metric}, {_direction(higher)}; paired t-test over {setting['seeds']} seeds): "
    if not level:
        return head + f"{best} wins, significantly better than " + ", ".join(better) + "."
    if not better:
        return head + f"no significant difference between {best} (best mean) and " + ", ".join(level) + "."
    return (head + f"{best} has the best mean; significantly better than " + ", ".join(better)
            + "; no significant difference from " + ", ".join(level) + ".")


def _figure(width: float = 6.4, height: float = 4.2):
    """A matplotlib figure on the Agg canvas, without touching pyplot's global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def plot_curves(setting: dict, path: Path) -> str:
    """Metric against step per arm: the mean over seeds, a band of +-1 standard deviation, and
    the convergence threshold."""
    figure = _figure()
    axes = figure.add_subplot()
    for arm, data in setting["arms"].items():
        steps = np.asarray(data["curves"]["steps"])
        values = np.asarray(data["curves"]["values"], dtype=np.float64)
        mean = values.mean(axis=0)
        (line,) = axes.plot(steps, mean, marker="o", markersize=3, label=f"{arm} (lr {data['lr']:g})")
        if len(values) > 1:
            spread = values.std(axis=0, ddof=1)
            axes.fill_between(steps, mean - spread, mean + spread, color=line.get_color(), alpha=0.2, linewidth=0)
    threshold = setting["threshold"]["value"]
    axes.axhline(threshold, color="0.4", linestyle="--", linewidth=1, label=f"threshold {threshold:.4g}")
    axes.set_xlabel("training step")
    axes.set_ylabel(f"{setting['metric']} ({_direction(setting['higher_is_better'])})")
    axes.set_title(f"{setting['name']}: mean of {setting['seeds']} seeds, band = ±1 s.d.", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    return Path(path).name


def plot_final(setting: dict, path: Path) -> str:
    """Bars of each arm's final mean with Student-t 95% confidence intervals, seeds as dots."""
    figure = _figure(max(3.5, 1.3 * len(setting["arms"]) + 1.5), 4.2)
    axes = figure.add_subplot()
    for x, (arm, data) in enumerate(setting["arms"].items()):
        summary = data["stats"]
        low, high = summary["ci95"]
        axes.bar(x, summary["mean"], width=0.6, color=f"C{x}", alpha=0.75,
                 yerr=[[summary["mean"] - low], [high - summary["mean"]]], capsize=6)
        axes.plot(np.full(len(data["final"]), x) + np.linspace(-0.12, 0.12, len(data["final"])), data["final"],
                  "k.", markersize=6)
    axes.set_xticks(range(len(setting["arms"])), list(setting["arms"]))
    axes.set_ylabel(f"final {setting['metric']} ({_direction(setting['higher_is_better'])})")
    axes.set_title(f"{setting['name']}: mean, 95% CI (t), seeds as dots", fontsize=10)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return Path(path).name


def _example_index(dataset, multi: bool, candidates: int = 16) -> int:
    """Top-down: the first sample; multi-instance: the most crowded of the first images."""
    if not multi:
        return 0
    return max(range(min(candidates, len(dataset))), key=lambda i: len(dataset.records[i].instances))


def example_image(name: str, trainers: Dict[str, object], path: Path, peak_threshold: float = 0.3) -> str:
    """One validation sample through each arm's seed-0 model, side by side: per arm its target,
    its predicted heatmaps and the decoded points (the maximum over all channels, then two
    keypoints)."""
    from .viz import _decode, _predict_maps, input_image, target_vs_prediction, tile, titled, write_png

    first = next(iter(trainers.values()))
    multi = first.config.data.mode == "multi"
    index = _example_index(first.data.val_set, multi)
    scheme = first.data.scheme
    shown = sorted({0, scheme.num_keypoints // 2})
    pictures = []
    for arm, trainer in trainers.items():
        sample = trainer.data.val_set[index]
        trainer.model.eval()
        maps = _predict_maps(trainer.model, sample["image"][None], trainer.logits, None, trainer.dist.device)
        points, visible = _decode(trainer.codec, maps, multi, scheme.num_keypoints, trainer.config.eval.max_instances,
                                  peak_threshold)
        pictures.append(target_vs_prediction(
            input_image(sample["image"]), sample["heatmaps"], maps[0].numpy(), scheme.keypoint_names, trainer.codec,
            sample["keypoints"].numpy(), sample["visible"].numpy(), points, visible, scheme.skeleton, keypoints=shown,
            title=f"{arm} (loss {trainer.config.loss.name}, sigma {trainer.codec.sigma_policy.__class__.__name__})",
            pred_skeleton=not multi, groups_per_row=1))
    grid = tile(pictures, len(pictures), gap=12)
    return Path(write_png(path, titled(grid, f"{name}: validation sample {index}, each arm's seed-0 model"))).name


_MODES = {"topdown": "top-down crops: every instance scaled to one size",
          "multi": "multi-instance whole-image maps: several instances per image at varied sizes"}


def _number(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _setting_report(setting: dict) -> List[str]:
    metric, higher, arms = setting["metric"], setting["higher_is_better"], setting["arms"]
    first_seed = next(iter(arms.values()))["seeds"][0]
    lines = [f"## {setting['name']}: {_MODES.get(setting['mode'], setting['mode'])}", "",
             f"**Verdict:** {setting['verdict']}", "",
             f"Config `{setting['config']}`, scheme {setting['scheme']}, metric **{metric}** ({_direction(higher)}), "
             f"{setting['steps']} steps evaluated every {setting['eval_every']}, {setting['seeds']} seeds per arm "
             f"(train.seed {first_seed}..{first_seed + setting['seeds'] - 1}; the same seeds, data and model for every "
             f"arm).", "",
             "Overrides: budget `" + " ".join(setting["overrides"]["budget"]) + "`; --set `"
             + (" ".join(setting["overrides"]["user"]) or "none") + "`; validation `"
             + (" ".join(setting["overrides"]["validation"]) or "whole split") + "`.", "",
             f"### Learning rate: picked per arm by a {setting['sweep_steps']}-step sweep (seed {first_seed}) on a "
             "split held out of the training data", ""]
    swept = {arm: {float(r): v for r, v in data["sweep"]["values"].items()} for arm, data in arms.items()}
    rates = sorted(set().union(*swept.values()))
    rows, at_edge = [], False
    for arm, data in arms.items():
        values = swept[arm]
        edge = "" if len(values) < 2 else {min(values): " (lowest swept)", max(values): " (highest swept)"}.get(
            data["lr"], "")
        at_edge = at_edge or bool(edge)
        rows.append([arm] + ["—" if r not in values else "diverged" if values[r] is None else _number(values[r])
                             for r in rates] + [f"**{data['lr']:g}**{edge}"])
    lines += _table(["arm"] + [f"lr {r:g}" for r in rates] + ["picked"], rows)
    lines += ["", f"Swept rates {', '.join(f'{r:g}' for r in setting['learning_rates'])} for every arm"
              + (f"; an arm whose best rate was at an edge tried up to {setting['sweep_extension']} more beyond it "
                 "(x2 or /2; — = not tried)." if setting["sweep_extension"] else ".")]
    if at_edge:
        lines += ["", "A rate at the edge of the sweep may not be the best one: try `--rates` beyond it."]
    lines += ["", f"### Final {metric} on the validation split (decoder: {setting['refine_default']})", ""]
    rows = []
    for arm, data in arms.items():
        summary = data["stats"]
        rows.append([arm, f"{data['lr']:g}", _number(summary["mean"]), _number(summary["std"]),
                     f"[{summary['ci95'][0]:.4f}, {summary['ci95'][1]:.4f}]",
                     ", ".join(f"{v:.4f}" for v in data["final"])])
    lines += _table(["arm", "lr", "mean", "s.d.", "95% CI (t)", "per seed"], rows)
    lines += ["", "### Paired differences (same seed = a pair; two-sided paired t-test, α = 0.05)", ""]
    rows = []
    for test in setting["comparisons"]:
        difference = test["difference"]
        result = f"{test['winner']} better" if test["winner"] else "no significant difference"
        wins = ", ".join(f"{arm} {count}" for arm, count in test["wins"].items())
        rows.append([f"{test['first']} − {test['second']}", f"{difference['mean']:+.4f}",
                     f"[{difference['ci95'][0]:+.4f}, {difference['ci95'][1]:+.4f}]",
                     "—" if test["t"] is None else f"{test['t']:.2f}", _p(test["p"]), wins, result])
    lines += _table(["difference", "mean", "95% CI (t)", "t", "p", "seeds won", "result"], rows)
    threshold = setting["threshold"]
    sign = "≥" if higher else "≤"
    lines += ["", f"### Convergence: steps until {metric} {sign} {threshold['value']:.4f}", "",
              f"Threshold: {threshold['rule']}. Evaluated every {setting['eval_every']} steps; — = not reached in "
              f"{setting['steps']} steps. (Claim tested: the distance-aware focal loss converges faster.)", ""]
    rows = []
    for arm, data in arms.items():
        reached = data["steps_to_threshold"]
        per_seed = ", ".join("—" if s is None else str(s) for s in reached["per_seed"])
        mean = "—" if reached["stats"] is None else f"{reached['stats']['mean']:g}"
        rows.append([arm, per_seed, mean, f"{reached['reached']}/{len(reached['per_seed'])}"])
    lines += _table(["arm", "steps per seed", "mean steps (seeds that reached it)", "reached"], rows)
    lines += ["", f"### Final {metric} per decoding refinement (mean ± s.d. over seeds, same weights)", ""]
    rows = [[arm] + [f"{data['refine'][r]['stats']['mean']:.4f} ± {data['refine'][r]['stats']['std']:.4f}"
                     for r in REFINEMENTS] for arm, data in arms.items()]
    lines += _table(["arm"] + list(REFINEMENTS), rows)
    plots = setting["plots"]
    lines += ["", f"![{metric} against step]({plots['curves']})", f"![final {metric}]({plots['final']})", "",
              f"Each arm's target and predicted heatmaps for one validation sample: ![example]({plots['example']})", ""]
    return lines


def write_report(results: dict, path: Path) -> None:
    """``report.md``: the arms, then per setting its verdict and tables, plots linked."""
    arms = ", ".join(f"`{arm}` (" + " ".join(dotlist(ARMS[arm])) + ")"
                     for arm in results["arms"])
    lines = ["# Which heatmap loss? Ablation report", "",
             f"Arms: {arms}.", "",
             f"Budget `{results['budget']['name']}`, {results['seeds']} seeds per arm, "
             f"wall time {results['wall_time_s']:.0f} s. Every number is in `results.json`; runs are in the "
             "folders beside this report.", "", "## Verdicts", ""]
    lines += [f"- {setting['verdict']}" for setting in results["settings"]]
    lines.append("")
    for setting in results["settings"]:
        lines += _setting_report(setting)
    path.write_text("\n".join(lines), encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# the whole ablation and its command line
# ----------------------------------------------------------------------------------------------
def ablate(config: Optional[str] = None, out="runs/ablate", arms: Sequence[str] = DEFAULT_ARMS,
           seeds: Optional[int] = None, budget="full", overrides: Sequence[str] = (),
           rates: Optional[Sequence[float]] = None, thresholds: Optional[Dict[str, float]] = None,
           log=print) -> dict:
    """Run the ablation on ``config`` (default: both built-in settings) and write ``report.md``,
    ``results.json`` and the PNGs into ``out``. ``budget`` is a name of :data:`BUDGETS` or a
    :class:`Budget`; ``overrides`` (``key=value``) apply to every arm on top of the budget.
    Returns the results as written to ``results.json``."""
    from .config import ConfigError, load_config

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


def _thresholds(items: Sequence[str]) -> Dict[str, float]:
    from .config import ConfigError

    thresholds = {}
    for item in items:
        metric, _, value = item.partition("=")
        try:
            thresholds[metric.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--threshold {item!r} must look like METRIC=NUMBER, e.g. nme=0.08") from None
    return thresholds


def run_ablate(args: argparse.Namespace) -> int:
    arms = [name for item in args.arms for name in item.split(",") if name]
    results = ablate(args.config, args.out, arms, args.seeds, "quick" if args.quick else "full", args.set,
                     args.rates, _thresholds(args.threshold))
    for setting in results["settings"]:
        print(f"verdict: {setting['verdict']}")
    print(f"report written to {Path(args.out) / 'report.md'} ({results['wall_time_s']:.0f} s)")
    return 0


def add_ablate_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``heatmapnet ablate`` on an ``add_subparsers()`` object; returns its parser."""
    parser = subparsers.add_parser(
        "ablate", help="which heatmap loss on my data? arms x seeds, with statistics, plots and a report",
        description="Trains each arm (a loss with its target) on identical data, model, steps and seeds, after a "
                    "learning-rate sweep per arm on a split held out of the training data, and writes report.md, "
                    "results.json and PNGs: mean, s.d. and 95% CI per arm, paired t-tests between arms, "
                    "metric-against-step curves, steps to a threshold and the metric per decoder. Without CONFIG: "
                    f"both built-in settings, {' and '.join(BUILTIN_SETTINGS)}.")
    parser.add_argument("config", nargs="?", help="a YAML file or a name in configs/ (default: both built-in "
                                                  "synthetic settings)")
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), metavar="ARM",
                        help=f"arms to compare (default: {' '.join(DEFAULT_ARMS)}; valid: {', '.join(ARMS)})")
    parser.add_argument("--seeds", type=int, help="seeds per arm (default: 3, with --quick 2)")
    parser.add_argument("--quick", action="store_true",
                        help="a small input, backbone and step budget, 2 seeds, a 2-rate sweep (about 2-3 minutes "
                             "for the default on 2 CPU cores; the full default takes about 10-15)")
    parser.add_argument("--rates", nargs="+", type=float, metavar="LR",
                        help="the learning rates to sweep, exactly (default: the config's train.lr times the budget's "
                             "factors, then x2 or /2 while an arm's best rate is at the edge: up to 2 more, quick 1)")
    parser.add_argument("--threshold", nargs="+", default=[], metavar="METRIC=VALUE",
                        help="the level steps-to-threshold counts to, e.g. nme=0.08 (default: the weakest arm's final "
                             "mean, relaxed by 10%%)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="dotted overrides for every arm, on top of the budget, e.g. data.mode=multi")
    parser.add_argument("--out", default="runs/ablate", help="output folder (default: runs/ablate)")
    parser.set_defaults(handler=run_ablate)
    return parser
