"""What an exported model says about itself: the ONNX file's ``metadata_props``.

Every value is a string; structured ones are JSON. The keys:

==================  =============================================================================
key                 value
==================  =============================================================================
``format``          ``heatmapnet-onnx`` (``format_version``: :data:`FORMAT_VERSION`)
``scheme``          the keypoint scheme as :meth:`KeypointScheme.to_dict` writes it (names, flip
                    pairs and skeleton by name, OKS sigmas, normalisers)
``keypoint_names``  the names in channel order (JSON list), for readers that are not heatmapnet
``flip_pairs``      left/right pairs as index pairs (JSON)
``skeleton``        skeleton edges as index pairs (JSON)
``mode``            the data mode (``topdown``, ``multi``, ``bottomup``; :data:`.modes.MODE_SPECS`):
                    how images are framed and read back
``input_size``      ``[width, height]`` of the network input in pixels
``input``           how an image becomes the input (:data:`INPUT_FORMAT`)
``mean``, ``std``   the RGB normalisation, JSON lists of three floats
``stride``          input pixels per heatmap pixel
``padding``         top-down only: the factor a box is grown by before it is cropped
``min_score``       multi and bottomup: an image's json lists peaks / people scoring above it
``decoding``        what the graph computes after the network and what is left to the host (JSON)
``outputs``         the graph's output names in order (JSON list; the mode's
                    :attr:`.modes.ModeSpec.outputs`)
``checkpoint``      the checkpoint it was exported from, and ``step`` its training steps
``exif_orientation`` ``apply`` or ``ignore``: how image files are read, the model's
                    ``data.exif_orientation`` (:mod:`heatmapnet.imageio`); files without it: ``apply``
==================  =============================================================================
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from ..imageio import DEFAULT_EXIF_ORIENTATION, EXIF_ORIENTATIONS
from ..metadata import KeypointScheme, scheme_from_dict
from .errors import DeployError
from .modes import MODE_SPECS, ModeSpec

FORMAT = "heatmapnet-onnx"
FORMAT_VERSION = 1
INPUT_NAME = "images"
INPUT_FORMAT = "float32 (batch, 3, height, width), RGB, (pixel / 255 - mean) / std"
@dataclass(frozen=True)
class DeployMetadata:
    """The facts a runtime needs besides the graph: the scheme, how to frame and normalise an
    image, and how to read the outputs back."""

    scheme: KeypointScheme
    mode: str
    input_size: Tuple[int, int]  # (width, height)
    mean: Tuple[float, float, float]  # RGB
    std: Tuple[float, float, float]
    stride: int
    decoding: dict = field(default_factory=dict)
    padding: Optional[float] = None  # top-down
    min_score: Optional[float] = None  # multi, bottomup
    checkpoint: str = ""
    step: int = 0
    exif_orientation: str = DEFAULT_EXIF_ORIENTATION  # how image files are read (data.exif_orientation)

    @property
    def spec(self) -> ModeSpec:
        """The data mode's torch-free half: framing, outputs, json entry, drawing."""
        return MODE_SPECS.get(self.mode)

    @property
    def outputs(self) -> Tuple[str, ...]:
        return self.spec.outputs

    def to_props(self) -> dict:
        """The ``metadata_props`` entries, key -> string."""
        names = self.scheme.keypoint_names
        props = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                 "scheme": json.dumps(self.scheme.to_dict()), "keypoint_names": json.dumps(list(names)),
                 "flip_pairs": json.dumps([list(pair) for pair in self.scheme.flip_pairs]),
                 "skeleton": json.dumps([list(edge) for edge in self.scheme.skeleton]),
                 "mode": self.mode, "input_size": json.dumps(list(self.input_size)), "input": INPUT_FORMAT,
                 "mean": json.dumps(list(self.mean)), "std": json.dumps(list(self.std)), "stride": str(self.stride),
                 "decoding": json.dumps(self.decoding), "outputs": json.dumps(list(self.outputs)),
                 "checkpoint": self.checkpoint, "step": str(self.step), "exif_orientation": self.exif_orientation}
        if self.padding is not None:
            props["padding"] = json.dumps(self.padding)
        if self.min_score is not None:
            props["min_score"] = json.dumps(self.min_score)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], where: str) -> "DeployMetadata":
        """Read the entries :meth:`to_props` wrote; errors name ``where`` (the file) and the key."""
        if props.get("format") != FORMAT:
            raise DeployError(f"{where}: not a heatmapnet ONNX export (its metadata has no format={FORMAT!r}; "
                              "make one with `heatmapnet export`)")
        version = props.get("format_version")
        if version != str(FORMAT_VERSION):
            raise DeployError(f"{where}: export format version {version}, this heatmapnet reads version "
                              f"{FORMAT_VERSION}")

        def value(key: str, optional: bool = False):
            if key not in props:
                if optional:
                    return None
                raise DeployError(f"{where}: metadata key {key!r} is missing")
            try:
                return json.loads(props[key])
            except json.JSONDecodeError:
                raise DeployError(f"{where}: metadata key {key!r} is not JSON: {props[key][:80]!r}") from None

        mode = props.get("mode")
        if mode not in MODE_SPECS:
            raise DeployError(f"{where}: metadata key 'mode' is {mode!r}; expected one of {MODE_SPECS.names()}")
        try:
            scheme = scheme_from_dict(value("scheme"), source=f"{where} (metadata key 'scheme')")
        except (TypeError, ValueError) as error:
            raise DeployError(str(error)) from None
        size, mean, std = value("input_size"), value("mean"), value("std")
        for key, numbers, count in (("input_size", size, 2), ("mean", mean, 3), ("std", std, 3)):
            if not (isinstance(numbers, list) and len(numbers) == count
                    and all(isinstance(v, (int, float)) for v in numbers)):
                raise DeployError(f"{where}: metadata key {key!r} must be a list of {count} numbers, got {numbers!r}")
        orientation = props.get("exif_orientation", DEFAULT_EXIF_ORIENTATION)
        if orientation not in EXIF_ORIENTATIONS:
            raise DeployError(f"{where}: metadata key 'exif_orientation' is {orientation!r}; expected one of "
                              f"{list(EXIF_ORIENTATIONS)}")
        return cls(scheme, mode, (int(size[0]), int(size[1])), tuple(float(v) for v in mean),
                   tuple(float(v) for v in std), int(value("stride")), value("decoding"), value("padding", True),
                   value("min_score", True), props.get("checkpoint", ""), int(props.get("step", "0")), orientation)
