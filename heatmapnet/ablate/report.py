"""The ablation's output for people: plots (metric against step, final metric per arm), one
example image per setting and ``report.md``. Reads the results the runner collected; computes no
statistics of its own."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .arms import ARMS, REFINEMENTS, dotlist
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
    axes.set_ylabel(f"{setting['metric']} ({direction(setting['higher_is_better'])})")
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
    axes.set_ylabel(f"final {setting['metric']} ({direction(setting['higher_is_better'])})")
    axes.set_title(f"{setting['name']}: mean, 95% CI (t), seeds as dots", fontsize=10)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return Path(path).name


# ----------------------------------------------------------------------------------------------
# example image
# ----------------------------------------------------------------------------------------------
def _example_index(dataset, multi: bool, candidates: int = 16) -> int:
    """Top-down: the first sample; multi-instance: the most crowded of the first images."""
    if not multi:
        return 0
    return max(range(min(candidates, len(dataset))), key=lambda i: len(dataset.records[i].instances))


def predict_and_decode(trainer, image, peak_threshold: float):
    """A trained model's heatmaps for one image (C, H, W tensor) and the points decoded from
    them for display: (maps (1, K, h, w), :class:`heatmapnet.viz.DisplayPoints`); bottom-up
    models: the joint heatmaps and the people above ``peak_threshold``. The one place the
    ablation predicts."""
    from ..build import build_mode
    from ..viz import decode_for_display, joint_heatmaps, predict_maps

    maps = predict_maps(trainer.model, image[None])
    points = decode_for_display(build_mode(trainer.config, trainer.data.scheme), trainer.codec, maps, peak_threshold)
    return joint_heatmaps(trainer.codec, maps), points


def example_image(name: str, trainers: Dict[str, object], path: Path, peak_threshold: float = 0.3) -> str:
    """One validation sample through each arm's seed-0 model, side by side: per arm its target,
    its predicted heatmaps and the decoded points (the maximum over all channels, then two
    keypoints)."""
    from ..drawing import input_image, target_vs_prediction, tile, titled, write_png
    from ..viz import joint_heatmaps

    first = next(iter(trainers.values()))
    index = _example_index(first.data.val_set, first.config.data.mode != "topdown")
    scheme = first.data.scheme
    shown = sorted({0, scheme.num_keypoints // 2})
    pictures = []
    for arm, trainer in trainers.items():
        sample = trainer.data.val_set[index]
        trainer.model.eval()
        maps, points = predict_and_decode(trainer, sample["image"], peak_threshold)
        target = joint_heatmaps(trainer.codec, sample["heatmaps"])  # bottom-up: the joint channels
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
MODES = {"topdown": "top-down crops: every instance scaled to one size",
         "multi": "multi-instance whole-image maps: several instances per image at varied sizes"}


def _number(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.4f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    """A markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def comparison_lines(comparisons: Sequence[dict], alpha: float = ALPHA) -> List[str]:
    """The paired-differences section: which test, which correction, and one row per pair."""
    corrections = sorted({test["correction"] for test in comparisons} - {None})
    lines = [f"### Paired differences (same seed = a pair; two-sided tests, α = {alpha:g})", "",
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


def setting_report(setting: dict) -> List[str]:
    """The lines of one setting's section of ``report.md``."""
    metric, higher, arms = setting["metric"], setting["higher_is_better"], setting["arms"]
    first_seed = next(iter(arms.values()))["seeds"][0]
    lines = [f"## {setting['name']}: {MODES.get(setting['mode'], setting['mode'])}", "",
             f"**Verdict:** {setting['verdict']}", "",
             f"Config `{setting['config']}`, scheme {setting['scheme']}, metric **{metric}** ({direction(higher)}), "
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
    lines += table(["arm"] + [f"lr {r:g}" for r in rates] + ["picked"], rows)
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
    lines += table(["arm", "lr", "mean", "s.d.", "95% CI (t)", "per seed"], rows)
    lines += [""] + comparison_lines(setting["comparisons"])
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
    lines += table(["arm", "steps per seed", "mean steps (seeds that reached it)", "reached"], rows)
    refinements = [r for r in REFINEMENTS if all(r in data["refine"] for data in arms.values())]
    if refinements:  # heatmap decoders; a bottom-up model's sub-pixel offsets are regressed instead
        lines += ["", f"### Final {metric} per decoding refinement (mean ± s.d. over seeds, same weights)", ""]
        rows = [[arm] + [f"{data['refine'][r]['stats']['mean']:.4f} ± {data['refine'][r]['stats']['std']:.4f}"
                         for r in refinements] for arm, data in arms.items()]
        lines += table(["arm"] + refinements, rows)
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
        lines += setting_report(setting)
    Path(path).write_text("\n".join(lines), encoding="utf-8")
