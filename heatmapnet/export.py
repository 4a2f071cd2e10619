"""``heatmapnet export``: a checkpoint -> one ONNX file that maps an image batch to keypoints.

The graph holds the network, its output activation, the flip test where the run's
``eval.flip_test`` asks for it, and the decoding, so the file maps normalised images
(:data:`heatmapnet.deploy.metadata.INPUT_FORMAT`) to keypoints and scores in network-input
pixels. Decoding in the graph, by data mode:

- ``topdown``: each channel's argmax (first of equal maxima), then the codec's sub-pixel step:
  ``quarter`` (HRNet's quarter pixel towards the higher neighbour) or ``dark`` (the 3x3 patch's
  log, its Taylor step; with ``eval.blur_sigma`` after DARK's Gaussian modulation of the whole
  map), then heatmap -> input pixels. DARK is all in the graph: nothing is left to the host.
- ``multi``: 3x3 max-pool suppression, the top ``max_peaks`` of all channels and positions, each
  refined as above (:meth:`HeatmapCodec.decode_instances`).
- ``bottomup``: the centre map's 3x3 local maxima and top-``max_people``, the regressed centre
  offset, size and joints read there, each joint type's top peaks above ``joint_threshold``, and
  each regressed joint snapped to the nearest peak inside its person's box and within
  ``snap_distance`` of its longer side, as :meth:`BottomUpCodec.decode` does (there with data-
  dependent shapes, here with fixed ones: the padding peaks fail every test instead of being cut
  off); ``centre_x_joints`` person scores re-rank the people in the graph too.

An ``--opset`` below what the graph needs (an operator that older opsets cannot express) is one
line naming the lowest opset that exports, found by trying each higher one in turn; one above
what torch and onnx know is refused before tracing.

The host keeps what depends on the image: cropping or letterboxing, the normalisation (mean and
std in the metadata) and the matrices back to image pixels (:mod:`heatmapnet.deploy`).

Exporter: torch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``). The dynamo
exporter, torch's default since 2.9, was tried on the same graph: it took 19 s instead of 0.8 s,
wrote the weights to a side file, and its fake tensors leaked into the constants the decoders
cache (``functools.lru_cache``), breaking later eager decoding in the same process. The traced
graph is checked on every export instead:

The check: onnxruntime runs the written file on real images (``--check-images`` of the run's
validation split, cropped or letterboxed as evaluation does; synthetic images where the split
cannot be read) and its heatmaps and decoded points are compared with PyTorch's (the same
network, then the codec's own decoder). The export fails, writing nothing, when the heatmaps
differ by more than ``--heatmap-tolerance`` (default 1e-3) or a point by more than
``--point-tolerance`` pixels (default 0.05). Where float rounding alone decides a point, it is
left out (and counted): a top-down peak on a plateau (a neighbour within :data:`heatmapnet.graphs.TIE_GAP` of it,
as undertrained models give, where the argmax and DARK's step come from near-zero differences);
ranked candidates (peaks, people) whose score lies within TIE_GAP of a neighbour's, which may
swap places. Of peaks and people only those ``predict`` reports are compared (scoring the mode's
``min_score`` or more): weaker ones are background local maxima, which a rounding difference
between two nearly equal neighbouring pixels can make or unmake. Scores of ranked candidates are
compared sorted.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import __version__
from .build import build_dataset, read_records
from .checkpoint import load_checkpoint
from .data.transforms import IMAGE_MEAN, IMAGE_STD
from .deploy.metadata import INPUT_NAME, DeployMetadata
from .errors import UserError
from .graphs import DecodingGraph
from .predict import Predictor

DEFAULT_OPSET = 17
HEATMAP_TOLERANCE = 1e-3  # activated maps, absolute
POINT_TOLERANCE = 0.05  # network-input pixels


class ExportError(UserError, ValueError):
    """An export that cannot be written, or whose file does not agree with PyTorch."""


# ----------------------------------------------------------------------------------------------
# the export and its check
# ----------------------------------------------------------------------------------------------
@dataclass
class ExportCheck:
    """onnxruntime against PyTorch on ``images`` inputs from ``source``: the largest differences."""

    source: str
    images: int
    heatmap_difference: float  # max |ONNX - PyTorch| of the activated maps
    point_difference_px: float  # max distance between matching decoded points, network-input pixels
    score_difference: float  # max |ONNX - PyTorch| of the decoded scores (sorted, for ranked candidates)
    compared: int  # decoded rows whose points were compared (keypoints; the peaks and people predict reports)
    ties: int = 0  # rows left out: a peak on a plateau, a candidate whose score ties a neighbour's (TIE_GAP)
    heatmap_tolerance: float = HEATMAP_TOLERANCE
    point_tolerance: float = POINT_TOLERANCE

    @property
    def passed(self) -> bool:
        return self.heatmap_difference <= self.heatmap_tolerance and self.point_difference_px <= self.point_tolerance

    def summary(self) -> str:
        ties = f", {self.ties} ties left out" if self.ties else ""
        return (f"onnxruntime vs PyTorch on {self.images} {self.source}: heatmaps differ by at most "
                f"{self.heatmap_difference:.2g} (tolerance {self.heatmap_tolerance:g}), points by "
                f"{self.point_difference_px:.2g} px (tolerance {self.point_tolerance:g}; {self.compared} compared"
                f"{ties}), scores by {self.score_difference:.2g}")


@dataclass
class ExportReport:
    path: str
    opset: int
    dynamic_batch: bool
    metadata: DeployMetadata
    check: Optional[ExportCheck]

    def summary(self) -> str:
        size = os.path.getsize(self.path) / 2 ** 20
        batch = "any batch size" if self.dynamic_batch else "batch 1"
        lines = [f"{self.path} written ({size:.1f} MiB, opset {self.opset}, {batch}, {self.metadata.mode}, "
                 f"{self.metadata.scheme.num_keypoints} keypoints, input {self.metadata.input_size[0]}x"
                 f"{self.metadata.input_size[1]})"]
        if self.check is not None:
            lines.append(self.check.summary())
        return "\n".join(lines)


def _onnx_modules():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ExportError("heatmapnet export needs onnx and onnxruntime: pip install 'heatmapnet[export]'") from None
    return onnx, onnxruntime


def check_inputs(config, codec, scheme, count: int, seed: int = 0) -> Tuple[torch.Tensor, str]:
    """``count`` network inputs for the check and where they came from: samples spread over the
    validation split, framed as evaluation frames them; else (a split that cannot be read here)
    smooth random images."""
    try:
        dataset = build_dataset(config, read_records(config, "val"), codec, scheme, train=False)
        indices = np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int))
        return torch.stack([dataset[int(i)]["image"] for i in indices]), "images of the validation split"
    except (UserError, OSError, ValueError) as error:
        reason = " ".join(str(error).split())[:120]
    width, height = codec.input_size
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, max(1, height // 8), max(1, width // 8), generator=generator)
    pixels = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    mean, std = torch.from_numpy(IMAGE_MEAN)[:, None, None], torch.from_numpy(IMAGE_STD)[:, None, None]
    return (pixels - mean) / std, f"synthetic images (the validation split could not be read: {reason})"


def _largest_point_difference(ours: np.ndarray, theirs: np.ndarray, kept: np.ndarray) -> float:
    """The largest distance between matching points (..., 2) (other rows, boxes: the largest
    coordinate difference) among the rows ``kept`` marks (its shape leads theirs)."""
    difference = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    per_row = np.linalg.norm(difference, axis=-1) if difference.shape[-1] == 2 else difference.max(axis=-1)
    kept = np.broadcast_to(kept.reshape(kept.shape + (1,) * (per_row.ndim - kept.ndim)), per_row.shape)
    return float(per_row[kept].max()) if kept.any() else 0.0


def _largest_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs|, equal infinities counting as equal."""
    ours, theirs = ours.astype(np.float64), theirs.astype(np.float64)
    with np.errstate(invalid="ignore"):
        difference = np.where(ours == theirs, 0.0, np.abs(ours - theirs))
    return float(difference.max()) if difference.size else 0.0


def compare_with_pytorch(session, graph: DecodingGraph, inputs: torch.Tensor, fixed_batch: Optional[int],
                         source: str, heatmap_tolerance: float, point_tolerance: float) -> ExportCheck:
    """Run ``session`` and the graph's PyTorch reference on ``inputs`` and measure the differences."""
    names = [output.name for output in session.get_outputs()]
    step = fixed_batch or 8
    ort_parts = []
    for start in range(0, inputs.shape[0], step):
        chunk = inputs[start:start + step].numpy()
        real = chunk.shape[0]
        if fixed_batch and real < step:
            chunk = np.concatenate([chunk, np.zeros((step - real,) + chunk.shape[1:], np.float32)])
        ort_parts.append([value[:real] for value in session.run(names, {INPUT_NAME: chunk})])
    ours = {name: np.concatenate([part[i] for part in ort_parts]) for i, name in enumerate(names)}
    with torch.no_grad():
        maps = graph.maps(inputs)
        theirs = dict(zip(names, [maps] + [value for value in graph.reference(maps)]))
    theirs = {name: value.numpy() for name, value in theirs.items()}
    kept, left_out = graph.settled(theirs)
    points = max(_largest_point_difference(ours[name], theirs[name], kept) for name in graph.point_outputs)
    if graph.ranked:
        scores = _largest_difference(np.sort(ours["scores"], axis=-1), np.sort(theirs["scores"], axis=-1))
    else:
        scores = _largest_difference(ours["scores"], theirs["scores"])
    return ExportCheck(source, int(inputs.shape[0]), _largest_difference(ours["heatmaps"], theirs["heatmaps"]),
                       points, scores, int(kept.sum()), int(left_out.sum()), heatmap_tolerance, point_tolerance)


def highest_opset() -> int:
    """The highest opset both torch's TorchScript exporter and the installed onnx know."""
    import onnx

    try:
        from torch.onnx._constants import ONNX_MAX_OPSET as torch_max  # no public name for it
    except ImportError:
        torch_max = DEFAULT_OPSET
    return min(int(torch_max), int(onnx.defs.onnx_opset_version()))


@contextlib.contextmanager
def _quiet_stdout():
    """File descriptor 1 sent to the null device: torch's exporter prints its whole graph there
    when it fails, where the one-line error is what the user needs."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no standard output to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _trace_to_onnx(graph: nn.Module, example: torch.Tensor, path: str, opset: int, output_names, dynamic_batch: bool):
    dynamic_axes = {name: {0: "batch"} for name in (INPUT_NAME, *output_names)} if dynamic_batch else None
    with warnings.catch_warnings(), _quiet_stdout():
        # tracing warns about Python values computed from tensors (shape checks, a NaN check), which
        # the traced graph does not need; the check below compares the file with PyTorch instead
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(graph, (example,), path, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=list(output_names), dynamic_axes=dynamic_axes, do_constant_folding=True)
        except (RuntimeError, ValueError, torch.onnx.errors.OnnxExporterError) as error:
            raise ExportError(f"torch.onnx.export failed at opset {opset}: "
                              f"{' '.join(str(error).split())[:300]}") from None


def _export_runs(graph: nn.Module, example: torch.Tensor, path: str, opset: int, output_names,
                 dynamic_batch: bool) -> None:
    """Trace the graph at ``opset`` into ``path`` and run the file once in onnxruntime: an opset
    at which torch writes operators whose types that opset does not allow (a Clip of integers
    before opset 12) traces, but no runtime loads it. An :class:`ExportError` says why it fails."""
    _trace_to_onnx(graph, example, path, opset, output_names, dynamic_batch)
    _, ort = _onnx_modules()
    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        session.run(None, {INPUT_NAME: example.numpy()})
    except Exception as error:  # noqa: BLE001 - onnxruntime's own exception types
        reason = " ".join(str(error).split())[:300] or type(error).__name__
        raise ExportError(f"onnxruntime cannot run the export at opset {opset}: {reason}") from None


def lowest_working_opset(graph: nn.Module, example: torch.Tensor, folder: Path, above: int, output_names,
                         dynamic_batch: bool) -> Optional[int]:
    """The lowest opset above ``above`` (up to :func:`highest_opset`) at which the graph exports and
    onnxruntime runs the file, or None: each is tried in turn, into a probe file in ``folder``
    that is removed again."""
    probe = folder / f".heatmapnet-opset-probe-{os.getpid()}.onnx"
    try:
        for opset in range(max(above + 1, 1), highest_opset() + 1):
            try:
                _export_runs(graph, example, str(probe), opset, output_names, dynamic_batch)
            except ExportError:
                continue
            return opset
        return None
    finally:
        if probe.exists():
            probe.unlink()


def _trace_at_opset(graph: nn.Module, example: torch.Tensor, path: Path, opset: int, output_names,
                    dynamic_batch: bool) -> None:
    """:func:`_export_runs`; where the graph needs a higher opset than ``opset`` (``--opset``), one
    line naming the lowest that works."""
    highest = highest_opset()
    if opset > highest:
        raise ExportError(f"--opset {opset}: this torch and onnx export opsets up to {highest}; export with "
                          f"--opset {highest} or lower")
    try:
        _export_runs(graph, example, str(path), opset, output_names, dynamic_batch)
    except ExportError as error:
        lowest = lowest_working_opset(graph, example, path.parent, opset, output_names, dynamic_batch)
        if lowest is None:
            raise
        reason = str(error).split(f"at opset {opset}: ", 1)[-1].split(". Please feel free", 1)[0][:200]
        raise ExportError(f"--opset {opset}: the model needs opset {lowest} or higher (the lowest that exports and "
                          f"runs; at {opset}: {reason}); export with --opset {lowest}") from None


def export_checkpoint(checkpoint_path, out, opset: int = DEFAULT_OPSET, dynamic_batch: bool = False,
                      check_images: int = 8, heatmap_tolerance: float = HEATMAP_TOLERANCE,
                      point_tolerance: float = POINT_TOLERANCE) -> ExportReport:
    """Export a checkpoint to ``out`` (see the module); ``check_images`` 0 skips the check. The
    file is written only when the check passes (else :class:`ExportError` gives the differences)."""
    onnx, ort = _onnx_modules()
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"--out {out}: is a folder; give the path of the .onnx file to write")
    loaded = load_checkpoint(checkpoint_path)
    torch_side = Predictor(loaded, "cpu")  # the PyTorch path the file must agree with
    config, scheme, codec, mode = torch_side.config, torch_side.scheme, torch_side.codec, torch_side.mode
    flip = scheme.flip_permutation if torch_side.flip_test else None
    graph = mode.graph(torch_side.model, codec, mode, flip).eval()
    metadata = DeployMetadata(scheme, torch_side.mode_name, tuple(codec.input_size),
                              tuple(float(v) for v in IMAGE_MEAN), tuple(float(v) for v in IMAGE_STD),
                              int(codec.stride), graph.decoding(), mode.padding, mode.min_score, str(checkpoint_path),
                              int(loaded.step), torch_side.exif_orientation)
    width, height = codec.input_size
    example = torch.zeros(2 if dynamic_batch else 1, 3, height, width)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    try:
        _trace_at_opset(graph, example, temporary, opset, metadata.outputs, dynamic_batch)
        written = onnx.load(str(temporary))
        for key, value in metadata.to_props().items():
            written.metadata_props.add(key=key, value=value)
        written.producer_name, written.producer_version = "heatmapnet", __version__
        written.doc_string = (f"heatmapnet {metadata.mode} model: {INPUT_NAME} -> "
                              f"{', '.join(metadata.outputs)}; see the metadata 'decoding'")
        onnx.checker.check_model(written)
        onnx.save(written, str(temporary))
        check = None
        if check_images > 0:
            session = ort.InferenceSession(str(temporary), providers=["CPUExecutionProvider"])
            inputs, source = check_inputs(config, codec, scheme, check_images)
            check = compare_with_pytorch(session, graph, inputs, None if dynamic_batch else 1, source,
                                         heatmap_tolerance, point_tolerance)
            if not check.passed:
                raise ExportError(f"{out}: not written, the ONNX model disagrees with PyTorch: {check.summary()}")
        os.replace(temporary, out)
    finally:
        if temporary.exists():
            temporary.unlink()
    return ExportReport(str(out), opset, dynamic_batch, metadata, check)


def run_export(args: argparse.Namespace) -> int:
    report = export_checkpoint(args.checkpoint, args.out, args.opset, args.dynamic_batch, args.check_images,
                               args.heatmap_tolerance, args.point_tolerance)
    print(report.summary())
    return 0


def add_export_parser(commands) -> argparse.ArgumentParser:
    """Registers ``heatmapnet export`` on an ``add_subparsers()`` object; returns its parser."""
    export = commands.add_parser(
        "export", help="a checkpoint -> an ONNX file (network, activation, decoding) for onnxruntime",
        description="Writes one ONNX file mapping normalised images to keypoints and scores in network-input pixels, "
                    "with the keypoint scheme, input size, normalisation and stride in its metadata, after checking "
                    "it against PyTorch on real images. Run it with `heatmapnet predict --backend onnx --model FILE`.")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset (default {DEFAULT_OPSET}; one the model cannot be exported at names the "
                             "lowest that works)")
    export.add_argument("--dynamic-batch", action="store_true", help="any batch size (default: batches of 1)")
    export.add_argument("--check-images", type=int, default=8,
                        help="validation images the file is checked on against PyTorch (default 8; 0: no check)")
    export.add_argument("--heatmap-tolerance", type=float, default=HEATMAP_TOLERANCE,
                        help=f"largest heatmap difference the check accepts (default {HEATMAP_TOLERANCE:g})")
    export.add_argument("--point-tolerance", type=float, default=POINT_TOLERANCE,
                        help="largest point difference in input pixels the check accepts "
                             f"(default {POINT_TOLERANCE:g})")
    export.set_defaults(handler=run_export)
    return export

