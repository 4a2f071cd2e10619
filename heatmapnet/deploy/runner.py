"""``predict`` over many inputs: images and folders, or one video, with either backend.

Inputs are read in groups of ``batch_size`` images (frames); each group's crops go through the
predictor together, ``batch_size`` at a time, behind a progress bar (tqdm, where it is installed
and stderr is a terminal). The json holds one entry per image (``{"image_path", "predictions"}``,
a list) or per frame (``{"video", "fps", "width", "height", "frame_count", "frames": [{"frame",
"time_s", "predictions"}, ...]}``); it is strict JSON (a non-finite number is an error, never a
``NaN`` written). ``render``: a folder that receives each image annotated under its own name, or
for a video the annotated video's path. A predictor is anything with ``scheme``, ``mode_name`` and
``predict_frames(frames, batch_size)``: :class:`heatmapnet.predict.Predictor` (PyTorch) or
:class:`.runtime.OnnxPredictor`.
"""
from __future__ import annotations

import json
import sys
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence

import cv2

from .errors import DeployError
from .framing import WHOLE_IMAGE_MODES, Frame, check_boxes_in_image, image_size_of
from .render import draw_entry
from .sources import (VideoFrames, VideoOutput, boxes_for_frames, boxes_for_images, first_video, image_paths,
                      load_boxes, read_image, render_paths)


def _progress(items: Iterable, total: Optional[int], unit: str) -> Iterable:
    try:
        from tqdm import tqdm
    except ImportError:  # a deployment install without tqdm: no bar
        return items
    return tqdm(items, total=total, unit=unit, disable=None, file=sys.stderr)


def _groups(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while True:
        group = list(islice(iterator, size))
        if not group:
            return
        yield group


def _checked_boxes(frame: Frame) -> Frame:
    """``frame`` after checking that its boxes overlap its image (their format was checked on loading)."""
    if frame.boxes is not None:
        check_boxes_in_image(frame.boxes, image_size_of(frame.pixels), frame.name)
    return frame


def _write_json(payload, out: Optional[str]) -> None:
    try:
        text = json.dumps(payload, indent=1, allow_nan=False)
    except ValueError:
        raise DeployError("a prediction holds a value that is not a finite number (the model's output is not "
                          "finite); nothing written") from None
    if out is None:
        print(text)
        return
    path = Path(out)
    if path.is_dir():
        raise DeployError(f"--out {out}: is a folder; give the path of the json file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _refuse_boxes_of_whole_image_models(predictor, boxes_path: Optional[str]) -> None:
    if boxes_path and predictor.mode_name in WHOLE_IMAGE_MODES:
        raise DeployError(f"--boxes {boxes_path}: this is a {predictor.mode_name} model; it takes whole images "
                          "and no boxes")


def predict_images(predictor, inputs: Sequence[str], boxes_path: Optional[str] = None, out: Optional[str] = None,
                   render: Optional[str] = None, batch_size: int = 16) -> List[dict]:
    """Images and folders -> one json entry per image, written to ``out`` (default: printed);
    ``render``: a folder for the annotated images. Returns the entries."""
    _refuse_boxes_of_whole_image_models(predictor, boxes_path)
    paths = image_paths(inputs)
    boxes = boxes_for_images(load_boxes(boxes_path), paths, boxes_path) if boxes_path else {}
    targets = render_paths(paths, render) if render else {}
    if render:
        Path(render).mkdir(parents=True, exist_ok=True)
    entries = []
    for group in _groups(_progress(paths, len(paths), "image"), batch_size):
        frames = [_checked_boxes(Frame(read_image(path), boxes.get(path), path)) for path in group]
        for path, frame, predictions in zip(group, frames, predictor.predict_frames(frames, batch_size)):
            entries.append({"image_path": path, "predictions": predictions})
            if render and not cv2.imwrite(targets[path], draw_entry(frame.pixels, predictions, predictor.mode_name,
                                                                    predictor.scheme)):
                raise DeployError(f"--render {render}: could not write {targets[path]}")
    _write_json(entries, out)
    return entries


def predict_video(predictor, path: str, boxes_path: Optional[str] = None, out: Optional[str] = None,
                  render: Optional[str] = None, batch_size: int = 16) -> dict:
    """A video -> one json entry per frame, written to ``out`` (default: printed); ``render``: the
    annotated video's path. Returns the json."""
    _refuse_boxes_of_whole_image_models(predictor, boxes_path)
    video = VideoFrames(path)
    info = video.info
    boxes = boxes_for_frames(load_boxes(boxes_path), info.frame_count, boxes_path) if boxes_path else {}
    writer = VideoOutput(render, info.fps, (info.width, info.height)) if render else None
    frames_json = []
    try:
        for group in _groups(_progress(video, info.frame_count or None, "frame"), batch_size):
            frames = [_checked_boxes(Frame(pixels, boxes.get(index), f"{path} frame {index}"))
                      for index, pixels in group]
            for (index, _), frame, predictions in zip(group, frames, predictor.predict_frames(frames, batch_size)):
                frames_json.append({"frame": index, "time_s": index / info.fps, "predictions": predictions})
                if writer is not None:
                    writer.write(draw_entry(frame.pixels, predictions, predictor.mode_name, predictor.scheme))
    finally:
        if writer is not None:
            writer.close()
    payload = {"video": path, "fps": info.fps, "width": info.width, "height": info.height,
               "frame_count": len(frames_json), "frames": frames_json}
    _write_json(payload, out)
    return payload


def run_predictions(predictor, inputs: Sequence[str], boxes_path: Optional[str] = None, out: Optional[str] = None,
                    render: Optional[str] = None, batch_size: int = 16) -> List[str]:
    """The ``predict`` command's work: a video or images, as the inputs are. Returns the lines that
    say what was written (none for json that was printed)."""
    video = first_video(inputs)
    if video is not None:
        count = predict_video(predictor, video, boxes_path, out, render, batch_size)["frame_count"]
        what, rendered = f"{count} frames", f"annotated video written to {render}"
    else:
        count = len(predict_images(predictor, inputs, boxes_path, out, render, batch_size))
        what, rendered = f"{count} images", f"annotated images written to {render}"
    return ([f"keypoints of {what} written to {out}"] if out is not None else []) + ([rendered] if render else [])
