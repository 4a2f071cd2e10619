"""The ablation's statistics: pure functions of numbers (numpy and scipy, no torch).

Per arm: :func:`summarize` (mean, s.d., Student-t 95% interval over seeds). Between arms:
:func:`paired_test` (same seed = a pair) and :func:`compare_arms` (every pair of arms, or the
pairs a design names, with the p-values Holm-Bonferroni-adjusted when there is more than one
pair). Two-by-two designs: :func:`factorial_effects` (both main effects and the interaction, each
a per-seed contrast tested over seeds, Holm-adjusted over the three). Convergence:
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

ALPHA = 0.05  # significance level of the paired tests
THRESHOLD_SLACK = 0.10  # default convergence threshold: within 10% of the weakest arm's final mean
T_TEST = "paired t-test"
ONE_SAMPLE_T_TEST = "one-sample t-test"  # of a per-seed contrast (a factorial effect) against 0
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
    from scipy import stats  # here, not at import: scipy.stats costs every command line a second

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


def one_sample_test(differences: Sequence[float], scale: float) -> dict:
    """The two-sided test of "the mean of ``differences`` is 0" over seeds: ``test``, ``t``, ``p``.

    The t-test (``stats.ttest_1samp``: the paired t-test on paired differences); where the
    differences are constant (spread at most :data:`CONSTANT_TOLERANCE` x ``scale``, the size of
    the numbers they were computed from) the exact sign test, after setting differences within
    that tolerance of 0 to 0 (rounding residue is no sign). Fewer than two differences: no test."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return {"test": None, "t": None, "p": None}
    tolerance = CONSTANT_TOLERANCE * scale
    if float(np.ptp(d)) <= tolerance:
        return {"test": SIGN_TEST, "t": None, "p": sign_test_p(np.where(np.abs(d) <= tolerance, 0.0, d))}
    from scipy import stats

    result = stats.ttest_1samp(d, 0.0)
    return {"test": T_TEST, "t": float(result.statistic), "p": float(result.pvalue)}


def magnitude(*values: Sequence[float]) -> float:
    """The largest absolute value among the numbers compared (the scale of their rounding)."""
    return max(float(np.abs(np.asarray(v, dtype=np.float64)).max()) for v in values)


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
    tested = one_sample_test(differences, magnitude(a, b))
    test, t_value, p_value = tested["test"], tested["t"], tested["p"]
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


def correct_family(tests: List[dict], alpha: float = ALPHA) -> List[dict]:
    """Holm-Bonferroni over ``tests`` (each with a ``p``) when there is more than one: sets
    ``p_adjusted``, ``correction`` (None for a single test) and ``comparisons`` (the family's
    size), then decides each on the adjusted p (:func:`decide`)."""
    correct = len(tests) > 1
    adjusted = holm([t["p"] for t in tests]) if correct else [t["p"] for t in tests]
    for test, p in zip(tests, adjusted):
        test.update(p_adjusted=p, correction=HOLM if correct else None, comparisons=len(tests))
        decide(test, alpha)
    return tests


def compare_arms(finals: Dict[str, Sequence[Optional[float]]], higher_is_better: bool, alpha: float = ALPHA,
                 pairs: Optional[Sequence[Sequence[str]]] = None) -> List[dict]:
    """:func:`paired_test` for each of ``pairs`` (first - second; default: every pair of arms in
    the given order, first against each later one). With more than one pair the p-values are
    Holm-Bonferroni-adjusted over all of them (``p_adjusted``, ``correction`` =
    "Holm-Bonferroni") and ``significant``/``winner`` are decided on the adjusted p;
    ``comparisons`` is the family's size.

    A value may be None (a measure undefined on that seed, e.g. AUROC where every keypoint hit):
    a pair then uses the seeds defined in both of its arms (``paired_seeds`` lists them where some
    were left out), and a pair with no such seed is not tested (left out of the family)."""
    arms = list(finals)
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(arms) for b in arms[i + 1:]]
    tests = []
    for a, b in pairs:
        both = [k for k, (x, y) in enumerate(zip(finals[a], finals[b])) if x is not None and y is not None]
        if not both:
            continue
        test = paired_test([finals[a][k] for k in both], [finals[b][k] for k in both], higher_is_better, (a, b), alpha)
        if len(both) < len(finals[a]):
            test["paired_seeds"] = both
        tests.append(test)
    return correct_family(tests, alpha)


def factorial_effects(cells: Dict[str, Dict[str, Sequence[float]]], factors: Sequence[str], higher_is_better: bool,
                      alpha: float = ALPHA) -> List[dict]:
    """Main effects and interaction of a 2 x 2 design from per-seed values.

    ``cells[a][b]`` holds the per-seed values (seed i of every cell is the same seed) at level
    ``a`` of the first factor and ``b`` of the second; each factor's first level (in dict order)
    is its baseline a0 / b0. Per seed, with y(a, b) that seed's value:

    - main effect of the first factor: ((y(a1, b0) - y(a0, b0)) + (y(a1, b1) - y(a0, b1))) / 2,
      the change from a0 to a1 averaged over the second factor's levels;
    - main effect of the second factor: likewise ((y(a0, b1) - y(a0, b0)) + (y(a1, b1) - y(a1, b0))) / 2;
    - interaction: (y(a1, b1) - y(a0, b1)) - (y(a1, b0) - y(a0, b0)), the difference of the first
      factor's effect between the second factor's levels.

    Each contrast is tested over seeds with :func:`one_sample_test` (t-test, or the exact sign
    test where it is the same for every seed), summarized with its Student-t 95% interval, and
    the three p-values are Holm-Bonferroni-adjusted (:func:`correct_family`). A main effect
    ``favours`` the level with the better mean (None at 0); ``winner`` is that level where the
    adjusted p < alpha."""
    (a0, row0), (a1, row1) = cells.items()
    (b0, b1) = row0
    y = {(a, b): np.asarray(cells[a][b], dtype=np.float64) for a in (a0, a1) for b in (b0, b1)}
    first, second = factors
    scale = magnitude(*y.values())
    contrasts = [
        (first, "main", f"{a1} − {a0}", ((y[a1, b0] - y[a0, b0]) + (y[a1, b1] - y[a0, b1])) / 2, (a0, a1)),
        (second, "main", f"{b1} − {b0}", ((y[a0, b1] - y[a0, b0]) + (y[a1, b1] - y[a1, b0])) / 2, (b0, b1)),
        (f"{first} × {second}", "interaction", f"({a1} − {a0} at {b1}) − ({a1} − {a0} at {b0})",
         (y[a1, b1] - y[a0, b1]) - (y[a1, b0] - y[a0, b0]), None),
    ]
    effects = []
    for name, kind, contrast, per_seed, levels in contrasts:
        mean = float(per_seed.mean())
        favours = None
        if levels is not None and mean != 0:
            favours = levels[1] if (mean > 0) == higher_is_better else levels[0]
        tested = one_sample_test(per_seed, scale)
        if tested["test"] == T_TEST:
            tested["test"] = ONE_SAMPLE_T_TEST
        effects.append({"effect": name, "kind": kind, "contrast": contrast, "per_seed": per_seed.tolist(),
                        "estimate": summarize(per_seed), **tested, "better_mean": favours, "favours": favours})
    for effect in correct_family(effects, alpha):  # an interaction has no better level, yet can be significant
        effect["significant"] = effect["p_adjusted"] is not None and effect["p_adjusted"] < alpha
    return effects


def relative_to_reference(values: Dict[str, Sequence[float]], references: Dict[str, str]) -> Dict[str, dict]:
    """Each arm of ``references`` (arm -> its reference arm) against its reference, seed by seed:
    ``difference`` (arm - reference) and ``ratio`` (arm / reference; a seed whose reference is 0
    has none), each summarized over seeds (:func:`summarize`: mean, s.d., Student-t 95% interval;
    None where no seed has one). Seed i of every arm is the same seed."""
    relative = {}
    for arm, reference in references.items():
        a, b = np.asarray(values[arm], dtype=np.float64), np.asarray(values[reference], dtype=np.float64)
        ratios = [float(x / y) for x, y in zip(a, b) if y != 0]
        relative[arm] = {"reference": reference, "difference": summarize(a - b),
                         "ratio": summarize(ratios) if ratios else None, "ratios": ratios}
    return relative


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
    (Holm-adjusted when the setting has more than two arms). Where the best arm was not compared
    with every other (a design that tests chosen pairs), one clause per tested pair instead."""
    arms, metric, higher = setting["arms"], setting["metric"], setting["higher_is_better"]
    means = {arm: data["stats"]["mean"] for arm, data in arms.items()}
    best = (max if higher else min)(means, key=means.get)
    pairs = {frozenset((test["first"], test["second"])): test for test in setting["comparisons"]}
    corrections = {test["correction"] for test in setting["comparisons"]} - {None}
    adjusted = "".join(f", p {c}-adjusted over {len(setting['comparisons'])} comparisons" for c in sorted(corrections))
    head = f"{setting['name']} ({metric}, {direction(higher)}; paired tests over {setting['seeds']} seeds{adjusted}): "

    def numbers(test, first, second):
        return (f"{metric} {means[first]:.4f} vs {means[second]:.4f}, {test['test'] or 'no test'}, "
                f"p = {format_p(test['p_adjusted'])}")

    if any(frozenset((best, other)) not in pairs for other in arms if other != best):
        clauses = []
        for test in setting["comparisons"]:
            result = f"{test['winner']} significantly better" if test["winner"] else "no significant difference"
            clauses.append(f"{test['first']} vs {test['second']}: {result} "
                           f"({numbers(test, test['first'], test['second'])})")
        return head + "; ".join(clauses) + "."
    better, level = [], []
    for other in arms:
        if other == best:
            continue
        test = pairs[frozenset((best, other))]
        (better if test["winner"] == best else level).append(f"{other} ({numbers(test, best, other)})")
    if not level:
        return head + f"{best} wins, significantly better than " + ", ".join(better) + "."
    if not better:
        return head + f"no significant difference between {best} (best mean) and " + ", ".join(level) + "."
    return (head + f"{best} has the best mean; significantly better than " + ", ".join(better)
            + "; no significant difference from " + ", ".join(level) + ".")
