"""An exported model run by onnxruntime: images -> the json entries ``predict`` writes.

:class:`OnnxPredictor` does on onnxruntime, numpy and OpenCV what :class:`heatmapnet.predict.
Predictor` does on PyTorch: it frames each image as the model's data mode says (crops of boxes,
or the whole image letterboxed; :mod:`.framing`), normalises the crops with the mean and std the
file names, runs the graph (network, activation and decoding; see :mod:`heatmapnet.export`) in
batches, maps the decoded points back to image pixels and writes each image's entry (the
mode's :meth:`.modes.ModeSpec.entry`, with :mod:`.results`). Image files are read as the
model's training read them (the export's ``exif_orientation``, :mod:`heatmapnet.imageio`). A
file exported with a fixed batch size is fed batches of that size (the last one padded).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .errors import DeployError
from .framing import Frame, image_size_of, inverse_matrices, network_inputs
from .metadata import FORMAT, INPUT_NAME, DeployMetadata
from .sources import as_pixels


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise DeployError("running an ONNX model needs onnxruntime: pip install onnxruntime") from None
    return onnxruntime


class OnnxPredictor:
    """An exported ONNX file as a function: images (with or without boxes) -> keypoints and scores
    in original image pixels, in the json layout of :class:`heatmapnet.predict.Predictor`.
    ``threads``: onnxruntime's intra-op threads (0: its default); ``providers``: its execution
    providers (default: CPU)."""

    def __init__(self, path, threads: int = 0, providers: Optional[Sequence[str]] = None):
        ort = _onnxruntime()
        self.path = str(path)
        if not Path(self.path).is_file():
            raise DeployError(f"model file not found: {self.path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(self.path, options, providers=list(providers or
                                                                                   ["CPUExecutionProvider"]))
        except Exception as error:  # noqa: BLE001 - onnxruntime's own exception types: not an ONNX file
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise DeployError(f"{self.path}: onnxruntime cannot load it as an ONNX model ({reason})") from None
        model = self.session.get_modelmeta()
        props = model.custom_metadata_map
        if props.get("format") != FORMAT and model.producer_name:  # another program's model: say whose
            raise DeployError(f"{self.path}: not a heatmapnet ONNX export but a model written by "
                              f"{model.producer_name!r} (its metadata has no format={FORMAT!r}); predict runs the "
                              "files `heatmapnet export` writes")
        self.metadata = DeployMetadata.from_props(props, self.path)
        #: how image files are read: the model's data.exif_orientation, as its training read them
        self.exif_orientation = self.metadata.exif_orientation
        graph_outputs = [output.name for output in self.session.get_outputs()]
        missing = [name for name in self.metadata.outputs if name not in graph_outputs]
        if missing:
            raise DeployError(f"{self.path}: its graph lacks the outputs {missing} a {self.metadata.mode} export has")
        batch = self.session.get_inputs()[0].shape[0]
        #: the batch size the file was exported with, or None where it takes any (--dynamic-batch)
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None

    @property
    def scheme(self):
        return self.metadata.scheme

    @property
    def mode_name(self) -> str:
        return self.metadata.mode

    def run(self, inputs: np.ndarray, batch_size: Optional[int] = None,
            names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """The graph's outputs ``names`` (default all) for normalised inputs (N, 3, H, W), run
        ``batch_size`` at a time (a fixed-batch file: its own size, the last batch padded)."""
        names = list(names or self.metadata.outputs)
        count = inputs.shape[0]
        step = self.fixed_batch or batch_size or count
        parts = []
        for start in range(0, count, step):
            chunk = np.ascontiguousarray(inputs[start:start + step], dtype=np.float32)
            real = chunk.shape[0]
            if self.fixed_batch and real < step:
                chunk = np.concatenate([chunk, np.zeros((step - real,) + chunk.shape[1:], np.float32)])
            parts.append([output[:real] for output in self.session.run(names, {INPUT_NAME: chunk})])
        return {name: np.concatenate([part[i] for part in parts]) for i, name in enumerate(names)}

    def predict_frames(self, frames: Sequence[Frame], batch_size: Optional[int] = None) -> List[List[dict]]:
        """Each frame's json entry; the crops of all frames run together, ``batch_size`` at a time."""
        metadata, spec = self.metadata, self.metadata.spec
        framed = [spec.frame(image_size_of(frame.pixels), frame.boxes, metadata.input_size, metadata.padding,
                             frame.name) for frame in frames]
        inputs = np.concatenate([network_inputs(frame.pixels, matrices, metadata.input_size, metadata.mean,
                                                metadata.std) for frame, (matrices, _) in zip(frames, framed)])
        outputs = self.run(inputs, batch_size, metadata.outputs[1:])  # every output but the heatmaps
        entries, start = [], 0
        for matrices, boxes in framed:
            rows = slice(start, start + len(matrices))
            start = rows.stop
            own = {name: values[rows] for name, values in outputs.items()}
            entries.append(spec.entry(own, inverse_matrices(matrices), boxes, metadata))
        return entries

    def __call__(self, image: Union[str, Path, np.ndarray], boxes=None) -> List[dict]:
        """One image's json entry (a path or uint8 BGR pixels)."""
        name = "image" if isinstance(image, np.ndarray) else str(image)
        return self.predict_frames([Frame(as_pixels(image, self.exif_orientation), boxes, name)])[0]
