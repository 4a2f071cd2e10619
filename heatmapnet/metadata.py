"""Keypoint-scheme metadata: names, mirror pairs, skeleton, OKS sigmas and metric normalisers.

Schemes are data, one YAML file each, in the repository's ``datasets/`` folder (installed copies
read the package data ``heatmapnet/datasets/`` that a build copies from it). A file holds::

    name: lsp14                      # required
    sides: person                    # "person" or "image": what left/right in the names mean
    keypoints: [right_ankle, ...]    # required, in the dataset's order
    flip_pairs: [[left_x, right_x]]  # required (may be empty): points a horizontal mirror swaps
    skeleton: [[a, b], ...]          # required (may be empty): edges for drawing
    oks_sigmas: [0.089, ...]         # required: one per keypoint
    nme_normalisation:               # optional: named pairs of points, e.g. the outer eye corners
      interocular: [a, b]
    pupils: [[names...], [names...]] # optional: the points whose centroid is each pupil
    torso: [a, b]                    # optional: PCK torso segment
    head: [a, b]                     # optional: head segment
    mirrorable: false                # optional (default true): false when no mirror pairing is known,
                                     # so that no image is ever mirrored (no flip augmentation, no flip test)

Everything refers to keypoints by name; :func:`load_scheme` turns names into indices and checks
them, raising ``ValueError`` that names the file and the field on any problem.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from . import resources

__all__ = [
    "KeypointScheme",
    "load_scheme",
    "scheme_from_coco_category",
    "available_schemes",
    "schemes_dir",
    "COCO17_KEYPOINTS",
    "COCO17_SIGMAS",
]

#: The COCO person keypoints, in the category's order.
COCO17_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)
#: COCO's published per-keypoint OKS sigmas (pycocotools ``COCOeval``), same order.
COCO17_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
    0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)
#: OKS sigma used when a scheme has none of its own (about COCO's eye/nose value).
DEFAULT_SIGMA = 0.025

_REQUIRED = ("name", "keypoints", "flip_pairs", "skeleton", "oks_sigmas")
_OPTIONAL = ("sides", "nme_normalisation", "pupils", "torso", "head", "notes", "mirrorable")

Pair = tuple[int, int]


@dataclass(frozen=True, eq=False)
class KeypointScheme:
    """A keypoint layout. All point references are 0-based indices into ``keypoint_names``."""

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[Pair, ...] = ()
    skeleton: tuple[Pair, ...] = ()
    oks_sigmas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    nme_normalisation: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    pupils: Optional[tuple[tuple[int, ...], tuple[int, ...]]] = None
    torso: Optional[Pair] = None
    head: Optional[Pair] = None
    sides: str = "person"  # what "left"/"right" in the names mean: the person's or the image's
    source: Optional[str] = None  # the file it came from, if any
    notes: tuple[str, ...] = ()
    mirrorable: bool = True  # False: the mirror pairing is unknown, so images are never mirrored

    def __post_init__(self):
        sigmas = np.array(self.oks_sigmas, dtype=np.float64).reshape(-1)
        sigmas.setflags(write=False)
        object.__setattr__(self, "oks_sigmas", sigmas)
        object.__setattr__(self, "keypoint_names", tuple(self.keypoint_names))
        object.__setattr__(self, "flip_pairs", tuple(tuple(int(i) for i in p) for p in self.flip_pairs))
        object.__setattr__(self, "skeleton", tuple(tuple(int(i) for i in p) for p in self.skeleton))
        object.__setattr__(self, "nme_normalisation",
                           {str(k): tuple(int(i) for i in v) for k, v in dict(self.nme_normalisation).items()})
        if self.pupils is not None:
            object.__setattr__(self, "pupils", tuple(tuple(int(i) for i in g) for g in self.pupils))
        for attr in ("torso", "head"):
            value = getattr(self, attr)
            if value is not None:
                object.__setattr__(self, attr, tuple(int(i) for i in value))
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "mirrorable", bool(self.mirrorable))
        self._check()

    # ------------------------------------------------------------------ checks
    def _check(self) -> None:
        where = self.source or f"scheme {self.name!r}"
        k = len(self.keypoint_names)
        if k == 0:
            raise ValueError(f"{where}: field 'keypoints' is empty")
        seen = set()
        for n in self.keypoint_names:
            if n in seen:
                raise ValueError(f"{where}: field 'keypoints': duplicate name {n!r}")
            seen.add(n)
        if self.oks_sigmas.shape[0] != k:
            raise ValueError(f"{where}: field 'oks_sigmas' has {self.oks_sigmas.shape[0]} values "
                             f"for {k} keypoints")
        if not np.all(np.isfinite(self.oks_sigmas)) or np.any(self.oks_sigmas <= 0):
            raise ValueError(f"{where}: field 'oks_sigmas' must be finite and > 0")
        if self.sides not in ("person", "image"):
            raise ValueError(f"{where}: field 'sides' must be 'person' or 'image', not {self.sides!r}")
        if not self.mirrorable and self.flip_pairs:
            raise ValueError(f"{where}: field 'mirrorable' is false but 'flip_pairs' lists "
                             f"{len(self.flip_pairs)} pair(s)")

        def check_index(i, fld):
            if not 0 <= i < k:
                raise ValueError(f"{where}: field {fld!r}: index {i} out of range for {k} keypoints")

        used = {}
        for a, b in self.flip_pairs:
            check_index(a, "flip_pairs")
            check_index(b, "flip_pairs")
            if a == b:
                raise ValueError(f"{where}: field 'flip_pairs': {self.keypoint_names[a]!r} is paired "
                                 "with itself (leave unpaired points out)")
            for i in (a, b):
                if i in used:
                    raise ValueError(f"{where}: field 'flip_pairs': {self.keypoint_names[i]!r} is in "
                                     "more than one pair")
                used[i] = True
        for a, b in self.skeleton:
            check_index(a, "skeleton")
            check_index(b, "skeleton")
        for key, idx in self.nme_normalisation.items():
            if len(idx) != 2:
                raise ValueError(f"{where}: field 'nme_normalisation.{key}' needs 2 points, got {len(idx)}")
            for i in idx:
                check_index(i, f"nme_normalisation.{key}")
        if self.pupils is not None:
            if len(self.pupils) != 2 or any(len(g) == 0 for g in self.pupils):
                raise ValueError(f"{where}: field 'pupils' needs two non-empty groups of points")
            for g in self.pupils:
                for i in g:
                    check_index(i, "pupils")
        for attr in ("torso", "head"):
            value = getattr(self, attr)
            if value is not None:
                if len(value) != 2:
                    raise ValueError(f"{where}: field {attr!r} needs 2 points, got {len(value)}")
                for i in value:
                    check_index(i, attr)

    # ------------------------------------------------------------------ derived
    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_permutation(self) -> Optional[np.ndarray]:
        """(K,) int index array: ``points[flip_permutation]`` swaps every left/right pair.

        Use it after mirroring an image horizontally, so that the point now drawn where the left
        one was is called left again. It is its own inverse. None when the scheme is not
        ``mirrorable``: the datasets then never mirror an image, and flip tests are skipped.
        """
        if not self.mirrorable:
            return None
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def index(self, name: str) -> int:
        """The 0-based index of keypoint ``name``."""
        try:
            return self.keypoint_names.index(name)
        except ValueError:
            raise KeyError(f"scheme {self.name!r} has no keypoint {name!r}") from None

    @property
    def interocular(self) -> Optional[tuple[int, int]]:
        """The outer-eye-corner (or eye-centre) pair for inter-ocular NME, if the scheme has one."""
        return self.nme_normalisation.get("interocular")

    def to_dict(self) -> dict:
        """The scheme as plain data in the YAML layout (names, not indices):
        ``scheme_from_dict(s.to_dict())`` gives back an equal scheme. Checkpoints store this."""
        names = self.keypoint_names

        def named(pairs):
            return [[names[a], names[b]] for a, b in pairs]

        raw = {"name": self.name, "sides": self.sides, "keypoints": list(names),
               "flip_pairs": named(self.flip_pairs), "skeleton": named(self.skeleton),
               "oks_sigmas": [float(s) for s in self.oks_sigmas],
               "nme_normalisation": {k: [names[i] for i in v] for k, v in self.nme_normalisation.items()},
               "notes": list(self.notes)}
        if not self.mirrorable:
            raw["mirrorable"] = False
        if self.pupils is not None:
            raw["pupils"] = [[names[i] for i in group] for group in self.pupils]
        for attr in ("torso", "head"):
            value = getattr(self, attr)
            if value is not None:
                raw[attr] = [names[i] for i in value]
        return raw

    # ------------------------------------------------------------------ value semantics
    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, KeypointScheme):
            return NotImplemented
        return (self.name == other.name and self.keypoint_names == other.keypoint_names
                and self.flip_pairs == other.flip_pairs and self.skeleton == other.skeleton
                and np.array_equal(self.oks_sigmas, other.oks_sigmas)
                and self.nme_normalisation == other.nme_normalisation and self.pupils == other.pupils
                and self.torso == other.torso and self.head == other.head and self.sides == other.sides
                and self.mirrorable == other.mirrorable)

    def __hash__(self) -> int:
        return hash((self.name, self.keypoint_names, self.flip_pairs))

    def __repr__(self) -> str:
        return (f"KeypointScheme(name={self.name!r}, num_keypoints={self.num_keypoints}, "
                f"flip_pairs={len(self.flip_pairs)}, sides={self.sides!r}"
                + ("" if self.mirrorable else ", mirrorable=False") + ")")


# ---------------------------------------------------------------------------- locating files


def schemes_dir() -> Path:
    """The folder holding the scheme files (see :mod:`heatmapnet.resources`): the package's own
    ``heatmapnet/datasets/`` in an installed copy, else the checkout's ``datasets/``."""
    return resources.dataset_metadata_dir()


def available_schemes() -> list[str]:
    """Names of the schemes :func:`load_scheme` finds by name, sorted."""
    folder = schemes_dir()
    if not folder.is_dir():
        return []
    return sorted({p.stem for p in folder.glob("*.yaml")} | {p.stem for p in folder.glob("*.yml")})


def load_scheme(name_or_path: Union[str, Path]) -> KeypointScheme:
    """Load a scheme by name (``"coco17"``, looked up in :func:`schemes_dir`) or from a YAML path."""
    text = str(name_or_path)
    path = Path(text)
    looks_like_path = isinstance(name_or_path, Path) or path.suffix in (".yaml", ".yml") or "/" in text \
        or "\\" in text
    if looks_like_path:
        if not path.is_file():
            raise FileNotFoundError(f"scheme file not found: {path}")
        return _load_file(path)
    folder = schemes_dir()
    for suffix in (".yaml", ".yml"):
        candidate = folder / f"{text}{suffix}"
        if candidate.is_file():
            return _load_file(candidate)
    raise ValueError(f"unknown keypoint scheme {text!r}; available: {', '.join(available_schemes()) or 'none'} "
                     f"(in {folder}); or pass the path of a YAML file")


def _load_file(path: Path) -> KeypointScheme:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of fields at the top level, got {type(raw).__name__}")
    return scheme_from_dict(raw, source=str(path))


def scheme_from_dict(raw: Mapping[str, Any], source: str = "<dict>") -> KeypointScheme:
    """Build a scheme from the YAML fields (names, not indices); errors name ``source`` and the field."""
    for fld in _REQUIRED:
        if fld not in raw or (raw[fld] is None and fld in ("name", "keypoints", "oks_sigmas")):
            raise ValueError(f"{source}: missing required field {fld!r}")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ValueError(f"{source}: unknown field(s) {unknown}; allowed: {list(_REQUIRED + _OPTIONAL)}")

    names = raw["keypoints"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{source}: field 'keypoints' must be a list of names")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{source}: field 'keypoints': duplicate name(s) {duplicates}")
    lookup = {n: i for i, n in enumerate(names)}

    def ref(value, fld):
        if not isinstance(value, str):
            raise ValueError(f"{source}: field {fld!r}: expected a keypoint name, got {value!r}")
        if value not in lookup:
            raise ValueError(f"{source}: field {fld!r}: unknown keypoint name {value!r}")
        return lookup[value]

    def pair_list(fld):
        value = raw.get(fld) or []
        if not isinstance(value, list):
            raise ValueError(f"{source}: field {fld!r} must be a list of [name, name] pairs")
        out = []
        for item in value:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ValueError(f"{source}: field {fld!r}: each entry must be [name, name], got {item!r}")
            out.append((ref(item[0], fld), ref(item[1], fld)))
        return tuple(out)

    def pair(fld):
        value = raw.get(fld)
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(f"{source}: field {fld!r} must be [name, name], got {value!r}")
        return (ref(value[0], fld), ref(value[1], fld))

    sigmas = raw["oks_sigmas"]
    if not isinstance(sigmas, list):
        raise ValueError(f"{source}: field 'oks_sigmas' must be a list of numbers")
    try:
        sigmas = np.asarray([float(s) for s in sigmas])
    except (TypeError, ValueError):
        raise ValueError(f"{source}: field 'oks_sigmas' must be a list of numbers") from None
    if sigmas.shape[0] != len(names):
        raise ValueError(f"{source}: field 'oks_sigmas' has {sigmas.shape[0]} values for "
                         f"{len(names)} keypoints")

    nme_raw = raw.get("nme_normalisation") or {}
    if not isinstance(nme_raw, dict):
        raise ValueError(f"{source}: field 'nme_normalisation' must be a mapping like "
                         "{interocular: [name, name]}")
    nme = {}
    for key, value in nme_raw.items():
        fld = f"nme_normalisation.{key}"
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError(f"{source}: field {fld!r} must be [name, name]")
        nme[str(key)] = tuple(ref(v, fld) for v in value)

    pupils = raw.get("pupils")
    if pupils is not None:
        if not isinstance(pupils, list) or len(pupils) != 2 or not all(isinstance(g, list) and g for g in pupils):
            raise ValueError(f"{source}: field 'pupils' must be two non-empty lists of names")
        pupils = tuple(tuple(ref(v, "pupils") for v in g) for g in pupils)

    notes = raw.get("notes") or ()
    if isinstance(notes, str):
        notes = (notes,)
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"{source}: field 'name' must be a non-empty string")
    mirrorable = raw.get("mirrorable", True)
    if not isinstance(mirrorable, bool):
        raise ValueError(f"{source}: field 'mirrorable' must be true or false, got {mirrorable!r}")
    return KeypointScheme(
        name=name,
        keypoint_names=tuple(names),
        flip_pairs=pair_list("flip_pairs"),
        skeleton=pair_list("skeleton"),
        oks_sigmas=sigmas,
        nme_normalisation=nme,
        pupils=pupils,
        torso=pair("torso"),
        head=pair("head"),
        sides=str(raw.get("sides") or "person"),
        source=source,
        notes=tuple(str(n) for n in notes),
        mirrorable=mirrorable,
    )


# ---------------------------------------------------------------------------- COCO categories

_LEFT_RIGHT = {"left": "right", "right": "left", "l": "r", "r": "l"}


def _mirror_name(name: str) -> Optional[str]:
    """The name with its left/right marker swapped, or None if it has none.

    Markers are whole tokens separated by ``_``, ``-``, ``.`` or spaces (``left_eye``, ``eye_left``,
    ``l_eye``, ``medial_right_hip``) or a camel-case prefix (``leftEye``, ``LeftEye``).
    """
    tokens = re.split(r"([_\-.\s]+)", name)
    changed = False
    for i, tok in enumerate(tokens):
        low = tok.lower()
        if low in _LEFT_RIGHT:
            swapped = _LEFT_RIGHT[low]
            tokens[i] = swapped.upper() if tok.isupper() and len(tok) > 1 else (
                swapped.capitalize() if tok[:1].isupper() else swapped)
            changed = True
        else:
            m = re.match(r"^(left|right|Left|Right|LEFT|RIGHT)(?=[A-Z0-9])(.*)$", tok)
            if m:
                word = m.group(1)
                other = _LEFT_RIGHT[word.lower()]
                other = other.upper() if word.isupper() else (other.capitalize() if word[0].isupper() else other)
                tokens[i] = other + m.group(2)
                changed = True
    return "".join(tokens) if changed else None


def _is_left(name: str) -> bool:
    tokens = [t.lower() for t in re.split(r"[_\-.\s]+", name)]
    return any(t in ("left", "l") or re.match(r"^left(?=[a-z0-9])", t) for t in tokens) or \
        bool(re.match(r"^(left|Left|LEFT)(?=[A-Z0-9])", name))


def infer_flip_pairs(names: Sequence[str]) -> tuple[Pair, ...]:
    """[left, right] index pairs found by swapping left/right markers in the names."""
    lookup = {n: i for i, n in enumerate(names)}
    pairs = []
    done = set()
    for i, n in enumerate(names):
        if i in done:
            continue
        m = _mirror_name(n)
        if m is None or m == n or m not in lookup:
            continue
        j = lookup[m]
        if j in done:
            continue
        done.update((i, j))
        pairs.append((i, j) if _is_left(n) else (j, i))
    return tuple(pairs)


def scheme_from_coco_category(category: Mapping[str, Any], name: Optional[str] = None) -> KeypointScheme:
    """A scheme from a COCO json category (``keypoints`` names and the 1-based ``skeleton``).

    Flip pairs are inferred from the names (``left_x``/``right_x``, ``l_x``/``r_x``,
    ``x_left``/``x_right``, ``leftX``/``rightX``). OKS sigmas are COCO's when the names are exactly
    COCO's 17; otherwise a uniform 0.025 with a note in ``scheme.notes``. Skeleton edges that
    refer to keypoints the category does not have (some published files carry COCO's skeleton
    with fewer keypoints) are dropped, with a note.
    """
    where = f"COCO category {category.get('name', '?')!r} (id {category.get('id', '?')})"
    names = category.get("keypoints")
    if not isinstance(names, list) or not names:
        raise ValueError(f"{where}: field 'keypoints' is missing or empty; a keypoint scheme needs "
                         "the keypoint names (face files often leave it empty: load a scheme file instead)")
    k = len(names)
    notes = []
    skeleton = []
    for edge in category.get("skeleton") or []:
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise ValueError(f"{where}: field 'skeleton': each edge must be [a, b], got {edge!r}")
        a, b = int(edge[0]) - 1, int(edge[1]) - 1
        if not (0 <= a < k and 0 <= b < k):
            notes.append(f"skeleton edge {list(edge)} (1-based) is out of range for {k} keypoints; dropped")
            continue
        skeleton.append((a, b))
    if tuple(names) == COCO17_KEYPOINTS:
        sigmas = np.asarray(COCO17_SIGMAS)
    else:
        sigmas = np.full(k, DEFAULT_SIGMA)
        notes.append(f"no OKS sigmas for these keypoints: uniform {DEFAULT_SIGMA} assumed")
    return KeypointScheme(
        name=name or str(category.get("name") or "coco_category"),
        keypoint_names=tuple(str(n) for n in names),
        flip_pairs=infer_flip_pairs(names),
        skeleton=tuple(skeleton),
        oks_sigmas=sigmas,
        source=where,
        notes=tuple(notes),
    )
