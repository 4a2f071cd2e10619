"""The ``heatmapnet`` command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from .ablate import add_ablate_parser
from .codec import HeatmapCodec
from .checkpoint import CheckpointError
from .config import DEFAULT_CONFIG, ConfigError
from .decode import REFINEMENTS
from .bench import add_bench_parser
from .targets import FixedSigma, RadiusSigma
from .viz import add_viz_parser


def run_demo(args: argparse.Namespace) -> int:
    """Encode random keypoints to heatmaps, decode them and print the round-trip error."""
    generator = torch.Generator().manual_seed(args.seed)
    size = args.input_size
    margin = 4.0 * args.stride  # keep DARK's +-2 heatmap-pixel stencil inside the map
    keypoints = margin + torch.rand(args.instances, args.keypoints, 2, generator=generator) * (size - 2 * margin)
    visible = torch.ones(args.instances, args.keypoints, dtype=torch.bool)
    boxes = torch.cat([keypoints.amin(1), keypoints.amax(1) - keypoints.amin(1)], dim=1)
    print(f"{args.instances} instances x {args.keypoints} keypoints on a {size}x{size} input, "
          f"stride {args.stride} ({size // args.stride}x{size // args.stride} heatmaps)")
    print(f"{'target':<44}{'refine':<9}{'mean px':>11}{'max px':>11}")
    policies = {"fixed sigma 2": FixedSigma(2.0), "radius sigma (CornerNet, exact)": RadiusSigma()}
    for policy_name, policy in policies.items():
        for exact_peak in (False, True):
            label = f"{policy_name}{', exact peak' if exact_peak else ''}"
            for refine in REFINEMENTS:
                codec = HeatmapCodec((size, size), args.stride, policy, exact_peak, refine)
                errors = _round_trip_errors(codec, keypoints, visible, boxes)
                print(f"{label:<44}{refine:<9}{errors.mean():>11.6f}{errors.max():>11.6f}")
    return 0


def _round_trip_errors(codec: HeatmapCodec, keypoints, visible, boxes) -> torch.Tensor:
    """Each instance encoded alone (one point per channel), all decoded together."""
    maps = torch.stack([codec.encode(keypoints[i:i + 1], visible[i:i + 1], boxes[i:i + 1]).heatmaps
                        for i in range(keypoints.shape[0])])
    decoded = codec.decode(maps)
    return (decoded.coordinates - keypoints).norm(dim=-1)


def run_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine import train_from_config

    config = load_config(args.config, args.set)
    out = args.out or os.path.join("runs", Path(args.config or DEFAULT_CONFIG).stem)
    summary = train_from_config(config, out, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
        print(f"run written to {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .config import load_config
    from .predict import evaluate_checkpoint

    config = load_config(args.config, args.set)
    summary = evaluate_checkpoint(config, args.checkpoint, args.out)
    print(json.dumps(summary["metrics"], indent=2))
    print(f"metrics.json and predictions.json written to {args.out}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from .predict import predict_images

    boxes = json.loads(Path(args.boxes).read_text(encoding="utf-8")) if args.boxes else None
    results = predict_images(args.checkpoint, args.images, boxes, args.device)
    text = json.dumps(results, indent=1)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"keypoints of {len(results)} images written to {args.out}")
    else:
        print(text)
    return 0


def _add_config_arguments(parser: argparse.ArgumentParser, config_required: bool) -> None:
    parser.add_argument("config", nargs=None if config_required else "?",
                        help="a YAML file or a name in configs/" + ("" if config_required else
                                                                    f" (default: {DEFAULT_CONFIG})"))
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. train.steps=200 loss.name=mse")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heatmapnet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model; writes the run, checkpoints and metrics.json")
    _add_config_arguments(train, config_required=False)
    train.add_argument("--out", help="run directory (default: runs/CONFIG_NAME)")
    train.add_argument("--resume", metavar="CHECKPOINT", help="continue from a last.pt exactly where it stopped")
    train.set_defaults(handler=run_train)
    evaluate = commands.add_parser("eval", help="evaluate a checkpoint; writes metrics.json and predictions.json")
    _add_config_arguments(evaluate, config_required=True)
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--out", required=True)
    evaluate.set_defaults(handler=run_eval)
    predict = commands.add_parser("predict", help="keypoints for images from a checkpoint, as json")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--checkpoint", required=True)
    predict.add_argument("--boxes", help="json mapping an image path to its [x, y, w, h] boxes (top-down models)")
    predict.add_argument("--out", help="output json (default: print)")
    predict.add_argument("--device", default="cpu")
    predict.set_defaults(handler=run_predict)
    add_viz_parser(commands)
    add_ablate_parser(commands)
    add_bench_parser(commands)
    demo = commands.add_parser("demo", help="render targets for random points, decode them, print the error")
    demo.add_argument("--input-size", type=int, default=128)
    demo.add_argument("--stride", type=int, default=4)
    demo.add_argument("--instances", type=int, default=64)
    demo.add_argument("--keypoints", type=int, default=17)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=run_demo)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, CheckpointError, FileNotFoundError) as error:
        print(f"heatmapnet {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
