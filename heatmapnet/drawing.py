"""Drawing primitives: keypoints drawn sub-pixel, heatmaps laid exactly over the pixels they
describe, legends, titles and grids. numpy and OpenCV only (no torch, configs or checkpoints);
the ``heatmapnet viz`` command that feeds them samples and predictions is :mod:`heatmapnet.viz`.

Coordinates follow :mod:`heatmapnet.codec`: 0-based pixels whose integer values are pixel
centres. A stride-s heatmap pixel j covers input pixels [j*s, (j+1)*s), so its centre lies at
input x = j*s + (s-1)/2. Two things follow here:

- Heatmaps go onto the image with ``cv2.warpAffine`` and the explicit heatmap -> input matrix
  ``[[s, 0, (s-1)/2], [0, s, (s-1)/2]]`` (:func:`stride_matrix`), the same mapping the codec
  decodes with, so a peak is drawn exactly where the decoder puts the keypoint. The matrix
  also holds when the image is not exactly ``s`` times the map (a display magnified by f is
  the same mapping with stride ``s*f``), where a resize "to the image size" would stretch.
  (``cv2.resize`` with dsize = s x the map size happens to share this half-pixel convention;
  the mappings it does NOT share, ``x_in = s * x_heat`` and ``align_corners=True``
  interpolation, put the peak (s-1)/2 px, resp. a position-dependent amount, off; see the
  tests.)
- Points and lines are drawn with OpenCV's fixed-point ``shift`` (1/16 px), so a keypoint at
  x = 10.3 is drawn centred on 10.3, not rounded to 10. Images shown larger are magnified by
  an integer factor f with the same convention (input x -> x*f + (f-1)/2).

All drawing functions take and return uint8 BGR images (new arrays; inputs are not modified).
Arrays may also be CPU tensors (anything with ``.detach()``); this module never imports torch.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

GT_COLOR = (80, 220, 60)  # BGR: green filled circles
PRED_COLOR = (60, 60, 255)  # BGR: red crosses
ERROR_COLOR = (0, 215, 255)  # BGR: yellow line from a ground-truth point to its prediction
TEXT_COLOR = (255, 255, 255)
BAR_COLOR = (40, 40, 40)
BOX_COLOR = (255, 200, 0)  # BGR: light blue frames of top-down boxes
#: BGR colours of people by rank (a person's rank r gets PERSON_PALETTE[r % len]): distinct hues,
#: bright enough to read over an image and a heatmap
PERSON_PALETTE = ((255, 140, 0), (0, 165, 255), (60, 200, 60), (60, 60, 240), (220, 80, 220), (255, 255, 0),
                  (0, 230, 230), (180, 120, 255), (255, 0, 140), (150, 255, 150))
NEUTRAL_COLOR = (210, 210, 210)  # BGR: legend markers that stand for every person's colour
DEFAULT_COLORMAP = "turbo"
MAX_AUTO_PANELS = 20  # up to this many keypoints: one panel each; more: an even spread of ...
SPREAD_PANELS = 15  # ... this many

_SHIFT = 4  # fixed-point bits for OpenCV drawing: coordinates in 1/16 px
_ONE = 1 << _SHIFT
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.4
_BAR_HEIGHT = 16


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
def _numpy(array) -> np.ndarray:
    """An array of ``array``; a torch tensor (duck-typed, torch is not imported) is detached and
    copied to the CPU first."""
    if hasattr(array, "detach"):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _as_bgr(image) -> np.ndarray:
    """A uint8 BGR copy of a uint8 (H, W) or (H, W, 3) image."""
    image = _numpy(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    return image.copy()


def _fixed(value: float) -> int:
    return int(round(float(value) * _ONE))


def _fixed_point(point) -> tuple:
    return _fixed(point[0]), _fixed(point[1])


def _stride_of(codec_or_stride) -> float:
    stride = getattr(codec_or_stride, "stride", codec_or_stride)
    stride = float(stride)
    if stride <= 0:
        raise ValueError(f"stride must be > 0, got {stride}")
    return stride


def stride_matrix(stride: float) -> np.ndarray:
    """The 2x3 affine matrix heatmap pixels -> input pixels of a stride-``stride`` map (also
    image -> magnified image for an integer display factor): x_in = s * x_heat + (s-1)/2."""
    offset = (stride - 1.0) / 2.0
    return np.array([[stride, 0.0, offset], [0.0, stride, offset]], dtype=np.float64)


def magnify_points(points, factor: float) -> np.ndarray:
    """Points of an image -> the same points on that image magnified by ``factor``."""
    return np.asarray(points, dtype=np.float64) * factor + (factor - 1.0) / 2.0


def magnify_image(image, factor: int) -> np.ndarray:
    """A uint8 BGR image magnified by an integer ``factor``, bilinear, on the pixel-centre
    convention of :func:`magnify_points`."""
    image = _as_bgr(image)
    factor = int(factor)
    if factor == 1:
        return image
    height, width = image.shape[:2]
    return cv2.warpAffine(image, stride_matrix(factor), (width * factor, height * factor),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def display_factor(width: int, height: int, target: int) -> int:
    """The integer magnification that brings the longer side nearest ``target`` px (at least 1)."""
    return max(1, int(round(target / max(width, height))))


def input_image(tensor) -> np.ndarray:
    """A network input (3, H, W), RGB normalised with IMAGE_MEAN/IMAGE_STD -> uint8 BGR (H, W, 3)."""
    from .data.transforms import IMAGE_MEAN, IMAGE_STD

    array = _numpy(tensor).astype(np.float32)
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) input tensor, got shape {array.shape}")
    rgb = array.transpose(1, 2, 0) * IMAGE_STD + IMAGE_MEAN
    bgr = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)[:, :, ::-1]
    return np.ascontiguousarray(bgr)


@functools.lru_cache(maxsize=16)
def _colormap_lut(colormap) -> np.ndarray:
    """(256, 3) uint8 BGR colours of a matplotlib colormap name or an OpenCV COLORMAP_* int."""
    if isinstance(colormap, (int, np.integer)):
        return cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], int(colormap))[:, 0, :]
    import matplotlib

    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise ValueError(f"unknown colormap {colormap!r}") from None
    rgb = cmap(np.linspace(0.0, 1.0, 256))[:, :3]
    return np.ascontiguousarray(np.round(rgb[:, ::-1] * 255.0).astype(np.uint8))


def _text_width(text: str) -> int:
    return cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0]


def _fit_text(text: str, width: int) -> str:
    """``text`` shortened with '..' to fit ``width`` px."""
    if _text_width(text) <= width:
        return text
    while text and _text_width(text + "..") > width:
        text = text[:-1]
    return text + ".."


def _put_text(image: np.ndarray, text: str, origin, color=TEXT_COLOR) -> None:
    cv2.putText(image, text, (int(origin[0]), int(origin[1])), _FONT, _FONT_SCALE, color, 1, cv2.LINE_AA)


def titled(panel: np.ndarray, title: str) -> np.ndarray:
    """``panel`` with a dark bar above it holding ``title`` (shortened to fit)."""
    bar = np.full((_BAR_HEIGHT, panel.shape[1], 3), BAR_COLOR, np.uint8)
    _put_text(bar, _fit_text(title, panel.shape[1] - 6), (3, _BAR_HEIGHT - 4))
    return np.vstack([bar, panel])


def tile(panels: Sequence[np.ndarray], columns: int, gap: int = 2, background=(255, 255, 255)) -> np.ndarray:
    """Panels of equal size in a grid, row by row, ``gap`` px apart."""
    if not panels:
        raise ValueError("no panels to tile")
    height, width = panels[0].shape[:2]
    columns = max(1, min(int(columns), len(panels)))
    rows = math.ceil(len(panels) / columns)
    grid = np.full((rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap, 3), background, np.uint8)
    for n, panel in enumerate(panels):
        if panel.shape[:2] != (height, width):
            raise ValueError(f"panel {n} is {panel.shape[:2]}, expected {(height, width)}")
        top, left = (n // columns) * (height + gap), (n % columns) * (width + gap)
        grid[top:top + height, left:left + width] = panel
    return grid


# ----------------------------------------------------------------------------------------------
# keypoints
# ----------------------------------------------------------------------------------------------
def _draw_marker(image: np.ndarray, point, color, radius: float, marker: str, thickness: int) -> None:
    centre = _fixed_point(point)
    if marker == "circle":  # filled, with a dark rim so it reads on any background
        cv2.circle(image, centre, _fixed(radius + 1.0), (0, 0, 0), -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(image, centre, _fixed(radius), color, -1, cv2.LINE_AA, _SHIFT)
    elif marker == "cross":  # an 'x', dark-outlined
        x, y = point
        arms = [((x - radius, y - radius), (x + radius, y + radius)),
                ((x - radius, y + radius), (x + radius, y - radius))]
        for colour, width in (((0, 0, 0), thickness + 2), (color, thickness)):
            for start, end in arms:
                cv2.line(image, _fixed_point(start), _fixed_point(end), colour, width, cv2.LINE_AA, _SHIFT)
    elif marker == "ring":  # leaves what lies under the point in sight
        cv2.circle(image, centre, _fixed(radius), (0, 0, 0), thickness + 2, cv2.LINE_AA, _SHIFT)
        cv2.circle(image, centre, _fixed(radius), color, thickness, cv2.LINE_AA, _SHIFT)
    else:
        raise ValueError(f"unknown marker {marker!r}; choose circle, cross or ring")


def _instances(points, visible, name: str):
    """(K, 2) or (N, K, 2) points -> (N, K, 2) float64 and which are shown (N, K): finite, and
    ``visible`` where given."""
    points = np.asarray(_numpy(points), dtype=np.float64)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (K, 2) or (N, K, 2), got {points.shape}")
    shown = np.isfinite(points).all(axis=-1)
    if visible is not None:
        shown &= np.asarray(_numpy(visible), dtype=bool).reshape(shown.shape)
    return points, shown


def draw_keypoints(image, keypoints, visible=None, skeleton: Sequence = (), color=GT_COLOR, radius: float = 3.0,
                   marker: str = "circle", thickness: int = 1, line_color=None) -> np.ndarray:
    """``image`` with ``keypoints`` (K, 2) or (N, K, 2), in the image's pixels, drawn sub-pixel
    accurately, and the ``skeleton`` index pairs joined where both ends are visible.

    ``visible`` (K,) or (N, K) hides points (default: every point with finite coordinates);
    ``marker`` is ``circle`` (filled, for ground truth), ``cross`` (for predictions) or ``ring``.
    """
    out = _as_bgr(image)
    points, shown = _instances(keypoints, visible, "keypoints")
    line_color = color if line_color is None else line_color
    for instance, mask in zip(points, shown):
        for a, b in skeleton:
            if mask[a] and mask[b]:
                cv2.line(out, _fixed_point(instance[a]), _fixed_point(instance[b]), line_color, thickness,
                         cv2.LINE_AA, _SHIFT)
    for instance, mask in zip(points, shown):
        for point in instance[mask]:
            _draw_marker(out, point, color, radius, marker, thickness)
    return out


def draw_errors(image, ground_truth, predicted, visible=None, color=ERROR_COLOR) -> np.ndarray:
    """Thin lines from each visible ground-truth point to its prediction (both (K, 2))."""
    out = _as_bgr(image)
    truth = np.asarray(_numpy(ground_truth), dtype=np.float64).reshape(-1, 2)
    guess = np.asarray(_numpy(predicted), dtype=np.float64).reshape(-1, 2)
    shown = np.isfinite(truth).all(-1) & np.isfinite(guess).all(-1)
    if visible is not None:
        shown &= np.asarray(_numpy(visible), dtype=bool).reshape(-1)
    for a, b in zip(truth[shown], guess[shown]):
        cv2.line(out, _fixed_point(a), _fixed_point(b), color, 1, cv2.LINE_AA, _SHIFT)
    return out


def add_legend(image, entries: Sequence[tuple]) -> np.ndarray:
    """``image`` with a strip below it naming each ``(label, color, marker)`` entry (marker
    ``"none"``: the label alone); entries that do not fit are left out."""
    image = _as_bgr(image)
    strip = np.full((_BAR_HEIGHT + 4, image.shape[1], 3), BAR_COLOR, np.uint8)
    x = 6.0
    middle = strip.shape[0] / 2.0 - 0.5
    for label, color, marker in entries:
        if x + 12 + _text_width(label) > strip.shape[1]:
            break
        if marker == "none":  # a plain note
            _put_text(strip, label, (x, strip.shape[0] - 7))
            x += _text_width(label) + 14
            continue
        _draw_marker(strip, (x + 4.0, middle), color, 3.5, marker, 1)
        _put_text(strip, label, (x + 12, strip.shape[0] - 7))
        x += 12 + _text_width(label) + 14
    return np.vstack([image, strip])


GT_LEGEND = ("ground truth", GT_COLOR, "circle")
PRED_LEGEND = ("prediction", PRED_COLOR, "cross")


def draw_ground_truth_and_prediction(image, ground_truth=None, gt_visible=None, predicted=None, pred_visible=None,
                                     skeleton: Sequence = (), radius: float = 3.0, legend: bool = True,
                                     pred_skeleton: bool = True) -> np.ndarray:
    """Ground truth (green circles, skeleton) and predictions (red crosses, thin red skeleton)
    on one image, yellow lines joining matching points of one-instance (K, 2) inputs, and a
    legend strip below for what was drawn."""
    out = _as_bgr(image)
    entries = []
    one_each = ground_truth is not None and predicted is not None \
        and np.asarray(_numpy(ground_truth)).ndim == 2 and np.asarray(_numpy(predicted)).ndim == 2
    if one_each:
        both = None if gt_visible is None else np.asarray(_numpy(gt_visible), bool)
        if pred_visible is not None:
            mask = np.asarray(_numpy(pred_visible), bool)
            both = mask if both is None else both & mask
        out = draw_errors(out, ground_truth, predicted, both)
    if ground_truth is not None:
        out = draw_keypoints(out, ground_truth, gt_visible, skeleton, GT_COLOR, radius, "circle")
        entries.append(GT_LEGEND)
    if predicted is not None:
        out = draw_keypoints(out, predicted, pred_visible, skeleton if pred_skeleton else (), PRED_COLOR,
                             radius, "cross", line_color=(120, 120, 255))
        entries.append(PRED_LEGEND)
    return add_legend(out, entries) if legend and entries else out


def draw_boxes(image, boxes, factor: int = 1, color=BOX_COLOR) -> np.ndarray:
    """``image`` with a thin frame round each ``[x, y, w, h]`` box (a box's edges are pixel edges:
    from x it covers the pixels centred on x .. x+w-1). Boxes are in the pixels of the image
    before it was magnified by ``factor`` (:func:`magnify_image`)."""
    out = _as_bgr(image)
    for x, y, w, h in np.asarray(_numpy(boxes), dtype=np.float64).reshape(-1, 4):
        corners = magnify_points(np.array([[x - 0.5, y - 0.5], [x + w - 0.5, y + h - 0.5]]), factor)
        cv2.rectangle(out, _fixed_point(corners[0]), _fixed_point(corners[1]), color, 1, cv2.LINE_AA, _SHIFT)
    return out


def person_color(rank: int, palette: Sequence = PERSON_PALETTE) -> tuple:
    """The colour of the person of ``rank`` (0 = first): the palette's colours in turn."""
    if not len(palette):
        raise ValueError("the palette is empty")
    return tuple(int(c) for c in palette[int(rank) % len(palette)])


def draw_people(image, people_points, visible=None, skeleton: Sequence = (), palette: Sequence = PERSON_PALETTE,
                radius: float = 3.0, hollow=None, thickness: int = 1, marker: str = "circle") -> np.ndarray:
    """``image`` with each person of ``people_points`` (N, K, 2) (or one person, (K, 2)), in the
    image's pixels, in its own colour: person n in :func:`person_color` ``(n, palette)``, its
    ``skeleton`` joined where both ends are visible, its joints drawn sub-pixel as ``marker``
    (default a filled circle); joints where ``hollow`` (N, K) is True as rings instead (e.g.
    joints that were regressed rather than snapped to a peak). ``visible`` (N, K) hides joints
    (default: those with finite coordinates). Every skeleton is drawn before any joint."""
    out = _as_bgr(image)
    points, shown = _instances(people_points, visible, "people_points")
    rings = np.zeros(shown.shape, bool) if hollow is None else np.asarray(_numpy(hollow), bool).reshape(shown.shape)
    for rank, (person, mask) in enumerate(zip(points, shown)):
        color = person_color(rank, palette)
        for a, b in skeleton:
            if mask[a] and mask[b]:
                cv2.line(out, _fixed_point(person[a]), _fixed_point(person[b]), color, thickness, cv2.LINE_AA,
                         _SHIFT)
    for rank, (person, mask, ring) in enumerate(zip(points, shown, rings)):
        color = person_color(rank, palette)
        for point, is_ring in zip(person[mask], ring[mask]):
            _draw_marker(out, point, color, radius, "ring" if is_ring else marker, thickness)
    return out


def draw_arrows(image, starts, ends, color=PRED_COLOR, thickness: int = 1, tip_size: float = 5.0,
                outline: bool = True) -> np.ndarray:
    """``image`` with an arrow from each of ``starts`` (M, 2) to the matching ``ends`` (M, 2),
    sub-pixel accurate, in the image's pixels; the head's sides are ``tip_size`` px long (at most
    half the arrow). ``color`` is one BGR colour or one per arrow, (M, 3). Pairs with a
    non-finite end and zero-length arrows are skipped. ``outline``: a dark edge first, so the
    arrows read over a heatmap."""
    out = _as_bgr(image)
    starts = np.asarray(_numpy(starts), dtype=np.float64).reshape(-1, 2)
    ends = np.asarray(_numpy(ends), dtype=np.float64).reshape(-1, 2)
    if starts.shape != ends.shape:
        raise ValueError(f"starts {starts.shape} and ends {ends.shape} differ")
    colors = np.asarray(color)
    if colors.ndim == 1:
        colors = np.broadcast_to(colors, (len(starts), colors.shape[0]))
    if colors.shape != (len(starts), 3):
        raise ValueError(f"color must be one BGR colour or one per arrow, got shape {np.asarray(color).shape}")
    layers = (((0, 0, 0), thickness + 2), (None, thickness)) if outline else ((None, thickness),)
    for layer_color, width in layers:
        for start, end, own in zip(starts, ends, colors):
            length = float(np.hypot(*(end - start)))
            if not (np.isfinite(start).all() and np.isfinite(end).all()) or length < 1e-6:
                continue
            paint = tuple(int(c) for c in own) if layer_color is None else layer_color
            cv2.arrowedLine(out, _fixed_point(start), _fixed_point(end), paint, width, cv2.LINE_AA, _SHIFT,
                            min(0.5, tip_size / length))
    return out


def peak_rows(keypoint_type, points, num_keypoints: int) -> Tuple[np.ndarray, np.ndarray]:
    """Peaks of one image, (M,) keypoint types and (M, 2) points in the order given (best
    first), as (P, K, 2) points for :func:`draw_keypoints`: row p holds each type's (p+1)-th
    peak, NaN where a type has fewer; and their (P, K) mask. At least one row. The rows are
    not instances (a skeleton does not join them)."""
    types = np.asarray(_numpy(keypoint_type)).astype(int).reshape(-1)
    points = np.asarray(_numpy(points), dtype=np.float64).reshape(-1, 2)
    counts = np.bincount(types, minlength=num_keypoints)
    rows = max(1, int(counts.max()) if counts.size else 1)
    out = np.full((rows, num_keypoints, 2), np.nan)
    filled = np.zeros(num_keypoints, int)
    for k, point in zip(types, points):
        out[filled[k], k] = point
        filled[k] += 1
    return out, np.isfinite(out).all(-1)


# ----------------------------------------------------------------------------------------------
# heatmaps
# ----------------------------------------------------------------------------------------------
def resample_heatmap(heatmap, codec_or_stride, size: Optional[tuple] = None) -> np.ndarray:
    """A (h, w) heatmap resampled (bilinear) onto input pixels, float32 (H, W).

    ``size`` is the input's (W, H) (default ``(w*s, h*s)``). Input pixel x samples the map at
    x_heat = (x - (s-1)/2) / s, the codec's mapping: ``cv2.warpAffine`` is given the forward
    heatmap -> input matrix of :func:`stride_matrix` and inverts it itself. Beyond the outer
    heatmap-pixel centres the border values are repeated (each edge pixel covers s input px).
    """
    heatmap = np.asarray(_numpy(heatmap), dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"expected one (h, w) heatmap, got shape {heatmap.shape}")
    stride = _stride_of(codec_or_stride)
    if size is None:
        size = (int(round(heatmap.shape[1] * stride)), int(round(heatmap.shape[0] * stride)))
    return cv2.warpAffine(heatmap, stride_matrix(stride), (int(size[0]), int(size[1])),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def overlay_heatmap(image, heatmap, codec_or_stride, alpha: float = 0.5, colormap=DEFAULT_COLORMAP,
                    vmax: Optional[float] = 1.0, vmin: Optional[float] = 0.0) -> np.ndarray:
    """``image`` (H, W) with a stride-s (h, w) ``heatmap`` laid exactly over the pixels it
    describes (see :func:`resample_heatmap`).

    Values are scaled from [vmin, vmax] to [0, 1] and clipped (None: the map's own minimum,
    resp. maximum; a flat map shows nothing), then coloured with ``colormap`` (a matplotlib
    name or an OpenCV COLORMAP_* int). Each pixel is blended with opacity ``alpha * scaled``:
    the peak shows at ``alpha`` and the background leaves the image untinted. To overlay on an
    image magnified f times, pass the stride ``s * f``.
    """
    out = _as_bgr(image)
    height, width = out.shape[:2]
    values = resample_heatmap(heatmap, codec_or_stride, (width, height))
    raw = np.asarray(_numpy(heatmap), dtype=np.float32)
    low = float(raw.min()) if vmin is None else float(vmin)
    high = float(raw.max()) if vmax is None else float(vmax)
    if high - low > 1e-6:
        scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
    else:
        scaled = np.zeros_like(values)
    colours = _colormap_lut(colormap)[np.round(scaled * 255.0).astype(np.uint8)].astype(np.float32)
    weight = (alpha * scaled)[..., None]
    blended = out.astype(np.float32) * (1.0 - weight) + colours * weight
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def select_keypoints(num_keypoints: int, selection=None, names: Optional[Sequence[str]] = None,
                     limit: int = MAX_AUTO_PANELS, spread: int = SPREAD_PANELS) -> List[int]:
    """The keypoint indices that get their own heatmap panel.

    ``selection``: None (every keypoint when there are at most ``limit``, else ``spread`` of
    them evenly over the scheme, e.g. 15 of 68 face points from jaw to mouth), ``"all"``,
    or names / indices as a list or a comma-separated string.
    """
    if selection is None:
        if num_keypoints <= limit:
            return list(range(num_keypoints))
        return sorted({int(round(v)) for v in np.linspace(0, num_keypoints - 1, spread)})
    if isinstance(selection, str):
        if selection.strip().lower() == "all":
            return list(range(num_keypoints))
        selection = [part.strip() for part in selection.split(",") if part.strip()]
    lookup = {name: i for i, name in enumerate(names or ())}
    indices = []
    for item in selection:
        if isinstance(item, (int, np.integer)) or (isinstance(item, str) and item.lstrip("-").isdigit()):
            index = int(item)
            if not 0 <= index < num_keypoints:
                raise ValueError(f"keypoint index {index} out of range for {num_keypoints} keypoints")
        elif item in lookup:
            index = lookup[item]
        else:
            known = ", ".join(list(lookup)[:12]) + (", ..." if len(lookup) > 12 else "")
            raise ValueError(f"unknown keypoint {item!r}; names are: {known}")
        if index not in indices:
            indices.append(index)
    if not indices:
        raise ValueError("the keypoint selection is empty")
    return indices


def _keypoint_label(index: int, names: Optional[Sequence[str]]) -> str:
    return f"{index}:{names[index]}" if names is not None and index < len(names) else str(index)


def _points_array(points) -> Optional[np.ndarray]:
    """(K, 2) or (N, K, 2) -> (N, K, 2) float64, or None."""
    if points is None:
        return None
    array = np.asarray(_numpy(points), dtype=np.float64)
    return array[None] if array.ndim == 2 else array


def _visible_array(visible, points: Optional[np.ndarray]) -> Optional[np.ndarray]:
    if points is None:
        return None
    if visible is None:
        return np.isfinite(points).all(-1)
    return np.asarray(_numpy(visible), dtype=bool).reshape(points.shape[:2]) & np.isfinite(points).all(-1)


class _Canvas:
    """An input-resolution image magnified for display, with the matching heatmap stride."""

    def __init__(self, image, stride: float, panel_size: int):
        image = _as_bgr(image)
        self.factor = display_factor(image.shape[1], image.shape[0], panel_size)
        self.image = magnify_image(image, self.factor)
        self.stride = stride * self.factor
        self.radius = max(2.0, 0.9 * self.factor + 0.5)

    def points(self, points: Optional[np.ndarray]) -> Optional[np.ndarray]:
        return None if points is None else magnify_points(points, self.factor)

    def overlay(self, heatmap, alpha, colormap, vmax, vmin) -> np.ndarray:
        return overlay_heatmap(self.image, heatmap, self.stride, alpha, colormap, vmax, vmin)


def _mark(panel, points, visible, indices, color, marker, radius):
    """The points of channels ``indices`` (all instances) on a heatmap panel."""
    if points is None:
        return panel
    keep = np.zeros(visible.shape, bool)
    keep[:, indices] = visible[:, indices]
    return draw_keypoints(panel, points, keep, (), color, radius, marker)


def heatmap_grid(image, heatmaps, names: Optional[Sequence[str]], codec_or_stride, columns: int = 6,
                 keypoints=None, points=None, visible=None, point_marker: str = "ring", point_color=GT_COLOR,
                 panel_size: int = 200, alpha: float = 0.7, colormap=DEFAULT_COLORMAP,
                 vmax: Optional[float] = 1.0, vmin: Optional[float] = 0.0, title: str = "",
                 show_max: bool = True) -> np.ndarray:
    """One panel per selected keypoint: the input ``image`` (H, W) with that keypoint's heatmap
    overlaid, titled ``index:name`` (and the map's maximum with ``show_max``); when there are
    several keypoints, a first panel shows the maximum over all channels. ``keypoints`` selects
    the panels (see :func:`select_keypoints`; default: all up to 20, else an even spread of 15).
    Maps are coloured on [vmin, vmax] (None: each map's own minimum / maximum). ``points``
    ((K, 2) or (N, K, 2), input pixels) are marked on their own channel's panels (default: a
    ring around the point, leaving the heatmap's peak in sight). Panels are magnified to about
    ``panel_size`` px. Returns the grid, uint8 BGR.
    """
    maps = np.asarray(_numpy(heatmaps), dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"expected (K, h, w) heatmaps, got shape {maps.shape}")
    num = maps.shape[0]
    canvas = _Canvas(image, _stride_of(codec_or_stride), panel_size)
    points = canvas.points(_points_array(points))
    visible = _visible_array(visible, points)
    # a ring goes round the peak (about one heatmap pixel out), leaving the peak itself in sight
    radius = max(4.0, 0.8 * canvas.stride) if point_marker == "ring" else canvas.radius
    panels = []

    def label(text, values):
        return f"{text} {values.max():.2f}" if show_max else text

    if num > 1:
        panel = canvas.overlay(maps.max(axis=0), alpha, colormap, vmax, vmin)
        panel = _mark(panel, points, visible, list(range(num)), point_color, point_marker, radius)
        panels.append(titled(panel, label(f"all {num} (max)", maps)))
    for index in select_keypoints(num, keypoints, names):
        panel = canvas.overlay(maps[index], alpha, colormap, vmax, vmin)
        panel = _mark(panel, points, visible, [index], point_color, point_marker, radius)
        panels.append(titled(panel, label(_keypoint_label(index, names), maps[index])))
    grid = tile(panels, columns)
    return titled(grid, title) if title else grid


def target_vs_prediction(image, target, predicted, names: Optional[Sequence[str]], codec_or_stride,
                         gt_keypoints=None, gt_visible=None, pred_keypoints=None, pred_visible=None,
                         skeleton: Sequence = (), keypoints=None, panel_size: int = 160, alpha: float = 0.7,
                         colormap=DEFAULT_COLORMAP, vmax: Optional[float] = 1.0, stretch_predictions: bool = True,
                         title: str = "", pred_skeleton: bool = True,
                         groups_per_row: Optional[int] = None) -> np.ndarray:
    """Groups of three panels side by side: target map | predicted map | the image with the
    ground-truth (green circles) and predicted (red crosses) points, ``groups_per_row`` groups
    a row (default: 2 or 3, about 1200 px wide). The first group (when there are several
    keypoints) holds the maximum over all channels and every point with the skeleton; then one
    group per selected keypoint (see :func:`select_keypoints`), titled with its name and the
    predicted map's maximum. Target maps are coloured on [0, ``vmax``]; predicted maps, with
    ``stretch_predictions``, on their own [min, max] (so a weak but well-placed peak still
    shows; its value is in the title), else on [0, vmax] too. Keypoints are in input pixels, (K, 2) or
    (N, K, 2). Returns the picture, uint8 BGR, with a legend below.
    """
    target = np.asarray(_numpy(target), dtype=np.float32)
    predicted = np.asarray(_numpy(predicted), dtype=np.float32)
    if target.shape != predicted.shape or target.ndim != 3:
        raise ValueError(f"target {target.shape} and predicted {predicted.shape} must both be (K, h, w)")
    num = target.shape[0]
    canvas = _Canvas(image, _stride_of(codec_or_stride), panel_size)
    gt = canvas.points(_points_array(gt_keypoints))
    gt_shown = _visible_array(gt_visible, gt)
    pred = canvas.points(_points_array(pred_keypoints))
    pred_shown = _visible_array(pred_visible, pred)
    radius = canvas.radius

    def points_panel(indices, lines):
        panel = canvas.image
        single = gt is not None and pred is not None and gt.shape[0] == 1 and pred.shape[0] == 1
        if single:
            both = np.zeros(num, bool)
            both[indices] = gt_shown[0, indices] & pred_shown[0, indices]
            panel = draw_errors(panel, gt[0], pred[0], both)
        if gt is not None:
            keep = np.zeros(gt_shown.shape, bool)
            keep[:, indices] = gt_shown[:, indices]
            panel = draw_keypoints(panel, gt, keep, skeleton if lines else (), GT_COLOR, radius, "circle")
        if pred is not None:
            keep = np.zeros(pred_shown.shape, bool)
            keep[:, indices] = pred_shown[:, indices]
            panel = draw_keypoints(panel, pred, keep, skeleton if lines and pred_skeleton else (), PRED_COLOR,
                                   radius, "cross", line_color=(120, 120, 255))
        return panel

    rows = []
    if num > 1:
        rows.append((f"all {num} (max)", target.max(axis=0), predicted.max(axis=0), list(range(num)), True))
    for index in select_keypoints(num, keypoints, names):
        rows.append((_keypoint_label(index, names), target[index], predicted[index], [index], False))
    groups = []
    for label, truth, guess, indices, lines in rows:
        triplet = tile([canvas.overlay(truth, alpha, colormap, vmax, 0.0),
                        canvas.overlay(guess, alpha, colormap, None if stretch_predictions else vmax,
                                       None if stretch_predictions else 0.0),
                        points_panel(indices, lines)], 3)
        groups.append(titled(triplet, f"{label}   pred max {guess.max():.2f}"))
    if groups_per_row is None:
        groups_per_row = max(1 if len(groups) == 1 else 2, min(3, 1200 // groups[0].shape[1]))
    grid = add_legend(tile(groups, groups_per_row, gap=10),
                      [("each: target | prediction | points", BAR_COLOR, "none"), GT_LEGEND, PRED_LEGEND])
    return titled(grid, title) if title else grid


def write_png(path, image: np.ndarray) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
    return str(path)
