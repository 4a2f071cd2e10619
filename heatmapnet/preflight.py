"""The pre-flight check: everything a run needs, checked before its first step.

``heatmapnet check CONFIG`` runs it alone and prints its summary; ``heatmapnet train`` runs it
(:func:`checked_run_records`) before it builds the trainer, which trains on the records it passed,
so a bad image can never be drawn mid-run and a run never dies at its first evaluation or its
first save. It

- validates the whole config: every value (:func:`heatmapnet.config.value_problems`), every name
  a registry resolves (mode, scheme, loss, sigma policy, head, timm backbone, optimizer), the
  evaluation's ``eval.refine``, the split into DDP ranks;
  it builds the loss, criterion, codec and model (on the meta device) as the run will, and
  encodes and decodes one instance with the codec, so that settings read only at the first step
  or the first evaluation fail here;
- reads every annotation of both splits and opens every image of a split of files (in
  ``data.num_workers`` threads, with a progress bar): a missing, empty, truncated (a JPEG without
  its end marker that PIL cannot decode in full; OpenCV would decode it with a warning) or
  undecodable file, or one whose size is not the annotated one. With ``data.skip_invalid`` such
  images are dropped (and listed); without it each is a problem. Generated splits have no files.
  A split's problems are listed by cause (:mod:`heatmapnet.causes`), the one that explains the
  others first: an unreadable file, then an image whose size is not the one its record declares
  (where a COCO json's sample is refused, its declared sizes are checked against the files, so
  points "far outside" a halved image are reported as the halved size), then points outside the
  image, then other fields; a problem of both splits (one file for both) is listed once, naming both;
- reads the images as training reads them (:mod:`heatmapnet.imageio`: 8-bit BGR, pixel formats
  it refuses named), so the annotated size is compared with the size as displayed under
  ``data.exif_orientation``; the summary names that convention and counts the files whose EXIF
  orientation is not 1;
- checks that every instance has the scheme's number of points;
- checks that the run directory can be created and written, that no other live run holds its
  lock (:mod:`heatmapnet.runlock`), and that its disk has room for the run's checkpoints
  (weights and Adam's two moments, float32; ``last.pt``, ``best.pt`` and the temporary copy a
  save writes before it replaces ``last.pt``).

:func:`run_preflight` returns a :class:`PreflightReport`; its ``problems`` are what would stop the
run, :meth:`PreflightReport.raise_for_problems` turns them into one :class:`PreflightError` line.
"""
from __future__ import annotations

import copy
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Optional, Sequence

import timm
import torch
from omegaconf import DictConfig

from .build import (RunRecords, build_codec, build_criterion, build_loss, build_mode, build_model, build_scheme,
                    read_records)
from .causes import (Finding, declared_size_findings, header_size, merged_lines, ordered, reader_cause,
                     size_finding)
from .codec import CODECS
from .config import value_problems
from .data.build import SYNTHETIC_SOURCES, frame_file_records
from .data.pipelines import load_image
from .data.readers import InvalidAnnotationError, RecordList
from .distributed import DistInfo
from .errors import UserError
from .finetune import prefix_problems
from .imageio import EXIF_ORIENTATIONS, exif_orientation
from .metadata import KeypointScheme
from .models import HEADS
from .modes import MODES
from .optimizers import OPTIMIZERS
from .transfer import read_source

#: bytes per parameter in a checkpoint: float32 weights and Adam's two float32 moments
CHECKPOINT_BYTES_PER_PARAMETER = 4 * 3
#: checkpoints a run holds at its peak: last.pt, best.pt and the temporary file that replaces last.pt
CHECKPOINT_COPIES = 3
#: room for logs, TensorBoard events, predictions and metrics beside the checkpoints
LOG_MARGIN_BYTES = 64 * 2 ** 20
CHECKPOINT_NAMES = ("last.pt", "best.pt")
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"


class PreflightError(UserError, ValueError):
    """The pre-flight check found what would stop the run (the first problem, and how many more)."""


@dataclass
class ComponentReport:
    """The config's values and the components it names."""

    scheme: Optional[KeypointScheme] = None
    num_parameters: Optional[int] = None
    description: str = ""
    problems: List[str] = field(default_factory=list)


@dataclass
class SplitReport:
    """One split, ``data.train`` or ``data.val``, as the run will see it."""

    name: str
    source: str
    records: Optional[Sequence] = None  # what the run uses (bad images dropped); None if it cannot be read
    num_images: int = 0  # records: annotated images, or generated samples
    num_instances: Optional[int] = None  # None for generated sets (drawn on demand)
    images_opened: int = 0
    oriented: int = 0  # image files whose EXIF orientation is not 1 (identity)
    skipped: List[str] = field(default_factory=list)  # the reader's skipped samples and the images dropped here
    findings: List[Finding] = field(default_factory=list)  # what would stop the run, each with its cause
    detail: str = ""  # a union run's split: the records of each source

    @property
    def problems(self) -> List[str]:
        """What would stop the run, one line each, the cause that explains the others first
        (:data:`heatmapnet.causes.CAUSES`)."""
        return merged_lines([(self.name, self.findings)])

    def describe(self) -> str:
        if self.records is None:
            return "cannot be read"
        if self.source in SYNTHETIC_SOURCES:
            return f"{self.num_images} generated samples ({self.source}, no files)"
        kind = "mosaics" if self.source == "mosaic" else "images"
        instances = "" if self.num_instances is None else f", {self.num_instances} instances"
        oriented = f", {self.oriented} with an EXIF orientation other than 1" if self.oriented else ""
        return (f"{self.num_images} {kind}{instances}{self.detail}; {self.images_opened} image files opened "
                f"and decoded{oriented}")


@dataclass
class RunDirectoryReport:
    path: Path
    free_bytes: Optional[int] = None
    needed_bytes: int = 0
    problems: List[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.free_bytes is None:
            return f"{self.path}: not usable"
        return (f"{self.path}: writable; {_size(self.free_bytes)} free, about {_size(self.needed_bytes)} needed "
                f"for checkpoints and logs")


@dataclass
class PreflightReport:
    components: ComponentReport
    train: SplitReport
    val: SplitReport
    run_directory: Optional[RunDirectoryReport]  # None on DDP ranks other than 0, which write nothing
    seconds: float = 0.0
    exif_orientation: str = "apply"  # data.exif_orientation: the convention the images were read under

    @property
    def scheme(self) -> Optional[KeypointScheme]:
        return self.components.scheme

    @property
    def skipped(self) -> List[str]:
        return [f"{split.name}: {reason}" for split in (self.train, self.val) for reason in split.skipped]

    @property
    def problems(self) -> List[str]:
        """What would stop the run, one line each."""
        directory = self.run_directory.problems if self.run_directory else []
        # each once, by cause: a problem of both splits (one file for both) names both, and a union
        # run's bad source scheme stops the scheme and both splits alike
        splits = merged_lines([(split.name, split.findings) for split in (self.train, self.val)])
        return list(dict.fromkeys(self.components.problems + splits + directory))

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """The report for people: counts per split, the skipped samples with reasons, and what would fail."""
        lines = [f"  config      {'ok' if not self.components.problems else 'has problems'}: "
                 f"{self.components.description}"]
        lines += [f"  {split.name:<11} {split.describe()}" for split in (self.train, self.val)]
        oriented = self.train.oriented + self.val.oriented
        lines.append(f"  orientation {orientation_line(self.exif_orientation, oriented)}")
        if self.run_directory is not None:
            lines.append(f"  run         {self.run_directory.describe()}")
        lines += _listing("skipped", self.skipped, "none")
        lines += _listing("would fail", self.problems, "nothing")
        lines.append(f"  checked in {self.seconds:.1f} s")
        return "\n".join(lines)

    def raise_for_problems(self, others: str = "`heatmapnet check` lists them all") -> None:
        """A :class:`PreflightError` with the first problem, if there is any, and the count of the
        ``others`` (where they are listed)."""
        if self.problems:
            raise first_problem_error(self.problems, others)


#: lines of skipped samples or problems a summary shows (the report keeps them all)
SUMMARY_LINES = 20


def _listing(title: str, items: Sequence[str], empty: str) -> List[str]:
    if not items:
        return [f"  {title:<11} {empty}"]
    more = [f"      ... and {len(items) - SUMMARY_LINES} more"] if len(items) > SUMMARY_LINES else []
    return [f"  {title:<11} {len(items)}:"] + [f"      {item}" for item in items[:SUMMARY_LINES]] + more


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 2 ** 30:.1f} GiB" if num_bytes >= 2 ** 30 else f"{num_bytes / 2 ** 20:.1f} MiB"


#: what each convention of data.exif_orientation means, for the summary
ORIENTATION_MEANINGS = {"apply": "EXIF orientation applied: images read as browsers and annotation tools show them",
                        "ignore": "EXIF orientation ignored: images read as their pixels are stored"}


def orientation_line(convention: str, oriented: int) -> str:
    """The summary's word on EXIF orientation: the convention in force and how many files carry an
    orientation other than 1 (those the convention concerns)."""
    meaning = ORIENTATION_MEANINGS.get(convention, f"not one of {list(EXIF_ORIENTATIONS)}")
    return f"data.exif_orientation={convention} ({meaning}); {oriented} image file(s) with an orientation other than 1"


def first_problem_error(problems: Sequence[str], others: str = "`heatmapnet check` lists them all") -> PreflightError:
    """One line: the first of ``problems`` and how many more there are (and where ``others`` are)."""
    more = f" (and {len(problems) - 1} more problem(s): {others})" if len(problems) > 1 else ""
    return PreflightError(problems[0] + more)


# ----------------------------------------------------------------------------------------------
# the config and its components
# ----------------------------------------------------------------------------------------------
def check_components(config: DictConfig, world_size: int = 1, with_scheme: bool = True) -> ComponentReport:
    """Every value and every named component of ``config``, built as the run will build them
    (the model on the meta device: no memory, no weights read). ``with_scheme=False``: the caller
    takes the keypoint scheme from elsewhere (a checkpoint), so the checks that need one are skipped."""
    report = ComponentReport(problems=value_problems(config))
    train = config.train
    if train.batch_size >= 1 and train.batch_size % world_size:
        report.problems.append(f"train.batch_size={train.batch_size}: must divide by the {world_size} DDP ranks")
    if train.optimizer not in OPTIMIZERS:
        report.problems.append(f"train.optimizer={train.optimizer!r}: choose one of {OPTIMIZERS.names()}")
    pretrained = config.model.pretrained_path
    if pretrained and not os.path.isfile(pretrained):
        report.problems.append(f"model.pretrained_path: weight file not found: {pretrained}")
    if config.model.init_from:
        _attempt(report, lambda: read_source(config.model.init_from, config.model.init_from_sha256),
                 "model.init_from")
    mode = _attempt(report, lambda: MODES.get(config.data.mode), "data.mode")
    allowed = getattr(CODECS.get(mode.codec), "refinements", ()) if mode else ()  # the decoders evaluation may use
    if allowed and config.eval.refine not in allowed:
        report.problems.append(f"eval.refine={config.eval.refine!r}: choose one of {list(allowed)}")
    loss = _attempt(report, lambda: build_loss(config), "loss")
    head = _attempt(report, lambda: HEADS.get(config.model.head), "model.head")
    backbone = timm.is_model(config.model.backbone)
    if not backbone:
        report.problems.append(f"model.backbone={config.model.backbone!r}: not a timm model (see timm.list_models())")
    report.scheme = _attempt(report, lambda: build_scheme(config), "data.scheme") if with_scheme else None
    scheme = report.scheme
    if scheme is None or mode is None or loss is None:  # what follows is built from all three
        return _described(report, config)
    _attempt(report, lambda: build_criterion(config, scheme), "loss")
    if not _flagged(report, "data.input_size"):
        codec = _attempt(report, lambda: build_codec(config, scheme), "target")
        if codec is not None and not _flagged(report, "eval.refine"):  # each problem once
            outputs = build_mode(config, scheme).num_outputs(scheme)
            _attempt(report, lambda: exercise_codec(codec, outputs, scheme.num_keypoints), "target")
    if head is None or not backbone:
        return _described(report, config)
    probe = copy.deepcopy(config)
    probe.model.pretrained_path = None  # checked above; the meta device reads no weights
    with torch.device("meta"):
        model = _attempt(report, lambda: build_model(probe, scheme), "model")
    if model is not None:
        report.num_parameters = sum(parameter.numel() for parameter in model.parameters())
        report.problems += prefix_problems(model, train.freeze, train.lr_mult)
    return _described(report, config)


def exercise_codec(codec, num_outputs: int, num_keypoints: int) -> None:
    """Encode one instance and decode a blank output: settings that are read only then (the radius
    formula of a sigma policy, the sub-pixel decoder) fail here rather than at the first step or
    the first evaluation."""
    width, height = codec.input_size
    along = torch.linspace(0.3, 0.7, num_keypoints)
    points = torch.stack([along * width, torch.full_like(along, 0.5 * height)], dim=1)[None]
    codec.encode(points, torch.ones(1, num_keypoints, dtype=torch.bool),
                 torch.tensor([[0.25 * width, 0.25 * height, 0.5 * width, 0.5 * height]]))
    codec.decode(torch.zeros(1, num_outputs, *codec.heatmap_size))


def _flagged(report: ComponentReport, key: str) -> bool:
    return any(problem.startswith(key) for problem in report.problems)


def _attempt(report: ComponentReport, build, key: str):
    """``build()``, or None with its one-line error (prefixed by ``key`` unless it names it) among the problems."""
    try:
        return build()
    except (ValueError, FileNotFoundError) as error:  # registries, readers, models: what the user named is wrong
        message = str(error)
        named = message.startswith((key, "data.train.sources", "data.val.sources")) or f"unknown {key}" in message
        report.problems.append(message if named else f"{key}: {message}")
        return None


def _described(report: ComponentReport, config: DictConfig) -> ComponentReport:
    scheme = report.scheme
    parts = [config.data.mode, f"scheme {scheme.name} ({scheme.num_keypoints} points)" if scheme else "no scheme",
             f"{config.model.backbone} + {config.model.head}"
             + (f" ({report.num_parameters:,} parameters)" if report.num_parameters else ""),
             f"loss {config.loss.name}", f"eval.refine {config.eval.refine}"]
    report.description = ", ".join(parts)
    return report


def check_config(config: DictConfig, world_size: int = 1, with_scheme: bool = True) -> ComponentReport:
    """:func:`check_components`, raising a :class:`PreflightError` with the first problem."""
    report = check_components(config, world_size, with_scheme)
    if report.problems:
        raise first_problem_error(report.problems)
    return report


# ----------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------
def jpeg_truncation(path: str) -> Optional[str]:
    """Why a JPEG file is cut short, or None. OpenCV decodes a truncated JPEG with only a warning;
    a file without the end-of-image marker (FF D9) is decoded in full by PIL, which refuses one
    that is cut short (files with bytes after the marker pass)."""
    with open(path, "rb") as file:
        start = file.read(2)
        if start != JPEG_START:
            return None
        file.seek(-2, os.SEEK_END)
        if file.read(2) == JPEG_END:
            return None
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        return "no end-of-image marker"  # PIL was told to pad truncated files
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError) as error:  # PIL's errors for a cut or broken stream
        return f"no end-of-image marker; {error}"
    return None


def image_problem(record) -> Optional[str]:
    """Why training cannot use ``record``'s image file, naming it; None if it decodes in full at
    the annotated size (through :func:`heatmapnet.data.pipelines.load_image`, as training reads it)."""
    path = record.image_path
    try:
        if os.path.getsize(path) == 0:
            return f"{path}: empty file (0 bytes), not an image"
        truncated = jpeg_truncation(path)
    except FileNotFoundError:
        return f"image file not found: {path}"
    except OSError as error:
        return f"{path}: cannot be read ({error.strerror or error})"
    if truncated:
        return f"{path}: truncated JPEG ({truncated})"
    try:
        load_image(record)
    except (FileNotFoundError, ValueError) as error:
        return str(error)
    return None


def record_name(record, source: str = "") -> str:
    """Where ``record`` is: its annotation file ``source`` and image id, as far as they are known."""
    image_id = "" if record.image_id is None else f"image id {record.image_id}"
    return ", ".join(part for part in (source, image_id) if part)


def file_findings(record, source: str = "", hint: str = "") -> List[Finding]:
    """Why training cannot use ``record``'s image file, each with its cause: nothing when it decodes
    in full at the declared size (:func:`image_problem`); else a file that cannot be read, a file
    whose size (its header's) is not the one ``record`` (of the annotation file ``source``)
    declares, naming both sizes and the record, or both."""
    reason = image_problem(record)
    if reason is None:
        return []
    size = header_size(record.image_path, getattr(record, "exif_orientation", None))
    if size is None or size == (record.width, record.height):
        return [Finding("unreadable", reason, hint, subject=record.image_path)]
    # another size than declared: is the file otherwise sound (decoded in full at its own size)?
    other = image_problem(replace(record, width=size[0], height=size[1]))
    found = [size_finding(record.image_path, size, (record.width, record.height), record_name(record, source), hint,
                          getattr(record, "exif_orientation", None))]
    return found + ([Finding("unreadable", other, hint, subject=record.image_path)] if other else [])


def image_findings(records: Sequence, workers: int = 1, progress: bool = False, label: str = "images",
                   source: str = "", hint: str = "") -> List[List[Finding]]:
    """:func:`file_findings` of each record, in ``workers`` threads (OpenCV and PIL decode without the
    GIL), each file once, with a progress bar where ``progress`` and stderr is a terminal."""
    from tqdm import tqdm

    first = {}
    for record in records:
        first.setdefault(record.image_path, record)
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        results = list(tqdm(pool.map(lambda record: file_findings(record, source, hint), first.values()),
                            total=len(first), desc=label, unit="img", disable=None if progress else True, leave=False,
                            mininterval=0.5, dynamic_ncols=True))
    by_path = dict(zip(first, results))
    return [by_path[record.image_path] for record in records]


# ----------------------------------------------------------------------------------------------
# splits
# ----------------------------------------------------------------------------------------------
def check_split(config: DictConfig, split_name: str, scheme: Optional[KeypointScheme], progress: bool = False
                ) -> SplitReport:
    """Read ``data.<split_name>``, open its images and drop (``data.skip_invalid``) or report the bad ones."""
    section = config.data[split_name]
    report = SplitReport(f"data.{split_name}", section.source)
    try:
        records = read_records(config, split_name)
    except InvalidAnnotationError as error:  # a bad sample; an image of another size than declared explains some
        report.findings += declared_size_findings(section, config.data.get("exif_orientation"))
        report.findings.append(Finding.from_message(str(error), report.name, reader_cause(error)))
        return report
    except (UserError, FileNotFoundError) as error:
        report.findings.append(Finding.from_message(str(error), report.name))
        return report
    if section.source not in SYNTHETIC_SOURCES:
        records = _checked_files(config, section, records, report, progress)
        if records is None:
            return report
    report.records = records
    report.num_images = len(records)
    if config.data.scheme == "union" and scheme is not None:
        from .multisource import source_counts, source_layout

        counts = source_counts(records, source_layout(config.data))
        report.detail = " (" + ", ".join(f"{name} {count}" for name, count in counts.items()) + ")"
    if isinstance(records, list):
        report.num_instances = sum(len(record.instances) for record in records)
    if not len(records):
        report.findings.append(Finding("split", f"no records to {'train' if split_name == 'train' else 'evaluate'} on"))
    elif scheme is not None:
        mismatch = _point_count_mismatch(getattr(records, "sources", records), scheme)
        if mismatch:
            report.findings.append(Finding("split", mismatch))
    return report


def _checked_files(config: DictConfig, section, records, report: SplitReport, progress: bool):
    """A split of files with its bad images dropped (or reported); None when it cannot be framed."""
    files = getattr(records, "sources", records)  # a mosaic's people, or the records themselves
    skipped = list(getattr(files, "skipped", []))
    if skipped:  # the reader left samples out: an image of another size than declared explains some
        kept = {record.image_path for record in files}  # their sizes are checked below
        declared = declared_size_findings(section, config.data.get("exif_orientation"))
        report.skipped += [finding.text for finding in declared if finding.subject not in kept]
    report.skipped += skipped
    findings = image_findings(files, config.data.num_workers, progress, f"check {report.name} images",
                              getattr(files, "source", "") or str(getattr(section, "ann_file", "") or ""),
                              "data.skip_invalid=true trains without such images")
    report.images_opened = len({record.image_path for record in files})
    report.oriented = oriented_files({record.image_path for record in files})
    bad = list(dict.fromkeys(finding for found in findings for finding in found))
    if not bad:
        return records
    if not config.data.skip_invalid:
        report.findings += bad
        return records
    report.skipped += [finding.text for finding in ordered(bad)]
    good = RecordList([record for record, found in zip(files, findings) if not found],
                      getattr(files, "skipped", []), getattr(files, "source", ""))
    try:
        return frame_file_records(section, good, report.name)
    except ValueError as error:  # a mosaic without enough people left
        report.findings.append(Finding.from_message(str(error), report.name))
        return None


def oriented_files(paths) -> int:
    """How many of the image files ``paths`` carry an EXIF orientation other than 1 (their headers
    only; a file that cannot be read counts as 1, its problem is reported by the image check)."""
    def turned(path) -> bool:
        try:
            return exif_orientation(path) != 1
        except OSError:
            return False
    return sum(turned(path) for path in paths)


def _point_count_mismatch(records: Sequence, scheme: KeypointScheme) -> Optional[str]:
    """Where the first instance whose point count is not the scheme's is, or None."""
    expected = scheme.num_keypoints
    if not isinstance(records, list):  # generated on demand: every sample has the first one's layout
        records = [records[0]]
    for record in records:
        for instance in record.instances:
            if instance.keypoints.shape[0] != expected:
                return (f"{record.image_path} has {instance.keypoints.shape[0]} points per instance, the scheme "
                        f"{scheme.name} has {expected}")
    return None


# ----------------------------------------------------------------------------------------------
# the run directory
# ----------------------------------------------------------------------------------------------
def check_run_directory(out_dir, checkpoint_bytes: int, create: bool = True) -> RunDirectoryReport:
    """Whether ``out_dir`` is (or can be made) a writable folder, not held by another live run
    (:func:`heatmapnet.runlock.other_live_holder`), with room for the run's checkpoints. ``create``:
    make it (the trainer); else probe its nearest existing parent (``heatmapnet check``)."""
    from .runlock import in_use_message, other_live_holder

    path = Path(out_dir)
    report = RunDirectoryReport(path)
    if path.exists() and not path.is_dir():
        report.problems.append(f"run directory {path} is an existing file, not a folder: choose another --out")
        return report
    holder = other_live_holder(path) if path.is_dir() else None
    if holder is not None:
        report.problems.append(in_use_message(path, holder))
    folder = path
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        else:
            while not folder.exists():
                folder = folder.parent
            if not folder.is_dir():
                raise NotADirectoryError(f"{folder} is a file")
        probe = folder / f".heatmapnet-write-probe-{os.getpid()}"
        probe.write_bytes(b"heatmapnet")
        probe.unlink()
    except OSError as error:
        report.problems.append(f"run directory {path} cannot be {'created or ' if create else ''}written: "
                               f"{error.strerror or error}")
        return report
    report.free_bytes = shutil.disk_usage(folder).free
    present = sum((path / name).stat().st_size for name in CHECKPOINT_NAMES if (path / name).is_file())
    report.needed_bytes = max(0, CHECKPOINT_COPIES * checkpoint_bytes - present) + LOG_MARGIN_BYTES
    if report.free_bytes < report.needed_bytes:
        report.problems.append(f"run directory {path}: {_size(report.free_bytes)} free on its disk, the run needs "
                               f"about {_size(report.needed_bytes)} ({CHECKPOINT_COPIES} checkpoints of "
                               f"{_size(checkpoint_bytes)} and logs)")
    return report


# ----------------------------------------------------------------------------------------------
# all of it
# ----------------------------------------------------------------------------------------------
def run_preflight(config: DictConfig, out_dir, dist: Optional[DistInfo] = None, progress: bool = True,
                  create_run_directory: bool = True) -> PreflightReport:
    """Check the config, both splits (every annotation, every image) and the run directory; see the
    module doc. Nothing raises for a problem the report can hold: look at ``report.problems``."""
    started = time.perf_counter()
    dist = dist or DistInfo()
    components = check_components(config, dist.world_size)
    show = progress and dist.is_main
    train = check_split(config, "train", components.scheme, show)
    val = check_split(config, "val", components.scheme, show)
    directory = None
    if dist.is_main:  # the other ranks write nothing
        checkpoint_bytes = (components.num_parameters or 0) * CHECKPOINT_BYTES_PER_PARAMETER
        directory = check_run_directory(out_dir, checkpoint_bytes, create_run_directory)
    return PreflightReport(components, train, val, directory, time.perf_counter() - started,
                           str(config.data.exif_orientation))


def checked_run_records(config: DictConfig, out_dir, dist: Optional[DistInfo] = None) -> RunRecords:
    """The pre-flight of a run about to train in ``out_dir`` (``heatmapnet train``, each pretrain stage,
    each DDP rank, each ablation run): its summary printed on rank 0, its first problem raised as one
    :class:`PreflightError` line, else both splits' records as they passed (with ``data.skip_invalid``,
    the bad images dropped), for :class:`heatmapnet.engine.Trainer` to train on."""
    dist = dist or DistInfo()
    report = run_preflight(config, out_dir, dist)
    if dist.is_main:
        print(report.summary(), flush=True)
    report.raise_for_problems()
    return RunRecords(report.scheme, report.train.records, report.val.records)
