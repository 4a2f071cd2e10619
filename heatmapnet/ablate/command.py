"""``heatmapnet ablate`` on the command line: :func:`add_ablate_parser` registers it,
:func:`run_ablate` runs it."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Sequence

from .arms import ARMS, BUILTIN_SETTINGS, DEFAULT_ARMS
from .runner import ablate


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
    arms = [name for item in args.arms for name in item.split(",") if name]
    results = ablate(args.config, args.out, arms, args.seeds, "quick" if args.quick else "full", args.set,
                     args.rates, _thresholds(args.threshold))
    for setting in results["settings"]:
        print(f"verdict: {setting['verdict']}")
    print(f"report written to {Path(args.out) / 'report.md'} ({results['wall_time_s']:.0f} s)")
    return 0


def add_ablate_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``heatmapnet ablate`` on an ``add_subparsers()`` object; returns its parser."""
    parser = subparsers.add_parser(
        "ablate", help="which heatmap loss on my data? arms x seeds, with statistics, plots and a report",
        description="Trains each arm (a loss with its target) on identical data, model, steps and seeds, after a "
                    "learning-rate sweep per arm on a split held out of the training data, and writes report.md, "
                    "results.json and PNGs: mean, s.d. and 95% CI per arm, paired tests between arms (t-test; the "
                    "exact sign test where the differences are constant; p Holm-Bonferroni-adjusted with more than "
                    "two arms), metric-against-step curves, steps to a threshold and the metric per decoder. "
                    f"Without CONFIG: both built-in settings, {' and '.join(BUILTIN_SETTINGS)}.")
    parser.add_argument("config", nargs="?", help="a YAML file or a name in configs/ (default: both built-in "
                                                  "synthetic settings)")
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), metavar="ARM",
                        help=f"arms to compare (default: {' '.join(DEFAULT_ARMS)}; valid: {', '.join(ARMS)})")
    parser.add_argument("--seeds", type=int, help="seeds per arm (default: 3, with --quick 2)")
    parser.add_argument("--quick", action="store_true",
                        help="a small input, backbone and step budget, 2 seeds, a 2-rate sweep (about 2-3 minutes "
                             "for the default on 2 CPU cores; the full default takes about 10-15)")
    parser.add_argument("--rates", nargs="+", type=float, metavar="LR",
                        help="the learning rates to sweep, exactly (default: the config's train.lr times the budget's "
                             "factors, then x2 or /2 while an arm's best rate is at the edge: up to 2 more, quick 1)")
    parser.add_argument("--threshold", nargs="+", default=[], metavar="METRIC=VALUE",
                        help="the level steps-to-threshold counts to, e.g. nme=0.08 (default: the weakest arm's final "
                             "mean, relaxed by 10%%)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="dotted overrides for every arm, on top of the budget, e.g. data.mode=multi")
    parser.add_argument("--out", default="runs/ablate", help="output folder (default: runs/ablate)")
    parser.set_defaults(handler=run_ablate)
    return parser
