"""Every image file read one way: :func:`read_image`, 8-bit BGR pixels as the annotator saw them.

Training, evaluation, both ``predict`` backends (PyTorch and the torch-free ONNX runtime in
:mod:`heatmapnet.deploy`), ``viz``, the mosaics and the pre-flight's size check all read files
through this module, so they cannot disagree about what an image looks like. It needs numpy and
OpenCV only (no torch, no PIL), as a deployment install has.

**EXIF orientation** (``data.exif_orientation``, default ``apply``). A camera stores its sensor's
rows and writes how to turn them in the EXIF Orientation tag (0x0112, values 1 to 8); browsers and
most annotation tools show the turned image, and the annotations are in its pixels:

* ``apply``: the image as displayed. The tag of a JPEG (APP1 ``Exif``), PNG (``eXIf`` before the
  first ``IDAT``) or WebP (``EXIF`` chunk) file is applied: 2 mirrors left-right, 3 turns 180
  degrees, 4 mirrors top-bottom, 5 transposes (swaps rows and columns), 6 turns 90 degrees
  clockwise, 7 transverses (transpose and 180 degrees), 8 turns 90 degrees counter-clockwise;
  5 to 8 swap width and height. A missing, unreadable or out-of-range tag counts as 1.
* ``ignore``: the stored rows, as they are in the file, whatever the tag says.

A TIFF whose Orientation tag is not 1 is refused under either convention: OpenCV's TIFF decoder
turns such files itself, so neither convention could be kept for them.

**Pixel formats.** Whatever the file holds becomes uint8 BGR, height x width x 3:

* grayscale (1-bit, 8-bit) is repeated into the three channels;
* alpha (RGBA, gray + alpha, palette PNGs with transparency, GIF) is dropped: the colour channels
  as stored, not composited onto any background;
* palette images are expanded to their palette's colours;
* 16-bit samples (PNG, TIFF) are scaled to 8 bits by ``round(v / 257)`` (65535 -> 255; an 8-bit
  image saved as 16 bits by ``v * 257`` reads back exactly);
* CMYK JPEGs are converted by OpenCV, ``R = (255 - C) * (255 - K) / 255`` (likewise G from M,
  B from Y; no colour profile), within one level;
* a file of several frames (multi-page TIFF, animated WebP or GIF) gives its first frame;
* anything else (32-bit integer or floating-point samples, signed samples, other channel
  counts) is refused with one line naming the file and what it holds.

Errors are one line naming the file: :class:`FileNotFoundError` for a missing file,
:class:`ImageError` for one that is empty, not an image, or refused.
"""
from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Tuple, Union

import cv2
import numpy as np

from .errors import DataError

#: The conventions of ``data.exif_orientation``.
EXIF_ORIENTATIONS = ("apply", "ignore")
DEFAULT_EXIF_ORIENTATION = "apply"
ORIENTATION_TAG = 0x0112
#: EXIF orientations whose displayed image has width and height swapped.
SWAPS_AXES = (5, 6, 7, 8)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_PREFIX = b"Exif\x00\x00"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")

#: Stored pixels (rows, columns[, channels]) -> displayed pixels, by EXIF orientation.
_TURNS: dict = {
    1: lambda p: p,
    2: lambda p: p[:, ::-1],
    3: lambda p: p[::-1, ::-1],
    4: lambda p: p[::-1],
    5: lambda p: p.swapaxes(0, 1),
    6: lambda p: p[::-1].swapaxes(0, 1),
    7: lambda p: p[::-1, ::-1].swapaxes(0, 1),
    8: lambda p: p[:, ::-1].swapaxes(0, 1),
}

PathLike = Union[str, os.PathLike]


class ImageError(DataError):
    """An image file that is empty, not an image, or in a pixel format heatmapnet refuses (one
    line naming the file and why)."""


def check_exif_orientation(value) -> str:
    """``value`` if it is one of :data:`EXIF_ORIENTATIONS`, else a :class:`ValueError`."""
    if value not in EXIF_ORIENTATIONS:
        raise ValueError(f"exif_orientation={value!r}: choose one of {list(EXIF_ORIENTATIONS)}")
    return str(value)


# ----------------------------------------------------------------------------------------------
# the EXIF Orientation tag
# ----------------------------------------------------------------------------------------------
def _tiff_orientation(read: Callable[[int, int], bytes]) -> int:
    """The Orientation tag of the first IFD of a TIFF structure (a TIFF file or an EXIF block);
    ``read(offset, size)`` gives its bytes. 1 where it has none or it is malformed."""
    head = read(0, 8)
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if head[:2] == b"II" else ">"
    magic, offset = struct.unpack(order + "HI", head[2:8])
    count = read(offset, 2) if magic == 42 else b""
    if len(count) < 2:
        return 1
    entries = read(offset + 2, 12 * struct.unpack(order + "H", count)[0])
    for start in range(0, len(entries) - 11, 12):  # the IFD's entries, a few dozen at most
        tag, kind, number = struct.unpack_from(order + "HHI", entries, start)
        if tag != ORIENTATION_TAG:
            continue
        if number != 1 or kind not in (3, 4):  # one SHORT, as the standard has it (or a LONG)
            return 1
        value = struct.unpack_from(order + ("H" if kind == 3 else "I"), entries, start + 8)[0]
        return value if 1 <= value <= 8 else 1
    return 1


def _block_orientation(block: bytes) -> int:
    """The Orientation tag of an EXIF block (with or without its ``Exif\\0\\0`` prefix)."""
    if block.startswith(_EXIF_PREFIX):
        block = block[len(_EXIF_PREFIX):]
    return _tiff_orientation(lambda offset, size: block[offset:offset + size])


def _jpeg_header(f: BinaryIO) -> Tuple[Optional[Tuple[int, int]], int]:
    """(stored (width, height) from the frame header, or None; the orientation of the first
    APP1 ``Exif`` segment) of a JPEG, read segment by segment up to the frame header."""
    f.seek(2)
    orientation, seen_exif = 1, False
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None, orientation
        code = marker[1]
        while code == 0xFF:  # fill bytes
            byte = f.read(1)
            if not byte:
                return None, orientation
            code = byte[0]
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:  # markers without a length
            continue
        if code in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None, orientation
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            return None, orientation
        length = int.from_bytes(length_bytes, "big")
        if length < 2:
            return None, orientation
        if code in _JPEG_SOF:
            data = f.read(5)
            if len(data) < 5:
                return None, orientation
            return (int.from_bytes(data[3:5], "big"), int.from_bytes(data[1:3], "big")), orientation
        if code == 0xE1 and not seen_exif:
            payload = f.read(length - 2)
            if payload.startswith(_EXIF_PREFIX):
                seen_exif = True
                orientation = _block_orientation(payload)
            continue
        f.seek(length - 2, 1)


def _png_header(f: BinaryIO) -> Tuple[Optional[Tuple[int, int]], int]:
    """(stored (width, height) from IHDR, or None; the orientation of an ``eXIf`` chunk before the
    first ``IDAT``) of a PNG, read chunk by chunk up to its pixel data."""
    f.seek(len(PNG_SIGNATURE))
    size, orientation = None, 1
    while True:
        head = f.read(8)
        if len(head) < 8:
            return size, orientation
        length, kind = struct.unpack(">I4s", head)
        if kind in (b"IDAT", b"IEND"):
            return size, orientation
        if kind in (b"IHDR", b"eXIf"):
            data = f.read(length)
            if kind == b"IHDR" and len(data) >= 8:
                size = struct.unpack(">II", data[:8])
            elif kind == b"eXIf":
                orientation = _block_orientation(data)
            f.seek(4, 1)  # the chunk's CRC
        else:
            f.seek(length + 4, 1)


def _webp_orientation(f: BinaryIO) -> int:
    """The orientation of a WebP file's ``EXIF`` chunk (1 without one)."""
    f.seek(12)
    while True:
        head = f.read(8)
        if len(head) < 8:
            return 1
        kind, length = struct.unpack("<4sI", head)
        if kind == b"EXIF":
            return _block_orientation(f.read(length))
        f.seek(length + (length & 1), 1)  # chunks are padded to an even size


def _file_orientation(f: BinaryIO) -> Tuple[Optional[Tuple[int, int]], int, str]:
    """(stored size where the header gives it cheaply (JPEG, PNG), else None; the EXIF
    orientation; the container: ``jpeg``, ``png``, ``webp``, ``tiff`` or ``other``)."""
    head = f.read(12)
    if head[:2] == b"\xff\xd8":
        return (*_jpeg_header(f), "jpeg")
    if head[:8] == PNG_SIGNATURE:
        return (*_png_header(f), "png")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return None, _webp_orientation(f), "webp"
    if head[:4] in _TIFF_SIGNATURES:
        def read(offset: int, size: int) -> bytes:
            f.seek(offset)
            return f.read(size)
        return None, _tiff_orientation(read), "tiff"
    return None, 1, "other"


def header(path: PathLike) -> Tuple[Optional[Tuple[int, int]], int]:
    """(the stored (width, height) where the header gives it cheaply (JPEG and PNG; else None),
    the file's EXIF orientation, 1-8), from its first bytes; a missing file is a FileNotFoundError."""
    with open(path, "rb") as f:
        size, orientation, _ = _file_orientation(f)
    return size, orientation


def exif_orientation(path: PathLike) -> int:
    """The EXIF Orientation tag (1-8) of the file at ``path``: 1 where it has none, or one that is
    unreadable or out of range (see the module doc for the containers it is read from)."""
    return header(path)[1]


def oriented_size(size: Tuple[int, int], orientation: int) -> Tuple[int, int]:
    """(width, height) of a stored ``size`` as displayed under ``orientation``."""
    width, height = int(size[0]), int(size[1])
    return (height, width) if orientation in SWAPS_AXES else (width, height)


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Stored ``pixels`` (rows, columns[, channels]) as displayed under EXIF ``orientation``
    (see the module doc), contiguous."""
    turned = _TURNS.get(int(orientation), _TURNS[1])(pixels)
    return turned if turned is pixels else np.ascontiguousarray(turned)


# ----------------------------------------------------------------------------------------------
# pixels
# ----------------------------------------------------------------------------------------------
def to_bgr8(pixels: np.ndarray, path: PathLike) -> np.ndarray:
    """OpenCV's undecorated decoding (``IMREAD_UNCHANGED``) of the file at ``path`` as uint8 BGR
    (see the module doc); a format that has no such reading is an :class:`ImageError`."""
    if pixels.dtype == np.uint16:
        # round(v / 257) = round(v * 255 / 65535); never a tie, as 257 is odd
        pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        kind = {"f": "floating-point", "i": "signed integer"}.get(pixels.dtype.kind, "unsigned integer")
        raise ImageError(f"{path}: its pixels are {pixels.dtype.itemsize * 8}-bit {kind} samples ({pixels.dtype}); "
                         "heatmapnet reads images of 8- or 16-bit unsigned samples")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels == 1:
        return cv2.cvtColor(pixels.reshape(pixels.shape[:2]), cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return pixels
    if channels == 4:  # BGRA: the alpha channel dropped, the colours kept as stored
        return np.ascontiguousarray(pixels[..., :3])
    raise ImageError(f"{path}: its pixels have {channels} channels; heatmapnet reads gray, gray + alpha, "
                     "colour and colour + alpha images")


def decode(data: bytes, path: PathLike, exif_orientation: str = DEFAULT_EXIF_ORIENTATION
           ) -> Tuple[np.ndarray, int]:
    """The pixels (uint8 BGR) of the file bytes ``data`` (read from ``path``, which errors name)
    under ``exif_orientation``, and the file's EXIF orientation."""
    check_exif_orientation(exif_orientation)
    if not data:
        raise ImageError(f"{path}: empty file (0 bytes), not an image")
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise ImageError(f"image file is corrupt or not an image: {path}")
    _, orientation, container = _file_orientation(io.BytesIO(data))
    if container == "tiff" and orientation != 1:
        raise ImageError(f"{path}: a TIFF with EXIF orientation {orientation}, which OpenCV's TIFF decoder turns "
                         "itself, so data.exif_orientation cannot be kept for it; save it as PNG or JPEG")
    pixels = to_bgr8(pixels, path)
    if exif_orientation == "apply":
        pixels = orient(pixels, orientation)
    return pixels, orientation


def read_image_and_orientation(path: PathLike, exif_orientation: str = DEFAULT_EXIF_ORIENTATION
                               ) -> Tuple[np.ndarray, int]:
    """:func:`read_image`'s pixels and the file's EXIF orientation (1-8, whether applied or not)."""
    check_exif_orientation(exif_orientation)
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    return decode(Path(path).read_bytes(), path, exif_orientation)


def read_image(path: PathLike, exif_orientation: str = DEFAULT_EXIF_ORIENTATION) -> np.ndarray:
    """The image at ``path`` as uint8 BGR (height x width x 3), turned as its EXIF orientation
    says (``apply``) or as stored (``ignore``); see the module doc for the rules. A missing file is
    a :class:`FileNotFoundError`, an empty, undecodable or refused one an :class:`ImageError`."""
    return read_image_and_orientation(path, exif_orientation)[0]


def convention_note(exif_orientation: str, orientation: int) -> str:
    """What a size message adds for a file whose EXIF ``orientation`` is not 1: which convention
    gave the size it names (empty for orientation 1)."""
    if orientation == 1:
        return ""
    done = "applied" if exif_orientation == "apply" else "ignored"
    return f"; its EXIF orientation {orientation} is {done} (data.exif_orientation={exif_orientation})"
