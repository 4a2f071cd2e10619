"""The inputs of ``predict``: image files, folders of images or one video, and a boxes file.

Images are read by :mod:`heatmapnet.imageio`, the one reader of training, evaluation and viz
(torch-free): 8-bit BGR whatever the file's pixel format, the EXIF orientation applied or ignored
as the model's ``data.exif_orientation`` says. Video frames are used as OpenCV decodes them.

Folders are read one level deep, their images (by suffix) in name order; only their paths are
listed up front, the pixels are read a batch at a time as they are predicted. A video is read frame by
frame with OpenCV and an annotated one written with the codec its suffix names (``.mp4``: mp4v,
``.avi``: MJPG; both written by OpenCV's own FFmpeg build, which has no H.264 encoder).

A damaged video (a frame that cannot be decoded, a file cut short) keeps the frames that decode:
a failed read is a missing frame and reading goes on with the next, until
:data:`MAX_FAILED_READS` reads in a row fail, where the stream counts as ended; frames the
container states beyond that are missing too (:attr:`VideoFrames.missing`). Frame numbers count
reads, so they are exact where each damaged frame fails its own read (a corrupt frame, a cut
tail); damage that hides frames from OpenCV's demuxer altogether shifts the numbers after it.

A boxes file is JSON mapping an image to its list of ``[x, y, w, h]`` boxes (top-down models).
For images a key is the image's path, relative to the current directory or absolute; any
spelling of the same file matches (``a.jpg``, ``./a.jpg``, ``/data/a.jpg``, a link to it). For a
video a key is a frame number (0-based). Every key must match an input: a key that matches none
is an error, not boxes silently dropped.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .. import imageio
from ..imageio import DEFAULT_EXIF_ORIENTATION
from .errors import DeployError
from .framing import parse_boxes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Video suffixes read as videos; and the codec an annotated video of each writable suffix gets.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv")
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


def as_pixels(image: Union[str, Path, np.ndarray], exif_orientation: str = DEFAULT_EXIF_ORIENTATION) -> np.ndarray:
    """An image given as pixels (uint8 BGR, returned as it is) or as a path, read as training read it
    (:func:`heatmapnet.imageio.read_image`, under the model's ``data.exif_orientation``): a missing
    file is a FileNotFoundError, an unreadable or refused one an :class:`~heatmapnet.imageio.ImageError`
    (a user error, as the deploy command reports them), each naming it."""
    return image if isinstance(image, np.ndarray) else imageio.read_image(image, exif_orientation)


def exif_orientation_of(predictor) -> str:
    """The convention a predictor's model was trained under (``data.exif_orientation``), which its
    images are read with; ``apply`` for a predictor that does not say."""
    return str(getattr(predictor, "exif_orientation", DEFAULT_EXIF_ORIENTATION))


def is_video(path) -> bool:
    return Path(str(path)).suffix.lower() in VIDEO_SUFFIXES


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def image_paths(inputs: Sequence[str]) -> List[str]:
    """Image files as given, folders expanded to their images (name order); a path that does not
    exist is a FileNotFoundError, a folder without images a :class:`DeployError`."""
    paths = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = sorted(str(path / p.name) for p in path.iterdir() if _is_image_file(p))
            if not found:
                raise DeployError(f"{given}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif path.is_file():
            paths.append(str(given))
        else:
            raise FileNotFoundError(f"input not found: {given}")
    return paths


def same_file_key(path: str) -> str:
    """One spelling per file: the absolute, resolved, case-normalised path."""
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


def load_boxes(path) -> dict:
    """The boxes file at ``path``: a JSON object (its values are checked where they are matched)."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"boxes file not found: {path}")
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DeployError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise DeployError(f"{path}: expected a JSON object mapping an image to its [[x, y, w, h], ...] boxes, "
                          f"got a {type(raw).__name__}")
    return raw


def boxes_for_images(raw: dict, paths: Sequence[str], where: str) -> Dict[str, np.ndarray]:
    """``raw`` boxes (a boxes file) matched to ``paths``: path (as in ``paths``) -> (N, 4) boxes.
    Keys match any spelling of the same file; a key matching no input, or two keys naming one file,
    is an error."""
    by_file = {same_file_key(path): path for path in paths}
    matched: Dict[str, np.ndarray] = {}
    owner: Dict[str, str] = {}
    for key, boxes in raw.items():
        path = by_file.get(same_file_key(key))
        if path is None:
            raise DeployError(f"{where}: key {key!r} matches none of the {len(paths)} input images (keys are image "
                              "paths, relative to the current directory or absolute)")
        if path in owner:
            raise DeployError(f"{where}: keys {owner[path]!r} and {key!r} name the same image")
        owner[path] = key
        matched[path] = parse_boxes(boxes, f"{where}: key {key!r}")
    return matched


def boxes_for_frames(raw: dict, frame_count: int, where: str) -> Dict[int, np.ndarray]:
    """``raw`` boxes of a video: frame number (keys "0", "1", ...) -> (N, 4) boxes; a key that is no
    frame number of the video is an error."""
    matched = {}
    for key, boxes in raw.items():
        text = str(key).strip()
        if not text.isdigit() or (frame_count > 0 and int(text) >= frame_count):
            raise DeployError(f"{where}: key {key!r} is not a frame number of the video (0 to {frame_count - 1}); "
                              "boxes of a video are keyed by frame number")
        matched[int(text)] = parse_boxes(boxes, f"{where}: key {key!r}")
    return matched


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    width: int
    height: int
    frame_count: int  # as the container states it (0 when it does not)


#: reads in a row that fail before a video counts as ending there (a file cut short fails them all)
MAX_FAILED_READS = 8


def frame_ranges(frames: Sequence[int]) -> str:
    """Frame numbers (ascending) as ranges: "8, 10-19"."""
    parts, start = [], None
    for position, frame in enumerate(frames):
        if start is None:
            start = frame
        if position + 1 == len(frames) or frames[position + 1] != frame + 1:
            parts.append(str(start) if start == frame else f"{start}-{frame}")
            start = None
    return ", ".join(parts)


class VideoFrames:
    """The frames of a video file, read in order: ``info`` and iteration over (index, pixels) of
    the frames that decode; after it, ``missing`` holds the frame numbers that did not (see the
    module) and ``read`` the count of those that did."""

    def __init__(self, path):
        self.path = str(path)
        self.missing: List[int] = []
        self.read = 0
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"video file not found: {self.path}")
        capture = cv2.VideoCapture(self.path)
        if not capture.isOpened():
            raise DeployError(f"{self.path}: OpenCV cannot open it as a video")
        self.capture = capture
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.info = VideoInfo(self.path, float(fps) if fps and np.isfinite(fps) and fps > 0 else 25.0,
                              int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                              max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))))

    def __iter__(self) -> Iterator[Tuple[int, np.ndarray]]:
        index, failed = 0, []  # failed: the reads that failed since the last frame that decoded
        try:
            while len(failed) < MAX_FAILED_READS:
                ok, pixels = self.capture.read()
                if not ok:
                    failed.append(index)
                    index += 1
                    continue
                self.missing += failed  # frames between decoded ones: damaged
                failed = []
                self.read += 1
                yield index, pixels
                index += 1
            end = failed[0] if failed else index  # where the stream stopped decoding
            self.missing += list(range(end, self.info.frame_count))  # the rest the container states: cut off
        finally:
            self.capture.release()

    def damage(self) -> Optional[str]:
        """One line naming the missing frames (after iteration), or None when every frame decoded."""
        if not self.missing:
            return None
        stated = max(self.info.frame_count, self.read + len(self.missing))
        return (f"{self.path}: frame(s) {frame_ranges(self.missing)} of {stated} could not be decoded (a damaged or "
                f"cut stream); the {self.read} that could are predicted, the json lists the others in missing_frames")


class VideoOutput:
    """An annotated video written frame by frame: the codec from the suffix (:data:`VIDEO_CODECS`)."""

    def __init__(self, path, fps: float, size: Tuple[int, int]):
        self.path = str(path)
        suffix = Path(self.path).suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise DeployError(f"--render {self.path}: an annotated video is written as "
                              f"{' or '.join(VIDEO_CODECS)}; give a path with one of these suffixes")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*VIDEO_CODECS[suffix]), fps, tuple(size))
        if not self.writer.isOpened():
            raise DeployError(f"--render {self.path}: OpenCV cannot write a {VIDEO_CODECS[suffix]} video there")
        self.frames = 0

    def write(self, pixels: np.ndarray) -> None:
        self.writer.write(pixels)
        self.frames += 1

    def close(self) -> None:
        self.writer.release()


def render_paths(paths: Sequence[str], folder) -> Dict[str, str]:
    """Where each image's annotated copy goes: ``folder`` / its file name; two inputs with one name
    are an error (one would overwrite the other)."""
    targets: Dict[str, str] = {}
    seen: Dict[str, str] = {}
    for path in paths:
        name = Path(path).name
        if name in seen and same_file_key(seen[name]) != same_file_key(path):
            raise DeployError(f"--render {folder}: inputs {seen[name]!r} and {path!r} share the file name {name!r}")
        seen[name] = path
        targets[path] = str(Path(folder) / name)
    return targets


def first_video(inputs: Sequence[str]) -> Optional[str]:
    """The video among ``inputs``, which must then be the only input; None when there is none."""
    videos = [given for given in inputs if is_video(given)]
    if not videos:
        return None
    if len(inputs) > 1:
        raise DeployError(f"give one video alone, or images and folders: got {len(videos)} video(s) among "
                          f"{len(inputs)} inputs")
    return videos[0]
