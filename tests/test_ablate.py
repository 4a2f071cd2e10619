"""heatmapnet ablate: its statistics on hand-computed inputs, and a miniature ablation end to end."""
import json
import math

import cv2
import pytest
import torch

from heatmapnet import ablate as ablate_module
from heatmapnet.ablate import (ARMS, BUDGETS, Budget, ablate, check_arms, convergence_threshold, dotlist,
                               holdout_overrides, paired_test, steps_to_threshold, summarize, verdict)
from heatmapnet.cli import build_parser, main
from heatmapnet.config import ConfigError, load_config


# ----------------------------------------------------------------------------------------------
# statistics
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
    # the two-sided p is 1 - |t| / sqrt(t^2 + 2) = 1 - sqrt(12 / 14)
    errors_a, errors_b = [0.5, 0.6, 0.7], [1.5, 2.6, 3.7]  # lower is better: a wins every pair
    test = paired_test(errors_b, errors_a, higher_is_better=False, names=("mse", "focal"))
    assert test["differences"] == pytest.approx([1.0, 2.0, 3.0])
    assert test["t"] == pytest.approx(2 * math.sqrt(3))
    assert test["p"] == pytest.approx(1 - math.sqrt(12 / 14))
    assert test["sign"] == 1
    assert test["wins"] == {"mse": 0, "focal": 3}
    assert test["better_mean"] == "focal"
    assert test["significant"] is False and test["winner"] is None  # p = 0.074 >= 0.05


def test_paired_t_test_with_one_degree_of_freedom_and_a_significant_winner():
    # differences 1, 3: t = 2 / (sqrt 2 / sqrt 2) = 2; one degree of freedom is Cauchy:
    # p = 1 - (2 / pi) arctan 2
    test = paired_test([3.0, 5.0], [2.0, 2.0], higher_is_better=True, names=("focal", "mse"))
    assert test["t"] == pytest.approx(2.0)
    assert test["p"] == pytest.approx(1 - 2 / math.pi * math.atan(2))
    assert test["better_mean"] == "focal"
    # differences 10, 11, 10, 11 (s.d. 0.577, t = 36.4): significant
    strong = paired_test([11, 12, 11, 12], [1, 1, 1, 1], higher_is_better=True, names=("focal", "mse"))
    assert strong["p"] < 1e-4 and strong["winner"] == "focal" and strong["significant"]


def test_identical_arms_differ_not_at_all_and_constant_gaps_are_certain():
    same = paired_test([0.1, 0.2], [0.1, 0.2], higher_is_better=False)
    assert same["p"] == 1.0 and same["sign"] == 0 and same["winner"] is None and same["better_mean"] is None
    constant = paired_test([3.0, 4.0, 5.0], [1.0, 2.0, 3.0], higher_is_better=False, names=("a", "b"))
    assert constant["p"] == 0.0 and constant["winner"] == "b"


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


def _setting(finals, higher):
    arms = {arm: {"final": values, "stats": summarize(values)} for arm, values in finals.items()}
    return {"name": "faces", "metric": "nme", "higher_is_better": higher, "seeds": 3, "arms": arms}


def test_the_verdict_names_the_winner_or_says_no_significant_difference():
    clear = verdict(_setting({"mse": [0.20, 0.21, 0.22], "focal": [0.10, 0.105, 0.11]}, higher=False))
    assert "focal wins" in clear and "mse" in clear
    close = verdict(_setting({"mse": [0.10, 0.12, 0.11], "focal": [0.11, 0.10, 0.105]}, higher=False))
    assert "no significant difference between focal (best mean) and mse" in close


# ----------------------------------------------------------------------------------------------
# arms, overrides, command line
# ----------------------------------------------------------------------------------------------
def test_every_arm_is_a_valid_set_of_overrides():
    for arm, overrides in ARMS.items():
        config = load_config("synthetic_faces", dotlist(overrides))
        assert config.loss.name == overrides["loss.name"], arm
        assert config.target.sigma_policy == overrides["target.sigma_policy"], arm
    assert load_config("synthetic_faces", dotlist(ARMS["focal_beta0"])).loss.beta == 0.0
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
    monkeypatch.setattr(ablate_module, "_sweep", _fake_sweep(metric, tried))
    _, higher, values = ablate_module._sweep_until_bracketed("c", [], rates, 2, None, log=lambda line: None)
    assert tried == rates + tried_after
    assert ablate_module._best_rate(values, higher) == picked
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
        mse, focal = setting["arms"]["mse"]["final"], setting["arms"]["focal"]["final"]
        assert test["differences"] == pytest.approx([m - f for m, f in zip(mse, focal)])
        assert 0.0 <= test["p"] <= 1.0
        means = {arm: data["stats"]["mean"] for arm, data in setting["arms"].items()}
        best = (max if setting["higher_is_better"] else min)(means, key=means.get)
        named = f"{best} wins" if test["winner"] else f"no significant difference between {best} (best mean)"
        assert named in setting["verdict"]


def test_the_miniature_ablation_writes_its_report_and_valid_pngs(miniature):
    out, results = miniature
    report = (out / "report.md").read_text()
    for setting in results["settings"]:
        assert setting["verdict"] in report
        for name in setting["plots"].values():
            image = cv2.imread(str(out / name))
            assert image is not None and image.shape[0] > 100 and image.shape[1] > 100, name
            assert f"]({name})" in report
    for heading in ("Paired differences", "Convergence: steps until nme ≤", "per decoding refinement",
                    "Learning rate"):
        assert heading in report
    assert (out / "synthetic_faces" / "focal" / "seed1" / "metrics.jsonl").is_file()


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
