"""Start a model from a heatmapnet checkpoint of any mode and any keypoint scheme (``model.init_from``).

mmpose's ``load_from`` and timm's ``pretrained`` for heatmapnet's own checkpoints:

- every tensor of the model whose name and shape match one of the checkpoint's is copied
  (backbone, neck, head; batch-norm statistics too);
- the final classifier's rows (its output channels) are mapped by **what each channel is**
  (:meth:`channel_names` of the two data modes, e.g. ``heatmap:left_knee``), so the keypoints the
  two schemes share start from their trained filters whatever their order, and a top-down
  model's keypoint heatmaps seed a bottom-up model's joint heatmaps. Where the schemes mean
  different things by "left" and "right" (``sides: person`` against ``sides: image``), a
  keypoint of a flip pair takes the row of its partner's name, which names the same point there.
  Rows with no counterpart keep their fresh initialisation;
- a tensor of another shape, or one the checkpoint lacks, is skipped and reported.

Unlike ``--resume``, nothing of the checkpoint's optimisation (optimiser, schedule, step, random
states) is taken. :func:`init_from_checkpoint` returns a :class:`TransferReport`, whose
:meth:`~TransferReport.summary` is the one line the trainer prints before step 1.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .metadata import KeypointScheme


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def names_in_source(source: KeypointScheme, target: KeypointScheme) -> Tuple[str, ...]:
    """The target scheme's keypoint names as the source scheme would name the same points: the
    same names where both mean the same by left and right; where their ``sides`` differ (the
    person's against the image's), a keypoint in one of the target's flip pairs is called by its
    partner's name (an image-left eye is the person's right eye of a face seen from the front)."""
    names = list(target.keypoint_names)
    if source.sides == target.sides:
        return tuple(names)
    partner = {a: b for a, b in target.flip_pairs} | {b: a for a, b in target.flip_pairs}
    return tuple(names[partner[i]] if i in partner else name for i, name in enumerate(names))


@dataclass(frozen=True)
class SkippedTensor:
    name: str
    reason: str  # "shape" | "not in checkpoint" | "no classifier rows match"
    detail: str = ""


@dataclass(frozen=True)
class TransferReport:
    """What :func:`init_from_checkpoint` copied into a model."""

    source: str
    sha256: str
    loaded_tensors: int
    total_tensors: int
    loaded_parameters: int  # elements of learnable parameters copied (classifier: its mapped rows)
    total_parameters: int
    rows_mapped: int  # classifier output channels taken from the checkpoint
    rows_total: int
    rows_renamed: int  # of those, taken from the flip partner's name (the schemes' sides differ)
    skipped: Tuple[SkippedTensor, ...]

    def summary(self) -> str:
        """One line: what was loaded, and what was skipped and why."""
        line = (f"model.init_from {self.source} (sha256 {self.sha256[:12]}): loaded {self.loaded_tensors} of "
                f"{self.total_tensors} tensors ({self.loaded_parameters:,} of {self.total_parameters:,} parameters); "
                f"classifier rows {self.rows_mapped} of {self.rows_total} mapped by keypoint name")
        if self.rows_renamed:
            line += f" ({self.rows_renamed} through flip pairs: the schemes' left and right differ)"
        if not self.skipped:
            return line + "; nothing skipped"
        reasons = Counter(skip.reason for skip in self.skipped)
        examples = "; ".join(f"{skip.name} {skip.detail}".strip() for skip in self.skipped[:3])
        more = f"; +{len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
        return (line + f"; skipped {len(self.skipped)} (" + ", ".join(f"{n} {r}" for r, n in reasons.items())
                + f"): {examples}{more}")


def classifier_name(model: nn.Module) -> str:
    """The module name of the model's final 1x1 classifier (``head.classifier``)."""
    target = model.head.classifier
    return next(name for name, module in model.named_modules() if module is target)


def transfer_state(model: nn.Module, source_state: Mapping[str, torch.Tensor], classifier: str,
                   source_channels: Sequence[str], target_channels: Sequence[str]) -> Dict[str, object]:
    """Copy ``source_state`` into ``model`` in place: matching names and shapes whole, the
    ``classifier``'s weight and bias by row, row t of the model taking the source row whose
    channel name equals ``target_channels[t]``. Returns the counts of a :class:`TransferReport`."""
    state = model.state_dict()
    learnable = {name for name, _ in model.named_parameters()}
    source_row = {name: row for row, name in enumerate(source_channels)}
    pairs = [(t, source_row[name]) for t, name in enumerate(target_channels) if name in source_row]
    rows = torch.tensor([t for t, _ in pairs], dtype=torch.long)
    from_rows = torch.tensor([s for _, s in pairs], dtype=torch.long)
    loaded, parameters, skipped, rows_mapped = 0, 0, [], 0
    row_tensors = {f"{classifier}.weight", f"{classifier}.bias"}
    with torch.no_grad():
        for name, tensor in state.items():
            if name not in source_state:
                skipped.append(SkippedTensor(name, "not in checkpoint"))
                continue
            source = source_state[name]
            if name in row_tensors:
                if tuple(source.shape[1:]) != tuple(tensor.shape[1:]) or source.shape[0] != len(source_channels):
                    skipped.append(SkippedTensor(name, "shape", f"(checkpoint {tuple(source.shape)}, model "
                                                               f"{tuple(tensor.shape)})"))
                    continue
                if not pairs:
                    skipped.append(SkippedTensor(name, "no classifier rows match"))
                    continue
                tensor[rows] = source[from_rows].to(tensor.dtype)
                rows_mapped = len(pairs)
                loaded += 1
                parameters += tensor[0].numel() * len(pairs) if name in learnable else 0
                continue
            if tuple(source.shape) != tuple(tensor.shape):
                skipped.append(SkippedTensor(name, "shape", f"(checkpoint {tuple(source.shape)}, model "
                                                           f"{tuple(tensor.shape)})"))
                continue
            tensor.copy_(source)  # a state_dict's tensors share the model's storage: this writes the model
            loaded += 1
            parameters += tensor.numel() if name in learnable else 0
    return {"loaded_tensors": loaded, "total_tensors": len(state), "loaded_parameters": parameters,
            "total_parameters": sum(p.numel() for p in model.parameters()), "rows_mapped": rows_mapped,
            "rows_total": len(target_channels), "skipped": tuple(skipped)}


def source_mode(checkpoint: Checkpoint):
    """The data mode the checkpoint's model was trained in (its config's ``data.mode``)."""
    from .modes import MODES

    data = checkpoint.config.get("data") if isinstance(checkpoint.config, dict) else None
    mode = data.get("mode") if isinstance(data, dict) else None
    if mode is None:
        raise CheckpointError(f"{checkpoint.path}: its config has no data.mode, so its output channels are unknown")
    try:
        return MODES.get(mode)()  # the channel names depend on the mode's kind only
    except ValueError:
        raise CheckpointError(f"{checkpoint.path}: made in data.mode {mode!r}, which this heatmapnet does not "
                              "know") from None


def read_source(path, expected_sha256: Optional[str] = None) -> Tuple[Checkpoint, str]:
    """The checkpoint at ``path`` and its SHA-256; a missing, corrupt or foreign file, or one whose
    content is not ``expected_sha256``, is a :class:`CheckpointError` naming it."""
    checkpoint = load_checkpoint(path, map_location="cpu")
    digest = file_sha256(path)
    if expected_sha256 and digest != expected_sha256.lower():
        raise CheckpointError(f"model.init_from {path}: its content's sha256 is {digest}, the config's "
                              f"model.init_from_sha256 is {expected_sha256}: another file than the one asked for")
    return checkpoint, digest


def init_from_checkpoint(model: nn.Module, mode, scheme: KeypointScheme, path,
                         expected_sha256: Optional[str] = None) -> TransferReport:
    """Start ``model`` (built for ``mode`` and ``scheme``) from the checkpoint at ``path``."""
    checkpoint, digest = read_source(path, expected_sha256)
    source_channels = source_mode(checkpoint).channel_names(checkpoint.scheme.keypoint_names)
    in_source = names_in_source(checkpoint.scheme, scheme)
    target_channels = mode.channel_names(in_source)
    counts = transfer_state(model, checkpoint.model, classifier_name(model), source_channels, target_channels)
    own = mode.channel_names(scheme.keypoint_names)
    source_set = set(source_channels)
    renamed = sum(1 for mine, theirs in zip(own, target_channels) if mine != theirs and theirs in source_set)
    if not counts["rows_mapped"]:
        renamed = 0
    return TransferReport(source=str(Path(path)), sha256=digest, rows_renamed=renamed, **counts)
