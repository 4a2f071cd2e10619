"""``heatmapnet ablate``: which heatmap loss should I use on my data? Answered with evidence.

Each arm is a set of config overrides (:data:`ARMS`); every arm trains on identical data, model,
step budget and seeds, after its own learning rate was picked by a short sweep on a split held out
of the training data, so no loss loses to a bad rate. Per arm and setting the report gives the
final metric's mean, standard deviation and Student-t 95% interval over seeds, paired tests
between arms (same seed = a pair; the t-test, or the exact sign test where the differences are
constant; p-values Holm-Bonferroni-adjusted with more than two arms), metric-against-step curves
with the steps each seed needs to reach a stated threshold, and the final metric under each
sub-pixel decoder.

Two settings tell the effect of the size-adaptive target apart: top-down crops (every instance
scaled to one size, where the CornerNet radius is the same for all) and whole-image multi-instance
maps (people at varied sizes, where it adapts).

The package, by job:

- :mod:`.arms`: what is compared (the arms, the built-in settings, the decoders);
- :mod:`.stats`: the statistics and the verdict, pure functions of numbers (no torch);
- :mod:`.runner`: budgets, learning-rate sweeps, seeds, training through
  :class:`heatmapnet.engine.Trainer`, the whole ablation;
- :mod:`.report`: plots, the example image and ``report.md``;
- :mod:`.command`: the ``heatmapnet ablate`` command line.
"""
from .arms import ARMS, BUILTIN_SETTINGS, DEFAULT_ARMS, REFINEMENTS, check_arms, dotlist
from .command import add_ablate_parser, run_ablate
from .report import example_image, plot_curves, plot_final, predict_and_decode, write_report
from .runner import (BUDGETS, Budget, ablate, best_rate, holdout_overrides, read_curve, round_rate, run_setting,
                     seed_runs, sweep_rates, sweep_until_bracketed, train_run, validation_overrides)
from .stats import (ALPHA, HOLM, SIGN_TEST, T_TEST, THRESHOLD_SLACK, compare_arms, convergence_threshold, decide,
                    direction, format_p, holm, paired_test, reaches, sign_test_p, steps_to_threshold, summarize,
                    verdict)

__all__ = [
    "ARMS", "BUILTIN_SETTINGS", "DEFAULT_ARMS", "REFINEMENTS", "check_arms", "dotlist",
    "add_ablate_parser", "run_ablate",
    "example_image", "plot_curves", "plot_final", "predict_and_decode", "write_report",
    "BUDGETS", "Budget", "ablate", "best_rate", "holdout_overrides", "read_curve", "round_rate", "run_setting",
    "seed_runs", "sweep_rates", "sweep_until_bracketed", "train_run", "validation_overrides",
    "ALPHA", "HOLM", "SIGN_TEST", "T_TEST", "THRESHOLD_SLACK", "compare_arms", "convergence_threshold", "decide",
    "direction", "format_p", "holm", "paired_test", "reaches", "sign_test_p", "steps_to_threshold", "summarize",
    "verdict",
]
