"""The ``heatmapnet`` command line."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

import torch

from .codec import HeatmapCodec
from .decode import REFINEMENTS
from .targets import FixedSigma, RadiusSigma


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heatmapnet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
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
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
