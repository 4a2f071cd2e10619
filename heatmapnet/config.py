"""Run configuration: a typed schema, YAML files in ``configs/`` and dotted overrides.

The schema is a tree of dataclasses turned into an OmegaConf structured config in struct mode,
so a misspelt key in a file or on the command line is an error that lists the valid keys.
Each part of the program receives only its own section (``cfg.model``, ``cfg.train``, ...).
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from .augmentation import Augmentation
from .errors import ConfigError
from .stride import OUTPUT_STRIDE
from .resources import checkout_root, config_dir, config_names

#: Where the named configs are: the checkout's ``configs/``, or ``heatmapnet/configs/`` inside an
#: installed copy (see :mod:`heatmapnet.resources`; :func:`resolve_config_path` looks it up afresh).
CONFIG_DIR = config_dir()
DEFAULT_CONFIG = "synthetic_faces"


def data_root() -> Path:
    """Where real data lives: ``$HEATMAPNET_DATA``, else ``../shared/data`` beside the checkout.
    Configs refer to it as ``${data_root:}``. An installed copy has no checkout to stand beside,
    so there ``$HEATMAPNET_DATA`` must be set; without it this raises :class:`ConfigError`."""
    env = os.environ.get("HEATMAPNET_DATA")
    if env:
        return Path(env)
    root = checkout_root()
    if root is None:
        raise ConfigError("heatmapnet runs from an installed copy, not a checkout, so it does not know where "
                          "real data lives: set HEATMAPNET_DATA to the folder that holds it (ytf68/, coco/, ...)")
    return root.parent / "shared" / "data"


OmegaConf.register_resolver("data_root", lambda: str(data_root()), replace=True)


@dataclass
class ModelSection:
    backbone: str = "mobilenetv3_large_075"
    head: str = "fpn"
    head_channels: int = 64
    head_norm: str = "batch"  # batch | group (GroupNorm: results independent of the DDP split)
    pretrained_path: Optional[str] = None  # a local timm weight file; nothing is downloaded
    # a heatmapnet checkpoint (any mode, any scheme) to start from: every tensor whose name and
    # shape match, the classifier's rows mapped by keypoint name (heatmapnet.transfer). Unlike
    # --resume, the optimiser, schedule and step start afresh
    init_from: Optional[str] = None
    # the init_from file's SHA-256, written by the trainer into the run's config.yaml; set it to
    # insist on that file (another content is an error)
    init_from_sha256: Optional[str] = None


@dataclass
class SourceSection:
    """One annotated source of a split of several (``data.train.sources``, ``data.val.sources``;
    ``data.scheme: union``, :mod:`heatmapnet.multisource`): files in a reader's format with their
    own keypoint scheme. A validation source names the training source whose channels it is
    scored on."""

    name: Optional[str] = None  # its label (metrics "<name>/nme"); None: the scheme's name
    scheme: Optional[str] = None  # its keypoint scheme (a file of datasets/ or a path); val: the training source's
    format: Optional[str] = None  # reader format; None guesses it from ann_file
    ann_file: Optional[str] = None
    img_dir: Optional[str] = None
    subset: Optional[str] = None  # a Python slice of its records, e.g. "0:2500"
    # training sources: settings of data.augmentation this source's samples use instead, e.g. {flip_probability: 0}
    augmentation: Dict[str, float] = field(default_factory=dict)
    flip_test: Optional[bool] = None  # validation sources: None keeps eval.flip_test


@dataclass
class SplitSection:
    """Where one split comes from: a synthetic generator, files in a reader's format, mosaics
    of the files' single-person records (:class:`heatmapnet.data.mosaic.MosaicPeople`), or several
    sources of files with their own schemes (``sources``, with ``data.scheme: union``)."""

    source: str = "files"  # files | mosaic | synthetic_faces | synthetic_faces5 | synthetic_people
    format: Optional[str] = None  # reader format; None guesses it from ann_file
    ann_file: Optional[str] = None
    img_dir: Optional[str] = None
    subset: Optional[str] = None  # a Python slice of the records (mosaic: of the source people), e.g. "0:2500"
    num_samples: int = 0  # synthetic and mosaic sources only
    seed: int = 0  # synthetic and mosaic sources only
    people: List[int] = field(default_factory=lambda: [2, 4])  # mosaic only: fewest and most people per image
    canvas: List[int] = field(default_factory=lambda: [384, 384])  # mosaic only: image width, height
    # several annotated sources, each its own scheme, in one run of the union scheme (data.scheme: union)
    sources: List[SourceSection] = field(default_factory=list)
    mix: str = "equal"  # training sources: equal (each source an equal share of every epoch) | proportional (to size)


@dataclass
@dataclass
class LabelNoiseSection:
    """Training labels made wrong by a known amount (:mod:`heatmapnet.data.label_noise`);
    validation labels stay clean."""

    sigma: float = 0.0  # jitter std in x and y, a fraction of the instance's normaliser (inter-ocular, torso)
    swap: float = 0.0  # probability that an instance's left/right labels are exchanged


@dataclass
class DataSection:
    # a file of datasets/ (or a path); "coco" takes it from the json; "union" the union of data.train.sources' schemes
    scheme: str = "ibug68"
    mode: str = "topdown"  # the one switch of the task: topdown (a crop per instance) | multi | bottomup (whole images)
    input_size: List[int] = field(default_factory=lambda: [128, 128])  # width, height
    padding: float = 1.25  # top-down box padding
    num_workers: int = 2
    skip_invalid: bool = False  # skip (and report) bad samples instead of stopping
    # how an image file's EXIF orientation tag is read, the same in training, evaluation, predict (both
    # backends), viz, mosaics and the pre-flight's size check (heatmapnet.imageio): apply (default: the
    # image as browsers and annotation tools display it, width/height as displayed) | ignore (the stored rows)
    exif_orientation: str = "apply"
    # points a horizontal mirror swaps, [[a, b], ...] by name or 0-based index; overrides the scheme's.
    # None: the scheme's, else inferred from the training data; none found: no flip at all
    flip_pairs: Optional[List] = None
    augmentation: Augmentation = field(default_factory=Augmentation)  # the ranges (heatmapnet.augmentation)
    label_noise: LabelNoiseSection = field(default_factory=LabelNoiseSection)
    train: SplitSection = field(default_factory=SplitSection)
    val: SplitSection = field(default_factory=SplitSection)


@dataclass
class TargetSection:
    sigma_policy: str = "auto"  # auto (fixed for regression losses, radius for focal) | fixed | radius | oks
    sigma: float = 2.0  # fixed policy
    min_overlap: float = 0.7  # radius policy
    radius_formula: str = "exact"  # radius policy: exact | centernet
    oks_scale: float = 1.0  # oks policy
    exact_peak: Optional[bool] = None  # None: True for focal losses, False for regression losses


@dataclass
class FocalLossSection:  # CornerNet's distance-aware focal loss
    alpha: float = 2.0
    beta: float = 4.0


@dataclass
class RetinaFocalLossSection:  # RetinaNet's focal loss
    alpha: Optional[float] = 0.25  # None: no class balancing
    gamma: float = 2.0
    reduction: str = "mean"  # mean | sum | positives


@dataclass
class MSELossSection:
    convention: str = "mmpose"  # mmpose | hrnet


@dataclass
class AdaptiveWingLossSection:
    alpha: float = 2.1
    omega: float = 14.0
    epsilon: float = 1.0
    theta: float = 0.5


@dataclass
class LossSection:
    """``name`` picks a loss of :data:`heatmapnet.losses.LOSSES`; the section of that name holds
    its constructor's arguments, all of which reach it."""

    name: str = "focal"  # focal | mse | awing | retina_focal
    focal: FocalLossSection = field(default_factory=FocalLossSection)
    retina_focal: RetinaFocalLossSection = field(default_factory=RetinaFocalLossSection)
    mse: MSELossSection = field(default_factory=MSELossSection)
    awing: AdaptiveWingLossSection = field(default_factory=AdaptiveWingLossSection)


@dataclass
class TrainSection:
    steps: int = 1500
    batch_size: int = 32  # global batch, split over DDP ranks
    optimizer: str = "adamw"  # adam | adamw
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    clip_grad: float = 5.0  # max gradient norm; 0 disables
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    eval_every: int = 500
    log_every: int = 20
    checkpoint_every: int = 500
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    # fine-tuning (heatmapnet.finetune): module-name prefixes kept bit-identical (no gradient,
    # normalisation and dropout in eval mode), e.g. [backbone]; until unfreeze_step (0: the whole run)
    freeze: List[str] = field(default_factory=list)
    unfreeze_step: int = 0
    # learning-rate multipliers by module-name prefix, e.g. {backbone: 0.1}; the longest prefix wins
    lr_mult: Dict[str, float] = field(default_factory=dict)


@dataclass
class EvalSection:
    refine: str = "dark"  # none | quarter | dark
    blur_sigma: Optional[float] = None  # DARK's modulation of predicted maps
    flip_test: bool = False
    batch_size: int = 64
    pck_threshold: float = 0.2
    failure_threshold: float = 0.1
    detection_distance: float = 0.1  # multi-instance AP: a match within this fraction of the box size
    max_instances: int = 20  # multi: instances per image; an image keeps max_instances x K peaks of all its maps
    max_people: int = 20  # bottomup: people (centre candidates) decoded per image
    joint_threshold: float = 0.2  # bottomup: a joint snaps to a joint-heatmap peak at least this high
    person_score: str = "centre_x_joints"  # bottomup: centre (CenterNet: the centre peak) | centre_x_joints


@dataclass
class BottomUpSection:
    """Weights of the regression terms of the bottom-up loss (CenterNet's multi-pose defaults);
    both heatmaps get the loss of ``loss.name`` with weight 1."""

    centre_offset_weight: float = 1.0
    size_weight: float = 0.1
    joint_offsets_weight: float = 1.0
    joint_offset_weight: float = 1.0


@dataclass
class PretrainSection:
    """A stage trained first into ``<run dir>/pretrain`` (:mod:`heatmapnet.stages`); the run then
    starts from its ``last.pt`` as ``model.init_from`` would. A finished stage is reused."""

    config: Optional[str] = None  # a name in configs/ or a YAML path; None: no stage
    set: List[str] = field(default_factory=list)  # the stage's dotted overrides, e.g. ["train.steps=1000"]


@dataclass
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    target: TargetSection = field(default_factory=TargetSection)
    loss: LossSection = field(default_factory=LossSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    bottomup: BottomUpSection = field(default_factory=BottomUpSection)
    pretrain: PretrainSection = field(default_factory=PretrainSection)


def resolve_config_path(name_or_path: Optional[str]) -> Path:
    """A path as given, or a named config (``ytf68`` -> ``configs/ytf68.yaml``, read from the checkout
    or, in an installed copy, from the package's own ``heatmapnet/configs/``)."""
    name_or_path = name_or_path or DEFAULT_CONFIG
    path = Path(name_or_path)
    if path.is_file():
        return path
    folder = config_dir()
    named = folder / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    raise ConfigError(f"config {name_or_path!r} is neither a file nor one of configs/ ({folder}): {config_names()}")


def _valid_keys(schema: DictConfig, dotted: str) -> List[str]:
    node = schema
    for part in dotted.split(".")[:-1]:
        if isinstance(node, DictConfig) and part in node:
            node = node[part]
        else:
            break
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def merge_config(base: DictConfig, other, where: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)
    except (ConfigAttributeError, ConfigKeyError) as error:
        key = getattr(error, "full_key", None) or str(error)
        valid = _valid_keys(base, key)
        raise ConfigError(f"{where}: unknown config key {key!r}; valid keys here: {valid}") from None
    except ValidationError as error:
        raise ConfigError(f"{where}: {str(error.msg).splitlines()[0]} (key {error.full_key!r})") from None


#: keys whose value counts steps, samples or pixels and must be at least 1
AT_LEAST_ONE = ("train.steps", "train.batch_size", "train.eval_every", "train.checkpoint_every", "train.log_every",
                "eval.batch_size", "eval.max_instances", "eval.max_people")
#: keys that must not be negative (0 turns the feature off or keeps a default)
NOT_NEGATIVE = ("train.warmup_steps", "train.clip_grad", "train.weight_decay", "train.threads", "data.num_workers",
                "train.unfreeze_step")
#: keys that must be above 0
POSITIVE = ("train.lr", "data.padding", "target.sigma", "eval.pck_threshold")


def value_problems(config: DictConfig) -> List[str]:
    """Values the schema's types allow but a run cannot use (a batch of 0, an evaluation every 0
    steps, an input size that is not two positive multiples of the stride), one line each,
    ``key=value: what is expected``."""
    problems = [f"{key}={OmegaConf.select(config, key)}: must be >= 1" for key in AT_LEAST_ONE
                if OmegaConf.select(config, key) < 1]
    problems += [f"{key}={OmegaConf.select(config, key)}: must be >= 0" for key in NOT_NEGATIVE
                 if OmegaConf.select(config, key) < 0]
    problems += [f"{key}={OmegaConf.select(config, key)}: must be > 0" for key in POSITIVE
                 if not OmegaConf.select(config, key) > 0]
    problems += [f"train.lr_mult.{key}={value}: must be >= 0" for key, value in config.train.lr_mult.items()
                 if not value >= 0]
    sigma, swap = config.data.label_noise.sigma, config.data.label_noise.swap
    if not sigma >= 0:
        problems.append(f"data.label_noise.sigma={sigma}: a fraction of the normaliser, must be >= 0")
    if not 0 <= swap <= 1:
        problems.append(f"data.label_noise.swap={swap}: a probability, must be in [0, 1]")
    if config.data.scheme == "union" and (sigma or swap):
        problems.append("data.label_noise: applies to runs of one scheme, not data.scheme=union")
    from .imageio import EXIF_ORIENTATIONS

    if config.data.exif_orientation not in EXIF_ORIENTATIONS:
        problems.append(f"data.exif_orientation={config.data.exif_orientation!r}: choose one of "
                        f"{list(EXIF_ORIENTATIONS)}")
    from .multisource import source_problems  # the sources of a union run, each entry by its index

    problems += source_problems(config)
    size = list(config.data.input_size)
    if len(size) != 2 or min(size) <= 0:
        problems.append(f"data.input_size={size}: expected [width, height], two positive integers")
    elif size[0] % OUTPUT_STRIDE or size[1] % OUTPUT_STRIDE:
        problems.append(f"data.input_size={size}: width and height must divide by {OUTPUT_STRIDE}, the models' "
                        "heatmap stride")
    return problems


def add_override_argument(parser: argparse.ArgumentParser,
                          help: str = "dotted overrides, e.g. train.steps=200 loss.name=mse") -> None:
    """``--set KEY=VALUE ...`` on a command's parser; given several times, every group counts."""
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help=help)


def _load_yaml(path: Path) -> DictConfig:
    try:
        loaded = OmegaConf.load(path)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        reason = " ".join(str(error).split())[:200]
        raise ConfigError(f"{path}: not a readable YAML config ({reason})") from None
    if not isinstance(loaded, DictConfig):
        found = "a list" if isinstance(loaded, ListConfig) else f"{type(loaded).__name__}"
        hint = (" (a json of annotations or detections is data: name it as data.train.ann_file or "
                "data.val.ann_file in a config)" if path.suffix.lower() == ".json" else "")
        raise ConfigError(f"{path}: not a heatmapnet config: expected a YAML mapping of sections "
                          f"{list(RunConfig.__dataclass_fields__)}, found {found}{hint}")
    return loaded


def load_config(name_or_path: Optional[str] = None, overrides: Sequence[str] = (), validate: bool = True) -> DictConfig:
    """Schema <- YAML file <- ``key.sub=value`` overrides, validated and resolved. With ``validate``
    (the default) a value no run can use (see :func:`value_problems`) is a :class:`ConfigError`
    listing every such value; ``heatmapnet check`` loads without it and reports them with the rest."""
    path = resolve_config_path(name_or_path)
    return _schema_config(_load_yaml(path), str(path), overrides, validate, stored=False)


def config_from_dict(values: dict, where: str, overrides: Sequence[str] = (), validate: bool = True) -> DictConfig:
    """A stored config (a plain dict, e.g. a checkpoint's) on today's schema, as :func:`load_config`
    reads a file: a setting added to the schema since it was stored takes its default; one the
    schema no longer has is a :class:`ConfigError` naming it (and ``where``), except a retired key
    at its one legal value (:data:`RETIRED_KEYS`), which is dropped. A bottom-up config stored
    before ``eval.max_people`` keeps the people count it had in ``eval.max_instances``."""
    values = OmegaConf.create(values)
    evaluation = values.get("eval") or {}
    if values.get("data", {}).get("mode") == "bottomup" and "max_instances" in evaluation \
            and "max_people" not in evaluation:
        values.eval.max_people = evaluation["max_instances"]
    return _schema_config(values, where, overrides, validate, stored=True)


#: keys the schema no longer has, each with the one value it could take and why. A file or
#: override that gives that value still loads, the key dropped with a warning (a stored config,
#: silently); any other value is a :class:`ConfigError` naming the key.
RETIRED_KEYS = {"target.stride": (OUTPUT_STRIDE, f"the models' heatmaps are always at stride {OUTPUT_STRIDE}")}


def _drop_retired(values: DictConfig, where: str, stored: bool) -> DictConfig:
    for key, (legal, why) in RETIRED_KEYS.items():
        section, name = key.rsplit(".", 1)
        node = OmegaConf.select(values, section)
        if not isinstance(node, DictConfig) or name not in node:
            continue
        if node[name] != legal:
            raise ConfigError(f"{where}: {key}={node[name]}: no longer a setting: {why}")
        if not stored:
            print(f"warning: {key} is no longer a setting ({why}); remove it from {where}", file=sys.stderr)
        values = copy.deepcopy(values)
        del OmegaConf.select(values, section)[name]
    return values


#: settings of a split (``data.train``, ``data.val``) that only mosaic sources read
MOSAIC_ONLY_SETTINGS = ("people", "canvas")


def ignored_settings(config: DictConfig) -> List[str]:
    """One warning line for each setting ``config`` gives away from its default that its
    ``data.mode`` (or, for a split's mosaic settings, the split's source) does not read."""
    from .deploy.modes import MODE_SPECS  # each mode's spec names the settings only it reads

    defaults = OmegaConf.structured(RunConfig)
    mode = config.data.mode
    readers: Dict[str, List[str]] = {}
    for name in MODE_SPECS.names():
        for pattern in MODE_SPECS.get(name).own_settings:
            readers.setdefault(pattern, []).append(name)
    lines = []
    for pattern, modes in readers.items():
        if mode in modes:
            continue
        section, name = pattern.rsplit(".", 1)
        names = list(defaults[section]) if name == "*" else [name]
        lines += [f"warning: {section}.{key} is ignored in data.mode={mode} (read in data.mode={'|'.join(modes)})"
                  for key in names if config[section][key] != defaults[section][key]]
    for split in ("train", "val"):
        section = config.data[split]
        if section.source != "mosaic":
            lines += [f"warning: data.{split}.{key} is ignored with data.{split}.source={section.source} "
                      "(read by mosaic sources only)"
                      for key in MOSAIC_ONLY_SETTINGS if section[key] != defaults.data[split][key]]
    return lines


def _schema_config(values: DictConfig, where: str, overrides: Sequence[str], validate: bool,
                   stored: bool) -> DictConfig:
    config = OmegaConf.structured(RunConfig)
    OmegaConf.set_struct(config, True)
    OmegaConf.set_struct(config.train.lr_mult, False)  # its keys are module prefixes, not schema keys
    config = merge_config(config, _drop_retired(values, where, stored), where)
    _open_source_augmentation(config)
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override {override!r} must look like key.sub=value")
        if _LIST_ITEM.search(override.split("=", 1)[0]):
            config = _update_list_item(config, override)
        else:
            where_override = f"override {override!r}"
            dotlist = _drop_retired(OmegaConf.from_dotlist([override]), where_override, stored)
            config = merge_config(config, dotlist, where_override)
    try:
        OmegaConf.resolve(config)
    except Exception as error:  # an interpolation that cannot be resolved names its key
        raise ConfigError(f"{where}: {error}") from None
    problems = value_problems(config) if validate else []
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    if not stored:  # a stored config is what its run used; nothing in it is the reader's to change
        for line in ignored_settings(config):
            print(line, file=sys.stderr)
    return config


#: a dotted key that goes through an item of a list, e.g. data.train.sources.1.subset
_LIST_ITEM = re.compile(r"\.\d+(\.|$)")


def _open_source_augmentation(config: DictConfig) -> None:
    """Each source's ``augmentation`` holds settings by name (checked by
    :func:`heatmapnet.multisource.source_problems`), not schema keys."""
    for split in ("train", "val"):
        for source in config.data[split].sources:
            OmegaConf.set_struct(source.augmentation, False)


def _update_list_item(config: DictConfig, override: str) -> DictConfig:
    """``key.N.sub=value`` on an existing list item (a merge of a dotlist cannot reach into a list)."""
    key = override.split("=", 1)[0].strip()
    where = f"override {override!r}"
    value = OmegaConf.select(OmegaConf.from_dotlist([override]), key)
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if part.isdigit():
            items = OmegaConf.select(config, ".".join(parts[:depth]))
            if isinstance(items, ListConfig) and int(part) >= len(items):
                raise ConfigError(f"{where}: {'.'.join(parts[:depth])} has {len(items)} item(s), numbered from 0; "
                                  "an override changes an item the config has")
    try:
        OmegaConf.update(config, key, value, merge=True)
    except (ConfigAttributeError, ConfigKeyError) as error:
        full = getattr(error, "full_key", None) or key
        raise ConfigError(f"{where}: unknown config key {full!r}: {str(error).splitlines()[0]}") from None
    except ValidationError as error:
        raise ConfigError(f"{where}: {str(error.msg).splitlines()[0]} (key {error.full_key!r})") from None
    _open_source_augmentation(config)
    return config


def save_config(config: DictConfig, path: Union[str, Path]) -> None:
    Path(path).write_text(OmegaConf.to_yaml(config), encoding="utf-8")
