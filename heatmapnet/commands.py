"""The ``heatmapnet`` commands (:mod:`heatmapnet.cli` sends every command line here except
``predict`` on an ONNX model, which needs no PyTorch).

A user's error (a config, data, checkpoint or run directory that cannot be used) is one line,
``heatmapnet COMMAND: what is wrong``, and exit status 2; ``--debug`` shows its traceback
instead. Any other exception is a bug and keeps its traceback.

A run stopped by SIGTERM or SIGINT (:class:`heatmapnet.stopping.StoppedBySignal`) is one line on
rank 0, ``heatmapnet COMMAND: stopped by SIGTERM at step N ... Resume with: heatmapnet ...``, and
exit status 128 + the signal's number (143, 130), as a shell reports a process the signal ended."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from .ablate import add_ablate_parser
from .codec import HeatmapCodec
from .config import DEFAULT_CONFIG, add_override_argument
from .data.readers import InvalidAnnotationError
from .decode import REFINEMENTS
from .engine import NonFiniteLossError
from .errors import UserError
from .stopping import StoppedBySignal
from .bench import add_bench_parser
from .diagnose import add_diagnose_parser
from .export import add_export_parser
from .predict import add_predict_parser
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


#: what the command line reports in one line (exit status 2): the input is wrong, not the program.
#: The readers' :class:`InvalidAnnotationError` names the file, record and field; the OS errors
#: name the path (a missing file, a folder given for a file, no permission); a run stopped by a
#: non-finite loss says where it can resume from and with which setting.
USER_ERRORS = (UserError, InvalidAnnotationError, NonFiniteLossError, FileNotFoundError, FileExistsError,
               IsADirectoryError, NotADirectoryError, PermissionError)
DEBUG_HELP = "show the traceback of an error in the input instead of its one-line message"


def run_directory(args: argparse.Namespace) -> str:
    """``--out``, else ``runs/CONFIG_NAME``."""
    return args.out or os.path.join("runs", Path(args.config or DEFAULT_CONFIG).stem)


def run_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine import train_from_config

    config = load_config(args.config, args.set)
    out = run_directory(args)
    summary = train_from_config(config, out, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
        print(f"run written to {out}")
    return 0


def train_resume_command(args: argparse.Namespace, stopped: StoppedBySignal) -> str:
    """The command that goes on with a stopped ``heatmapnet train``: the same config, overrides and
    run directory, with ``--resume RUN_DIR/last.pt``; a stopped pretrain stage resumes by itself,
    so the command is then the one that was run."""
    out = run_directory(args)
    words = ["heatmapnet", "train"] + ([args.config] if args.config else [])
    words += (["--set", *args.set] if args.set else []) + ["--out", out]
    if stopped.checkpoint is not None and Path(stopped.checkpoint) == Path(out) / "last.pt":
        words += ["--resume", str(stopped.checkpoint)]
    elif args.resume:
        words += ["--resume", args.resume]
    return shlex.join(words)


def report_stop(args: argparse.Namespace, stopped: StoppedBySignal) -> int:
    """Rank 0's one line for a run stopped by a signal, with the command that resumes it (the
    command's ``resume_command(args, stopped)``); the exit status 128 + the signal's number."""
    if int(os.environ.get("RANK", "0")) == 0:
        message = " ".join(str(stopped).split())
        resume = getattr(args, "resume_command", None)
        if resume is not None:
            message += f" Resume with: {resume(args, stopped)}"
        print(f"heatmapnet {args.command}: {message}", file=sys.stderr, flush=True)
    return stopped.exit_code  # signals stay deferred until the process exits (a launcher's SIGTERM cannot cut it)


def run_check(args: argparse.Namespace) -> int:
    """The pre-flight check alone: its summary, then exit status 2 with the first problem if any."""
    from .config import load_config
    from .preflight import run_preflight

    config = load_config(args.config, args.set, validate=False)  # the report lists bad values with the rest
    out = run_directory(args)
    report = run_preflight(config, out, create_run_directory=False)
    print(f"heatmapnet check {args.config or DEFAULT_CONFIG} (run directory {out}):")
    print(report.summary(), flush=True)
    report.raise_for_problems(others="listed above")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .config import load_config
    from .predict import RELIABILITY_KEY, RELIABILITY_PLOT, evaluate_checkpoint
    from .preflight import check_config

    config = load_config(args.config, args.set)
    # an unknown name or option is one line here, not a crash mid-evaluation; a coco-scheme config
    # without training annotations evaluates with the checkpoint's own scheme
    check_config(config, with_scheme=config.data.scheme != "coco" or bool(config.data.train.ann_file))
    summary = evaluate_checkpoint(config, args.checkpoint, args.out)
    print(json.dumps(summary["metrics"], indent=2))
    written = (f"metrics.json, predictions.json and {RELIABILITY_PLOT}" if RELIABILITY_KEY in summary["metrics"]
               else "metrics.json and predictions.json")
    print(f"{written} written to {args.out}")
    return 0


def _add_config_arguments(parser: argparse.ArgumentParser, config_required: bool) -> None:
    parser.add_argument("config", nargs=None if config_required else "?",
                        help="a YAML file or a name in configs/" + ("" if config_required else
                                                                    f" (default: {DEFAULT_CONFIG})"))
    add_override_argument(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heatmapnet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model; writes the run, checkpoints and metrics.json")
    _add_config_arguments(train, config_required=False)
    train.add_argument("--out", help="run directory (default: runs/CONFIG_NAME)")
    train.add_argument("--resume", metavar="CHECKPOINT", help="continue from a last.pt exactly where it stopped")
    train.set_defaults(handler=run_train, resume_command=train_resume_command)
    check = commands.add_parser("check", help="pre-flight: validate the config, read every annotation, decode every "
                                              "image, test the run directory; print a summary (exit 2 on problems)")
    _add_config_arguments(check, config_required=False)
    check.add_argument("--out", help="the run directory to test (default: runs/CONFIG_NAME); nothing is created")
    check.set_defaults(handler=run_check)
    evaluate = commands.add_parser("eval", help="evaluate a checkpoint; writes metrics.json and predictions.json")
    _add_config_arguments(evaluate, config_required=True)
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--out", required=True)
    evaluate.set_defaults(handler=run_eval)
    add_predict_parser(commands)
    add_export_parser(commands)
    add_viz_parser(commands)
    add_ablate_parser(commands)
    add_bench_parser(commands)
    add_diagnose_parser(commands)
    demo = commands.add_parser("demo", help="render targets for random points, decode them, print the error")
    demo.add_argument("--input-size", type=int, default=128)
    demo.add_argument("--stride", type=int, default=4)
    demo.add_argument("--instances", type=int, default=64)
    demo.add_argument("--keypoints", type=int, default=17)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=run_demo)
    for command in commands.choices.values():  # also after the command: heatmapnet train ... --debug
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser



def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = argv  # what was run, for a resume command
    try:
        return args.handler(args)
    except StoppedBySignal as stopped:  # not an error: the scheduler's stop, --debug or not
        return report_stop(args, stopped)
    except USER_ERRORS as error:
        if args.debug:
            raise
        message = " ".join(str(error).split())  # one line, whatever the message held
        print(f"heatmapnet {args.command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
