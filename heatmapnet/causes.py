"""What a split's problems come from: the order of causes, the image sizes a COCO json declares
against its files, and the problems of both splits merged into one list.

When one record breaks several checks, one of them explains the others: a file that cannot be
read has no size to compare, and a file whose size is not the one its record declares puts the
record's points "far outside" the declared image. The pre-flight check
(:mod:`heatmapnet.preflight`) keeps each problem as a :class:`Finding` with its cause and lists
them in the order of :data:`CAUSES`, the one that explains the others first, so its one-line
error names the cause rather than a symptom. A problem found in both splits (one file used for
training and validation) is listed once, naming both.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .imageio import DEFAULT_EXIF_ORIENTATION, convention_note
from .imageio import exif_orientation as exif_orientation_of
from .data.readers import (InvalidAnnotationError, MissingImageError, coco_image_roots, image_size, is_coco,
                           join_image, load_json, resolve_image_root)

#: the causes of a split's problems, each explaining those after it: an image file that is missing
#: or cannot be decoded; a file whose size is not the one its record declares; a point or box
#: outside the (declared) image; any other bad field of a record; the split as a whole (no records,
#: another point count, an annotation file that cannot be read)
CAUSES = ("unreadable", "size", "points", "annotation", "split")
#: the ``format`` values (``data.<split>.format``) whose files may be COCO json, which declares sizes
COCO_FORMATS = (None, "", "coco", "coco_points_box", "coco_json", "mmpose_json")
#: errors of a header that cannot be read (PIL's UnidentifiedImageError is an OSError)
_HEADER_ERRORS = (OSError, ValueError, TypeError, SyntaxError)


@dataclass(frozen=True)
class Finding:
    """One problem of a split: its ``cause`` (one of :data:`CAUSES`), its ``text`` without the
    split's name (``named``: the text names its own key, as ``data.train.sources[1]...``, and is
    given as it is), a ``hint`` on what to do and the image file it is about (``subject``)."""

    cause: str
    text: str
    hint: str = ""
    named: bool = False
    subject: str = ""

    @classmethod
    def from_message(cls, message: str, split: str, cause: str = "split", hint: str = "") -> "Finding":
        """A message that may already start with ``split`` ("data.train: ...") or name a key ("data...")."""
        prefix = f"{split}: "
        if message.startswith(prefix):
            return cls(cause, message[len(prefix):], hint)
        return cls(cause, message, hint, named=message.startswith("data."))

    def line(self, splits: Sequence[str]) -> str:
        """The problem's line, found in ``splits`` (their names)."""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{self.text}{hint}" if self.named else f"{', '.join(splits)}: {self.text}{hint}"


def rank(finding: Finding) -> int:
    return CAUSES.index(finding.cause) if finding.cause in CAUSES else len(CAUSES)


def ordered(findings: Iterable[Finding]) -> List[Finding]:
    """``findings`` by cause (:data:`CAUSES`), each cause's in the order they were found."""
    return sorted(findings, key=rank)


def merged_lines(splits: Iterable[Tuple[str, Sequence[Finding]]]) -> List[str]:
    """The lines of the ``(split name, findings)`` pairs by cause, a finding of several splits once
    with their names ("data.train, data.val: ...")."""
    where: Dict[Finding, List[str]] = {}
    for name, findings in splits:
        for finding in findings:
            names = where.setdefault(finding, [])
            if name not in names:
                names.append(name)
    return [finding.line(where[finding]) for finding in ordered(where)]


def reader_cause(error: InvalidAnnotationError) -> str:
    """The cause of a reader's bad sample: a missing or unreadable image, a point or box outside
    the image, or another field."""
    if isinstance(error, MissingImageError) or error.field == "image":
        return "unreadable"
    if "outside" in error.problem:
        return "points"
    return "annotation"


def size_finding(path: str, size: Tuple[int, int], declared: Tuple[int, int], record: str = "",
                 hint: str = "", exif_orientation: Optional[str] = None) -> Finding:
    """The file at ``path`` is ``size`` (w, h) pixels, under ``exif_orientation``
    (``data.exif_orientation``; None: the default), as its ``record`` (where it is: "ann.json, image
    id 3") declares ``declared``; for a file whose EXIF orientation is not 1 the line says which
    convention gave the size."""
    where = f" ({record})" if record else ""
    note = convention_note(str(exif_orientation or DEFAULT_EXIF_ORIENTATION), exif_orientation_of(path))
    return Finding("size", f"{path}: image is {size[0]}x{size[1]} but its annotation says width={declared[0]}, "
                           f"height={declared[1]}{where}{note}", hint, subject=path)


def header_size(path: str, exif_orientation: Optional[str] = None) -> Optional[Tuple[int, int]]:
    """(width, height) from the image header, as the readers read it (under ``exif_orientation``,
    ``data.exif_orientation``, where given); None where it cannot be read."""
    try:
        if exif_orientation is None:
            return tuple(image_size(path))
        return tuple(image_size(path, exif_orientation=str(exif_orientation)))
    except _HEADER_ERRORS:
        return None


def declared_size_findings(section, exif_orientation: Optional[str] = None) -> List[Finding]:
    """Where a split's COCO json declares an image size (``width``, ``height`` of an ``images``
    entry) that is not its file's (read from the header, under ``exif_orientation``): one finding
    per such image, naming the file, both sizes and the entry (json, image id). Nothing for other
    formats, or a json that cannot be read (the reader says why)."""
    ann_file = getattr(section, "ann_file", None)
    if getattr(section, "sources", None) or not ann_file or section.format not in COCO_FORMATS:
        return []
    path = Path(str(ann_file))
    if path.suffix.lower() != ".json" or not path.is_file():
        return []
    try:
        data = load_json(path)
    except ValueError:
        return []
    if not is_coco(data) or not isinstance(data["images"], list):
        return []
    entries = [entry for entry in data["images"]
               if isinstance(entry, dict) and {"id", "file_name", "width", "height"} <= set(entry)]
    image_root = getattr(section, "img_dir", None) or None
    root = resolve_image_root(coco_image_roots(path, image_root), [str(e["file_name"]) for e in entries[:3]])
    findings = []
    for entry in entries:
        try:
            declared = (int(entry["width"]), int(entry["height"]))
        except (TypeError, ValueError):  # the reader names a size that is not a number
            continue
        file = join_image(root, str(entry["file_name"]))
        size = header_size(file, exif_orientation)
        if size is not None and size != declared:
            findings.append(size_finding(file, size, declared, f"{path}, image id {entry['id']}",
                                         exif_orientation=exif_orientation))
    return findings
