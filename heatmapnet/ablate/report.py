"""The ablation's output for people: plots (metric against step, final metric per arm, the noise
design's metric relative to each loss's clean arm, one reliability diagram per arm), one example
image per setting and ``report.md``. Reads the results the runner collected; computes no
statistics of its own."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..deploy.modes import MODE_SPECS
from .arms import REFINEMENTS, dotlist
from .stats import ALPHA, HOLM, SIGN_TEST, direction, format_p


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


def plot_noise(block: dict, design: dict, name: str, metric: str, higher: bool, path: Path) -> str:
    """A design with a reference level (the noise design): per level of the other factor (each
    loss), the final metric at each level relative to that loss's reference (clean) arm, seed by
    seed (mean ratio, Student-t 95% interval; the reference is 1)."""
    relative = block["end"]["relative"]
    factor = next(f for f in design["factors"] if f["name"] == design["relative_to"])
    other = next(f for f in design["factors"] if f["name"] != design["relative_to"])
    at = {(cell[other["name"]], cell[factor["name"]]): arm for arm, cell in design["cells"].items()}
    figure = _figure(max(5.0, 1.0 * len(factor["levels"]) + 1.5), 4.2)
    axes = figure.add_subplot()
    x = np.arange(len(factor["levels"]))
    # a line joins the levels of one kind (sigma0.005 ... sigma0.04, from the reference); another kind
    # (swap0.05) stands apart
    kinds = [level.rstrip("0123456789.") for level in factor["levels"]]
    kinds[0] = kinds[1] if len(kinds) > 1 else kinds[0]
    for k, row in enumerate(other["levels"]):
        shift = (k - (len(other["levels"]) - 1) / 2) * 0.12
        means, low, high = [1.0], [0.0], [0.0]
        for level in factor["levels"][1:]:
            ratio = relative[at[row, level]]["ratio"]
            mean = np.nan if ratio is None else ratio["mean"]
            interval = None if ratio is None else ratio["ci95"]
            means.append(mean)
            low.append(0.0 if interval is None else mean - interval[0])
            high.append(0.0 if interval is None else interval[1] - mean)
        color = f"C{k}"
        for kind in dict.fromkeys(kinds):
            index = [i for i, other_kind in enumerate(kinds) if other_kind == kind]
            axes.errorbar(x[index] + shift, np.asarray(means)[index],
                          yerr=[np.asarray(low)[index], np.asarray(high)[index]], marker="o", capsize=4, color=color,
                          label=f"{other['name']} {row}" if kind == kinds[0] else None)
    axes.axhline(1.0, color="0.5", linestyle="--", linewidth=1)
    axes.set_xticks(x, factor["labels"], fontsize=8)
    axes.set_xlabel(factor["name"])
    axes.set_ylabel(f"{metric} / {metric} at {factor['labels'][0]} ({direction(higher)})", fontsize=8)
    axes.set_title(f"{name}, {block['budget']} budget: per seed, relative to {factor['labels'][0]}; "
                   "mean, 95% CI (t)", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    return Path(path).name


def _file_part(arm: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in arm)


def plot_reliabilities(block: dict, name: str, out: Path, stem: str) -> None:
    """One reliability diagram per arm (:func:`heatmapnet.confidence.plot_reliability`), of its
    bins pooled over its seeds, as ``<stem>_reliability_<arm>.png``; each file's name goes into
    the arm's entry of ``block["confidence"]["reliability"]`` (``plot``)."""
    from ..confidence import Reliability, plot_reliability

    confidence = block["confidence"]
    for arm, pooled in confidence.get("reliability", {}).items():
        auroc = confidence["measures"]["auroc"]["arms"][arm]["stats"]
        shown = "undefined" if auroc is None else f"{auroc['mean']:.4f}"
        path = Path(out) / f"{stem}_reliability_{_file_part(arm)}.png"
        plot_reliability(Reliability.from_json(pooled["bins"]), path,
                         f"{name}, {block['budget']}: {arm}, {pooled['seeds']} seeds pooled\n"
                         f"ECE (pooled) {pooled['ece']:.4f}, AUROC (mean of seeds) {shown}")
        pooled["plot"] = path.name


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


def comparison_lines(comparisons: Sequence[dict], alpha: float = ALPHA, heading: Optional[str] = None,
                     explain: bool = True) -> List[str]:
    """The paired-differences section: which test, which correction, and one row per pair.
    ``heading``: its title (default: the metric's paired differences); ``explain``: say which
    test is used (once per section suffices)."""
    corrections = sorted({test["correction"] for test in comparisons} - {None})
    lines = [f"##### {heading or 'Paired differences'} (same seed = a pair; two-sided tests, α = {alpha:g})", ""]
    if explain:
        lines += ["Test: the paired t-test on the per-seed differences; where the differences are all equal (no "
                  f"spread, so t is undefined) the {SIGN_TEST}, whose p for n pairs all of one sign is 2 × 0.5^n.", ""]
    if not comparisons:
        return lines + ["No pair could be tested (the measure is undefined on every seed of an arm of each pair).", ""]
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
        pair = f"{test['first']} − {test['second']}"
        if "paired_seeds" in test:
            pair += f" (seeds {', '.join(str(k) for k in test['paired_seeds'])} only)"
        row = [pair, f"{difference['mean']:+.4f}", ci, test["test"] or "—",
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
    shown = dict(zip(second["levels"], second.get("labels") or second["levels"]))
    arm_at = {(cell[first["name"]], cell[second["name"]]): arm for arm, cell in design["cells"].items()}
    rows = []
    for a in first["levels"]:
        cells = []
        for b in second["levels"]:
            stats = snapshot["arms"][arm_at[a, b]]["stats"]
            cells.append(f"{stats['mean']:.4f} ± {stats['std']:.4f}" if stats["std"] is not None
                         else f"{stats['mean']:.4f}")
        rows.append([f"{first['name']} {a}"] + cells)
    return table([f"{first['name']} \\ {second['name']}"] + [f"{second['name']} {shown[b]}" for b in second["levels"]],
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
    if "relative" in snapshot:
        lines += relative_lines(snapshot, design) + [""]
    return lines + comparison_lines(snapshot["comparisons"]) + [""]


def _test_of(comparisons: Sequence[dict], first: str, second: str) -> Optional[dict]:
    return next((t for t in comparisons if (t["first"], t["second"]) in ((first, second), (second, first))), None)


def _mean_sd(stats: Optional[dict]) -> str:
    if stats is None:
        return "—"
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}" if stats["std"] is not None else f"{stats['mean']:.4f}"


def _estimate(stats: Optional[dict], signed: bool = True) -> str:
    """``mean [low, high]`` of a summary (its Student-t 95% interval)."""
    if stats is None:
        return "—"
    form = "{:+.4f}" if signed else "{:.4f}"
    ci = "" if stats["ci95"] is None else " [" + ", ".join(form.format(v) for v in stats["ci95"]) + "]"
    return form.format(stats["mean"]) + ci


def _test_result(test: Optional[dict], names: Dict[str, str]) -> Tuple[str, str]:
    """(p adjusted, result) of a test, the winner shown by ``names`` (arm -> wording)."""
    if test is None:
        return "not tested", "—"
    if test["winner"]:
        return format_p(test["p_adjusted"]), names.get(test["winner"], test["winner"])
    return format_p(test["p_adjusted"]), "not told apart"


def relative_lines(snapshot: dict, design: dict) -> List[str]:
    """A design with a reference level (the noise design): per level of the other factor (each
    loss), the metric at each level against the reference level's arm, seed by seed, with the
    design's paired test of the two (Holm-adjusted over the design's pairs); then the arms of the
    other factor at equal levels; then any other tested pair (an extra arm)."""
    metric, higher = snapshot["metric"], snapshot["higher_is_better"]
    factor = next(f for f in design["factors"] if f["name"] == design["relative_to"])
    other = next(f for f in design["factors"] if f["name"] != design["relative_to"])
    label = dict(zip(factor["levels"], factor["labels"]))
    at = {(cell[other["name"]], cell[factor["name"]]): arm for arm, cell in design["cells"].items()}
    arms, relative, comparisons = snapshot["arms"], snapshot["relative"], snapshot["comparisons"]
    corrected = any(t["correction"] == HOLM for t in comparisons)
    p_name = f"p ({HOLM}, {len(comparisons)} pairs)" if corrected else "p"
    reference = factor["labels"][0]
    worse = "higher" if not higher else "lower"
    lines = [f"##### {metric} against {factor['name']}, relative to {reference}", "",
             f"Per {other['name']}: each level's {metric} (mean ± s.d. over seeds), its difference from the {reference} "
             f"arm of the same {other['name']} (− {reference}) and its ratio to it (÷ {reference}), both seed by seed "
             "(the same seed trains both), mean and Student-t 95% interval; p is the design's paired test of the "
             f"two{', Holm-adjusted over every pair the design tests' if corrected else ''}. Every arm is evaluated "
             f"on the clean labels; {worse} {metric} is worse.", ""]
    for row in other["levels"]:
        base = at[row, factor["levels"][0]]
        rows = [[label[factor["levels"][0]], f"`{base}`", _mean_sd(arms[base]["stats"]), "—", "1", "—", "reference"]]
        for level in factor["levels"][1:]:
            arm = at[row, level]
            p, result = _test_result(_test_of(comparisons, arm, base),
                                     {arm: f"better than {reference}", base: f"worse than {reference}"})
            rows.append([label[level], f"`{arm}`", _mean_sd(arms[arm]["stats"]),
                         _estimate(relative[arm]["difference"]), _estimate(relative[arm]["ratio"], signed=False), p,
                         result])
        lines += [f"{other['name']} **{row}**:", ""]
        lines += table([factor["name"], "arm", f"{metric}", f"− {reference} [95% CI]", f"÷ {reference} [95% CI]",
                        p_name, "result"], rows) + [""]
    rows = []
    first, second = other["levels"][:2]
    for level in factor["levels"]:
        a, b = at[first, level], at[second, level]
        test = _test_of(comparisons, a, b)
        if test is None:
            continue
        p, result = _test_result(test, {a: f"{first} better", b: f"{second} better"})
        rows.append([label[level], _mean_sd(arms[a]["stats"]), _mean_sd(arms[b]["stats"]),
                     _estimate(test["difference"]) if (test["first"], test["second"]) == (a, b) else "—", p, result])
    if rows:
        lines += [f"{other['name'].capitalize()} against {other['name']} at equal {factor['name']} ({first} − {second}):",
                  ""]
        lines += table([factor["name"], first, second, f"{first} − {second} [95% CI]", p_name, "result"], rows) + [""]
    in_cells = set(design["cells"])
    for test in comparisons:
        if test["first"] in in_cells and test["second"] in in_cells:
            continue
        p, result = _test_result(test, {})
        verdict_text = f"{result} better" if test["winner"] else "not told apart"
        lines += [f"Also tested: `{test['first']}` − `{test['second']}` = {_estimate(test['difference'])} "
                  f"({metric} {_mean_sd(arms[test['first']]['stats'])} vs {_mean_sd(arms[test['second']]['stats'])}; "
                  f"{test['test'] or 'no test'}, p = {p}): {verdict_text}.", ""]
    return lines


def relative_summary(snapshot: dict, design: dict) -> List[str]:
    """One line per level of the other factor: each level's mean ratio to the reference, a star
    where the design's paired test (Holm-adjusted) tells them apart."""
    factor = next(f for f in design["factors"] if f["name"] == design["relative_to"])
    other = next(f for f in design["factors"] if f["name"] != design["relative_to"])
    label = dict(zip(factor["levels"], factor["labels"]))
    at = {(cell[other["name"]], cell[factor["name"]]): arm for arm, cell in design["cells"].items()}
    lines = []
    for row in other["levels"]:
        base = at[row, factor["levels"][0]]
        parts = []
        for level in factor["levels"][1:]:
            arm = at[row, level]
            ratio = snapshot["relative"][arm]["ratio"]
            test = _test_of(snapshot["comparisons"], arm, base)
            star = "*" if test is not None and test["significant"] else ""
            parts.append(f"{label[level]} ×{'—' if ratio is None else format(ratio['mean'], '.3f')}{star}")
        lines.append(f"{other['name']} {row}: {snapshot['metric']} relative to {factor['labels'][0]}: "
                     + ", ".join(parts))
    return lines


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
        source = data["sweep"].get("rate_from")
        rows.append([arm] + ["—" if r not in values else "diverged" if values[r] is None else _number(values[r])
                             for r in rates] + [f"**{data['lr']:g}**" + (f" ({edge} tried)" if edge else "")
                                                + (f" ({source}'s, not swept)" if source else "")])
    first = next(data["sweep"] for data in arms.values() if not data["sweep"].get("rate_from"))
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


def keep_cell(keep: Optional[dict]) -> str:
    """A score threshold (:func:`heatmapnet.confidence.keep_threshold`'s json) in a table cell."""
    if keep is None:
        return "—"
    if keep["score"] is None:
        return f"drop all ({keep['right']:.0%} right)"
    return f"≥ {keep['score']:g}: keeps {keep['kept']:.0%}, {keep['kept_hit_rate']:.0%} hit ({keep['right']:.0%} right)"


def confidence_lines(block: dict) -> List[str]:
    """The confidence section of one budget: which arm's score is the better one to threshold,
    per arm the measures over seeds (mean ± s.d., Student-t 95% interval), the reliability
    diagrams (top-down; pooled over seeds), and the paired tests between arms of each measure."""
    confidence = block.get("confidence")
    lines = ["#### Confidence of the scores (final evaluation)", ""]
    if not confidence or confidence["kind"] is None:
        note = "no confidence measures" if not confidence else confidence["note"]
        return lines + [f"Not measured here: {note}. Top-down faces and bodies measure their keypoint scores, "
                        "bottom-up people their person scores.", ""]
    measures = confidence["measures"]
    lines += [f"**Score to threshold:** {confidence['answer']}", ""]
    if confidence["kind"] == "keypoints":
        lines += [f"A keypoint is a *hit* when its normalised error is at most {confidence['threshold']:g} (the "
                  "metric's failure or PCK threshold), a *miss* otherwise; each measure is taken over the validation "
                  "split's labelled keypoints of one run, then summarized over seeds (mean ± s.d., Student-t 95% "
                  "interval). " + " ".join(f"{m['label']}: {m['meaning']}." for m in measures.values()), ""]
        header, rows = ["arm"], []
        for m in measures.values():
            header += [f"{m['label']} ({direction(m['higher_is_better'])})", "95% CI (t)"]
        header += ["hit rate", "reliability (pooled over seeds)", "threshold the score at (pooled)"]
        for arm in block["arms"]:
            row = [f"`{arm}`"]
            for m in measures.values():
                data = m["arms"][arm]
                undefined = f" ({len(data['undefined'])} seed(s) undefined)" if data["undefined"] else ""
                row += [_mean_sd(data["stats"]) + undefined,
                        "—" if data["stats"] is None or data["stats"]["ci95"] is None
                        else "[" + ", ".join(f"{v:.4f}" for v in data["stats"]["ci95"]) + "]"]
            hit = confidence["hit_rate"].get(arm)
            reliability = confidence["reliability"].get(arm)
            row += ["—" if hit is None else f"{hit['mean']:.3f}",
                    "—" if reliability is None or "plot" not in reliability
                    else f"[diagram]({reliability['plot']}), ECE {reliability['ece']:.4f}",
                    keep_cell(None if reliability is None else reliability.get("keep"))]
            rows.append(row)
        lines += table(header, rows) + [""]
        lines += ["Reliability diagrams: one per arm, of every seed's keypoints pooled (per score bin the keypoints of "
                  "all seeds counted together); the ECE beside each is that of the pooled bins, which need not equal "
                  "the mean of the seeds' ECEs in the table. The threshold is the bin edge (0, 0.1, ..., 0.9, or drop "
                  "all) at which keeping the keypoints scored at or above it and dropping the rest decides the most "
                  "keypoints right (a hit kept, a miss dropped), read off the pooled bins of the validation split: "
                  "the fraction kept and the hit rate among them beside it.", ""]
    else:
        lines += ["Each arm's people are scored twice, with their person scores ranking them (OKS AP, the metric) "
                  "and with the scores replaced by seeded random numbers (unranked): the difference is what ranking "
                  "people by their score is worth. Per arm, ranked against unranked is a paired test over seeds, "
                  "Holm-adjusted over the arms.", ""]
        rows = []
        for arm in block["arms"]:
            data = confidence["ranking"].get(arm)
            if data is None:
                rows.append([f"`{arm}`", "—", "—", "—", "—", "—", "undefined"])
                continue
            test = data["test"]
            result = ("ranking helps" if test["winner"] == "ranked" else "ranking hurts" if test["winner"] == "unranked"
                      else "not told apart")
            rows.append([f"`{arm}`", _mean_sd(data["ranked"]["stats"]), _mean_sd(data["unranked"]["stats"]),
                         _estimate(test["difference"]), test["test"] or "—", format_p(test["p_adjusted"]), result])
        lines += table(["arm", "OKS AP ranked", "OKS AP unranked", "gain [95% CI]", "test", "p (Holm, over arms)",
                        "result"], rows) + [""]
    lines += ["Between arms, each measure gets the paired tests the metric gets (the design's pairs; the t-test, or the "
              f"{SIGN_TEST} where the differences are constant; Holm-Bonferroni over the pairs, one family per "
              "measure). A seed where a measure is undefined is left out of its pairs.", ""]
    for m in measures.values():
        lines += [f"- {m['verdict']}" if "verdict" in m else f"- {m['label']}: undefined on every seed.", ""]
        lines += comparison_lines(m["comparisons"], heading=f"{m['label']} ({direction(m['higher_is_better'])}): "
                                                            "paired differences", explain=False) + [""]
    return lines


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
    lines += ["", f"![{metric} against step]({plots['curves']})", f"![final {metric}]({plots['final']})", ""]
    if "noise" in plots:
        lines += [f"![final {metric} relative to each loss's clean arm]({plots['noise']})", ""]
    lines += [f"Each arm's target and predicted heatmaps for one validation sample: ![example]({plots['example']})", ""]
    return lines + confidence_lines(block)


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
            if "relative" in block["end"]:
                lines += [f"- {setting['name']}, {block['budget']} budget, {block['end']['label']} "
                          f"(* = told apart from clean, Holm): {line}"
                          for line in relative_summary(block["end"], results["design"])]
            confidence = block.get("confidence")
            if confidence and confidence["kind"] is not None:
                lines.append(f"- {setting['name']}, {block['budget']} budget, confidence of the scores: "
                             f"{confidence['answer']}")
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
