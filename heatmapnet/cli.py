"""The ``heatmapnet`` command line.

``heatmapnet predict`` on an ONNX model (``--backend onnx``, or ``--model`` without
``--checkpoint``) runs on onnxruntime, numpy and OpenCV alone: it is sent to
:mod:`heatmapnet.deploy.cli` before anything imports PyTorch, timm or OmegaConf, so an install
without them can use it. Every other command line goes to :mod:`heatmapnet.commands`.
"""
from __future__ import annotations

import sys
from typing import List, Optional, Sequence


def wants_onnx(argv: Sequence[str]) -> bool:
    """Whether a command line is ``predict`` on an ONNX model."""
    words = [word for word in argv if word != "--debug"]
    if not words or words[0] != "predict":
        return False
    named = {word.split("=", 1)[0] for word in words}
    if "--checkpoint" in named:  # a PyTorch checkpoint (or a mix the full command explains)
        return False
    onnx = "--backend=onnx" in words or any(a == "--backend" and b == "onnx" for a, b in zip(words, words[1:]))
    return onnx or ("--model" in named and "--backend" not in named)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv: List[str] = list(sys.argv[1:] if argv is None else argv)
    if wants_onnx(argv):
        from .deploy.cli import main as onnx_main

        return onnx_main([word for word in argv if word != "--debug"])
    from .commands import main as commands_main

    return commands_main(argv)


def build_parser():
    """The whole command line's parser (imports every command's module)."""
    from .commands import build_parser as build

    return build()


if __name__ == "__main__":
    sys.exit(main())
