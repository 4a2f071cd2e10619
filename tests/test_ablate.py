"""heatmapnet ablate: its statistics against ground truth computed by hand, its report's tables,
its orchestration with the training runs stood in for, one run really trained, and a miniature
ablation end to end."""
import dataclasses
import json
import math
from pathlib import Path

import cv2
import pytest
import torch
from scipy import stats as scipy_stats

from heatmapnet.ablate import (ARMS, BUDGETS, CONTINUATIONS, DESIGNS, HOLM, SIGN_TEST, T_TEST, Budget, Continuation,
                               RunResult, RunSpec, Scores, StopRule, ablate, arm_base, arm_overrides, best_rate,
                               bracket_rates, check_arms, compare_arms, convergence_threshold, dotlist, execute,
                               factorial_effects, holdout_overrides, holm, improves, paired_test, plateau_index,
                               resolve_budgets, resolve_design, resolve_device, sign_test_p, steps_to_threshold,
                               summarize, verdict)
from heatmapnet.ablate import report, runner, runs
from heatmapnet.ablate.stats import ONE_SAMPLE_T_TEST
from heatmapnet.cli import build_parser, main
from heatmapnet.config import ConfigError, load_config


# ----------------------------------------------------------------------------------------------
# statistics, against values computed by hand
# ----------------------------------------------------------------------------------------------
def test_summary_of_one_to_four_has_the_student_t_interval():
    # mean 2.5; s.d. sqrt(5/3) = 1.290994; half-width t(0.975, 3) * s.d. / 2 = 3.182446 * 0.645497
    summary = summarize([1, 2, 3, 4])
    assert summary["n"] == 4
    assert summary["mean"] == pytest.approx(2.5)
    assert summary["std"] == pytest.approx(math.sqrt(5 / 3))
    half = 3.182446 * math.sqrt(5 / 3) / 2
    assert half == pytest.approx(2.054260, abs=1e-6)
    assert summary["ci95"] == pytest.approx([2.5 - half, 2.5 + half], abs=1e-6)


def test_a_single_value_has_no_spread_and_no_interval():
    assert summarize([0.7]) == {"n": 1, "mean": 0.7, "std": None, "ci95": None}
    with pytest.raises(ValueError):
        summarize([])


def test_paired_t_test_matches_the_closed_form_for_two_degrees_of_freedom():
    # differences 1, 2, 3: mean 2, s.d. 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3; with 2 degrees of freedom
    # the two-sided p is 1 - |t| / sqrt(t^2 + 2) = 1 - sqrt(12 / 14) = 0.0742
    errors_a, errors_b = [0.5, 0.6, 0.7], [1.5, 2.6, 3.7]  # lower is better: a wins every pair
    test = paired_test(errors_b, errors_a, higher_is_better=False, names=("mse", "focal"))
    assert test["test"] == T_TEST == "paired t-test"
    assert test["differences"] == pytest.approx([1.0, 2.0, 3.0])
    assert test["t"] == pytest.approx(2 * math.sqrt(3))
    assert test["p"] == pytest.approx(1 - math.sqrt(12 / 14))
    assert test["p_adjusted"] == test["p"] and test["correction"] is None  # one test: nothing to correct
    assert test["sign"] == 1
    assert test["wins"] == {"mse": 0, "focal": 3}
    assert test["better_mean"] == "focal"
    assert test["significant"] is False and test["winner"] is None  # p = 0.074 >= 0.05


def test_paired_t_test_with_one_and_three_degrees_of_freedom():
    # differences 1, 3: mean 2, s.d. sqrt 2, t = 2 / (sqrt 2 / sqrt 2) = 2; one degree of freedom is
    # Cauchy: p = 1 - (2 / pi) arctan 2 = 0.295
    test = paired_test([3.0, 5.0], [2.0, 2.0], higher_is_better=True, names=("focal", "mse"))
    assert test["t"] == pytest.approx(2.0)
    assert test["p"] == pytest.approx(1 - 2 / math.pi * math.atan(2))
    assert test["better_mean"] == "focal" and test["winner"] is None
    # differences 10, 11, 10, 11: mean 10.5, s.d. sqrt(1/3), standard error sqrt(1/3) / 2, so
    # t = 10.5 * 2 sqrt 3 = 21 sqrt 3 = 36.37; p = 2 P(T_3 > t), the t distribution as the table
    strong = paired_test([11, 12, 11, 12], [1, 1, 1, 1], higher_is_better=True, names=("focal", "mse"))
    t = 21 * math.sqrt(3)
    assert strong["t"] == pytest.approx(t)
    assert strong["p"] == pytest.approx(2 * scipy_stats.t.sf(t, 3))
    assert strong["p"] == pytest.approx(4.5704e-05, rel=1e-4)
    assert strong["winner"] == "focal" and strong["significant"] is True


def test_the_exact_sign_test_counts_signs():
    # n pairs all of one sign: 2 * 0.5^n
    assert sign_test_p([0.3, 0.1, 0.2]) == 0.25
    assert sign_test_p([-1.0] * 5) == 0.0625
    # zeros are dropped: n = 4 with 1 negative; P(X <= 1) = (1 + 4) / 16, two-sided 10 / 16
    assert sign_test_p([1, 2, -1, 0, 3]) == pytest.approx(0.625)
    # n = 6 with 1 negative: 2 * (1 + 6) / 64
    assert sign_test_p([1, 1, 1, -1, 1, 1]) == pytest.approx(14 / 64)
    assert sign_test_p([1, -1]) == 1.0  # 2 * 3/4 capped at 1
    assert sign_test_p([0.0, 0.0]) == 1.0  # no non-zero difference


def test_a_constant_difference_falls_back_to_the_sign_test_instead_of_p_zero():
    # every difference exactly 2: the t-test is undefined (zero variance); sign test p = 2 * 0.5^3
    constant = paired_test([3.0, 4.0, 5.0], [1.0, 2.0, 3.0], higher_is_better=False, names=("a", "b"))
    assert constant["test"] == SIGN_TEST == "exact sign test"
    assert constant["t"] is None and constant["p"] == 0.25
    assert constant["better_mean"] == "b" and constant["winner"] is None and constant["significant"] is False
    # every difference 0.01 up to floating-point rounding (a - b is not exactly 0.01 in binary),
    # where a plain t-test reports t ~ 1e15 and p ~ 1e-60: the sign test, 2 * 0.5^6 = 0.03125
    first = [0.11, 0.27, 0.35, 0.6, 0.9, 0.42]
    second = [value - 0.01 for value in first]
    differences = [a - b for a, b in zip(first, second)]
    assert len(set(differences)) > 1  # the rounding this guards against is really there
    rounded = paired_test(first, second, higher_is_better=True, names=("focal", "mse"))
    assert rounded["test"] == SIGN_TEST and rounded["t"] is None
    assert rounded["p"] == pytest.approx(0.03125)
    assert rounded["winner"] == "focal" and rounded["significant"] is True
    # identical arms: no non-zero difference, p = 1
    same = paired_test([0.1, 0.2], [0.1, 0.2], higher_is_better=False)
    assert same["test"] == SIGN_TEST and same["p"] == 1.0
    assert same["sign"] == 0 and same["winner"] is None and same["better_mean"] is None


def test_holm_adjusts_hand_picked_p_values():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01 = 0.03; 2 * 0.03 = 0.06; max(0.06, 1 * 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # sorted 0.2, 0.5, 0.9 -> 0.6; min(1, 2 * 0.5) = 1; max(1, 0.9) = 1
    assert holm([0.5, 0.2, 0.9]) == pytest.approx([1.0, 0.6, 1.0])
    # None (no test) is not counted: m = 2 -> 2 * 0.02 = 0.04; max(0.04, 0.04) = 0.04
    assert holm([0.02, None, 0.04]) == [pytest.approx(0.04), None, pytest.approx(0.04)]
    assert holm([0.03]) == [0.03]


def test_with_three_arms_the_pairwise_p_values_are_holm_adjusted_and_decide_the_winner():
    # lower is better. a - b = -1 every seed: sign test, 2 * 0.5^3 = 0.25. a - c = 1, 2, 3:
    # t = 2 sqrt 3, p = 1 - sqrt(12 / 14) = 0.0742. b - c = 2, 3, 4: t = 3 sqrt 3,
    # p = 1 - sqrt(27 / 29) = 0.0351, below 0.05 on its own.
    # Holm over m = 3: 3 * 0.0351 = 0.1053; max(0.1053, 2 * 0.0742) = 0.1484; max(0.1484, 0.25) = 0.25
    ab, ac, bc = compare_arms({"a": [1, 2, 3], "b": [2, 3, 4], "c": [0, 0, 0]}, higher_is_better=False)
    assert [(t["first"], t["second"]) for t in (ab, ac, bc)] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert [t["test"] for t in (ab, ac, bc)] == [SIGN_TEST, T_TEST, T_TEST]
    raw = [0.25, 1 - math.sqrt(12 / 14), 1 - math.sqrt(27 / 29)]
    assert [t["p"] for t in (ab, ac, bc)] == pytest.approx(raw)
    assert [t["p_adjusted"] for t in (ab, ac, bc)] == pytest.approx([0.25, 2 * raw[1], 3 * raw[2]])
    assert all(t["correction"] == HOLM == "Holm-Bonferroni" and t["comparisons"] == 3 for t in (ab, ac, bc))
    # c has the better mean against b and p = 0.035 < 0.05 uncorrected, but not after the correction
    assert bc["better_mean"] == "c" and bc["significant"] is False and bc["winner"] is None
    # two arms: one comparison, nothing to correct
    (only,) = compare_arms({"b": [2, 3, 4], "c": [0, 0, 0]}, higher_is_better=False)
    assert only["correction"] is None and only["p_adjusted"] == only["p"] == pytest.approx(raw[2])
    assert only["winner"] == "c"


def test_steps_to_threshold_is_the_first_evaluation_that_reaches_it():
    steps, nme = [10, 20, 30, 40], [0.30, 0.12, 0.09, 0.10]
    assert steps_to_threshold(steps, nme, 0.10, higher_is_better=False) == 30
    assert steps_to_threshold(steps, nme, 0.12, higher_is_better=False) == 20  # reaching = equalling
    assert steps_to_threshold(steps, nme, 0.05, higher_is_better=False) is None  # never reached
    ap = [0.1, 0.4, 0.35, 0.6]
    assert steps_to_threshold(steps, ap, 0.4, higher_is_better=True) == 20
    assert steps_to_threshold(steps, ap, 0.7, higher_is_better=True) is None


def test_the_default_threshold_is_the_weakest_arms_mean_relaxed_by_ten_percent():
    assert convergence_threshold([0.08, 0.10], higher_is_better=False) == pytest.approx(0.11)
    assert convergence_threshold([0.5, 0.4], higher_is_better=True) == pytest.approx(0.36)


# ----------------------------------------------------------------------------------------------
# verdicts and the report's comparison table, on hand-made settings
# ----------------------------------------------------------------------------------------------
def _comparison(first, second, test, p, winner, correction=None):
    return {"first": first, "second": second, "test": test, "p_adjusted": p, "winner": winner,
            "correction": correction}


def _hand_setting(means, comparisons, higher, seeds, name="faces", metric="nme"):
    return {"name": name, "metric": metric, "higher_is_better": higher, "seeds": seeds,
            "arms": {arm: {"stats": {"mean": mean}} for arm, mean in means.items()}, "comparisons": comparisons}


def test_the_verdict_names_a_significant_winner():
    setting = _hand_setting({"mse": 0.21, "focal": 0.105}, [_comparison("mse", "focal", T_TEST, 0.0123, "focal")],
                            higher=False, seeds=3)
    assert verdict(setting) == ("faces (nme, lower is better; paired tests over 3 seeds): focal wins, significantly "
                                "better than mse (nme 0.1050 vs 0.2100, paired t-test, p = 0.0123).")


def test_the_verdict_says_no_significant_difference():
    setting = _hand_setting({"mse": 0.11, "focal": 0.105}, [_comparison("mse", "focal", SIGN_TEST, 0.25, None)],
                            higher=False, seeds=3)
    assert verdict(setting) == ("faces (nme, lower is better; paired tests over 3 seeds): no significant difference "
                                "between focal (best mean) and mse (nme 0.1050 vs 0.1100, exact sign test, p = 0.25).")


def test_the_verdict_with_three_arms_separates_the_beaten_from_the_level_and_names_the_correction():
    comparisons = [_comparison("mse", "focal", T_TEST, 0.003, "focal", HOLM),
                   _comparison("mse", "awing", T_TEST, 0.2, None, HOLM),
                   _comparison("focal", "awing", T_TEST, 0.09, None, HOLM)]
    setting = _hand_setting({"mse": 0.4, "focal": 0.6, "awing": 0.55}, comparisons, higher=True, seeds=5,
                            name="people", metric="ap")
    assert verdict(setting) == (
        "people (ap, higher is better; paired tests over 5 seeds, p Holm-Bonferroni-adjusted over 3 comparisons): "
        "focal has the best mean; significantly better than mse (ap 0.6000 vs 0.4000, paired t-test, p = 0.003); "
        "no significant difference from awing (ap 0.6000 vs 0.5500, paired t-test, p = 0.09).")


def _setting_from_finals(finals, higher, name, metric):
    return {"name": name, "metric": metric, "higher_is_better": higher, "seeds": len(next(iter(finals.values()))),
            "arms": {arm: {"final": values, "stats": summarize(values)} for arm, values in finals.items()},
            "comparisons": compare_arms(finals, higher)}


def test_a_constant_gap_over_three_seeds_is_not_called_a_win():
    # every difference 0.1 (up to rounding): sign test p = 0.25, where the t-test said p = 0, "focal wins"
    setting = _setting_from_finals({"mse": [0.2, 0.3, 0.4], "focal": [0.1, 0.2, 0.3]}, False, "faces", "nme")
    assert verdict(setting) == ("faces (nme, lower is better; paired tests over 3 seeds): no significant difference "
                                "between focal (best mean) and mse (nme 0.2000 vs 0.3000, exact sign test, p = 0.25).")


THREE_ARMS = {"focal": [11, 12, 11, 12], "mse": [1, 1, 1, 1], "awing": [1, 2, 1, 2]}


def test_three_arms_from_their_finals_to_the_verdict():
    # focal - mse = 10, 11, 10, 11: t = 21 sqrt 3, p = 2 P(T_3 > t) = 4.57e-05.
    # focal - awing = 10 every seed: sign test 2 * 0.5^4 = 0.125.
    # mse - awing = 0, -1, 0, -1: mean -0.5, s.d. sqrt(1/3), t = -sqrt 3, p = 2 P(T_3 > sqrt 3) = 0.1817.
    # Holm: 3 * 4.57e-05 = 1.37e-04; 2 * 0.125 = 0.25; max(0.25, 0.1817) = 0.25
    setting = _setting_from_finals(THREE_ARMS, True, "toy", "ap")
    fm, fa, ma = setting["comparisons"]
    p_fm, p_ma = 2 * scipy_stats.t.sf(21 * math.sqrt(3), 3), 2 * scipy_stats.t.sf(math.sqrt(3), 3)
    assert p_ma == pytest.approx(0.18169, abs=1e-5)
    assert (fm["t"], ma["t"]) == pytest.approx((21 * math.sqrt(3), -math.sqrt(3)))
    assert [fm["p"], fa["p"], ma["p"]] == pytest.approx([p_fm, 0.125, p_ma])
    assert [fm["p_adjusted"], fa["p_adjusted"], ma["p_adjusted"]] == pytest.approx([3 * p_fm, 0.25, 0.25])
    assert verdict(setting) == (
        "toy (ap, higher is better; paired tests over 4 seeds, p Holm-Bonferroni-adjusted over 3 comparisons): "
        "focal has the best mean; significantly better than mse (ap 11.5000 vs 1.0000, paired t-test, p = 0.000137); "
        "no significant difference from awing (ap 11.5000 vs 1.5000, exact sign test, p = 0.25).")


def test_the_report_names_the_test_and_the_correction_of_each_comparison():
    lines = report.comparison_lines(compare_arms(THREE_ARMS, higher_is_better=True))
    assert "Correction for multiple comparisons: Holm-Bonferroni over the 3 pairwise comparisons; the result is " \
           "decided on the adjusted p." in lines
    assert any(line.startswith("Test: the paired t-test") and "exact sign test" in line for line in lines)
    table = lines[lines.index("| difference | mean | 95% CI (t) | test | t | p | p (Holm-Bonferroni) | seeds won | "
                              "result |"):]
    # mse - awing: mean -0.5, half-width t(0.975, 3) * sqrt(1/3) / 2 = 3.182446 * 0.288675 = 0.9187
    assert table[2:] == [
        "| focal − mse | +10.5000 | [+9.5813, +11.4187] | paired t-test | 36.37 | 4.57e-05 | 0.000137 | focal 4, mse 0 "
        "| focal better |",
        "| focal − awing | +10.0000 | [+10.0000, +10.0000] | exact sign test | — | 0.125 | 0.25 | focal 4, awing 0 "
        "| no significant difference |",
        "| mse − awing | -0.5000 | [-1.4187, +0.4187] | paired t-test | -1.73 | 0.182 | 0.25 | mse 0, awing 2 "
        "| no significant difference |"]
    two = report.comparison_lines(compare_arms({"mse": [0.2, 0.3, 0.4], "focal": [0.1, 0.2, 0.3]}, False))
    assert "Correction for multiple comparisons: none (one comparison)." in two
    assert "| difference | mean | 95% CI (t) | test | t | p | seeds won | result |" in two


# ----------------------------------------------------------------------------------------------
# factorial effects, the plateau rule, the early step: against values computed by hand
# ----------------------------------------------------------------------------------------------
# per-seed values of a 2 x 2 design, lower is better: cells[loss][target]
CELLS = {"mse": {"fixed": [10, 12, 11], "radius": [9, 10, 10]},
         "focal": {"fixed": [8, 9, 9], "radius": [5, 6, 8]}}


def test_the_main_effects_and_the_interaction_of_a_two_by_two_design():
    loss, target, interaction = factorial_effects(CELLS, ["loss", "target"], higher_is_better=False)
    # loss, per seed ((8 - 10) + (5 - 9)) / 2 = -3, ((9 - 12) + (6 - 10)) / 2 = -3.5, ((9 - 11) + (8 - 10)) / 2 = -2:
    # mean -17/6, variance 7/12, standard error sqrt(7/36), t = -17 / sqrt 7; 2 degrees of freedom:
    # p = 1 - |t| / sqrt(t^2 + 2) = 1 - 17 / sqrt(303); 95% half-width t(0.975, 2) sqrt 7 / 6 = 4.302653 * 0.440959
    assert (loss["effect"], loss["contrast"], loss["kind"]) == ("loss", "focal − mse", "main")
    assert loss["per_seed"] == pytest.approx([-3.0, -3.5, -2.0])
    assert loss["estimate"]["mean"] == pytest.approx(-17 / 6)
    assert loss["t"] == pytest.approx(-17 / math.sqrt(7))
    assert loss["p"] == pytest.approx(1 - 17 / math.sqrt(303))
    half = 4.302653 * math.sqrt(7) / 6
    assert loss["estimate"]["ci95"] == pytest.approx([-17 / 6 - half, -17 / 6 + half], abs=1e-5)
    # target, per seed ((9 - 10) + (5 - 8)) / 2 = -2, -2.5, -1: mean -11/6, the same variance, p = 1 - 11 / sqrt(135)
    assert target["contrast"] == "radius − fixed" and target["per_seed"] == pytest.approx([-2.0, -2.5, -1.0])
    assert target["p"] == pytest.approx(1 - 11 / math.sqrt(135))
    # interaction (focal - mse at radius) - (focal - mse at fixed): (5 - 9) - (8 - 10) = -2, -1, 0:
    # mean -1, s.d. 1, t = -sqrt 3, p = 1 - sqrt(3 / 5)
    assert interaction["contrast"] == "(focal − mse at radius) − (focal − mse at fixed)"
    assert interaction["per_seed"] == pytest.approx([-2.0, -1.0, 0.0])
    assert interaction["p"] == pytest.approx(1 - math.sqrt(3 / 5))
    assert all(effect["test"] == ONE_SAMPLE_T_TEST for effect in (loss, target, interaction))
    # Holm over the three: 3 * 0.023373 = 0.070119; max(that, 2 * 0.053271) = 0.106542; max(that, 0.225403)
    p_loss, p_target, p_interaction = 1 - 17 / math.sqrt(303), 1 - 11 / math.sqrt(135), 1 - math.sqrt(3 / 5)
    assert [e["p_adjusted"] for e in (loss, target, interaction)] == pytest.approx(
        [3 * p_loss, 2 * p_target, p_interaction])
    assert all(e["correction"] == HOLM and e["comparisons"] == 3 for e in (loss, target, interaction))
    # focal lowers the error (p = 0.023 alone) but not significantly after the correction
    assert (loss["favours"], target["favours"], interaction["favours"]) == ("focal", "radius", None)
    assert not any(e["significant"] for e in (loss, target, interaction))
    higher = factorial_effects(CELLS, ["loss", "target"], higher_is_better=True)
    assert [e["favours"] for e in higher] == ["mse", "fixed", None]


def test_a_constant_effect_gets_the_exact_sign_test_and_rounding_residue_is_no_sign():
    # every seed: focal - mse = -0.02 at both targets, radius - fixed = -0.01 (values as floats, so the
    # differences carry rounding), interaction exactly 0 in arithmetic
    seeds = [0.0, 0.013, 0.021, 0.037]
    cells = {"mse": {"fixed": [0.1 + s for s in seeds], "radius": [0.09 + s for s in seeds]},
             "focal": {"fixed": [0.08 + s for s in seeds], "radius": [0.07 + s for s in seeds]}}
    loss, target, interaction = factorial_effects(cells, ["loss", "target"], higher_is_better=False)
    # 4 seeds all of one sign: 2 * 0.5^4 = 0.125, where a t-test on zero spread would say p = 0
    assert (loss["test"], loss["t"], loss["p"]) == (SIGN_TEST, None, 0.125)
    assert (target["test"], target["p"]) == (SIGN_TEST, 0.125)
    # every contrast 0 up to rounding: no sign at all, p = 1
    assert interaction["test"] == SIGN_TEST and interaction["p"] == 1.0
    # Holm: 3 * 0.125 = 0.375, max(0.375, 2 * 0.125) = 0.375, max(0.375, 1) = 1
    assert [e["p_adjusted"] for e in (loss, target, interaction)] == pytest.approx([0.375, 0.375, 1.0])


def test_holm_adjusts_p_values_with_ties_and_caps_at_one():
    # sorted 0.01, 0.02, 0.02, 0.3: 4 * 0.01 = 0.04; 3 * 0.02 = 0.06; max(0.06, 2 * 0.02) = 0.06; max(0.06, 0.3)
    assert holm([0.3, 0.02, 0.01, 0.02]) == pytest.approx([0.3, 0.06, 0.04, 0.06])
    assert holm([0.4, 0.6]) == pytest.approx([0.8, 0.8])  # 2 * 0.4 = 0.8; max(0.8, 0.6)


def test_only_the_pairs_a_design_names_are_tested_and_corrected_for():
    finals = {"a": [1, 2, 3], "b": [2, 3, 4], "c": [-8, -8, -6]}
    ab, cb = compare_arms(finals, higher_is_better=False, pairs=[("a", "b"), ("c", "b")])
    # a - b = -1 every seed: sign test 0.25. c - b = -10, -11, -10: mean -31/3, s.d. sqrt(1/3), standard error 1/3,
    # t = -31, p = 1 - 31 / sqrt(31^2 + 2). Holm over 2: 2 * 0.00104; max(that, 0.25)
    p_cb = 1 - 31 / math.sqrt(963)
    assert cb["t"] == pytest.approx(-31.0)
    assert (ab["p"], cb["p"]) == pytest.approx((0.25, p_cb))
    assert (ab["p_adjusted"], cb["p_adjusted"]) == pytest.approx((0.25, 2 * p_cb))
    assert cb["winner"] == "c" and ab["comparisons"] == 2
    setting = {"name": "toy", "metric": "nme", "higher_is_better": False, "seeds": 3,
               "arms": {arm: {"stats": summarize(v)} for arm, v in finals.items()}, "comparisons": [ab, cb]}
    # c is best but was not compared with a: one clause per tested pair
    assert verdict(setting) == (
        "toy (nme, lower is better; paired tests over 3 seeds, p Holm-Bonferroni-adjusted over 2 comparisons): "
        "a vs b: no significant difference (nme 2.0000 vs 3.0000, exact sign test, p = 0.25); "
        f"c vs b: c significantly better (nme -7.3333 vs 3.0000, paired t-test, p = {2 * p_cb:.3g}).")


def test_the_plateau_rule_stops_patience_evaluations_after_the_last_real_improvement():
    # lower is better, min_delta 1%, patience 3, evaluated every 50 steps:
    # 0.300 ref; 0.200 < 0.297 ref; 0.150 < 0.198 ref (step 150); 0.149 !< 0.1485; 0.148 < 0.1485 ref (step 250);
    # 0.1495 no (1); 0.1470 !< 0.14652, a new best but by less than 1% (2); 0.1475 no (3): stop at index 7, step 400
    values = [0.300, 0.200, 0.150, 0.149, 0.148, 0.1495, 0.1470, 0.1475, 0.1466, 0.1]
    assert plateau_index(values, False, patience=3, min_delta=0.01) == 7
    rule = StopRule(patience=3, min_delta=0.01, evaluations=20)
    assert rule.eval_every(1000) == 50 and (rule.stop_index(values, False) + 1) * 50 == 400
    assert plateau_index(values, False, patience=4, min_delta=0.01) == 9 - 1  # 0.1466 !< 0.14652 either: index 8
    assert plateau_index(values[:8], False, patience=4, min_delta=0.01) is None  # still within patience: train on
    # higher is better: 0.1, 0.2, 0.25 (ref), 0.251, 0.2505: 0.251 !> 0.25 * 1.01 = 0.2525; patience 2 -> index 4
    assert plateau_index([0.1, 0.2, 0.25, 0.251, 0.2505], True, patience=2, min_delta=0.01) == 4
    assert plateau_index([0.1, 0.2, 0.3, 0.4], True, patience=1, min_delta=0.01) is None  # always improving: the cap
    assert improves(0.0, 0.0, True, 0.01) is False and improves(0.01, 0.0, True, 0.01) is True  # AP from 0


def test_the_early_step_is_the_first_evaluation_at_or_after_a_fifth_of_the_steps():
    short, long = BUDGETS["short"], BUDGETS["long"]
    assert short.early_step(250, 25) == 50  # 20% of 250, an evaluation step
    assert long.early_step(1500, long.stop.eval_every(1500)) == 300  # every 60 steps: the 5th evaluation
    assert short.early_step(100, 30) == 30  # 20 -> the next evaluation
    assert short.early_step(10, 20) == 20  # never before the first evaluation


# ----------------------------------------------------------------------------------------------
# arms, designs, budgets, command line
# ----------------------------------------------------------------------------------------------
def test_every_arm_is_a_valid_set_of_overrides():
    for arm, overrides in ARMS.items():
        config = load_config("synthetic_faces", dotlist(overrides))
        assert config.loss.name == overrides["loss.name"], arm
        assert config.target.sigma_policy == overrides["target.sigma_policy"], arm
        noise = config.data.label_noise  # the noise arms' training labels; every other arm's are clean
        assert (noise.sigma, noise.swap) == (overrides.get("data.label_noise.sigma", 0.0),
                                             overrides.get("data.label_noise.swap", 0.0)), arm
    assert load_config("synthetic_faces", dotlist(ARMS["focal_beta0"])).loss.focal.beta == 0.0
    a3b8 = load_config("synthetic_faces", dotlist(ARMS["focal_a3_b8"]))
    assert (a3b8.loss.focal.alpha, a3b8.loss.focal.beta, a3b8.target.sigma_policy) == (3.0, 8.0, "radius")
    for budget in BUDGETS.values():
        for overrides in budget.overrides.values():
            load_config("synthetic_people", dotlist(overrides))


def test_the_designs_cells_pairs_and_bases():
    two = DESIGNS["2x2"]
    assert two.arms == ("mse+fixed", "mse+radius", "focal+fixed", "focal+radius") and two.two_by_two()
    # the two target levels differ in the sigma policy only: both keep the exact peak the focal loss needs
    assert {arm: (ARMS[arm]["loss.name"], ARMS[arm]["target.sigma_policy"], ARMS[arm]["target.exact_peak"])
            for arm in two.arms} == {"mse+fixed": ("mse", "fixed", True), "mse+radius": ("mse", "radius", True),
                                     "focal+fixed": ("focal", "fixed", True),
                                     "focal+radius": ("focal", "radius", True)}
    # the pairs that differ in one factor (the simple effects), not the diagonal ones
    assert two.compared_pairs() == [("mse+fixed", "mse+radius"), ("mse+fixed", "focal+fixed"),
                                    ("mse+radius", "focal+radius"), ("focal+fixed", "focal+radius")]
    assert two.grid() == {"mse": {"fixed": "mse+fixed", "radius": "mse+radius"},
                          "focal": {"fixed": "focal+fixed", "radius": "focal+radius"}}
    continuation = DESIGNS["continuation"]
    assert continuation.bases() == ["mse", "focal"] and continuation.two_by_two()
    assert [CONTINUATIONS[arm] for arm in ("mse_then_focal", "focal_then_mse")] == [
        Continuation("mse", "focal"), Continuation("focal", "mse")]
    assert arm_overrides("mse_then_focal") == ARMS["focal"] and arm_base("mse_then_focal") == "mse"
    assert continuation.compared_pairs() == [("mse_then_mse", "mse_then_focal"), ("focal_then_focal", "focal_then_mse")]
    sensitivity = DESIGNS["sensitivity"]
    assert len(sensitivity.arms) == 9 and not sensitivity.two_by_two() and sensitivity.bases() == []
    assert sensitivity.grid()["3"]["8"] == "focal_a3_b8"
    assert sensitivity.compared_pairs() == [("focal_a2_b4", arm) for arm in sensitivity.arms if arm != "focal_a2_b4"]
    assert resolve_design().name == "2x2" and resolve_design(arms=["focal", "awing"]).compared_pairs() == [
        ("focal", "awing")]
    with pytest.raises(ConfigError, match="not both"):
        resolve_design("2x2", ["mse", "focal"])
    with pytest.raises(ConfigError, match=r"unknown design '3x3'; choose one of \['2x2', 'recipes'"):
        resolve_design("3x3")


def test_an_unknown_arm_is_an_error_listing_the_valid_ones(capsys, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown arm\(s\) \['l1'\]; valid arms: \['mse', 'focal', 'awing'"):
        check_arms(["mse", "l1"])
    with pytest.raises(ConfigError, match="at least two arms"):
        check_arms(["focal", "focal"])
    assert main(["ablate", "--arms", "focal,hinge", "--out", str(tmp_path)]) == 2
    assert "valid arms" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()


def test_a_misspelt_override_names_its_key_before_anything_trains(capsys, tmp_path):
    assert main(["ablate", "--quick", "--set", "train.stepz=3", "--out", str(tmp_path)]) == 2
    assert "unknown config key 'train.stepz'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_asking_for_cuda_without_a_gpu_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert main(["ablate", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "--device cuda: torch finds no CUDA device here" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


def test_the_sweep_holds_out_data_the_training_split_does_not_contain():
    faces = holdout_overrides(load_config("synthetic_faces"), 40)
    assert faces["data.val.source"] == "synthetic_faces" and faces["data.val.seed"] not in (0, 1)
    assert faces["data.val.num_samples"] == 40


def test_the_holdout_of_a_file_split_is_cut_from_the_end_of_its_subset(shared_data, monkeypatch):
    monkeypatch.setenv("HEATMAPNET_DATA", str(shared_data))
    lsp = load_config("lsp", ["data.train.subset=100:300"])
    assert holdout_overrides(lsp, 30) == {
        "data.val.source": "files", "data.val.format": "lsp", "data.val.ann_file": lsp.data.train.ann_file,
        "data.val.img_dir": None, "data.train.subset": "100:270", "data.val.subset": "270:300"}


def test_a_mosaic_split_is_cut_by_its_people_and_evaluated_on_fewer_mosaics(shared_data, monkeypatch):
    """lsp_mosaic draws 10,000 train mosaics of LSPET people 0-2499 and 200 val mosaics of people
    2500-; the sweep holds out the last 48 training people (their own 48 mosaics) and a budget's
    validation evaluates 48 of the val mosaics, all val people kept."""
    monkeypatch.setenv("HEATMAPNET_DATA", str(shared_data))
    mosaic = load_config("lsp_mosaic")
    assert runner.validation_overrides(mosaic, 48) == {"data.val.num_samples": 48}
    assert runner.validation_overrides(mosaic, 1000) == {"data.val.num_samples": 200}
    assert holdout_overrides(mosaic, 48) == {
        "data.val.source": "mosaic", "data.val.format": "lsp", "data.val.ann_file": mosaic.data.train.ann_file,
        "data.val.img_dir": None, "data.val.num_samples": 48, "data.train.subset": "0:2452",
        "data.val.subset": "2452:2500"}


def test_the_command_line_parses_designs_budgets_and_overrides():
    args = build_parser().parse_args(["ablate", "ytf68", "--quick", "--arms", "focal", "awing", "--seeds", "4",
                                      "--set", "data.mode=multi", "--threshold", "nme=0.08"])
    assert (args.config, args.quick, args.arms, args.seeds) == ("ytf68", True, ["focal", "awing"], 4)
    assert args.set == ["data.mode=multi"] and args.threshold == ["nme=0.08"] and args.out == "runs/ablate"
    assert (args.design, args.budget, args.resume, args.device) == (None, None, False, "auto")
    args = build_parser().parse_args(["ablate", "ytf68", "--design", "continuation", "--budget", "short", "long",
                                      "--resume", "--device", "cuda", "--early-step", "120", "--extra-steps", "300"])
    assert (args.design, args.budget, args.resume, args.device) == ("continuation", ["short", "long"], True, "cuda")
    assert (args.early_step, args.extra_steps) == (120, 300)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ablate", "--budget", "forever"])


def test_budgets_resolve_by_name_in_order_without_repeats():
    assert [b.name for b in resolve_budgets(["short", "long", "short"])] == ["short", "long"]
    assert resolve_budgets("long")[0].stop == StopRule()
    with pytest.raises(ConfigError, match=r"unknown budget 'full'; choose one of \['quick', 'short', 'long'\]"):
        resolve_budgets("full")


def _tried_and_scored(metric_of_rate, tried):
    """A stand-in for a sweep's runs: the mean holdout metric (lower is better) as a function of lr."""
    def evaluate(rates):
        tried.extend(rates)
        return Scores(False, {lr: metric_of_rate(lr) for lr in rates})
    return evaluate


@pytest.mark.parametrize("rates, optimum, diverges_from, tried_after, picked", [
    ([0.002, 0.005], 0.012, None, [0.01, 0.02], 0.01),  # best at the top edge: doubled until bracketed
    ([0.002, 0.005], 0.1, None, [0.01, 0.02], 0.02),  # still at the edge when the extra rates run out
    ([0.002, 0.005], 0.0008, None, [0.001, 0.0005], 0.001),  # bottom edge: halved
    ([0.002, 0.005, 0.01], 0.004, None, [], 0.005),  # bracketed: nothing more
    ([0.002, 0.005], 0.1, 0.01, [0.01], 0.005),  # a diverged rate ends the search upwards
    ([0.002], 0.1, None, [], 0.002),  # a single rate is at no edge to extend from
])
def test_the_sweep_extends_past_an_edge_until_the_best_rate_is_bracketed(rates, optimum, diverges_from,
                                                                         tried_after, picked):
    tried = []
    metric = lambda lr: None if diverges_from and lr >= diverges_from else abs(math.log(lr / optimum))
    scores = bracket_rates(_tried_and_scored(metric, tried), rates, 2, log=lambda line: None)
    assert tried == rates + tried_after
    assert best_rate(scores.values, scores.higher_is_better) == picked
    assert list(scores.values) == sorted(scores.values)


# ----------------------------------------------------------------------------------------------
# the orchestration, with the training runs stood in for
# ----------------------------------------------------------------------------------------------
def _override(spec, key):
    """The value a run's overrides set ``key`` to last (None: not set)."""
    values = [json.loads(item.partition("=")[2]) for item in spec.overrides if item.partition("=")[0] == key]
    return values[-1] if values else None


class FakeTraining:
    """Stands in for :func:`heatmapnet.ablate.runs.execute`: a run's NME curve from a formula of its
    overrides, evaluated every train.eval_every steps; records every run it is asked for."""

    def __init__(self, curve, confidence=None):
        self.curve, self.confidence, self.specs = curve, confidence, []

    def __call__(self, spec, device):
        self.specs.append(spec)
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        (spec.run_dir / "last.pt").write_bytes(b"")
        steps, every = _override(spec, "train.steps"), _override(spec, "train.eval_every")
        evaluated = list(range(every, steps, every)) + [steps]
        values = [self.curve(spec, step, steps) for step in evaluated]
        result = RunResult(spec.fingerprint(), spec.config, list(spec.overrides), metric="nme", higher_is_better=False,
                           final=values[-1], steps=evaluated, values=values, stopped_at=steps,
                           stop_reason="steps" if spec.stop is None else "cap", run_dir=str(spec.run_dir))
        if self.confidence is not None:  # the final evaluation's metrics, as the engine's summary holds them
            runs.keep_confidence(result, self.confidence(spec))
        return result

    def dirs(self):
        return [spec.run_dir for spec in self.specs]


STUB = {"train.steps": 10, "train.eval_every": 2, "train.warmup_steps": 2}
STUB_BUDGET = Budget(seeds=3, lr_factors=(1.0,), sweep_fraction=0.5, holdout=6, val_samples=6, name="stub",
                     overrides={"topdown": STUB})


def _two_by_two_curve(spec, step, steps):
    """NME at the end 0.10, 0.02 lower with focal, 0.01 lower with the radius target, + 0.003 per
    seed; early on higher by 0.05 (focal) or 0.01 (mse) times the fraction of training left."""
    focal = _override(spec, "loss.name") == "focal"
    final = 0.10 - 0.02 * focal - 0.01 * (_override(spec, "target.sigma_policy") == "radius") \
        + 0.003 * _override(spec, "train.seed")
    return final + (0.05 if focal else 0.01) * (1 - step / steps)


@pytest.fixture
def stubbed(monkeypatch):
    """Training replaced by a formula, the example image (which needs real weights) by a name."""
    def install(curve, confidence=None):
        fake = FakeTraining(curve, confidence)
        monkeypatch.setattr(runs, "execute", fake)
        monkeypatch.setattr(runner, "example_from_runs", lambda name, arm_runs, path, device: "example.png")
        return fake
    return install


def test_the_default_two_by_two_design_answers_early_and_at_the_end(stubbed, tmp_path):
    fake = stubbed(_two_by_two_curve)
    results = ablate("synthetic_faces", tmp_path, budget=STUB_BUDGET, device="cpu", log=lambda line: None)
    # 4 arms x (1 rate x 2 sweep seeds + 3 seeds)
    assert len(fake.specs) == 20 and results["runs"] == {"trained": 20, "reused": 0}
    block = results["settings"][0]["budgets"]["stub"]
    assert list(block["arms"]) == ["mse+fixed", "mse+radius", "focal+fixed", "focal+radius"]
    assert block["arms"]["focal+radius"]["final"] == pytest.approx([0.07, 0.073, 0.076])
    early, end = block["early"], block["end"]
    assert (early["step"], early["label"], end["label"]) == (2, "early (step 2)", "at the end (step 10)")
    # early (step 2, 80% of training left): focal - mse = -0.02 + 0.8 * (0.05 - 0.01) = +0.012, every seed;
    # at the end -0.02: each the same for every seed, so the exact sign test, 2 * 0.5^3 = 0.25
    for snapshot, loss_effect, favours in ((early, 0.012, "mse"), (end, -0.02, "focal")):
        loss, target, interaction = snapshot["effects"]
        assert loss["estimate"]["mean"] == pytest.approx(loss_effect) and loss["favours"] == favours
        assert target["estimate"]["mean"] == pytest.approx(-0.01) and target["favours"] == "radius"
        assert interaction["estimate"]["mean"] == pytest.approx(0.0, abs=1e-12)
        assert [(e["test"], e["p"]) for e in (loss, target, interaction)] == [
            (SIGN_TEST, 0.25), (SIGN_TEST, 0.25), (SIGN_TEST, 1.0)]
        assert [e["p_adjusted"] for e in (loss, target, interaction)] == pytest.approx([0.75, 0.75, 1.0])
        assert len(snapshot["comparisons"]) == 4 and all(t["correction"] == HOLM for t in snapshot["comparisons"])
    assert early["arms"]["mse+fixed"]["stats"]["mean"] == pytest.approx(0.103 + 0.008)
    report_text = (tmp_path / "report.md").read_text()
    assert "## The answer per budget" in report_text and early["verdict"] in report_text
    assert ("| synthetic_faces | nme (lower is better) | stub | early (step 2) | loss: focal − mse | +0.0120 [+0.0120, "
            "+0.0120] | 0.75 | favours mse (not significant) |") in report_text
    assert "| loss mse | 0.1030 ± 0.0030 | 0.0930 ± 0.0030 |" in report_text  # the grid, at the end
    assert "**Not bracketed:**" in report_text  # one rate swept: the report says the rate is not bracketed
    assert (tmp_path / "synthetic_faces_stub_curves.png").is_file()


def test_resume_skips_the_runs_an_earlier_call_finished(stubbed, tmp_path):
    fake = stubbed(_two_by_two_curve)
    ablate("synthetic_faces", tmp_path, design="recipes", budget=STUB_BUDGET, device="cpu", log=lambda line: None)
    assert len(fake.specs) == 10  # 2 arms x (2 sweep runs + 3 seeds)
    first = json.loads((tmp_path / "results.json").read_text())
    fake.specs.clear()
    again = ablate("synthetic_faces", tmp_path, design="recipes", budget=STUB_BUDGET, device="cpu", resume=True,
                   log=lambda line: None)
    assert fake.specs == [] and again["runs"] == {"trained": 0, "reused": 10}
    assert again["settings"] == first["settings"]
    # an interrupted call: the runs whose JSON is missing (here one) train again, the others are reused
    (tmp_path / "synthetic_faces" / "stub" / "focal" / "seed1.json").unlink()
    again = ablate("synthetic_faces", tmp_path, design="recipes", budget=STUB_BUDGET, device="cpu", resume=True,
                   log=lambda line: None)
    assert fake.dirs() == [tmp_path / "synthetic_faces" / "stub" / "focal" / "seed1"]
    assert again["runs"] == {"trained": 1, "reused": 9}
    # other settings (a --set) are other runs: all train again; without --resume everything trains
    fake.specs.clear()
    ablate("synthetic_faces", tmp_path, design="recipes", budget=STUB_BUDGET, device="cpu", resume=True,
           overrides=["train.weight_decay=0.001"], log=lambda line: None)
    assert len(fake.specs) == 10
    fake.specs.clear()
    ablate("synthetic_faces", tmp_path, design="recipes", budget=STUB_BUDGET, device="cpu", log=lambda line: None)
    assert len(fake.specs) == 10


def test_a_cache_fingerprint_ignores_where_the_data_lives(monkeypatch, tmp_path):
    def spec(root, overrides):
        monkeypatch.setenv("HEATMAPNET_DATA", str(root))
        return RunSpec("ytf68", tuple(overrides + [f"data.val.ann_file={root}/ytf68/train"]), tmp_path / "run")

    one, other = tmp_path / "here", tmp_path / "there"
    assert spec(one, []).fingerprint() == spec(other, []).fingerprint()
    assert spec(one, []).fingerprint() != spec(one, ["train.lr=0.01"]).fingerprint()


def test_the_rate_is_picked_on_the_mean_of_two_seeds_and_bracketed(stubbed, tmp_path):
    # holdout NME per (lr, sweep seed): seed 0 alone would pick 0.002; the mean (0.30, 0.23, 0.215) picks 0.004,
    # the highest tried, so 0.008 is tried (mean 0.40) and 0.004 is bracketed
    holdout = {0.001: (0.30, 0.30), 0.002: (0.20, 0.26), 0.004: (0.21, 0.22), 0.008: (0.40, 0.40)}

    def curve(spec, step, steps):
        if spec.run_dir.parent.parent.name == "sweep":
            return holdout[_override(spec, "train.lr")][_override(spec, "train.seed")]
        return 0.1
    fake = stubbed(curve)
    budget = dataclasses.replace(STUB_BUDGET, lr_factors=(0.5, 1.0, 2.0), extend_sweep=1)
    results = ablate("synthetic_faces", tmp_path, design="recipes", budget=budget, device="cpu", log=lambda line: None)
    arm = results["settings"][0]["budgets"]["stub"]["arms"]["mse"]
    assert arm["sweep"]["values"] == pytest.approx({"0.001": 0.30, "0.002": 0.23, "0.004": 0.215, "0.008": 0.40})
    assert arm["sweep"]["per_seed"]["0.002"] == [0.20, 0.26] and arm["sweep"]["seeds"] == 2
    assert arm["lr"] == 0.004 and arm["sweep"]["edge"] is None
    main_runs = [s for s in fake.specs if s.run_dir.parent == tmp_path / "synthetic_faces" / "stub" / "mse"]
    assert [_override(s, "train.lr") for s in main_runs] == [0.004] * 3
    assert [_override(s, "train.seed") for s in main_runs] == [0, 1, 2]


def test_continuations_start_from_their_base_models_same_seed(stubbed, tmp_path):
    fake = stubbed(lambda spec, step, steps: 0.1 + 0.01 * _override(spec, "train.seed"))
    budget = dataclasses.replace(STUB_BUDGET, stop=StopRule(patience=2, min_delta=0.01, evaluations=5))
    results = ablate("synthetic_faces", tmp_path, design="continuation", budget=budget, extra_steps=4, device="cpu",
                     log=lambda line: None)
    # bases mse and focal, then 4 continuations: 6 arms x (2 sweep runs + 3 seeds)
    assert len(fake.specs) == 30
    folder = tmp_path / "synthetic_faces" / "stub"
    by_dir = {spec.run_dir: spec for spec in fake.specs}
    for arm, base in (("mse_then_focal", "mse"), ("focal_then_mse", "focal"), ("mse_then_mse", "mse")):
        for k in range(3):  # each seed's run starts from its base's run of the same seed, with the base's final weights
            spec = by_dir[folder / arm / f"seed{k}"]
            assert Path(spec.init_from.run_dir) == folder / base / f"seed{k}"
            assert (_override(spec, "train.steps"), spec.stop) == (4, None)  # exactly the extra steps
        for k in range(2):  # its sweep starts from the base's sweep run at the base's rate
            spec = by_dir[folder / "sweep" / arm / f"lr0.002_seed{k}"]
            assert Path(spec.init_from.run_dir) == folder / "sweep" / base / f"lr0.002_seed{k}"
    assert _override(by_dir[folder / "mse_then_focal" / "seed0"], "loss.name") == "focal"
    # the base models train to the plateau rule, evaluated every 10 // 5 = 2 steps; their sweeps a fixed 5 steps
    base_run = by_dir[folder / "mse" / "seed0"]
    assert base_run.stop == budget.stop and base_run.init_from is None
    assert (_override(base_run, "train.eval_every"), _override(base_run, "train.steps")) == (2, 10)
    assert by_dir[folder / "sweep" / "mse" / "lr0.002_seed0"].stop is None
    block = results["settings"][0]["budgets"]["stub"]
    assert list(block["bases"]) == ["mse", "focal"] and block["extra_steps"] == 4
    assert [c["first"] + " - " + c["second"] for c in block["end"]["comparisons"]] == [
        "mse_then_mse - mse_then_focal", "focal_then_focal - focal_then_mse"]
    assert [e["effect"] for e in block["end"]["effects"]] == ["trained with", "continued with",
                                                              "trained with × continued with"]
    report_text = (tmp_path / "report.md").read_text()
    assert "The base models (before the continuation)" in report_text
    assert "`mse_then_focal` (the `mse` model, continued with loss.name=\"focal\"" in report_text


# ----------------------------------------------------------------------------------------------
# confidence of the scores and label noise: against values computed by hand
# ----------------------------------------------------------------------------------------------
def _confident_run(**measures):
    return RunResult("f", "c", [], metric="nme", higher_is_better=False, final=0.1, confidence=measures)


def test_confidence_measures_get_the_metrics_summaries_and_holm_corrected_paired_tests():
    # AUROC per seed: a 0.70, 0.72, 0.74 (mean 0.72, s.d. 0.02); b 0.80, 0.83, 0.86 (mean 0.83, s.d. 0.03);
    # c 0.71, 0.70, 0.75. 95% half-widths t(0.975, 2) s / sqrt 3 = 4.302653 * 0.02 / sqrt 3 = 0.049683 (a)
    # and 4.302653 * 0.03 / sqrt 3 = 0.074524 (b).
    # a - b = -0.10, -0.11, -0.12: mean -0.11, s.d. 0.01, t = -0.11 / (0.01 / sqrt 3) = -11 sqrt 3; 2 degrees of
    # freedom: p = 1 - |t| / sqrt(t^2 + 2) = 1 - sqrt(363 / 365) = 0.00274.
    # c - b = -0.09, -0.13, -0.11: mean -0.11, s.d. 0.02, t = -5.5 sqrt 3, p = 1 - sqrt(90.75 / 92.75) = 0.0108.
    # Holm over the two pairs: 2 * 0.00274 = 0.00549; max(0.00549, 0.0108) = 0.0108: b wins both.
    from heatmapnet.ablate.confidence import confidence_block

    auroc = {"a": [0.70, 0.72, 0.74], "b": [0.80, 0.83, 0.86], "c": [0.71, 0.70, 0.75]}
    # Spearman: a - b = +0.20 every seed (the exact sign test, 0.25); c is undefined on seed 1, so c - b pairs
    # seeds 0 and 2: 0.20, 0.18, mean 0.19, s.d. 0.02 / sqrt 2, t = 0.19 / 0.01 = 19, one degree of freedom:
    # p = 1 - (2 / pi) arctan 19 = 0.0335. Holm: 2 * 0.0335 = 0.0669; max(0.0669, 0.25) = 0.25
    spearman = {"a": [-0.30, -0.32, -0.34], "b": [-0.50, -0.52, -0.54], "c": [-0.30, None, -0.36]}
    runs_by_arm = {arm: [_confident_run(auroc=auroc[arm][k], spearman=spearman[arm][k], ece=0.1, hit_rate=0.5,
                                        threshold=0.1) for k in range(3)] for arm in auroc}
    block = confidence_block(runs_by_arm, [("a", "b"), ("c", "b")], "toy", 3)
    assert block["kind"] == "keypoints" and list(block["measures"]) == ["auroc", "spearman", "ece"]
    measure = block["measures"]["auroc"]
    half = 4.302653 / math.sqrt(3)
    assert measure["arms"]["a"]["stats"]["mean"] == pytest.approx(0.72)
    assert measure["arms"]["a"]["stats"]["ci95"] == pytest.approx([0.72 - 0.02 * half, 0.72 + 0.02 * half], abs=1e-6)
    assert measure["arms"]["b"]["stats"]["std"] == pytest.approx(0.03)
    ab, cb = measure["comparisons"]
    p_ab, p_cb = 1 - math.sqrt(363 / 365), 1 - math.sqrt(90.75 / 92.75)
    assert (ab["test"], cb["test"]) == (T_TEST, T_TEST)
    assert (ab["t"], cb["t"]) == pytest.approx((-11 * math.sqrt(3), -5.5 * math.sqrt(3)))
    assert (ab["p"], cb["p"]) == pytest.approx((p_ab, p_cb))
    assert (ab["p_adjusted"], cb["p_adjusted"]) == pytest.approx((2 * p_ab, p_cb))
    assert ab["correction"] == HOLM and ab["winner"] == cb["winner"] == "b"
    assert measure["answer"]["best"] == "b" and len(measure["answer"]["beats"]) == 2
    assert block["answer"].startswith("b's keypoint score is the better one to threshold: b has the best mean AUROC "
                                      "(0.8300), significantly better than every arm it was tested against")
    rho = block["measures"]["spearman"]
    assert rho["arms"]["c"]["undefined"] == [1] and rho["arms"]["c"]["stats"]["mean"] == pytest.approx(-0.33)
    ab, cb = rho["comparisons"]
    assert (ab["test"], ab["p"]) == (SIGN_TEST, 0.25) and cb["paired_seeds"] == [0, 2]
    assert cb["t"] == pytest.approx(19.0) and cb["p"] == pytest.approx(1 - 2 / math.pi * math.atan(19))
    assert (ab["p_adjusted"], cb["p_adjusted"]) == pytest.approx((0.25, 2 * cb["p"]))
    assert rho["answer"]["best"] == "b"  # lower is better: -0.52
    lines = report.comparison_lines(rho["comparisons"], heading="Spearman", explain=False)
    assert any(line.startswith("| c − b (seeds 0, 2 only) | +0.1900 |") for line in lines)
    assert block["hit_rate"]["a"]["mean"] == 0.5 and block["threshold"] == 0.1 and block["reliability"] == {}


def test_bottom_up_confidence_is_what_ranking_people_by_their_score_is_worth():
    # x: ranked 0.10, 0.12, 0.14, unranked 0.05, 0.06, 0.07: gain 0.05, 0.06, 0.07, mean 0.06, s.d. 0.01,
    # t = 6 sqrt 3, p = 1 - sqrt(108 / 110); y gains nothing (sign test, p = 1). Holm over the two arms:
    # 2 p_x; max(2 p_x, 1) = 1. Between arms x - y = the same gains: the same t and p, one pair, no correction.
    from heatmapnet.ablate.confidence import confidence_block

    ranked, unranked = {"x": [0.10, 0.12, 0.14], "y": [0.1] * 3}, {"x": [0.05, 0.06, 0.07], "y": [0.1] * 3}
    runs_by_arm = {arm: [_confident_run(oks_ap=ranked[arm][k], oks_ap_unranked=unranked[arm][k]) for k in range(3)]
                   for arm in ranked}
    block = confidence_block(runs_by_arm, [("x", "y")], "crowds", 3)
    p = 1 - math.sqrt(108 / 110)
    assert block["kind"] == "people" and list(block["measures"]) == ["ranking_gain"]
    x, y = block["ranking"]["x"]["test"], block["ranking"]["y"]["test"]
    assert x["t"] == pytest.approx(6 * math.sqrt(3)) and (x["p"], x["p_adjusted"]) == pytest.approx((p, 2 * p))
    assert (y["test"], y["p"], y["p_adjusted"]) == (SIGN_TEST, 1.0, 1.0)
    assert x["winner"] == "ranked" and y["winner"] is None
    (between,) = block["measures"]["ranking_gain"]["comparisons"]
    assert between["p"] == pytest.approx(p) and between["correction"] is None and between["winner"] == "x"
    assert block["answer"].startswith("x's person score is the better one to threshold")
    lines = report.confidence_lines({"confidence": block, "arms": {"x": {}, "y": {}}})
    assert f"| `x` | 0.1200 ± 0.0200 | 0.0600 ± 0.0100 | +0.0600 [+{0.06 - 0.01 * 4.302653 / math.sqrt(3):.4f}, " \
           f"+{0.06 + 0.01 * 4.302653 / math.sqrt(3):.4f}] | paired t-test | {2 * p:.3g} | ranking helps |" in lines


def test_reliability_bins_pool_over_seeds_by_their_counts():
    # bin 8: seed A 1 keypoint (score 0.85, hit), seed B 3 (mean 0.81, 1 hit): pooled 4, score
    # (0.85 + 3 * 0.81) / 4 = 0.82, hit rate 2 / 4. Bin 9: A 3 (0.95, 2 hits), B 1 (0.91, hit): 4, 0.94, 3 / 4.
    # ECE of the pooled bins: 0.5 * |0.5 - 0.82| + 0.5 * |0.75 - 0.94| = 0.16 + 0.095 = 0.255
    from heatmapnet.ablate.confidence import pool_reliability
    from heatmapnet.confidence import Reliability, expected_calibration_error

    def bins(count8, score8, hit8, count9, score9, hit9):
        empty = [None] * 8
        return {"edges": [k / 10 for k in range(11)], "count": [0] * 8 + [count8, count9],
                "mean_score": empty + [score8, score9], "hit_rate": empty + [hit8, hit9]}
    pooled = pool_reliability([bins(1, 0.85, 1.0, 3, 0.95, 2 / 3), bins(3, 0.81, 1 / 3, 1, 0.91, 1.0), None])
    assert pooled["count"] == [0] * 8 + [4, 4]
    assert pooled["mean_score"][:8] == [None] * 8 and pooled["mean_score"][8:] == pytest.approx([0.82, 0.94])
    assert pooled["hit_rate"][8:] == pytest.approx([0.5, 0.75])
    assert expected_calibration_error(Reliability.from_json(pooled)) == pytest.approx(0.255)
    assert pool_reliability([None, {}]) is None


# the final metrics of a stubbed run (lower NME is better): AUROC mse 0.70, 0.72, 0.74 and focal 0.80, 0.83, 0.86
# over seeds 0-2, as in the hand-worked test above; ECE mse 0.2, focal 0.1; every run the same reliability bins
RELIABILITY_BINS = {"edges": [k / 10 for k in range(11)], "count": [0] * 8 + [2, 2],
                    "mean_score": [None] * 8 + [0.85, 0.95], "hit_rate": [None] * 8 + [0.5, 1.0]}


def _final_confidence(spec):
    seed, focal = _override(spec, "train.seed"), _override(spec, "loss.name") == "focal"
    return {"nme": 0.1, "confidence/auroc": (0.80 + 0.03 * seed) if focal else (0.70 + 0.02 * seed),
            "confidence/spearman": -0.5 if focal else -0.3 - 0.01 * seed, "confidence/ece": 0.1 if focal else 0.2,
            "confidence/hit_rate": 0.5, "confidence/threshold": 0.1, "confidence/num_keypoints": 4,
            "confidence/reliability": RELIABILITY_BINS}


def test_the_report_gives_each_arms_confidence_and_says_whose_score_to_threshold(stubbed, tmp_path):
    stubbed(_two_by_two_curve, _final_confidence)
    results = ablate("synthetic_faces", tmp_path, design="recipes", budget=STUB_BUDGET, device="cpu",
                     log=lambda line: None)
    confidence = results["settings"][0]["budgets"]["stub"]["confidence"]
    assert confidence["kind"] == "keypoints"
    assert confidence["measures"]["auroc"]["arms"]["focal"]["values"] == pytest.approx([0.80, 0.83, 0.86])
    (test,) = confidence["measures"]["auroc"]["comparisons"]  # mse - focal: -0.10, -0.11, -0.12, as by hand above
    p = 1 - math.sqrt(363 / 365)
    assert (test["first"], test["second"], test["correction"]) == ("mse", "focal", None)
    assert test["p"] == pytest.approx(p) and test["winner"] == "focal"
    report_text = (tmp_path / "report.md").read_text()
    half = 4.302653 / math.sqrt(3)
    assert "#### Confidence of the scores (final evaluation)" in report_text
    assert ("**Score to threshold:** focal's keypoint score is the better one to threshold: focal has the best mean "
            f"AUROC (0.8300), significantly better than every arm it was tested against: mse (p = {p:.3g}).") \
        in report_text
    assert (f"| `focal` | 0.8300 ± 0.0300 | [{0.83 - 0.03 * half:.4f}, {0.83 + 0.03 * half:.4f}] | -0.5000 ± 0.0000 | "
            "[-0.5000, -0.5000] | 0.1000 ± 0.0000 | [0.1000, 0.1000] | 0.500 | "
            "[diagram](synthetic_faces_stub_reliability_focal.png), ECE 0.2000 | "
            "≥ 0: keeps 100%, 75% hit (75% right) |") in report_text
    assert f"| `mse` | 0.7200 ± 0.0200 | [{0.72 - 0.02 * half:.4f}, {0.72 + 0.02 * half:.4f}] |" in report_text
    assert (f"| mse − focal | -0.1100 | [{-0.11 - 0.01 * half:+.4f}, {-0.11 + 0.01 * half:+.4f}] | paired t-test | "
            f"{-11 * math.sqrt(3):.2f} | {p:.3g} | mse 0, focal 3 | focal better |") in report_text
    # ECE: mse - focal = +0.1 every seed: the sign test, 2 * 0.5^3; focal has the better (lower) mean
    assert "| mse − focal | +0.1000 | [+0.1000, +0.1000] | exact sign test | — | 0.25 | mse 0, focal 3 | " \
           "no significant difference |" in report_text
    assert "- synthetic_faces, stub budget, confidence of the scores: focal's keypoint score" in report_text
    # the reliability diagram of each arm, its 3 seeds' bins pooled: ECE 0.5 * 0.35 + 0.5 * 0.05 = 0.2; the threshold:
    # keeping all 12 decides the 9 hits right, dropping bin 8 (3 hits, 3 misses) as many: the lower edge, 0, wins
    for arm in ("mse", "focal"):
        pooled = confidence["reliability"][arm]
        assert pooled["seeds"] == 3 and pooled["bins"]["count"][8:] == [6, 6] and pooled["ece"] == pytest.approx(0.2)
        assert pooled["keep"] == {"score": 0.0, "right": 0.75, "kept": 1.0, "kept_hit_rate": 0.75}
        image = cv2.imread(str(tmp_path / pooled["plot"]))
        assert image is not None and image.shape[0] > 200 and f"]({pooled['plot']})" in report_text


def test_resume_restores_the_confidence_measures_and_reads_old_results_without_them(stubbed, tmp_path):
    fake = stubbed(_two_by_two_curve, _final_confidence)
    first = ablate("synthetic_faces", tmp_path, design="recipes", budget=STUB_BUDGET, device="cpu",
                   log=lambda line: None)
    cached = tmp_path / "synthetic_faces" / "stub" / "focal" / "seed1.json"
    assert json.loads(cached.read_text())["confidence"]["auroc"] == pytest.approx(0.83)
    specs = {spec.run_dir: spec for spec in fake.specs}
    fake.specs.clear()
    again = ablate("synthetic_faces", tmp_path, design="recipes", budget=STUB_BUDGET, device="cpu", resume=True,
                   log=lambda line: None)
    assert fake.specs == [] and again["settings"] == first["settings"]
    # results cached before they kept confidence measures: without the two keys they still load (no run trains);
    # where the run's metrics.json (the engine's summary) is there, its final evaluation gives them back
    main_runs = [folder / f"seed{k}" for folder in (tmp_path / "synthetic_faces" / "stub" / arm for arm in ("mse", "focal"))
                 for k in range(3)]
    for run_dir in main_runs:
        path = run_dir.with_name(run_dir.name + ".json")
        old = {key: value for key, value in json.loads(path.read_text()).items()
               if key not in ("confidence", "reliability")}
        path.write_text(json.dumps(old))
        (run_dir / "metrics.json").write_text(json.dumps({"final": _final_confidence(specs[run_dir]), "steps": 10}))
    restored = ablate("synthetic_faces", tmp_path, design="recipes", budget=STUB_BUDGET, device="cpu", resume=True,
                      log=lambda line: None)
    assert fake.specs == [] and restored["runs"] == {"trained": 0, "reused": 10}
    assert restored["settings"] == first["settings"]
    (main_runs[4] / "metrics.json").unlink()  # focal seed 1: nothing to read them from
    partial = ablate("synthetic_faces", tmp_path, design="recipes", budget=STUB_BUDGET, device="cpu", resume=True,
                     log=lambda line: None)
    assert fake.specs == [] and partial["settings"][0]["budgets"]["stub"]["confidence"]["kind"] is None
    assert "Not measured here: 5 of the 6 runs recorded confidence measures." in (tmp_path / "report.md").read_text()


def test_the_noise_design_trains_each_recipe_at_every_noise_level_and_names_its_pairs():
    noise = DESIGNS["noise"]
    levels = ("sigma0.005", "sigma0.01", "sigma0.02", "sigma0.04", "swap0.05")
    assert noise.arms == ("mse", *(f"mse_{level}" for level in levels), "focal", *(f"focal_{level}" for level in levels),
                          "focal_fixed_sigma0.02")
    # each recipe on its own target (the recipes design's arms), the training labels jittered or swapped
    assert ARMS["mse_sigma0.005"] == {**ARMS["mse"], "data.label_noise.sigma": 0.005}
    assert ARMS["focal_sigma0.04"] == {**ARMS["focal"], "data.label_noise.sigma": 0.04}
    assert ARMS["focal_swap0.05"] == {**ARMS["focal"], "data.label_noise.swap": 0.05}
    assert ARMS["focal_fixed_sigma0.02"] == {**ARMS["focal_fixed"], "data.label_noise.sigma": 0.02}
    assert ARMS["focal_fixed_sigma0.02"]["target.sigma_policy"] == "fixed" != ARMS["focal_sigma0.02"][
        "target.sigma_policy"]
    swapped = load_config("synthetic_faces", dotlist(ARMS["mse_swap0.05"])).data.label_noise
    assert (swapped.sigma, swapped.swap) == (0.0, 0.05)
    # the pairs: every noisy arm against its own clean arm, mse against focal at every level, the target at 2%
    assert noise.compared_pairs() == [*((f"mse_{level}", "mse") for level in levels),
                                      *((f"focal_{level}", "focal") for level in levels), ("mse", "focal"),
                                      *((f"mse_{level}", f"focal_{level}") for level in levels),
                                      ("focal_fixed_sigma0.02", "focal_sigma0.02")]
    assert noise.references() == {**{f"mse_{level}": "mse" for level in levels},
                                  **{f"focal_{level}": "focal" for level in levels}}
    assert noise.grid()["focal"]["swap0.05"] == "focal_swap0.05" and not noise.two_by_two()
    assert [factor.label(level) for factor in noise.factors[1:] for level in factor.levels] == [
        "clean", "σ 0.5%", "σ 1%", "σ 2%", "σ 4%", "swap 5%"]
    assert resolve_design("noise") is noise
    assert build_parser().parse_args(["ablate", "lsp", "--design", "noise"]).design == "noise"


NOISE_GROWTH = {"sigma0.005": 0.001, "sigma0.01": 0.002, "sigma0.02": 0.004, "sigma0.04": 0.008}


def _noise_curve(spec, step, steps):
    """The final NME of a noise arm, the same at every evaluation: clean mse 0.10, 0.11, 0.12 over seeds 0-2,
    clean focal 0.08, 0.0905, 0.102; Gaussian noise adds g, 2g, 3g (g per level: NOISE_GROWTH), the swap
    0.01 every seed, focal on a fixed sigma 0.003 more than focal at sigma 2%."""
    seed, focal = _override(spec, "train.seed"), _override(spec, "loss.name") == "focal"
    value = (0.08 + 0.01 * seed + 0.0005 * seed ** 2) if focal else (0.10 + 0.01 * seed)
    sigma, swap = _override(spec, "data.label_noise.sigma"), _override(spec, "data.label_noise.swap")
    if sigma:
        value += NOISE_GROWTH[f"sigma{sigma:g}"] * (1 + seed)
    if swap:
        value += 0.01
    if _override(spec, "target.sigma_policy") == "fixed" and focal:
        value += 0.003
    return value


def test_the_noise_report_relates_each_noise_level_to_its_clean_arm(stubbed, tmp_path):
    # p-values (2 degrees of freedom, p = 1 - |t| / sqrt(t^2 + 2)):
    # - every sigma arm - its clean arm: g, 2g, 3g: mean 2g, s.d. g, t = 2 sqrt 3, p1 = 1 - sqrt(12 / 14) = 0.0742;
    # - swap - clean: 0.01 every seed, and the target pair: 0.003 every seed: the sign test, 0.25;
    # - mse - focal at every level (the noise adds the same to both): 0.02, 0.0195, 0.018: mean 0.019167,
    #   s.d. sqrt(1.0833e-6) = 0.0010408, t = 0.019167 / (0.0010408 / sqrt 3) = 31.9, p0 = 0.00098.
    # Holm over the 17 pairs: the six p0 (ranks 1-6) -> 17 p0 = 0.0167 (running maximum); the eight p1 (ranks 7-14)
    # -> 11 p1 = 0.816; the three 0.25 (ranks 15-17) -> 3 * 0.25 = 0.75, raised to the running maximum 0.816.
    fake = stubbed(_noise_curve)
    results = ablate("synthetic_faces", tmp_path, design="noise", budget=STUB_BUDGET, device="cpu",
                     rates=[0.01, 0.02], log=lambda line: None)
    block = results["settings"][0]["budgets"]["stub"]
    end = block["end"]
    # only mse, focal and focal_fixed_sigma0.02 sweep (2 rates x 2 seeds each); the ten noisy arms train
    # at their recipe's clean rate: 3 x 4 sweep runs + 13 x 3 seed runs
    swept = sorted({Path(spec.run_dir).parent.name for spec in fake.specs if "sweep" in Path(spec.run_dir).parts})
    assert swept == ["focal", "focal_fixed_sigma0.02", "mse"] and len(fake.specs) == 12 + 39
    arms = block["arms"]
    assert all(arms[noisy]["lr"] == arms[clean]["lr"] and arms[noisy]["sweep"]["rate_from"] == clean
               and arms[noisy]["sweep"]["values"] == {} for noisy, clean in DESIGNS["noise"].references().items())
    assert arms["mse"]["sweep"]["rate_from"] is None and set(arms["mse"]["sweep"]["values"]) == {"0.01", "0.02"}
    by_pair = {(t["first"], t["second"]): t for t in end["comparisons"]}
    d = [0.02, 0.0195, 0.018]
    mean_d = sum(d) / 3
    sd_d = math.sqrt(sum((x - mean_d) ** 2 for x in d) / 2)
    t0 = mean_d / (sd_d / math.sqrt(3))
    p0, p1 = 1 - t0 / math.sqrt(t0 ** 2 + 2), 1 - math.sqrt(12 / 14)
    assert t0 == pytest.approx(31.9, abs=0.05) and p0 == pytest.approx(0.00098, abs=1e-5)
    assert len(by_pair) == 17 and all(t["correction"] == HOLM and t["comparisons"] == 17 for t in by_pair.values())
    assert by_pair["mse", "focal"]["p"] == pytest.approx(p0) and by_pair["mse_swap0.05", "focal_swap0.05"][
        "p_adjusted"] == pytest.approx(17 * p0)
    assert all(by_pair[f"mse_{level}", f"focal_{level}"]["winner"] == f"focal_{level}" for level in NOISE_GROWTH)
    assert by_pair["mse_sigma0.04", "mse"]["p"] == pytest.approx(p1)
    assert by_pair["mse_sigma0.04", "mse"]["p_adjusted"] == pytest.approx(11 * p1)
    assert by_pair["focal_fixed_sigma0.02", "focal_sigma0.02"]["p_adjusted"] == pytest.approx(11 * p1)
    # mse at sigma 4%: 0.108, 0.126, 0.144 (mean 0.126, s.d. 0.018) against 0.10, 0.11, 0.12: differences 0.008,
    # 0.016, 0.024 (mean 0.016, s.d. 0.008); ratios 1.08, 1.14545, 1.2 (mean 1.141818)
    ratios = [1.08, 0.126 / 0.11, 1.2]
    mean_r = sum(ratios) / 3
    sd_r = math.sqrt(sum((r - mean_r) ** 2 for r in ratios) / 2)
    half = 4.302653 / math.sqrt(3)
    relative = end["relative"]["mse_sigma0.04"]
    assert relative["reference"] == "mse" and relative["ratios"] == pytest.approx(ratios)
    assert relative["ratio"]["mean"] == pytest.approx(1.141818, abs=1e-6)
    assert relative["ratio"]["ci95"] == pytest.approx([mean_r - sd_r * half, mean_r + sd_r * half], abs=1e-6)
    assert relative["difference"]["mean"] == pytest.approx(0.016)
    assert set(end["relative"]) == set(DESIGNS["noise"].references())
    report_text = (tmp_path / "report.md").read_text()
    assert ("| label noise | arm | nme | − clean [95% CI] | ÷ clean [95% CI] | p (Holm-Bonferroni, 17 pairs) | result |"
            in report_text)
    assert "| clean | `mse` | 0.1100 ± 0.0100 | — | 1 | — | reference |" in report_text
    assert (f"| σ 4% | `mse_sigma0.04` | 0.1260 ± 0.0180 | +0.0160 [{0.016 - 0.008 * half:+.4f}, "
            f"{0.016 + 0.008 * half:+.4f}] | {mean_r:.4f} [{mean_r - sd_r * half:.4f}, {mean_r + sd_r * half:.4f}] | "
            f"{11 * p1:.3g} | not told apart |") in report_text
    assert "| swap 5% | `focal_swap0.05` | 0.1008 ± 0.0110 | +0.0100 [+0.0100, +0.0100] |" in report_text
    # at sigma 2%: mse 0.104, 0.118, 0.132 (0.118 ± 0.014), focal 0.084, 0.0985, 0.114 (0.09883 ± 0.01500)
    assert (f"| σ 2% | 0.1180 ± 0.0140 | 0.0988 ± 0.0150 | +{mean_d:.4f} [{mean_d - sd_d * half:+.4f}, "
            f"{mean_d + sd_d * half:+.4f}] | {17 * p0:.3g} | focal better |") in report_text
    assert "Also tested: `focal_fixed_sigma0.02` − `focal_sigma0.02` = +0.0030 [+0.0030, +0.0030]" in report_text
    # the answer: per loss, each level's mean ratio to clean (no star: none is told apart from clean after Holm)
    assert (f"loss mse: nme relative to clean: σ 0.5% ×{(1.01 + 0.112 / 0.11 + 1.025) / 3:.3f}, " in report_text)
    assert f"σ 4% ×{mean_r:.3f}, swap 5% ×{(1.1 + 0.12 / 0.11 + 0.13 / 0.12) / 3:.3f}" in report_text
    assert results["settings"][0]["budgets"]["stub"]["plots"]["noise"] == "synthetic_faces_stub_noise.png"
    assert cv2.imread(str(tmp_path / "synthetic_faces_stub_noise.png")) is not None
    assert f"| mse_sigma0.04 | — | — | **{arms['mse']['lr']:g}** (mse's, not swept) |" in report_text
    # no confidence measures in these stubbed runs: the report says so rather than inventing them
    assert "Not measured here: 0 of the 39 runs recorded confidence measures (this mode measures none)." in report_text


# ----------------------------------------------------------------------------------------------
# one run, really trained: the whole model carried over, the plateau rule in the engine
# ----------------------------------------------------------------------------------------------
TINY = {"model.backbone": "mobilenetv3_small_050", "model.head_channels": 8, "data.input_size": [32, 32],
        "train.steps": 6, "train.batch_size": 4, "train.warmup_steps": 2, "train.eval_every": 3}
QUIET = ["data.num_workers=0", "train.threads=1", "train.checkpoint_every=100", "data.val.num_samples=4"]


def _trainable(state):
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}


def test_a_continuation_starts_from_the_whole_model_and_a_plateau_stops_a_run(tmp_path):
    """A run at learning rate 1e-12 initialised from another keeps every weight (backbone and head)
    of it (Adam moves a weight by about lr a step); the same run from scratch does not. A plateau rule that no evaluation can satisfy stops the
    run at its (patience + 1)-th evaluation, which is its last."""
    from heatmapnet.checkpoint import load_checkpoint

    threads = torch.get_num_threads()
    try:
        layers = dotlist(TINY) + QUIET
        base = execute(RunSpec("synthetic_faces", tuple(layers + ["train.lr=0.01"]), tmp_path / "base"), "cpu")
        frozen = tuple(layers + ["train.lr=1e-12", "train.steps=3"])
        execute(RunSpec("synthetic_faces", frozen, tmp_path / "continued", init_from=base), "cpu")
        execute(RunSpec("synthetic_faces", frozen, tmp_path / "scratch"), "cpu")
        stopped = execute(RunSpec("synthetic_faces", tuple(layers + ["train.steps=12", "train.eval_every=2"]),
                                  tmp_path / "stopped", stop=StopRule(patience=2, min_delta=10.0)), "cpu")
    finally:
        torch.set_num_threads(threads)
    weights = {name: _trainable(load_checkpoint(tmp_path / name / "last.pt").model)
               for name in ("base", "continued", "scratch")}
    assert weights["base"].keys() == weights["continued"].keys() and any("head" in k for k in weights["base"])
    same = lambda a, b: all(torch.allclose(a[k], b[k], rtol=0, atol=1e-9) for k in a)
    assert same(weights["base"], weights["continued"]) and not same(weights["base"], weights["scratch"])
    # min_delta 1000%: nothing improves on the first evaluation (step 2); patience 2 -> stop at step 6
    assert (stopped.stopped_at, stopped.stop_reason, stopped.steps) == (6, "plateau", [2, 4, 6])
    assert stopped.final == stopped.values[-1] and base.stop_reason == "steps"


def test_the_final_comparison_says_whether_its_runs_reached_a_plateau_or_the_cap():
    run = lambda reason, diverged=None: RunResult("f", "c", [], stop_reason=reason, diverged=diverged)
    assert runner.describe_end([run("plateau"), run("plateau")], True, 1500) == "at the plateau"
    assert runner.describe_end([run("cap"), run("cap"), run("cap", "loss nan")], True, 1500) == \
        "at the cap (step 1500; no run reached its plateau)"
    assert runner.describe_end([run("plateau"), run("cap"), run("plateau"), run("plateau", "loss nan")], True, 900) == \
        "at the plateau (1 of 3 runs stopped by the cap, step 900)"
    assert runner.describe_end([run("steps")], False, 250) == "at the end (step 250)"


# ----------------------------------------------------------------------------------------------
# end to end, in miniature
# ----------------------------------------------------------------------------------------------
TINY_BUDGET = Budget(seeds=2, lr_factors=(1.0,), sweep_fraction=0.5, holdout=6, val_samples=6, name="tiny",
                     overrides={"topdown": TINY, "multi": TINY})


@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
    """Both built-in settings, the two recipes, 2 seeds, 6 steps of 32 px: about 30 s. One torch
    thread (train.threads sets it for the process; restored after) keeps it fast on a busy machine."""
    out = tmp_path_factory.mktemp("ablate")
    threads = torch.get_num_threads()
    try:
        results = ablate(None, out, design="recipes", budget=TINY_BUDGET, device="cpu", log=lambda line: None,
                         overrides=["data.num_workers=0", "train.threads=1", "train.checkpoint_every=100"])
    finally:
        torch.set_num_threads(threads)
    return out, results


def test_the_miniature_ablation_covers_both_settings_with_statistics_per_arm(miniature):
    out, results = miniature
    written = json.loads((out / "results.json").read_text())
    assert written == json.loads(json.dumps(results))
    assert [s["name"] for s in written["settings"]] == ["synthetic_faces", "synthetic_people"]
    assert [(s["mode"], s["metric"]) for s in written["settings"]] == [("topdown", "nme"), ("multi", "keypoint_ap")]
    for setting in written["settings"]:
        block = setting["budgets"]["tiny"]
        assert list(block["arms"]) == ["mse", "focal"] and block["bases"] == {}
        for arm in block["arms"].values():
            assert len(arm["final"]) == 2 and arm["seeds"] == [0, 1]
            assert arm["stats"]["mean"] == pytest.approx(sum(arm["final"]) / 2)
            assert arm["lr"] in block["learning_rates"] and len(arm["sweep"]["per_seed"][f"{arm['lr']:g}"]) == 2
            assert [c["steps"] for c in arm["curves"]] == [[3, 6], [3, 6]]
            assert [c["values"][-1] for c in arm["curves"]] == pytest.approx(arm["final"])
            assert arm["stopped_at"] == [6, 6] and arm["stop_reason"] == ["steps", "steps"]
            assert set(arm["refine"]) == {"none", "quarter", "dark"}
            assert arm["refine"]["dark"]["values"] == pytest.approx(arm["final"])
        early, end = block["early"], block["end"]
        assert early["step"] == 3 and end["step"] is None
        for arm, data in block["arms"].items():  # the early comparison reads each curve at step 3
            assert early["arms"][arm]["values"] == [c["values"][0] for c in data["curves"]]
        (test,) = end["comparisons"]
        assert (test["first"], test["second"]) == ("mse", "focal")
        assert test["correction"] is None and test["p_adjusted"] == test["p"]  # two arms: one comparison
        # two seeds, differences d1, d2: t = (d1 + d2) / |d1 - d2| with one degree of freedom (Cauchy),
        # p = 1 - (2 / pi) arctan |t|; equal differences: the sign test, 2 * 0.5^2
        (m1, m2), (f1, f2) = block["arms"]["mse"]["final"], block["arms"]["focal"]["final"]
        d1, d2 = m1 - f1, m2 - f2
        if test["test"] == T_TEST:
            t = (d1 + d2) / abs(d1 - d2)
            assert test["t"] == pytest.approx(t, rel=1e-6)
            assert test["p"] == pytest.approx(1 - 2 / math.pi * math.atan(abs(t)), rel=1e-6)
        else:
            assert test["test"] == SIGN_TEST and test["p"] == (1.0 if d1 == 0 else 0.5)
        assert test["significant"] == (test["p"] < 0.05)
        assert f"p = {test['p']:.3g})" in end["verdict"]
    # the confidence of the scores: each seed's numbers are its run's final evaluation (metrics.json)
    faces, people = (setting["budgets"]["tiny"] for setting in written["settings"])
    confidence = faces["confidence"]
    assert confidence["kind"] == "keypoints" and confidence["threshold"] == 0.1
    for arm, data in faces["arms"].items():
        finals = [json.loads((out / run / "metrics.json").read_text())["final"] for run in data["runs"]]
        for name in ("auroc", "spearman", "ece"):
            assert confidence["measures"][name]["arms"][arm]["values"] == [f[f"confidence/{name}"] for f in finals]
        ece = [f["confidence/ece"] for f in finals]
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in ece)
        assert confidence["measures"]["ece"]["arms"][arm]["stats"]["mean"] == pytest.approx(sum(ece) / 2)
        pooled = confidence["reliability"][arm]
        assert sum(pooled["bins"]["count"]) == sum(f["confidence/num_keypoints"] for f in finals) > 0
    (ece_test,) = confidence["measures"]["ece"]["comparisons"]
    (e1, e2), (g1, g2) = (confidence["measures"]["ece"]["arms"][arm]["values"] for arm in ("mse", "focal"))
    assert ece_test["differences"] == pytest.approx([e1 - g1, e2 - g2])
    assert people["confidence"]["kind"] is None  # multi-instance maps: keypoint AP, no per-keypoint score measure


def test_the_miniature_ablation_writes_its_report_and_valid_pngs(miniature):
    out, results = miniature
    report_text = (out / "report.md").read_text()
    for setting in results["settings"]:
        block = setting["budgets"]["tiny"]
        assert block["early"]["verdict"] in report_text and block["end"]["verdict"] in report_text
        for name in block["plots"].values():
            image = cv2.imread(str(out / name))
            assert image is not None and image.shape[0] > 100 and image.shape[1] > 100, name
            assert f"]({name})" in report_text
    faces = results["settings"][0]["budgets"]["tiny"]["confidence"]
    assert "#### Confidence of the scores (final evaluation)" in report_text and "**Score to threshold:**" in report_text
    for arm in ("mse", "focal"):
        ece = faces["measures"]["ece"]["arms"][arm]["stats"]
        assert f"| {ece['mean']:.4f} ± {ece['std']:.4f} | [{ece['ci95'][0]:.4f}, {ece['ci95'][1]:.4f}] |" in report_text
        plot = faces["reliability"][arm]["plot"]
        assert plot == f"synthetic_faces_tiny_reliability_{arm}.png" and f"[diagram]({plot})" in report_text
        image = cv2.imread(str(out / plot))
        assert image is not None and image.shape[0] > 200
    assert "##### ECE (lower is better): paired differences" in report_text
    assert "Not measured here: 0 of the 4 runs recorded confidence measures (this mode measures none)." in report_text
    for heading in ("The answer per budget", "Paired differences",
                    "Correction for multiple comparisons: none (one comparison).", "Convergence: steps until nme ≤",
                    "per decoding refinement", "Learning rate: per arm, the mean holdout metric of 2 seeds"):
        assert heading in report_text
    assert (out / "synthetic_faces" / "tiny" / "focal" / "seed1" / "metrics.jsonl").is_file()
    assert (out / "synthetic_faces" / "tiny" / "focal" / "seed1.json").is_file()


def test_a_bottom_up_ablation_compares_radius_policies_by_oks_ap_without_heatmap_decoders(tmp_path):
    """Three arms on people_bottomup in miniature: OKS AP is the metric, the p-values are Holm-
    adjusted over the three pairs, and no per-decoder table is written (the bottom-up model
    regresses its sub-pixel offsets)."""
    threads = torch.get_num_threads()
    try:
        results = ablate("people_bottomup", tmp_path, arms=["focal", "focal_centernet", "focal_fixed"],
                         budget=Budget(seeds=2, lr_factors=(1.0,), sweep_fraction=0.5, holdout=4, val_samples=4,
                                       overrides={"bottomup": {**TINY, "data.input_size": [64, 64]}}),
                         device="cpu", log=lambda line: None,
                         overrides=["data.num_workers=0", "train.threads=1", "train.checkpoint_every=100"])
    finally:
        torch.set_num_threads(threads)
    (setting,) = results["settings"]
    end = setting["budgets"]["custom"]["end"]
    assert (setting["mode"], setting["metric"]) == ("bottomup", "oks_ap")
    assert all(arm["refine"] == {} for arm in setting["budgets"]["custom"]["arms"].values())
    assert len(end["comparisons"]) == 3 and "effects" not in end
    # Holm over three pairs: the smallest p times 3, the next times 2, the largest times 1, kept monotone
    ps = sorted(test["p"] for test in end["comparisons"])
    adjusted = sorted(test["p_adjusted"] for test in end["comparisons"])
    expected = [min(1.0, 3 * ps[0])]
    expected.append(max(expected[0], min(1.0, 2 * ps[1])))
    expected.append(max(expected[1], min(1.0, ps[2])))
    assert adjusted == pytest.approx(expected)
    report_text = (tmp_path / "report.md").read_text()
    assert "per decoding refinement" not in report_text and "Holm" in report_text
    # the person scores' worth: each seed's OKS AP ranked by them against ranked by chance, from metrics.json
    confidence = setting["budgets"]["custom"]["confidence"]
    assert confidence["kind"] == "people" and len(confidence["measures"]["ranking_gain"]["comparisons"]) == 3
    for arm, data in setting["budgets"]["custom"]["arms"].items():
        finals = [json.loads((tmp_path / run / "metrics.json").read_text())["final"] for run in data["runs"]]
        assert confidence["ranking"][arm]["ranked"]["values"] == [f["oks_ap"] for f in finals] == data["final"]
        assert confidence["ranking"][arm]["unranked"]["values"] == [f["confidence/oks_ap_unranked"] for f in finals]
        assert confidence["measures"]["ranking_gain"]["arms"][arm]["values"] == pytest.approx(
            [f["oks_ap"] - f["confidence/oks_ap_unranked"] for f in finals])
    assert "| arm | OKS AP ranked | OKS AP unranked | gain [95% CI] |" in report_text


def _quick_curve(spec, step, steps):
    """NME falling from 0.4 to 0.1 over a run, lowest at lr 0.005 (by 0.01 per factor e away), 0.003
    higher per seed, 0.01 lower with focal."""
    lr, seed = _override(spec, "train.lr"), _override(spec, "train.seed") or 0
    focal = _override(spec, "loss.name") == "focal"
    return 0.1 + 0.3 * (1 - step / steps) + 0.01 * abs(math.log(lr / 0.005)) + 0.003 * seed - 0.01 * focal


def test_the_quick_mode_runs_from_the_command_line_with_the_quick_budget(stubbed, tmp_path, capsys):
    """``heatmapnet ablate --quick --design recipes`` exactly as a user types it (the runs stubbed;
    the miniature trains for real): both built-in settings, each run with the quick budget's small
    model of its mode, 80 steps evaluated every 16, 2 seeds, sweep runs of 40 steps."""
    fake = stubbed(_quick_curve)
    out = tmp_path / "quick"
    assert main(["ablate", "--quick", "--design", "recipes", "--device", "cpu", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [b["name"] for b in results["budgets"]] == ["quick"]
    assert [s["name"] for s in results["settings"]] == ["synthetic_faces", "synthetic_people"]
    report_text = (out / "report.md").read_text()
    sizes = {"synthetic_faces": ([64, 64], 16), "synthetic_people": ([96, 96], 8)}
    for setting in results["settings"]:
        block = setting["budgets"]["quick"]
        assert block["steps"] == 80 and block["early"]["step"] == 16 and block["end"]["verdict"] in report_text
        assert sorted(block["arms"]) == ["focal", "mse"]
        for arm in block["arms"].values():
            assert arm["seeds"] == [0, 1] and arm["lr"] == pytest.approx(0.005)  # bracketed by the extension
            assert [c["steps"] for c in arm["curves"]] == [[16, 32, 48, 64, 80]] * 2
        mine = [spec for spec in fake.specs if f"/{setting['name']}/" in str(spec.run_dir)]
        for spec in mine:
            assert _override(spec, "model.backbone") == "mobilenetv3_small_050"
            assert (_override(spec, "data.input_size"), _override(spec, "train.batch_size")) == sizes[setting["name"]]
        swept = sorted({_override(spec, "train.steps") for spec in mine if "/sweep/" in str(spec.run_dir)})
        assert swept == [40]
        # 2 arms x (3 rates x 2 sweep seeds + 2 seeds)
        assert len(mine) == 16 and sorted({_override(spec, "train.steps") for spec in mine}) == [40, 80]
    assert "report.md" in capsys.readouterr().out
