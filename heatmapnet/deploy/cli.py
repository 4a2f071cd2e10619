"""The ``predict`` command's arguments, shared by ``heatmapnet predict`` (either backend) and
``python -m heatmapnet.deploy predict``, the same command for installs without PyTorch (ONNX
models only: ``--backend onnx --model FILE.onnx``)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..errors import UserError
from .errors import DeployError
from .runner import run_predictions

BACKENDS = ("torch", "onnx")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_predict_arguments(parser: argparse.ArgumentParser, backends: Sequence[str] = BACKENDS) -> None:
    """The arguments every ``predict`` takes (the PyTorch backend adds --checkpoint and --device)."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, or one video file")
    parser.add_argument("--backend", choices=list(backends),
                        help="torch: a checkpoint run by PyTorch; onnx: a `heatmapnet export` file run by onnxruntime "
                             "(default: the one whose model is given)")
    parser.add_argument("--model", metavar="ONNX", help="a file written by `heatmapnet export` (--backend onnx)")
    parser.add_argument("--boxes", help="json mapping an image path (or a video's frame number) to its [[x, y, w, h], "
                                        "...] boxes (top-down models; default: the whole image)")
    parser.add_argument("--out", help="output json (default: print)")
    parser.add_argument("--render", metavar="PATH",
                        help="draw the keypoints: a folder for images, an .mp4 (mp4v) or .avi (MJPG) file for a video")
    parser.add_argument("--batch-size", type=_positive_int, default=16,
                        help="images (crops) per forward pass (default 16)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (default 0: its own choice)")


def chosen_backend(args: argparse.Namespace) -> str:
    """``--backend``, or the one whose model was given (--checkpoint: torch, --model: onnx)."""
    checkpoint = getattr(args, "checkpoint", None)
    if args.backend is None:
        if (checkpoint is None) == (args.model is None):
            raise DeployError("give --checkpoint PT (PyTorch) or --model FILE.onnx (onnxruntime), one of them")
        return "torch" if checkpoint is not None else "onnx"
    if args.backend == "onnx" and args.model is None:
        raise DeployError("--backend onnx needs --model FILE.onnx (a file written by `heatmapnet export`)")
    if args.backend == "torch" and checkpoint is None:
        raise DeployError("--backend torch needs --checkpoint PT")
    return args.backend


def predict_with(predictor, args: argparse.Namespace) -> int:
    """Run ``predict`` with a built predictor and print what was written."""
    lines = run_predictions(predictor, args.inputs, args.boxes, args.out, args.render, args.batch_size)
    stream = sys.stdout if args.out is not None else sys.stderr  # printed json keeps stdout to itself
    for line in lines:
        print(line, file=stream)
    return 0


def run_onnx_predict(args: argparse.Namespace) -> int:
    """``predict --backend onnx``: needs onnxruntime, numpy and OpenCV only."""
    from .runtime import OnnxPredictor

    chosen_backend(args)
    return predict_with(OnnxPredictor(args.model, args.threads), args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m heatmapnet.deploy",
                                     description="heatmapnet without PyTorch: predict with an exported ONNX model.")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="keypoints for images, folders or a video from an ONNX export")
    add_predict_arguments(predict, backends=("onnx",))
    predict.set_defaults(handler=run_onnx_predict)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (UserError, FileNotFoundError) as error:
        print(f"heatmapnet {args.command}: {error}", file=sys.stderr)
        return 2
