"""heatmapnet ablate: its statistics against ground truth computed by hand, its report's tables,
its orchestration with the training runs stood in for, and a miniature ablation end to end."""
import json
import math

import cv2
import pytest
import torch
from scipy import stats as scipy_stats

from heatmapnet.ablate import (ARMS, BUDGETS, HOLM, SIGN_TEST, T_TEST, Budget, ablate, check_arms, compare_arms,
                               convergence_threshold, dotlist, holdout_overrides, holm, paired_test, sign_test_p,
                               steps_to_threshold, summarize, verdict)
from heatmapnet.ablate import report, runner
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
# arms, overrides, command line
# ----------------------------------------------------------------------------------------------
def test_every_arm_is_a_valid_set_of_overrides():
    for arm, overrides in ARMS.items():
        config = load_config("synthetic_faces", dotlist(overrides))
        assert config.loss.name == overrides["loss.name"], arm
        assert config.target.sigma_policy == overrides["target.sigma_policy"], arm
    assert load_config("synthetic_faces", dotlist(ARMS["focal_beta0"])).loss.focal.beta == 0.0
    for budget in BUDGETS.values():
        for overrides in budget.overrides.values():
            load_config("synthetic_people", dotlist(overrides))


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


def test_the_command_line_parses_arms_seeds_and_overrides():
    args = build_parser().parse_args(["ablate", "ytf68", "--quick", "--arms", "focal", "awing", "--seeds", "4",
                                      "--set", "data.mode=multi", "--threshold", "nme=0.08"])
    assert (args.config, args.quick, args.arms, args.seeds) == ("ytf68", True, ["focal", "awing"], 4)
    assert args.set == ["data.mode=multi"] and args.threshold == ["nme=0.08"] and args.out == "runs/ablate"


def _fake_sweep(metric_of_rate, tried):
    """A stand-in for the short training runs: the metric (lower is better) as a function of lr."""
    def sweep(config_name, overrides, rates, out, log):
        tried.extend(rates)
        return "nme", False, {lr: metric_of_rate(lr) for lr in rates}
    return sweep


@pytest.mark.parametrize("rates, optimum, diverges_from, tried_after, picked", [
    ([0.002, 0.005], 0.012, None, [0.01, 0.02], 0.01),  # best at the top edge: doubled until bracketed
    ([0.002, 0.005], 0.1, None, [0.01, 0.02], 0.02),  # still at the edge when the extra rates run out
    ([0.002, 0.005], 0.0008, None, [0.001, 0.0005], 0.001),  # bottom edge: halved
    ([0.002, 0.005, 0.01], 0.004, None, [], 0.005),  # bracketed: nothing more
    ([0.002, 0.005], 0.1, 0.01, [0.01], 0.005),  # a diverged rate ends the search upwards
])
def test_the_sweep_extends_past_an_edge_until_the_best_rate_is_bracketed(monkeypatch, rates, optimum, diverges_from,
                                                                         tried_after, picked):
    tried = []
    metric = lambda lr: None if diverges_from and lr >= diverges_from else abs(math.log(lr / optimum))
    monkeypatch.setattr(runner, "sweep_rates", _fake_sweep(metric, tried))
    _, higher, values = runner.sweep_until_bracketed("c", [], rates, 2, None, log=lambda line: None)
    assert tried == rates + tried_after
    assert runner.best_rate(values, higher) == picked
    assert list(values) == sorted(values)


# ----------------------------------------------------------------------------------------------
# end to end, in miniature
# ----------------------------------------------------------------------------------------------
TINY = {"model.backbone": "mobilenetv3_small_050", "model.head_channels": 8, "data.input_size": [32, 32],
        "train.steps": 6, "train.batch_size": 4, "train.warmup_steps": 2, "train.eval_every": 3}
TINY_BUDGET = Budget(seeds=2, lr_factors=(1.0, 2.5), sweep_fraction=0.5, holdout=6, val_samples=6,
                     overrides={"topdown": TINY, "multi": TINY})


@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
    """Both built-in settings, default arms, 2 seeds, 6 steps of 32 px: about 20 s. One torch
    thread (train.threads sets it for the process; restored after) keeps it fast on a busy machine."""
    out = tmp_path_factory.mktemp("ablate")
    threads = torch.get_num_threads()
    try:
        results = ablate(None, out, budget=TINY_BUDGET, log=lambda line: None,
                         overrides=["data.num_workers=0", "train.threads=1", "train.checkpoint_every=100"])
    finally:
        torch.set_num_threads(threads)
    return out, results


def test_the_default_ablation_covers_both_settings_with_statistics_per_arm(miniature):
    out, results = miniature
    written = json.loads((out / "results.json").read_text())
    assert written == json.loads(json.dumps(results))
    assert [s["name"] for s in written["settings"]] == ["synthetic_faces", "synthetic_people"]
    assert [(s["mode"], s["metric"]) for s in written["settings"]] == [("topdown", "nme"), ("multi", "keypoint_ap")]
    for setting in written["settings"]:
        assert list(setting["arms"]) == ["mse", "focal"]
        for arm in setting["arms"].values():
            assert len(arm["final"]) == 2 and arm["seeds"] == [0, 1]
            assert arm["stats"]["mean"] == pytest.approx(sum(arm["final"]) / 2)
            assert arm["lr"] in setting["learning_rates"] and len(arm["sweep"]["values"]) == 2
            assert arm["curves"]["steps"] == [3, 6] and len(arm["curves"]["values"]) == 2
            assert [values[-1] for values in arm["curves"]["values"]] == pytest.approx(arm["final"])
            assert set(arm["refine"]) == {"none", "quarter", "dark"}
            assert arm["refine"]["dark"]["values"] == pytest.approx(arm["final"])
            assert len(arm["steps_to_threshold"]["per_seed"]) == 2
        (test,) = setting["comparisons"]
        assert (test["first"], test["second"]) == ("mse", "focal")
        assert test["correction"] is None and test["p_adjusted"] == test["p"]  # two arms: one comparison
        # two seeds, differences d1, d2: t = (d1 + d2) / |d1 - d2| with one degree of freedom (Cauchy),
        # p = 1 - (2 / pi) arctan |t|; equal differences: the sign test, 2 * 0.5^2
        (m1, m2), (f1, f2) = setting["arms"]["mse"]["final"], setting["arms"]["focal"]["final"]
        d1, d2 = m1 - f1, m2 - f2
        if test["test"] == T_TEST:
            t = (d1 + d2) / abs(d1 - d2)
            assert test["t"] == pytest.approx(t, rel=1e-6)
            assert test["p"] == pytest.approx(1 - 2 / math.pi * math.atan(abs(t)), rel=1e-6)
        else:
            assert test["test"] == SIGN_TEST and test["p"] == (1.0 if d1 == 0 else 0.5)
        assert test["significant"] == (test["p"] < 0.05)
        assert f"p = {test['p']:.3g})" in setting["verdict"]
        assert setting["verdict"].startswith(f"{setting['name']} ({setting['metric']}, ")


def test_the_miniature_ablation_writes_its_report_and_valid_pngs(miniature):
    out, results = miniature
    report = (out / "report.md").read_text()
    for setting in results["settings"]:
        assert setting["verdict"] in report
        for name in setting["plots"].values():
            image = cv2.imread(str(out / name))
            assert image is not None and image.shape[0] > 100 and image.shape[1] > 100, name
            assert f"]({name})" in report
    for heading in ("Paired differences", "Correction for multiple comparisons: none (one comparison).",
                    "Convergence: steps until nme ≤", "per decoding refinement", "Learning rate"):
        assert heading in report
    assert (out / "synthetic_faces" / "focal" / "seed1" / "metrics.jsonl").is_file()


def test_a_bottom_up_ablation_compares_radius_policies_by_oks_ap_without_heatmap_decoders(tmp_path):
    """Three arms on people_bottomup in miniature: OKS AP is the metric, the p-values are Holm-
    adjusted over the three pairs, and no per-decoder table is written (the bottom-up model
    regresses its sub-pixel offsets)."""
    threads = torch.get_num_threads()
    try:
        results = ablate("people_bottomup", tmp_path, arms=["focal", "focal_centernet", "focal_fixed"],
                         budget=Budget(seeds=2, lr_factors=(1.0,), sweep_fraction=0.5, holdout=4, val_samples=4,
                                       overrides={"bottomup": {**TINY, "data.input_size": [64, 64]}}),
                         log=lambda line: None,
                         overrides=["data.num_workers=0", "train.threads=1", "train.checkpoint_every=100"])
    finally:
        torch.set_num_threads(threads)
    (setting,) = results["settings"]
    assert (setting["mode"], setting["metric"]) == ("bottomup", "oks_ap")
    assert all(arm["refine"] == {} for arm in setting["arms"].values())
    assert len(setting["comparisons"]) == 3
    # Holm over three pairs: the smallest p times 3, the next times 2, the largest times 1, kept monotone
    ps = sorted(test["p"] for test in setting["comparisons"])
    adjusted = sorted(test["p_adjusted"] for test in setting["comparisons"])
    expected = [min(1.0, 3 * ps[0])]
    expected.append(max(expected[0], min(1.0, 2 * ps[1])))
    expected.append(max(expected[1], min(1.0, ps[2])))
    assert adjusted == pytest.approx(expected)
    report = (tmp_path / "report.md").read_text()
    assert "per decoding refinement" not in report and "Holm" in report


@pytest.mark.slow
def test_the_quick_mode_runs_end_to_end_from_the_command_line(tmp_path, capsys):
    """``heatmapnet ablate --quick`` exactly as a user types it: both built-in settings, the quick
    budget's model, steps, seeds and sweep (about 2-3 minutes on 2 CPU cores)."""
    out = tmp_path / "quick"
    threads = torch.get_num_threads()
    try:
        assert main(["ablate", "--quick", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    results = json.loads((out / "results.json").read_text())
    assert results["budget"]["name"] == "quick" and results["seeds"] == 2
    report = (out / "report.md").read_text()
    for setting in results["settings"]:
        assert setting["steps"] == 80 and setting["verdict"] in report
        for arm in setting["arms"].values():
            assert len(arm["final"]) == 2 and arm["lr"] in [float(r) for r in arm["sweep"]["values"]]
        assert all((out / name).is_file() for name in setting["plots"].values())
    faces, people = results["settings"]
    assert (faces["name"], people["name"]) == ("synthetic_faces", "synthetic_people")
    for arm in faces["arms"].values():  # it trains: every seed's NME falls from the first evaluation to the last
        assert all(values[-1] < 0.8 * values[0] for values in arm["curves"]["values"])
    assert "report.md" in capsys.readouterr().out
