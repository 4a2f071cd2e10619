"""``heatmapnet ablate``: which heatmap loss should I use on my data? Answered with evidence.

A design (:data:`DESIGNS`) says which arms train and how they are compared: by default the 2 x 2
design loss {mse, focal} x target {fixed sigma, CornerNet radius}, which tells the loss's effect
apart from the target's; ``recipes`` (the two standard recipes), ``continuation`` (a model trained
with one loss, continued with either), ``sensitivity`` (the focal loss's alpha x beta) and
``noise`` (each recipe trained on jittered or left/right-swapped labels, evaluated on clean ones:
how the error grows with label noise, relative to each recipe's clean arm). Every
arm trains on identical data, model, budget and seeds, after its own learning rate was picked on
the mean of two seeds of a short sweep on a split held out of the training data and extended past
an edge, so no loss loses to a bad rate. Each budget (:data:`BUDGETS`: ``quick``, ``short``, and
``long``, which trains each run to a plateau of its validation metric) is compared early and at
the end: per arm the mean, s.d. and Student-t 95% interval over seeds, paired tests between arms
(same seed = a pair; the t-test, or the exact sign test where the differences are constant;
p-values Holm-Bonferroni-adjusted over more than one pair), a 2 x 2 design's main effects and
interaction, curves of metric against step, steps to a threshold and the metric under each
decoder. Each run also keeps its final evaluation's confidence measures (AUROC, Spearman, ECE of
the keypoint scores; bottom-up: OKS AP ranked by the person scores and by chance), which the report
summarizes and tests between arms as it does the metric (:mod:`.confidence`), saying which arm's
score is the better one to threshold, with one reliability diagram per arm (its seeds pooled).
Every finished run is cached in ``--out``; ``--resume`` continues an interrupted ablation.

The package, by job:

- :mod:`.arms`: what is compared (the arms, the designs, the built-in settings, the decoders);
- :mod:`.budgets`: how much is spent (the budgets, the plateau rule);
- :mod:`.stats`: the statistics and the verdict, pure functions of numbers (no torch);
- :mod:`.confidence`: the confidence of each arm's scores over seeds, tested with :mod:`.stats`;
- :mod:`.runs`: one training run through :class:`heatmapnet.engine.Trainer`, and its cache;
- :mod:`.runner`: learning-rate sweeps, seeds, the comparisons, the whole ablation;
- :mod:`.report`: plots, the example image and ``report.md``;
- :mod:`.command`: the ``heatmapnet ablate`` command line.
"""
from .arms import (ARMS, BUILTIN_SETTINGS, CONTINUATIONS, DEFAULT_ARMS, DEFAULT_DESIGN, DESIGNS, NOISE_ARMS,
                   NOISE_LEVELS, REFINEMENTS, Continuation, Design, Factor, NoiseLevel, arm_base, arm_overrides,
                   check_arms, dotlist, noise_arm, noise_design, resolve_design)
from .confidence import confidence_block, pool_reliability
from .budgets import BUDGETS, DEFAULT_BUDGET, Budget, StopRule, improves, plateau_index
from .command import add_ablate_parser, run_ablate
from .report import example_image, plot_curves, plot_final, predict_and_decode, write_report
from .runner import (Scores, ablate, best_rate, bracket_rates, holdout_overrides, resolve_budgets, round_rate,
                     run_budget, run_setting, validation_overrides)
from .runs import (RunCache, RunResult, RunSpec, confidence_measures, execute, init_weights, read_curve, resolve_device,
                   restore_trainer)
from .stats import (ALPHA, HOLM, SIGN_TEST, T_TEST, THRESHOLD_SLACK, compare_arms, convergence_threshold, decide,
                    direction, factorial_effects, format_p, holm, one_sample_test, paired_test, reaches,
                    relative_to_reference, sign_test_p, steps_to_threshold, summarize, verdict)

__all__ = [
    "ARMS", "BUILTIN_SETTINGS", "CONTINUATIONS", "DEFAULT_ARMS", "DEFAULT_DESIGN", "DESIGNS", "NOISE_ARMS",
    "NOISE_LEVELS", "REFINEMENTS", "Continuation", "Design", "Factor", "NoiseLevel", "arm_base", "arm_overrides",
    "check_arms", "dotlist", "noise_arm", "noise_design", "resolve_design", "confidence_block", "pool_reliability",
    "BUDGETS", "DEFAULT_BUDGET", "Budget", "StopRule", "improves", "plateau_index",
    "add_ablate_parser", "run_ablate",
    "example_image", "plot_curves", "plot_final", "predict_and_decode", "write_report",
    "Scores", "ablate", "best_rate", "bracket_rates", "holdout_overrides", "resolve_budgets", "round_rate",
    "run_budget", "run_setting", "validation_overrides",
    "RunCache", "RunResult", "RunSpec", "confidence_measures", "execute", "init_weights", "read_curve",
    "resolve_device", "restore_trainer",
    "ALPHA", "HOLM", "SIGN_TEST", "T_TEST", "THRESHOLD_SLACK", "compare_arms", "convergence_threshold", "decide",
    "direction", "factorial_effects", "format_p", "holm", "one_sample_test", "paired_test", "reaches",
    "relative_to_reference", "sign_test_p", "steps_to_threshold", "summarize", "verdict",
]
