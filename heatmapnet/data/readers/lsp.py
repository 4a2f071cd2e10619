"""Leeds Sports Pose (LSP) and LSP Extended (LSPET) ``joints.mat``.

The array ``joints`` comes in two layouts, told apart by its shape:

* ``14 x 3 x N`` (LSPET, the 10,000-image extended set): rows are (x, y, visible) with
  visible = 1 for a visible joint and 0 for an invisible one. Invisible joints have meaningless
  coordinates (often 0 or negative): they get ``visible=False`` and never enter the box.
* ``3 x 14 x N`` (the original 2,000-image LSP): the README calls the third row a visibility
  flag, but it is the opposite, an *occlusion* flag: 1 = occluded, 0 = visible (the widely used
  Convolutional Pose Machines data script, for one, converts it with ``1 - joints(3,:,:)``).
  Every joint of the original LSP has a hand-placed position (occluded ones are estimated), so
  all joints get ``visible=True`` (the coordinates are meaningful, like COCO's v=1) and the flag
  goes to ``extra["occluded"]``. Pass ``occluded_as_invisible=True`` to mark occluded joints
  invisible instead.

Coordinates are used as stored, as 0-based pixel coordinates (``one_based=False``). The release
says nothing about the origin; LSPET's images were rescaled after annotation, and visible points
sit at y = 0.06 .. 0.33 on heads touching the top edge, which would lie outside a 1-based image
(its edge is at 0.5) but inside a 0-based one (edge at -0.5). Common Python pipelines also use the
values unchanged. Pass ``one_based=True`` to subtract 1 (the MATLAB convention) instead.

Image i (0-based) is ``images/im%05d.jpg % (i + 1)`` beside ``joints.mat``. The box is the tight
box of the visible joints. One record per image, one instance each; joint order as in
``datasets/lsp14.yaml``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from ...imageio import DEFAULT_EXIF_ORIENTATION
from ._common import (DEFAULT_MAX_OUTSIDE, Problems, image_sizes, make_instance, make_record,
                      size_or_raise)

LSP_JOINTS = 14


def load_joints(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(N, 14, 2) coordinates as stored, (N, 14) flags, and the layout name ("lspet" or "lsp")."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a bad file
        raise ValueError(f"{path}: cannot read as a MATLAB file: {exc}") from None
    if "joints" not in mat:
        keys = [k for k in mat if not k.startswith("__")]
        raise ValueError(f"{path}: missing field 'joints' (found {keys})")
    joints = np.asarray(mat["joints"], dtype=np.float64)
    if joints.ndim == 2:
        joints = joints[:, :, None]
    if joints.ndim != 3:
        raise ValueError(f"{path}: field 'joints' has shape {joints.shape}; expected 14x3xN or 3x14xN")
    if joints.shape[0] == LSP_JOINTS and joints.shape[1] == 3:
        layout = "lspet"
        arr = joints.transpose(2, 0, 1)  # N, 14, 3
    elif joints.shape[0] == 3 and joints.shape[1] == LSP_JOINTS:
        layout = "lsp"
        arr = joints.transpose(2, 1, 0)  # N, 14, 3
    else:
        raise ValueError(f"{path}: field 'joints' has shape {joints.shape}; expected 14x3xN (LSPET) "
                         "or 3x14xN (original LSP)")
    return arr[:, :, :2], arr[:, :, 2], layout


def read_lsp(
    path: Union[str, Path],
    *,
    image_root: Optional[Union[str, Path]] = None,
    one_based: bool = False,
    occluded_as_invisible: bool = False,
    max_outside: Optional[float] = DEFAULT_MAX_OUTSIDE,
    skip_invalid: bool = False,
    exif_orientation: str = DEFAULT_EXIF_ORIENTATION,
):
    """Read ``joints.mat`` (or the folder holding it) of LSP or LSPET; see the module doc.

    Args:
        image_root: folder holding ``im00001.jpg``...; default ``images/`` beside the mat file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "joints.mat"
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    coords, flags, layout = load_joints(path)
    root = Path(image_root) if image_root is not None else path.parent / "images"
    src = str(path)
    problems = Problems(skip_invalid, src)
    offset = 1.0 if one_based else 0.0

    n = coords.shape[0]
    image_paths = [str(root / f"im{i + 1:05d}.jpg") for i in range(n)]
    sizes = image_sizes(image_paths, exif_orientation)
    if layout == "lspet":
        visible_all = flags > 0.5
        occluded_all = None
    else:
        occluded_all = flags > 0.5
        visible_all = ~occluded_all if occluded_as_invisible else np.ones_like(occluded_all)

    records = []
    for i in range(n):
        where = f"{src}, joints[..., {i}] (image im{i + 1:05d}.jpg)"

        def build():
            width, height = size_or_raise(sizes[i], where, image_paths[i])
            extra = {"index": i, "layout": layout}
            if occluded_all is not None:
                extra["occluded"] = occluded_all[i].copy()
            inst = make_instance(coords[i] - offset, visible_all[i], width, height, where, extra=extra,
                                 max_outside=max_outside, keypoint_field="joints")
            return make_record(image_paths[i], width, height, [inst], exif_orientation=exif_orientation)
        record = problems.call(build)
        if record is not None:
            records.append(record)
    return problems.finish(records)
