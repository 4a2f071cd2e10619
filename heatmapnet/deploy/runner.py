"""``predict`` over many inputs: images and folders, or one video, with either backend.

Inputs are read in groups of ``batch_size`` images (frames); each group's crops go through the
predictor together, ``batch_size`` at a time, behind a progress bar (tqdm, where it is installed
and stderr is a terminal). It streams: a group's pixels are dropped once predicted and each entry
goes to the json file as it is made (:class:`.output.JsonStream`), so memory does not grow with
the number of images or frames. The json holds one entry per image (``{"image_path",
"predictions"}``, a list) or per frame (``{"video", "fps", "width", "height", "frames": [{"frame",
"time_s", "predictions"}, ...], "frame_count", "missing_frames"}``: the frames predicted, and the
numbers of those that could not be decoded, a damaged or cut stream's); it is strict JSON (a
non-finite number is an error, never a ``NaN`` written, and then nothing is written).
``render``: a folder that receives each image annotated under its own name, or for a video the
annotated video's path. A predictor is anything with ``scheme``, ``mode_name`` and
``predict_frames(frames, batch_size)``: :class:`heatmapnet.predict.Predictor` (PyTorch) or
:class:`.runtime.OnnxPredictor`; its ``exif_orientation`` (the model's ``data.exif_orientation``)
says how image files are read (:func:`heatmapnet.imageio.read_image`).
"""
from __future__ import annotations

import sys
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence

import cv2

from .errors import DeployError
from .framing import Frame, check_boxes_in_image, image_size_of
from .output import JsonStream
from .modes import MODE_SPECS, draw_entry
from .sources import (VideoFrames, VideoOutput, as_pixels, boxes_for_frames, boxes_for_images, exif_orientation_of,
                      first_video, image_paths, load_boxes, render_paths)


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


def _refuse_boxes_of_whole_image_models(predictor, boxes_path: Optional[str]) -> None:
    if boxes_path and MODE_SPECS.get(predictor.mode_name).whole_image:
        raise DeployError(f"--boxes {boxes_path}: this is a {predictor.mode_name} model; it takes whole images "
                          "and no boxes")


def predict_images(predictor, inputs: Sequence[str], boxes_path: Optional[str] = None, out: Optional[str] = None,
                   render: Optional[str] = None, batch_size: int = 16) -> int:
    """Images and folders -> one json entry per image, written to ``out`` (default: printed) as
    they are predicted; ``render``: a folder for the annotated images. Returns the number of images."""
    _refuse_boxes_of_whole_image_models(predictor, boxes_path)
    paths = image_paths(inputs)
    orientation = exif_orientation_of(predictor)  # the model's data.exif_orientation
    boxes = boxes_for_images(load_boxes(boxes_path), paths, boxes_path) if boxes_path else {}
    targets = render_paths(paths, render) if render else {}
    with JsonStream(out) as written:
        if render:
            Path(render).mkdir(parents=True, exist_ok=True)
        for group in _groups(_progress(paths, len(paths), "image"), batch_size):
            frames = [_checked_boxes(Frame(as_pixels(path, orientation), boxes.get(path), path)) for path in group]
            for path, frame, predictions in zip(group, frames, predictor.predict_frames(frames, batch_size)):
                written.add({"image_path": path, "predictions": predictions})
                if render and not cv2.imwrite(targets[path], draw_entry(frame.pixels, predictions,
                                                                        predictor.mode_name, predictor.scheme)):
                    raise DeployError(f"--render {render}: could not write {targets[path]}")
        written.close()
    return written.count


def predict_video(predictor, path: str, boxes_path: Optional[str] = None, out: Optional[str] = None,
                  render: Optional[str] = None, batch_size: int = 16) -> dict:
    """A video -> one json entry per frame that decodes, written to ``out`` (default: printed) as
    they are predicted, and the numbers of those that do not (``missing_frames``); ``render``: the
    annotated video's path. Returns the json's members but its frames, and ``damage``: the line
    naming the missing frames (None when there are none)."""
    _refuse_boxes_of_whole_image_models(predictor, boxes_path)
    video = VideoFrames(path)
    info = video.info
    boxes = boxes_for_frames(load_boxes(boxes_path), info.frame_count, boxes_path) if boxes_path else {}
    head = {"video": path, "fps": info.fps, "width": info.width, "height": info.height}
    with JsonStream(out, head, "frames") as written:
        writer = VideoOutput(render, info.fps, (info.width, info.height)) if render else None
        try:
            for group in _groups(_progress(video, info.frame_count or None, "frame"), batch_size):
                frames = [_checked_boxes(Frame(pixels, boxes.get(index), f"{path} frame {index}"))
                          for index, pixels in group]
                for (index, _), frame, predictions in zip(group, frames,
                                                          predictor.predict_frames(frames, batch_size)):
                    written.add({"frame": index, "time_s": index / info.fps, "predictions": predictions})
                    if writer is not None:
                        writer.write(draw_entry(frame.pixels, predictions, predictor.mode_name, predictor.scheme))
        finally:
            if writer is not None:
                writer.close()
        if not written.count and video.missing:
            raise DeployError(f"{path}: OpenCV opens it but decodes none of the {len(video.missing)} frames it states")
        tail = {"frame_count": written.count, "missing_frames": video.missing}
        written.close(tail)
    return {**head, **tail, "damage": video.damage()}


def run_predictions(predictor, inputs: Sequence[str], boxes_path: Optional[str] = None, out: Optional[str] = None,
                    render: Optional[str] = None, batch_size: int = 16) -> List[str]:
    """The ``predict`` command's work: a video or images, as the inputs are. Returns the lines that
    say what was written (none for json that was printed)."""
    video = first_video(inputs)
    damage = []
    if video is not None:
        written = predict_video(predictor, video, boxes_path, out, render, batch_size)
        what, rendered = f"{written['frame_count']} frames", f"annotated video written to {render}"
        damage = [written["damage"]] if written["damage"] else []
    else:
        count = predict_images(predictor, inputs, boxes_path, out, render, batch_size)
        what, rendered = f"{count} images", f"annotated images written to {render}"
    written_to = [f"keypoints of {what} written to {out}"] if out is not None else []
    return damage + written_to + ([rendered] if render else [])
