"""The confidence of each arm's scores, as ablation outputs: per arm and over seeds the final
evaluation's confidence measures (:mod:`heatmapnet.confidence`: AUROC, Spearman, ECE of the keypoint
scores; bottom-up: OKS AP with the person scores ranking the people against the same people ranked
by chance), the same paired tests between arms as the error metric (the design's pairs,
Holm-Bonferroni over them, one family per measure: :func:`heatmapnet.ablate.stats.compare_arms`),
which arm's score is the better one to threshold, and each arm's reliability bins pooled over its
seeds. Pure functions of the runs' numbers (no torch); :mod:`.report` draws and writes them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..confidence import Reliability, expected_calibration_error, keep_threshold
from .stats import compare_arms, correct_family, format_p, paired_test, summarize, verdict


@dataclass(frozen=True)
class Measure:
    """A confidence measure the report tabulates and tests between arms."""

    name: str  # its key in a RunResult's ``confidence`` (or a derived one)
    label: str
    higher_is_better: bool
    meaning: str


# Top-down faces and bodies: the keypoint scores against the keypoints' errors.
KEYPOINT_MEASURES = (
    Measure("auroc", "AUROC", True, "P(a hit's score > a miss's score), ties 1/2: how well thresholding the score "
                                    "keeps hits and drops misses; 0.5 = chance, 1 = perfect"),
    Measure("spearman", "Spearman ρ", False, "rank correlation of score and error; −1 = the higher the score, the "
                                             "smaller the error; 0 = unrelated"),
    Measure("ece", "ECE", False, "expected calibration error of the score read as P(hit), 10 equal-width bins of "
                                 "the score clipped to [0, 1]; 0 = calibrated"),
)
# Bottom-up people: what ranking the people by their score is worth.
RANKING = Measure("ranking_gain", "AP gain from ranking", True,
                  "OKS AP with the people ranked by their score − OKS AP with them ranked by chance (seeded)")
AUROC = KEYPOINT_MEASURES[0]


def per_seed(runs, name: str) -> List[Optional[float]]:
    """Each run's value of measure ``name`` (None: undefined or not recorded);
    ``ranking_gain`` = ``oks_ap`` − ``oks_ap_unranked``."""
    values = []
    for run in runs:
        measures = run.confidence
        if name == RANKING.name:
            ranked, unranked = measures.get("oks_ap"), measures.get("oks_ap_unranked")
            values.append(None if ranked is None or unranked is None else ranked - unranked)
        else:
            values.append(measures.get(name))
    return values


def _stats(values: Sequence[Optional[float]]) -> Optional[dict]:
    defined = [v for v in values if v is not None]
    return summarize(defined) if defined else None


def compare_measure(measure: Measure, values: Dict[str, List[Optional[float]]], pairs: Sequence[Tuple[str, str]],
                    name: str, seeds: int) -> dict:
    """One measure over the arms: per arm the per-seed values and their summary (over the seeds
    where it is defined), the paired tests of ``pairs`` (seeds undefined in either arm left out of
    that pair; Holm-Bonferroni over the pairs) and the verdict, as the error metric gets them."""
    arms = {arm: {"values": v, "stats": _stats(v), "undefined": [k for k, x in enumerate(v) if x is None]}
            for arm, v in values.items()}
    comparisons = compare_arms(values, measure.higher_is_better, pairs=pairs)
    block = {"measure": measure.name, "label": measure.label, "higher_is_better": measure.higher_is_better,
             "meaning": measure.meaning, "arms": arms, "comparisons": comparisons}
    defined = {arm: data for arm, data in arms.items() if data["stats"] is not None}
    if defined:
        block["verdict"] = verdict({"name": name, "metric": measure.label, "higher_is_better": measure.higher_is_better,
                                    "seeds": seeds, "arms": defined, "comparisons": comparisons})
        block["answer"] = best_score_answer(block)
    return block


def best_score_answer(block: dict) -> dict:
    """The arm with the best mean of a measure and how its tested pairs came out: ``best``,
    ``beats`` (arms it is significantly better than, Holm-adjusted), ``level`` (arms it is not told
    apart from), ``behind`` (arms significantly better than it) and a sentence."""
    higher = block["higher_is_better"]
    means = {arm: data["stats"]["mean"] for arm, data in block["arms"].items() if data["stats"] is not None}
    best = (max if higher else min)(means, key=means.get)
    beats, level, behind = [], [], []
    for test in block["comparisons"]:
        if best not in (test["first"], test["second"]):
            continue
        other = test["second"] if test["first"] == best else test["first"]
        (beats if test["winner"] == best else behind if test["winner"] == other else level).append(
            f"{other} (p = {format_p(test['p_adjusted'])})")
    label = block["label"]
    head = f"{best} has the best mean {label} ({means[best]:.4f})"
    if not beats and not level and not behind:
        sentence = head + "; it was tested against no other arm."
    elif not level and not behind:
        sentence = head + ", significantly better than every arm it was tested against: " + ", ".join(beats) + "."
    elif not beats:
        sentence = head + ", but not significantly better than " + ", ".join(level + behind) + \
            ": no arm's score is shown better on this measure."
    else:
        sentence = head + "; significantly better than " + ", ".join(beats) + "; not told apart from " + \
            ", ".join(level + behind) + "."
    return {"best": best, "beats": beats, "level": level, "behind": behind, "sentence": sentence}


def pool_reliability(bins: Sequence[dict]) -> Optional[dict]:
    """Reliability bins (:meth:`heatmapnet.confidence.Reliability.as_json`) of several runs pooled
    into one: per bin the counts summed and the mean score and hit rate weighted by them, as if
    every run's keypoints were one set. None: no bins (or bins of different edges)."""
    bins = [b for b in bins if b]
    if not bins or any(b["edges"] != bins[0]["edges"] for b in bins):
        return None
    parts = [Reliability.from_json(b) for b in bins]
    count = np.sum([p.count for p in parts], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.sum([np.nan_to_num(p.mean_score) * p.count for p in parts], axis=0) / count
        hits = np.sum([np.nan_to_num(p.hit_rate) * p.count for p in parts], axis=0) / count
    return Reliability(parts[0].edges, count, score, hits).as_json()


def confidence_block(runs: Dict[str, list], pairs: Sequence[Tuple[str, str]], name: str, seeds: int) -> dict:
    """The confidence section of one setting and budget from each arm's runs (one per seed):
    ``kind`` "keypoints" (top-down: AUROC, Spearman, ECE), "people" (bottom-up: OKS AP ranked vs
    unranked) or None (no run recorded any measure, e.g. multi-instance maps or results cached
    before they were kept); ``measures`` (:func:`compare_measure` each); bottom-up ``ranking``: per
    arm the paired test of ranked against unranked AP over seeds, Holm over the arms; top-down the
    hit rate and threshold the measures were taken at and each arm's reliability bins pooled over
    its seeds, with the score threshold read off them (``keep``,
    :func:`heatmapnet.confidence.keep_threshold`); ``answer``: which arm's score is the better one
    to threshold."""
    every = [run for arm_runs in runs.values() for run in arm_runs]
    if all("auroc" in run.confidence for run in every):
        kind, measures = "keypoints", KEYPOINT_MEASURES
    elif all("oks_ap_unranked" in run.confidence for run in every):
        kind, measures = "people", (RANKING,)
    else:
        recorded = sum(bool(run.confidence) for run in every)
        return {"kind": None, "note": f"{recorded} of the {len(every)} runs recorded confidence measures"
                                      + (" (this mode measures none)" if recorded == 0 else "")}
    block = {"kind": kind, "seeds": seeds, "measures": {
        measure.name: compare_measure(measure, {arm: per_seed(arm_runs, measure.name) for arm, arm_runs in runs.items()},
                                      pairs, f"{name}, confidence", seeds) for measure in measures}}
    if kind == "people":
        ranking = {}
        for arm, arm_runs in runs.items():
            ranked, unranked = per_seed(arm_runs, "oks_ap"), per_seed(arm_runs, "oks_ap_unranked")
            if None in ranked or None in unranked:
                continue
            ranking[arm] = {"ranked": {"values": ranked, "stats": summarize(ranked)},
                            "unranked": {"values": unranked, "stats": summarize(unranked)},
                            "test": paired_test(ranked, unranked, True, ("ranked", "unranked"))}
        correct_family([data["test"] for data in ranking.values()])
        block["ranking"] = ranking
    else:
        block["threshold"] = next(run.confidence.get("threshold") for run in every)
        block["hit_rate"] = {arm: _stats(per_seed(arm_runs, "hit_rate")) for arm, arm_runs in runs.items()}
        block["reliability"] = {}
        for arm, arm_runs in runs.items():
            pooled = pool_reliability([run.reliability for run in arm_runs])
            if pooled is not None:
                bins = Reliability.from_json(pooled)
                keep = keep_threshold(bins)
                block["reliability"][arm] = {
                    "bins": pooled, "seeds": sum(bool(run.reliability) for run in arm_runs),
                    "ece": expected_calibration_error(bins), "keep": None if keep is None else keep.as_json()}
    headline = block["measures"][AUROC.name if kind == "keypoints" else RANKING.name]
    block["answer"] = threshold_answer(headline, kind)
    return block


def threshold_answer(measure: dict, kind: str) -> str:
    """Which arm's score is the better one to threshold, in a sentence: read off AUROC (top-down:
    thresholding a keypoint's score keeps it or drops it, and AUROC is how well that separates
    hits from misses at every threshold) or the bottom-up ranking gain (thresholding and ranking
    people by their score)."""
    if "answer" not in measure:
        return f"undefined on every seed: no arm's {measure['label']} to compare."
    answer = measure["answer"]
    what = "keypoint score" if kind == "keypoints" else "person score"
    if answer["beats"] and not answer["level"] and not answer["behind"]:
        return f"{answer['best']}'s {what} is the better one to threshold: {answer['sentence']}"
    if answer["beats"]:
        return (f"{answer['best']}'s {what} is better to threshold than some arms' (" + ", ".join(answer["beats"])
                + f"), not shown better than the others': {answer['sentence']}")
    return f"no arm's {what} is shown better to threshold: {answer['sentence']}"
