"""Checkpoints: the one place that writes and reads them.

A checkpoint holds plain data only, so it is read with ``torch.load(..., weights_only=True)`` and
opening one that someone sent you cannot run their code:

    format       "heatmapnet-checkpoint"
    version      CHECKPOINT_VERSION
    config       the resolved run config (a dict)
    scheme       the keypoint scheme (a dict, :meth:`KeypointScheme.to_dict`)
    model        the model's state dict
    step         optimisation steps taken
    best         the best validation result so far (dict or None)
    optimizer, scheduler, rng   training state for an exact resume (absent from exported weights)

Writes are atomic (a temporary file, then a rename), so a crash, a kill or a full disk while
writing leaves the previous file as it was. Every failure to read is a :class:`CheckpointError`
whose message names the file; a failure to write (a full disk, no permission) is a
:class:`CheckpointWriteError` naming it.
"""
from __future__ import annotations

import errno
import os
import pickle
import random
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from .errors import UserError
from .metadata import KeypointScheme, scheme_from_dict

FORMAT = "heatmapnet-checkpoint"
CHECKPOINT_VERSION = 2  # 1: the first wave's files, which pickled a KeypointScheme object

PathLike = Union[str, Path]


class CheckpointError(UserError, ValueError):
    """A file that is not a readable heatmapnet checkpoint, or one that does not fit the config."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (the disk is full, the folder is not writable); the
    file it would have replaced is left as it was."""


@dataclass
class Checkpoint:
    path: str
    config: dict
    scheme: KeypointScheme
    model: dict
    step: int = 0
    best: Optional[dict] = None
    training: dict = field(default_factory=dict)  # optimizer, scheduler, rng (for --resume)

    @property
    def num_keypoints(self) -> int:
        return self.scheme.num_keypoints

    def check_fits(self, scheme: KeypointScheme) -> None:
        """Refuse a checkpoint made for another keypoint layout than ``scheme``."""
        if scheme.num_keypoints != self.scheme.num_keypoints:
            raise CheckpointError(f"{self.path}: made for {self.scheme.num_keypoints} keypoints "
                                  f"({self.scheme.name}), this config has {scheme.num_keypoints} ({scheme.name})")
        if tuple(scheme.keypoint_names) != tuple(self.scheme.keypoint_names):
            raise CheckpointError(f"{self.path}: its keypoints ({self.scheme.name}) are not this config's "
                                  f"({scheme.name}): names differ")

    def load_weights(self, model: torch.nn.Module) -> None:
        """Copy the weights into ``model``; weights of another architecture (other backbone, head or
        output count) are a :class:`CheckpointError` naming the file and the first mismatch."""
        expected = model.state_dict()
        missing = [key for key in expected if key not in self.model]
        unexpected = [key for key in self.model if key not in expected]
        reshaped = [key for key in expected if key in self.model
                    and tuple(self.model[key].shape) != tuple(expected[key].shape)]
        if missing or unexpected or reshaped:
            made_for = self.config.get("model", {}) if isinstance(self.config, dict) else {}
            example = (f"{reshaped[0]!r} is {tuple(self.model[reshaped[0]].shape)}, the model's "
                       f"{tuple(expected[reshaped[0]].shape)}" if reshaped else
                       f"{missing[0]!r} is missing" if missing else f"{unexpected[0]!r} is not in the model")
            raise CheckpointError(f"{self.path}: its weights do not fit this config's model (the checkpoint was made "
                                  f"for backbone {made_for.get('backbone')!r}, head {made_for.get('head')!r}): "
                                  f"{len(missing)} missing, {len(unexpected)} unexpected and {len(reshaped)} "
                                  f"reshaped tensors; {example}")
        model.load_state_dict(self.model)


def rng_states() -> dict:
    """Python, numpy and torch generator states as plain data."""
    return _plain_rng_states(torch.get_rng_state(), np.random.get_state(), random.getstate())


def _plain_rng_states(torch_state: torch.Tensor, numpy_state: tuple, python_state: tuple) -> dict:
    name, keys, position, has_gauss, cached = numpy_state
    version, state, gauss = python_state
    return {"torch": torch_state,
            "numpy": {"name": name, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
                      "position": int(position), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": version, "state": list(state), "gauss": gauss}}


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))


def save_checkpoint(path: PathLike, *, config: dict, scheme: KeypointScheme, model: dict, step: int,
                    best: Optional[dict] = None, training: Optional[dict] = None) -> None:
    """Write atomically (``PATH.tmp``, flushed to disk, then renamed over ``path``); ``config`` is the
    resolved config as a dict. A write that fails (a full disk: ``no space left on device writing
    PATH``) is a :class:`CheckpointWriteError` and leaves an existing ``path`` as it was."""
    path = Path(path)
    state = {"format": FORMAT, "version": CHECKPOINT_VERSION, "config": config, "scheme": scheme.to_dict(),
             "model": model, "step": int(step), "best": best, **(training or {})}
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as file:  # torch reports a failed write through a file object as the OSError
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        kept = f"; the previous {path.name} is kept" if path.exists() else ""
        if error.errno == errno.ENOSPC:
            raise CheckpointWriteError(f"no space left on device writing {path}{kept}") from None
        raise CheckpointWriteError(f"cannot write {path}: {error.strerror or error}{kept}") from None
    finally:
        if temporary.is_symlink() or temporary.exists():
            temporary.unlink()


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint not found: {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a heatmapnet checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "heatmapnet" in str(error) or _pickles_heatmapnet_objects(path):
            raise CheckpointError(
                f"{path}: a checkpoint of an older heatmapnet (format 1, with a pickled keypoint scheme); "
                "it is not opened, because unpickling it could run code. Retrain, or if you trust the file, "
                "convert it with heatmapnet.checkpoint.upgrade_checkpoint") from None
        if "Unsupported operand" in str(error):  # bytes that are no pickle: not a torch file, or cut short
            raise CheckpointError(f"{path}: cannot be read as a checkpoint (truncated, corrupt or not a torch "
                                  "file)") from None
        raise CheckpointError(f"{path}: not a heatmapnet checkpoint (it holds objects other than plain data)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        text = str(error)
        # a zip cut before its central directory: miniz's error, or EINVAL from a seek before the start
        if isinstance(error, PermissionError):
            raise CheckpointError(f"{path}: cannot be read ({error.strerror})") from None
        reason = "truncated or corrupt" if ("zip" in text or "archive" in text or "EOF" in text
                                            or isinstance(error, EOFError)
                                            or getattr(error, "errno", None) == errno.EINVAL) \
            else "truncated, corrupt or not a torch file"  # e.g. torch's "Invalid magic number"
        raise CheckpointError(f"{path}: cannot be read as a checkpoint ({reason})") from None
    except Exception:  # noqa: BLE001 - not a torch file: the legacy (non-zip) reader fails any which way
        raise CheckpointError(f"{path}: cannot be read as a checkpoint (truncated, corrupt or not a torch "
                              "file)") from None
    return _from_state(state, str(path))


def _pickles_heatmapnet_objects(path: Path) -> bool:
    """Whether the file pickles heatmapnet classes (format 1), wherever they sit: the unpickler
    stops at the first disallowed global, which in a format-1 file is numpy's RNG state."""
    list_globals = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # torch >= 2.5
    try:
        names = list_globals(str(path)) if list_globals is not None else []
    except Exception:  # noqa: BLE001 - an unreadable file is reported as not a checkpoint
        return False
    return any(name.startswith("heatmapnet.") for name in names)


def _from_state(state, where: str) -> Checkpoint:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a heatmapnet checkpoint (no '{FORMAT}' marker)")
    version = state.get("version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{where}: checkpoint version {version}, this heatmapnet reads version "
                              f"{CHECKPOINT_VERSION}")
    missing = [key for key in ("config", "scheme", "model", "step") if key not in state]
    if missing:
        raise CheckpointError(f"{where}: checkpoint lacks {missing}")
    try:
        scheme = scheme_from_dict(state["scheme"], source=f"{where} (scheme)")
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    training = {key: state[key] for key in ("optimizer", "scheduler", "rng") if key in state}
    return Checkpoint(where, state["config"], scheme, state["model"], int(state["step"]), state.get("best"), training)


def upgrade_checkpoint(old_path: PathLike, new_path: PathLike) -> Checkpoint:
    """Rewrite a format-1 checkpoint (pickled scheme) as plain data. It unpickles the old file,
    which can run code: use it only on files you trust."""
    state = torch.load(old_path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or not {"config", "model", "scheme", "step"} <= set(state):
        raise CheckpointError(f"{old_path}: not a heatmapnet checkpoint of format 1")
    scheme = state["scheme"]
    training = {key: state[key] for key in ("optimizer", "scheduler") if key in state}
    old_rng = state.get("rng")
    if isinstance(old_rng, dict) and {"torch", "numpy", "python"} <= set(old_rng):
        training["rng"] = _plain_rng_states(old_rng["torch"], old_rng["numpy"], old_rng["python"])
    save_checkpoint(new_path, config=state["config"], scheme=scheme, model=state["model"], step=state["step"],
                    best=state.get("best"), training=training)
    return load_checkpoint(new_path)
