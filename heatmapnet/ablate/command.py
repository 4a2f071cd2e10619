"""``heatmapnet ablate`` on the command line: :func:`add_ablate_parser` registers it,
:func:`run_ablate` runs it."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Dict, Sequence

from ..config import add_override_argument
from .arms import BUILTIN_SETTINGS, DEFAULT_DESIGN, DESIGNS, arm_names
from .budgets import BUDGETS, DEFAULT_BUDGET
from .report import relative_summary
from .runner import ablate
from .runs import DEVICES

LONG_STOP = BUDGETS["long"].stop


def _thresholds(items: Sequence[str]) -> Dict[str, float]:
    from ..config import ConfigError

    thresholds = {}
    for item in items:
        metric, _, value = item.partition("=")
        try:
            thresholds[metric.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--threshold {item!r} must look like METRIC=NUMBER, e.g. nme=0.08") from None
    return thresholds


def run_ablate(args: argparse.Namespace) -> int:
    arms = [name for item in args.arms or [] for name in item.split(",") if name]
    budgets = (["quick"] if args.quick else []) + list(args.budget or ([] if args.quick else [DEFAULT_BUDGET]))
    results = ablate(args.config, args.out, arms=arms or None, seeds=args.seeds, budget=budgets, overrides=args.set,
                     rates=args.rates, thresholds=_thresholds(args.threshold), design=args.design, resume=args.resume,
                     device=args.device, early_step=args.early_step, extra_steps=args.extra_steps)
    for setting in results["settings"]:
        for block in setting["budgets"].values():
            for snapshot in (block["early"], block["end"]):
                print(f"verdict: {snapshot['verdict']}")
            if "relative" in block["end"]:
                for line in relative_summary(block["end"], results["design"]):
                    print(f"noise: {setting['name']}, {block['budget']}: {line} (* = told apart from clean, Holm)")
            confidence = block["confidence"]
            if confidence["kind"] is not None:
                print(f"confidence: {setting['name']}, {block['budget']}: {confidence['answer']}")
    print(f"report written to {Path(args.out) / 'report.md'} ({results['wall_time_s']:.0f} s; "
          f"{results['runs']['trained']} runs trained, {results['runs']['reused']} reused)")
    return 0


def ablate_resume_command(args: argparse.Namespace, stopped) -> str:
    """The command that goes on with a stopped ablation: the one that was run, with ``--resume``
    (which reuses every finished run)."""
    words = [word for word in getattr(args, "command_line", None) or ["ablate"] if word != "--debug"]
    return shlex.join(["heatmapnet", *words] + ([] if args.resume else ["--resume"]))


def add_ablate_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``heatmapnet ablate`` on an ``add_subparsers()`` object; returns its parser."""
    parser = subparsers.add_parser(
        "ablate", help="which heatmap loss on my data? a designed comparison over seeds, with statistics, plots and "
                       "a report",
        description="Trains each arm of a design on identical data, model, budget and seeds, after a learning-rate "
                    "sweep per arm (picked on the mean of 2 seeds, on a split held out of the training data, extended "
                    "past an edge), and writes report.md, results.json and PNGs: per budget, who is ahead early and at "
                    "the end, with mean, s.d. and 95% CI per arm, paired tests between arms (t-test; the exact sign "
                    "test where the differences are constant; p Holm-Bonferroni-adjusted over more than one pair), a "
                    "2 x 2 design's main effects and interaction, curves, steps to a threshold and the metric per "
                    f"decoder. Without CONFIG: both built-in settings, {' and '.join(BUILTIN_SETTINGS)}.")
    parser.add_argument("config", nargs="?", help="a YAML file or a name in configs/ (default: both built-in "
                                                  "synthetic settings)")
    parser.add_argument("--design", choices=list(DESIGNS),
                        help=f"what to compare (default {DEFAULT_DESIGN}): "
                             + "; ".join(f"{name}: {design.question}" for name, design in DESIGNS.items()))
    parser.add_argument("--arms", nargs="+", metavar="ARM",
                        help=f"compare these arms instead of a design, every pair (valid: {', '.join(arm_names())})")
    parser.add_argument("--budget", nargs="+", choices=list(BUDGETS), metavar="BUDGET",
                        help=f"one or more of {', '.join(BUDGETS)} (default {DEFAULT_BUDGET}), each reported on its own. "
                             "quick: a small CPU model, 80 steps, 2 seeds; short: the same model, 250 steps, 3 seeds; "
                             "long: the config's own model, input size and schedule, each run stopped at a plateau of "
                             f"its validation metric (evaluated {LONG_STOP.evaluations} times over train.steps; no "
                             f"relative improvement above {LONG_STOP.min_delta * 100:g}%% for {LONG_STOP.patience} "
                             "evaluations), at the latest at train.steps (move the cap with --set train.steps=N)")
    parser.add_argument("--quick", action="store_true", help="the same as --budget quick")
    parser.add_argument("--seeds", type=int, help="seeds per arm (default: the budget's, 3; quick 2)")
    parser.add_argument("--rates", nargs="+", type=float, metavar="LR",
                        help="the learning rates to start each arm's sweep from (default: the config's train.lr times "
                             "the budget's factors); while an arm's best rate is at an edge, one more beyond it is "
                             "tried (x2 or /2), up to 2 more (quick 1)")
    parser.add_argument("--early-step", type=int, metavar="STEP",
                        help="the step of the early comparison (default: the first evaluation at or after 20%% of the "
                             "steps)")
    parser.add_argument("--extra-steps", type=int, metavar="N",
                        help="continuation arms: the steps each base model trains further (default: the budget's "
                             "steps)")
    parser.add_argument("--threshold", nargs="+", default=[], metavar="METRIC=VALUE",
                        help="the level steps-to-threshold counts to, e.g. nme=0.08 (default: the weakest arm's final "
                             "mean, relaxed by 10%%)")
    add_override_argument(parser, help="dotted overrides for every arm, on top of the budget, e.g. target.sigma=1")
    parser.add_argument("--out", default="runs/ablate", help="output folder (default: runs/ablate)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the runs an earlier call with this --out finished with the same settings (each "
                             "run's result is cached as <run folder>.json); runs with other settings train again")
    parser.add_argument("--device", choices=list(DEVICES), default="auto",
                        help="where to train: auto (a GPU when present, default), cpu or cuda")
    parser.set_defaults(handler=run_ablate, resume_command=ablate_resume_command)
    return parser
