"""The ablation's statistics: pure functions of numbers (numpy and scipy, no torch).

Per arm: :func:`summarize` (mean, s.d., Student-t 95% interval over seeds). Between arms:
:func:`paired_test` (same seed = a pair) and :func:`compare_arms` (every pair of arms, with the
p-values Holm-Bonferroni-adjusted when there is more than one pair). Convergence:
:func:`convergence_threshold` and :func:`steps_to_threshold`. The one-line :func:`verdict` reads
its decisions off the comparisons.

Which test. The paired t-test on the per-seed differences is the default. When the differences
have no spread (every seed's difference is the same number, up to floating-point rounding), its
standard error is zero and t is undefined (scipy reports t = inf, p = 0: certainty from two or
three seeds). There :func:`paired_test` uses the exact two-sided sign test instead
(:func:`sign_test_p`): under the null hypothesis each non-zero difference is positive or negative
with probability 1/2, so n pairs all of one sign have p = 2 * 0.5**n (3 seeds: 0.25; 6 seeds:
0.031). The exact sign-flip permutation test on the differences gives the same p in this case.
All differences zero: p = 1. The test used is reported in each result's ``test`` field.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05  # significance level of the paired tests
THRESHOLD_SLACK = 0.10  # default convergence threshold: within 10% of the weakest arm's final mean
T_TEST = "paired t-test"
SIGN_TEST = "exact sign test"
HOLM = "Holm-Bonferroni"
# Differences whose spread is below this fraction of the compared values' magnitude count as
# constant: a - b of two floats carries a rounding error of about 1e-16 times their size, which
# would otherwise pass for a (tiny) variance and give a t of 1e15.
CONSTANT_TOLERANCE = 1e-9


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


def sign_test_p(differences: Sequence[float]) -> float:
    """The exact two-sided sign test on paired differences: zeros are dropped; with k of the
    remaining n positive, p = 2 * P(X <= min(k, n - k)) for X ~ Binomial(n, 1/2), at most 1
    (n pairs all of one sign: 2 * 0.5**n). No non-zero difference: p = 1."""
    d = np.asarray(differences, dtype=np.float64)
    positive, negative = int((d > 0).sum()), int((d < 0).sum())
    n = positive + negative
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(positive, negative) + 1)) / 2 ** n
    return min(1.0, 2.0 * tail)


def _constant(differences: np.ndarray, first: np.ndarray, second: np.ndarray) -> bool:
    scale = max(float(np.abs(first).max()), float(np.abs(second).max()))
    return float(np.ptp(differences)) <= CONSTANT_TOLERANCE * scale


def paired_test(first: Sequence[float], second: Sequence[float], higher_is_better: bool,
                names: Sequence[str] = ("first", "second"), alpha: float = ALPHA) -> dict:
    """Paired test of ``first`` against ``second`` (element i of each from the same seed).

    Returns the per-pair differences first - second, their summary, the test used (``test``: the
    two-sided paired t-test, or the exact sign test where the differences are constant, see the
    module's docstring; None for a single pair, which has no p), t (None unless the t-test ran),
    p, ``p_adjusted`` (= p here; :func:`compare_arms` corrects it) and ``correction`` (None here),
    the sign of the mean difference, how many pairs each side won, the arm with the better mean
    and ``winner``: that arm when p < alpha, else None.
    """
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired values need two equal-length non-empty lists, got {a.shape} and {b.shape}")
    differences = a - b
    test = t_value = p_value = None
    if a.size >= 2:
        if _constant(differences, a, b):
            test, p_value = SIGN_TEST, sign_test_p(differences)
        else:
            result = stats.ttest_rel(a, b)
            test, t_value, p_value = T_TEST, float(result.statistic), float(result.pvalue)
    mean = float(differences.mean())
    sign = int(np.sign(mean))
    first_better = differences > 0 if higher_is_better else differences < 0
    second_better = differences < 0 if higher_is_better else differences > 0
    better = None if sign == 0 else (names[0] if (sign > 0) == higher_is_better else names[1])
    result = {"first": names[0], "second": names[1], "differences": differences.tolist(),
              "difference": summarize(differences), "test": test, "t": t_value, "p": p_value,
              "p_adjusted": p_value, "correction": None, "sign": sign,
              "wins": {names[0]: int(first_better.sum()), names[1]: int(second_better.sum())},
              "better_mean": better}
    return decide(result, alpha)


def decide(test: dict, alpha: float = ALPHA) -> dict:
    """Sets ``significant`` (adjusted p < alpha and one arm has the better mean) and ``winner``
    (that arm, else None) on a :func:`paired_test` result; returns it."""
    p = test["p_adjusted"]
    test["significant"] = p is not None and p < alpha and test["better_mean"] is not None
    test["winner"] = test["better_mean"] if test["significant"] else None
    return test


def holm(p_values: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm-Bonferroni adjusted p-values, in the given order: with the m p-values sorted
    ascending, the i-th smallest (i from 1) becomes min(1, max over j <= i of (m - j + 1) p_j).
    Rejecting where the adjusted p < alpha controls the family-wise error rate at alpha. None
    (no test) stays None and does not count towards m."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: List[Optional[float]] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def compare_arms(finals: Dict[str, Sequence[float]], higher_is_better: bool, alpha: float = ALPHA) -> List[dict]:
    """:func:`paired_test` for every pair of arms (in the given order, first against each later
    one). With more than one pair the p-values are Holm-Bonferroni-adjusted over all of them
    (``p_adjusted``, ``correction`` = "Holm-Bonferroni") and ``significant``/``winner`` are
    decided on the adjusted p; ``comparisons`` is the family's size."""
    arms = list(finals)
    tests = [paired_test(finals[a], finals[b], higher_is_better, (a, b), alpha)
             for i, a in enumerate(arms) for b in arms[i + 1:]]
    correct = len(tests) > 1
    adjusted = holm([t["p"] for t in tests]) if correct else [t["p"] for t in tests]
    for test, p in zip(tests, adjusted):
        test.update(p_adjusted=p, correction=HOLM if correct else None, comparisons=len(tests))
        decide(test, alpha)
    return tests


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


def direction(higher: bool) -> str:
    return "higher is better" if higher else "lower is better"


def format_p(p: Optional[float]) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def verdict(setting: dict) -> str:
    """One plain line: the arm with the best mean and, per other arm, whether the paired test
    between the two (``setting["comparisons"]``, from :func:`compare_arms`) finds it significantly
    better (adjusted p < alpha) or finds no significant difference; each with its test and p
    (Holm-adjusted when the setting has more than two arms)."""
    arms, metric, higher = setting["arms"], setting["metric"], setting["higher_is_better"]
    means = {arm: data["stats"]["mean"] for arm, data in arms.items()}
    best = (max if higher else min)(means, key=means.get)
    pairs = {frozenset((test["first"], test["second"])): test for test in setting["comparisons"]}
    better, level = [], []
    for other in arms:
        if other == best:
            continue
        test = pairs[frozenset((best, other))]
        text = (f"{other} ({metric} {means[best]:.4f} vs {means[other]:.4f}, {test['test'] or 'no test'}, "
                f"p = {format_p(test['p_adjusted'])})")
        (better if test["winner"] == best else level).append(text)
    corrections = {test["correction"] for test in setting["comparisons"]} - {None}
    adjusted = "".join(f", p {c}-adjusted over {len(setting['comparisons'])} comparisons" for c in sorted(corrections))
    head = f"{setting['name']} ({metric}, {direction(higher)}; paired tests over {setting['seeds']} seeds{adjusted}): "
    if not level:
        return head + f"{best} wins, significantly better than " + ", ".join(better) + "."
    if not better:
        return head + f"no significant difference between {best} (best mean) and " + ", ".join(level) + "."
    return (head + f"{best} has the best mean; significantly better than " + ", ".join(better)
            + "; no significant difference from " + ", ".join(level) + ".")
