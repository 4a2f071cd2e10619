"""The ablation's output for people: plots (metric against step, final metric per arm), one
example image per setting and ``report.md``. Reads the results the runner collected; computes no
statistics of its own."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..deploy.modes import MODE_SPECS
from .arms import REFINEMENTS, dotlist
from .stats import ALPHA, SIGN_TEST, direction, format_p


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------
def _figure(width: float = 6.4, height: float = 4.2):
    """A matplotlib figure on the Agg canvas, without touching pyplot's global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def plot_curves(block: dict, name: str, metric: str, higher: bool, path: Path) -> str:
    """Metric against step per arm under one budget: every seed's curve thin, the mean over
    seeds (at the steps every seed was evaluated) bold; the early step and the convergence
    threshold dashed."""
    figure = _figure()
    axes = figure.add_subplot()
    for arm, data in block["arms"].items():
        curves = data["curves"]
        common = sorted(set.intersection(*(set(c["steps"]) for c in curves)))
        by_step = [dict(zip(c["steps"], c["values"])) for c in curves]
        mean = [float(np.mean([values[step] for values in by_step])) for step in common]
        (line,) = axes.plot(common, mean, marker="o", markersize=3, linewidth=1.8, label=f"{arm} (lr {data['lr']:g})")
        for curve in curves:
            axes.plot(curve["steps"], curve["values"], color=line.get_color(), linewidth=0.7, alpha=0.45)
    early = block["early"]["step"]
    axes.axvline(early, color="0.6", linestyle=":", linewidth=1, label=f"early: step {early}")
    threshold = block["threshold"]["value"]
    axes.axhline(threshold, color="0.4", linestyle="--", linewidth=1, label=f"threshold {threshold:.4g}")
    axes.set_xlabel("training step" + (" (after the base model)" if block["continuation"] else ""))
    axes.set_ylabel(f"{metric} ({direction(higher)})")
    axes.set_title(f"{name}, {block['budget']} budget: mean of {block['seeds']} seeds (bold), each seed (thin)",
                   fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    return Path(path).name


def plot_final(block: dict, name: str, metric: str, higher: bool, path: Path) -> str:
    """Bars of each arm's final mean with Student-t 95% confidence intervals, seeds as dots."""
    arms = block["end"]["arms"]
    figure = _figure(max(3.5, 1.1 * len(arms) + 1.5), 4.2)
    axes = figure.add_subplot()
    for x, (arm, data) in enumerate(arms.items()):
        summary = data["stats"]
        low, high = summary["ci95"]
        axes.bar(x, summary["mean"], width=0.6, color=f"C{x}", alpha=0.75,
                 yerr=[[summary["mean"] - low], [high - summary["mean"]]], capsize=6)
        axes.plot(np.full(len(data["values"]), x) + np.linspace(-0.12, 0.12, len(data["values"])), data["values"],
                  "k.", markersize=6)
    axes.set_xticks(range(len(arms)), list(arms), rotation=30 if len(arms) > 4 else 0, fontsize=8)
    axes.set_ylabel(f"{metric} {block['end']['label']} ({direction(higher)})", fontsize=8)
    axes.set_title(f"{name}, {block['budget']} budget: mean, 95% CI (t), seeds as dots", fontsize=9)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return Path(path).name


# ----------------------------------------------------------------------------------------------
# example image
# ----------------------------------------------------------------------------------------------
def _example_index(dataset, whole_image: bool, candidates: int = 16) -> int:
    """Crops: the first sample; whole images: the most crowded of the first images."""
    if not whole_image:
        return 0
    return max(range(min(candidates, len(dataset))), key=lambda i: len(dataset.records[i].instances))


def predict_and_decode(trainer, image, peak_threshold: float):
    """A trained model's heatmaps for one image (C, H, W tensor) and the points decoded from
    them for display: (maps (1, K, h, w), :class:`heatmapnet.pictures.DisplayPoints`); bottom-up
    models: the joint heatmaps and the people above ``peak_threshold``. The one place the
    ablation predicts."""
    from ..build import build_mode
    from ..viz import decode_for_display, predict_maps

    mode = build_mode(trainer.config, trainer.data.scheme)
    maps = predict_maps(trainer.model, image[None])
    points = decode_for_display(mode, trainer.codec, maps, peak_threshold)
    return mode.joint_heatmaps(trainer.codec, maps), points


def example_image(name: str, trainers: Dict[str, object], path: Path, peak_threshold: float = 0.3) -> str:
    """One validation sample through each arm's model (``trainers``: arm -> a trainer holding its
    weights), side by side: per arm its target, its predicted heatmaps and the decoded points (the
    maximum over all channels, then two keypoints)."""
    from ..build import build_mode
    from ..drawing import input_image, target_vs_prediction, tile, titled, write_png

    first = next(iter(trainers.values()))
    index = _example_index(first.data.val_set, MODE_SPECS.get(first.config.data.mode).whole_image)
    scheme = first.data.scheme
    shown = sorted({0, scheme.num_keypoints // 2})
    pictures = []
    for arm, trainer in trainers.items():
        sample = trainer.data.val_set[index]
        trainer.model.eval()
        maps, points = predict_and_decode(trainer, sample["image"], peak_threshold)
        mode = build_mode(trainer.config, scheme)
        target = mode.joint_heatmaps(trainer.codec, sample["heatmaps"])  # bottom-up: the joint channels
        pictures.append(target_vs_prediction(
            input_image(sample["image"]), target, maps[0].numpy(), scheme.keypoint_names, trainer.codec,
            sample["keypoints"].numpy(), sample["visible"].numpy(), points.points, points.visible, scheme.skeleton,
            keypoints=shown,
            title=f"{arm} (loss {trainer.config.loss.name}, sigma {trainer.codec.sigma_policy.__class__.__name__})",
            pred_skeleton=points.instances, groups_per_row=1))
    grid = tile(pictures, len(pictures), gap=12)
    return Path(write_png(path, titled(grid, f"{name}: validation sample {index}, each arm's seed-0 model"))).name


# ----------------------------------------------------------------------------------------------
# report.md
# ----------------------------------------------------------------------------------------------
def _number(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.4f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    """A markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def comparison_lines(comparisons: Sequence[dict], alpha: float = ALPHA) -> List[str]:
    """The paired-differences section: which test, which correction, and one row per pair."""
    corrections = sorted({test["correction"] for test in comparisons} - {None})
    lines = [f"##### Paired differences (same seed = a pair; two-sided tests, α = {alpha:g})", "",
             "Test: the paired t-test on the per-seed differences; where the differences are all equal (no spread, "
             f"so t is undefined) the {SIGN_TEST}, whose p for n pairs all of one sign is 2 × 0.5^n.", ""]
    if corrections:
        lines += [f"Correction for multiple comparisons: {', '.join(corrections)} over the {len(comparisons)} "
                  "pairwise comparisons; the result is decided on the adjusted p.", ""]
    else:
        lines += ["Correction for multiple comparisons: none (one comparison).", ""]
    rows = []
    for test in comparisons:
        difference = test["difference"]
        result = f"{test['winner']} better" if test["winner"] else "no significant difference"
        wins = ", ".join(f"{arm} {count}" for arm, count in test["wins"].items())
        ci = "—" if difference["ci95"] is None else f"[{difference['ci95'][0]:+.4f}, {difference['ci95'][1]:+.4f}]"
        row = [f"{test['first']} − {test['second']}", f"{difference['mean']:+.4f}", ci, test["test"] or "—",
               "—" if test["t"] is None else f"{test['t']:.2f}", format_p(test["p"])]
        if corrections:
            row.append(format_p(test["p_adjusted"]))
        rows.append(row + [wins, result])
    adjusted = [f"p ({', '.join(corrections)})"] if corrections else []
    return lines + table(["difference", "mean", "95% CI (t)", "test", "t", "p"] + adjusted + ["seeds won", "result"],
                         rows)


def _interval(summary: dict) -> str:
    return "—" if summary["ci95"] is None else f"[{summary['ci95'][0]:+.4f}, {summary['ci95'][1]:+.4f}]"


def effect_result(effect: dict) -> str:
    """A main effect: the level it favours and whether significantly; an interaction: whether
    significant."""
    significance = "significant" if effect["significant"] else "not significant"
    if effect["kind"] != "main":
        return significance
    return "—" if effect["favours"] is None else f"favours {effect['favours']} ({significance})"


def effects_lines(effects: Sequence[dict], factors: Sequence[dict]) -> List[str]:
    """A 2 x 2 design's effects: how they are computed and tested, then one row per effect."""
    (first, second) = factors
    (a0, a1), (b0, b1) = first["levels"], second["levels"]
    lines = [f"Effects, per seed (the same seed in every arm; y = the metric): main effect of {first['name']} = "
             f"mean over {second['name']} of y({a1}) − y({a0}); main effect of {second['name']} = mean over "
             f"{first['name']} of y({b1}) − y({b0}); interaction = (y({a1}) − y({a0}) with {b1}) − "
             f"(y({a1}) − y({a0}) with {b0}). Each is summarized over seeds by its mean and Student-t 95% interval "
             "(mean ± t(0.975, n − 1) s / √n) and tested against 0 by a two-sided one-sample t-test (the exact sign "
             "test where it is the same for every seed); p Holm-Bonferroni-adjusted over the three effects.", ""]
    rows = [[effect["effect"], effect["contrast"], f"{effect['estimate']['mean']:+.4f}", _interval(effect["estimate"]),
             effect["test"] or "—", format_p(effect["p"]), format_p(effect["p_adjusted"]),
             ", ".join(f"{v:+.4f}" for v in effect["per_seed"]), effect_result(effect)] for effect in effects]
    return lines + table(["effect", "contrast", "mean", "95% CI (t)", "test", "p", "p (Holm)", "per seed", "result"],
                         rows)


def grid_lines(snapshot: dict, design: dict) -> List[str]:
    """A two-factor design's arms as a grid of mean ± s.d. over seeds."""
    first, second = design["factors"]
    arm_at = {(cell[first["name"]], cell[second["name"]]): arm for arm, cell in design["cells"].items()}
    rows = []
    for a in first["levels"]:
        cells = []
        for b in second["levels"]:
            stats = snapshot["arms"][arm_at[a, b]]["stats"]
            cells.append(f"{stats['mean']:.4f} ± {stats['std']:.4f}" if stats["std"] is not None
                         else f"{stats['mean']:.4f}")
        rows.append([f"{first['name']} {a}"] + cells)
    return table([f"{first['name']} \\ {second['name']}"] + [f"{second['name']} {b}" for b in second["levels"]],
                 rows)


def snapshot_lines(snapshot: dict, design: dict) -> List[str]:
    """The arms compared at one point of training: verdict, grid, effects, paired differences."""
    lines = [f"#### {snapshot['label'][0].upper() + snapshot['label'][1:]}", "", f"**{snapshot['verdict']}**", ""]
    if "missing" in snapshot:
        return lines
    if len(design["factors"]) == 2:
        lines += grid_lines(snapshot, design) + [""]
    if "effects" in snapshot:
        lines += effects_lines(snapshot["effects"], design["factors"]) + [""]
    return lines + comparison_lines(snapshot["comparisons"]) + [""]


def sweep_lines(block: dict) -> List[str]:
    """The learning rate of each arm: the holdout metric (mean over the sweep's seeds) per rate."""
    arms = {**block["bases"], **block["arms"]}
    swept = {arm: {float(r): v for r, v in data["sweep"]["values"].items()} for arm, data in arms.items()}
    rates = sorted(set().union(*swept.values()))
    rows, at_edge = [], []
    for arm, data in arms.items():
        values, edge = swept[arm], data["sweep"]["edge"]
        if edge:
            at_edge.append(arm)
        rows.append([arm] + ["—" if r not in values else "diverged" if values[r] is None else _number(values[r])
                             for r in rates] + [f"**{data['lr']:g}**" + (f" ({edge} tried)" if edge else "")])
    first = next(iter(arms.values()))["sweep"]
    lines = [f"#### Learning rate: per arm, the mean holdout metric of {block['sweep_seeds']} seeds, "
             f"{first['steps']}-step runs ({block['sweep_fraction']:.0%} of the arm's steps) on a split held out of "
             "the training data", ""]
    lines += table(["arm"] + [f"lr {r:g}" for r in rates] + ["picked"], rows)
    lines += ["", f"Started from {', '.join(f'{r:g}' for r in block['learning_rates'])}; while an arm's best rate was "
                  f"the highest (lowest) it had tried, it tried one twice as high (half as low), up to "
                  f"{block['sweep_extension']} more (— = not tried)."]
    if at_edge:
        lines += ["", f"**Not bracketed:** the picked rate of {', '.join(at_edge)} is still at the edge of what was "
                      "tried; a rate beyond it may be better (`--rates` can start the sweep there)."]
    return lines + [""]


def runs_lines(arms: Dict[str, dict], metric: str, title: str) -> List[str]:
    """Per arm: its rate and final metric over seeds, and how long each seed trained."""
    rows = []
    for arm, data in arms.items():
        summary = data["stats"]
        ci = "—" if summary["ci95"] is None else f"[{summary['ci95'][0]:.4f}, {summary['ci95'][1]:.4f}]"
        trained = ", ".join(f"{s} ({r})" if r != "steps" else str(s)
                            for s, r in zip(data["stopped_at"], data["stop_reason"]))
        rows.append([arm, f"{data['lr']:g}", _number(summary["mean"]), _number(summary["std"]), ci,
                     ", ".join(f"{v:.4f}" for v in data["final"]), trained])
    lines = [f"#### {title}", ""]
    return lines + table(["arm", "lr", f"final {metric}", "s.d.", "95% CI (t)", "per seed", "steps trained"],
                         rows) + [""]


def budget_lines(setting: dict, block: dict, design: dict) -> List[str]:
    """One budget's section of a setting."""
    metric, higher = setting["metric"], setting["higher_is_better"]
    arms = block["arms"]
    if block["stop"]:
        schedule = (f"each run evaluated every {block['eval_every']} steps and stopped at a plateau: "
                    f"{block['stop']['rule']} (cap: {block['steps']} steps)")
    else:
        schedule = f"{block['steps']} steps, evaluated every {block['eval_every']}"
    if block["continuation"]:
        schedule = (f"the base models trained {schedule}; then each continued for {block['extra_steps']} more steps "
                    f"(warm-up and cosine schedule afresh, the optimiser new), evaluated every {block['eval_every']}")
    first_seed = next(iter(arms.values()))["seeds"][0]
    lines = [f"### Budget `{block['budget']}`", "",
             f"Schedule: {schedule}. {block['seeds']} seeds per arm (train.seed {first_seed}.."
             f"{first_seed + block['seeds'] - 1}, the same seeds, data and model for every arm); metric **{metric}** "
             f"({direction(higher)}) on the validation split, decoder {block['refine_default']}.", "",
             "Overrides: budget `" + (" ".join(block["overrides"]["budget"]) or "none (the config's own)") + "`; --set `"
             + (" ".join(block["overrides"]["user"]) or "none") + "`; validation `"
             + (" ".join(block["overrides"]["validation"]) or "whole split") + "`.", ""]
    for snapshot in (block["early"], block["end"]):
        lines += snapshot_lines(snapshot, design)
    lines += sweep_lines(block)
    if block["bases"]:
        lines += runs_lines(block["bases"], metric, "The base models (before the continuation)")
    lines += runs_lines(arms, metric, f"Final {metric} per arm")
    threshold = block["threshold"]
    sign = "≥" if higher else "≤"
    lines += [f"#### Convergence: steps until {metric} {sign} {threshold['value']:.4f}", "",
              f"Threshold: {threshold['rule']}. Evaluated every {block['eval_every']} steps; — = not reached.", ""]
    rows = []
    for arm, data in arms.items():
        reached = data["steps_to_threshold"]
        per_seed = ", ".join("—" if s is None else str(s) for s in reached["per_seed"])
        mean = "—" if reached["stats"] is None else f"{reached['stats']['mean']:g}"
        rows.append([arm, per_seed, mean, f"{reached['reached']}/{len(reached['per_seed'])}"])
    lines += table(["arm", "steps per seed", "mean steps (seeds that reached it)", "reached"], rows)
    refinements = [r for r in REFINEMENTS if all(r in data["refine"] for data in arms.values())]
    if refinements:  # heatmap decoders; a bottom-up model's sub-pixel offsets are regressed instead
        lines += ["", f"#### Final {metric} per decoding refinement (mean ± s.d. over seeds, same weights)", ""]
        rows = [[arm] + [f"{data['refine'][r]['stats']['mean']:.4f} ± {data['refine'][r]['stats']['std']:.4f}"
                         for r in refinements] for arm, data in arms.items()]
        lines += table(["arm"] + refinements, rows)
    plots = block["plots"]
    lines += ["", f"![{metric} against step]({plots['curves']})", f"![final {metric}]({plots['final']})", "",
              f"Each arm's target and predicted heatmaps for one validation sample: ![example]({plots['example']})", ""]
    return lines


def setting_report(setting: dict, design: dict) -> List[str]:
    """The lines of one setting's section of ``report.md``: one subsection per budget."""
    mode = setting["mode"]
    lines = [f"## {setting['name']}: {MODE_SPECS.get(mode).summary if mode in MODE_SPECS else mode}", "",
             f"Config `{setting['config']}`, scheme {setting['scheme']}.", ""]
    for block in setting["budgets"].values():
        lines += budget_lines(setting, block, design)
    return lines


def answer_lines(results: dict) -> List[str]:
    """The answer per setting and budget: who is ahead early and at the end, and whether the
    difference is significant there; for a 2 x 2 design, the effects as a table."""
    lines = ["## The answer per budget", ""]
    effects_rows = []
    for setting in results["settings"]:
        for block in setting["budgets"].values():
            for snapshot in (block["early"], block["end"]):
                lines.append(f"- {snapshot['verdict']}")
                for effect in snapshot.get("effects", []):
                    effects_rows.append([setting["name"], f"{setting['metric']} ({direction(setting['higher_is_better'])})",
                                         block["budget"], snapshot["label"], f"{effect['effect']}: {effect['contrast']}",
                                         f"{effect['estimate']['mean']:+.4f} {_interval(effect['estimate'])}",
                                         format_p(effect["p_adjusted"]), effect_result(effect)])
    if effects_rows:
        lines += ["", "The design's effects (a difference of the metric, later level minus earlier), p Holm-adjusted "
                      "over the three effects at each point:", ""]
        lines += table(["setting", "metric", "budget", "when", "effect", "mean [95% CI]", "p (Holm)", "result"],
                       effects_rows)
    return lines + [""]


def write_report(results: dict, path: Path) -> None:
    """``report.md``: the design and budgets, the answer per budget, then per setting and budget
    its comparisons early and at the end, the sweep, the runs and the plots."""
    design = results["design"]
    arms = ", ".join(f"`{arm}` (" + (f"the `{design['bases'][arm]}` model, continued with " if arm in design["bases"]
                                     else "") + " ".join(dotlist(design["overrides"][arm])) + ")"
                     for arm in design["arms"])
    budgets = ", ".join(f"`{b['name']}`" for b in results["budgets"])
    runs = results["runs"]
    lines = ["# Which heatmap loss? Ablation report", "",
             f"Design `{design['name']}`: {design['question']}.", "", f"Arms: {arms}.", "",
             f"Budgets: {budgets}. Device: {results['device']}. Runs: {runs['trained']} trained, {runs['reused']} "
             f"reused from an earlier, interrupted call (--resume); wall time {results['wall_time_s']:.0f} s. Every "
             "number is in `results.json`; runs are in the folders beside this report.", ""]
    lines += answer_lines(results)
    for setting in results["settings"]:
        lines += setting_report(setting, design)
    Path(path).write_text("\n".join(lines), encoding="utf-8")
