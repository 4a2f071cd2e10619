"""Several annotated sources, one model: the union keypoint scheme (``data.scheme: union``).

A trunk for every scheme is trained on all the data at once: faces of 68 points, faces of 5,
bodies of 14 joints, each source in its own format and scheme (``data.train.sources``). The run's
scheme is the **union** of the sources' schemes, one heatmap channel per keypoint of each source,
in the sources' order:

- a keypoint keeps its source scheme's name, so :mod:`heatmapnet.transfer` maps the union's rows
  by name into a run of any of the sources' schemes (and of others that share names: COCO's
  shoulders are LSP's). The union has one ``sides`` convention, the first training source's; a
  source that means the other sides by "left" and "right" has its flip-paired points renamed
  after their partners, as :func:`heatmapnet.transfer.names_in_source` does (MTFL's image-left
  eye is the person's ``right_eye``). A name that two sources would both give is prefixed
  ``<source name>/`` in each, so no source's point stands for another's;
- each sample is a crop of one source's instance: the union's other channels are unlabelled,
  and an unlabelled keypoint is left out of the loss as an invisible one is (its heatmap weight is
  0, the whole channel of that sample out of the loss, negatives too; see
  :class:`heatmapnet.losses.HeatmapCriterion`), never trained as background;
- a mirror swaps each source's pairs within its own channels (the union's flip pairs are the
  sources' pairs side by side); a source may change settings of ``data.augmentation`` for its own
  samples (``augmentation: {flip_probability: 0}``);
- ``data.train.mix``: ``equal`` gives every source the same share of each epoch (an epoch is
  ``S x n_max`` samples, a smaller source cycled through its items), ``proportional`` the
  concatenation (shares by size). Either way the dataset is a fixed sequence and the trainer's
  :class:`~heatmapnet.engine.StepBatchSampler` draws it as a pure function of (seed, step), so
  a resumed run sees the batches an uninterrupted one would;
- validation is per source (``data.val.sources``, each named as a training source): its records in
  its own scheme, scored on its own channels of the model by its own metrics (faces: NME,
  failure rate, AUC; bodies: PCK, OKS AP), as ``<name>/<metric>``. The run's primary metric
  ``nme`` is the mean over the validation sources of each one's normalised mean error: the
  inter-ocular NME of a face source, the mean joint error over the torso of a body source
  (``<name>/nme_torso``; the box's larger side where the scheme names no torso).

A checkpoint of a union run holds the union scheme; ``model.init_from`` of it starts a run of any
scheme with the same backbone, head and ``head_channels``: every backbone and neck tensor, and the
classifier rows of the keypoints whose names the two schemes share.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from .data.records import Instance, Record
from .deploy.modes import MODE_SPECS
from .errors import ConfigError
from .metadata import KeypointScheme, load_scheme

UNION = "union"  # data.scheme
MIXES = ("equal", "proportional")  # data.train.mix


def is_union(config) -> bool:
    """Whether ``config`` is a run of several sources (``data.scheme: union``)."""
    return config.data.scheme == UNION


def source_name(section) -> str:
    """A source's label: its ``name``, else its scheme's."""
    return str(section.name or section.scheme or "")


# ----------------------------------------------------------------------------------------------
# the config
# ----------------------------------------------------------------------------------------------
def source_problems(config) -> List[str]:
    """What no run of the config's sources can use, one line each naming the source's index and
    key (``data.train.sources[1].scheme: ...``); nothing is read. An unknown scheme and an
    unreadable file are found where they are read: :func:`source_layout`, :func:`heatmapnet.data.build.read_source_records`."""
    data = config.data
    train, val = data.train.sources, data.val.sources
    if data.scheme != UNION:
        return [f"data.{split}.sources: lists {len(data[split].sources)} source(s), which needs data.scheme=union "
                f"(the union of the sources' schemes), not {data.scheme!r}" for split in ("train", "val")
                if data[split].sources]
    problems = []
    if not train:
        problems.append("data.scheme=union: data.train.sources lists no sources")
    if not val:
        problems.append("data.scheme=union: data.val.sources lists no sources (a union run is scored per source)")
    if data.mode in MODE_SPECS and MODE_SPECS.get(data.mode).whole_image:
        problems.append(f"data.mode={data.mode}: data.scheme=union trains a crop per instance, not whole images "
                        "(data.mode=topdown)")
    if data.flip_pairs is not None:
        problems.append("data.flip_pairs: a union run mirrors each source by its own scheme's pairs; leave it unset")
    if data.train.mix not in MIXES:
        problems.append(f"data.train.mix={data.train.mix!r}: choose one of {list(MIXES)}")
    for split in ("train", "val"):
        section = data[split]
        if section.source != "files" or section.ann_file:
            problems.append(f"data.{split}: lists sources, so its own source={section.source!r} and "
                            f"ann_file={section.ann_file!r} are unused; give one or the other")
    from .augmentation import unknown_settings

    names = [source_name(source) for source in train]
    for index, source in enumerate(train):
        key = f"data.train.sources[{index}]"
        if not source.scheme:
            problems.append(f"{key}.scheme: not set (each training source names its keypoint scheme)")
        if not source.ann_file:
            problems.append(f"{key}.ann_file: not set")
        if names.count(names[index]) > 1 and names.index(names[index]) < index:
            problems.append(f"{key}.name={names[index]!r}: another training source has that name; name each one")
        if source.flip_test is not None:
            problems.append(f"{key}.flip_test: a setting of validation sources (data.val.sources)")
        problems += unknown_settings(source.augmentation, f"{key}.augmentation")
    seen = set()
    for index, source in enumerate(val):
        key = f"data.val.sources[{index}]"
        name = source_name(source)
        if name not in names:
            problems.append(f"{key}.name={name or None!r}: not one of the training sources {names}: a validation "
                            "source is scored on the channels of the training source of its name")
        elif source.scheme and train[names.index(name)].scheme != source.scheme:
            problems.append(f"{key}.scheme={source.scheme!r}: the training source {name!r} has scheme "
                            f"{train[names.index(name)].scheme!r}")
        if name in seen:
            problems.append(f"{key}.name={name!r}: another validation source has that name")
        seen.add(name)
        if not source.ann_file:
            problems.append(f"{key}.ann_file: not set")
        if source.augmentation:
            problems.append(f"{key}.augmentation: validation crops are not augmented")
    return problems


# ----------------------------------------------------------------------------------------------
# the union scheme
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceLayout:
    """The union scheme and where each training source's channels are in it."""

    scheme: KeypointScheme  # the union
    names: Tuple[str, ...]  # the training sources' labels, in order
    schemes: Tuple[KeypointScheme, ...]  # each source's own scheme, with its own names
    offsets: Tuple[int, ...]  # each source's first channel in the union

    def channels(self, source: int) -> slice:
        return slice(self.offsets[source], self.offsets[source] + self.schemes[source].num_keypoints)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise ConfigError(f"no training source named {name!r}; the training sources are {list(self.names)}")
        return self.names.index(name)

    def flip_permutation(self, source: int) -> Optional[np.ndarray]:
        """(K_union,) the permutation a mirror applies to a sample of ``source``: its own pairs swapped
        within its channels; None (never mirrored) where its scheme is not mirrorable."""
        own = self.schemes[source].flip_permutation
        if own is None:
            return None
        permutation = np.arange(self.scheme.num_keypoints)
        permutation[self.channels(source)] = own + self.offsets[source]
        return permutation


def union_names(schemes: Sequence[KeypointScheme], names: Sequence[str]) -> List[Tuple[str, ...]]:
    """Each scheme's keypoint names in the union (whose ``sides`` are the first scheme's): renamed
    through flip pairs where a scheme's sides differ, prefixed ``<name>/`` where two schemes would
    give the same name."""
    from .transfer import names_in_source

    converted = [names_in_source(schemes[0], scheme) for scheme in schemes]
    sources_of = Counter(name for own in converted for name in set(own))
    return [tuple(f"{label}/{name}" if sources_of[name] > 1 else name for name in own)
            for label, own in zip(names, converted)]


def union_scheme(schemes: Sequence[KeypointScheme], names: Sequence[str]) -> SourceLayout:
    """The union of ``schemes`` (labelled ``names``) and its layout; see the module doc. A source
    scheme without flip pairs is not mirrored (nothing tells its lateral points apart)."""
    schemes = [scheme if scheme.flip_pairs else dataclasses.replace(scheme, mirrorable=False) for scheme in schemes]
    offsets = tuple(int(v) for v in np.cumsum([0] + [scheme.num_keypoints for scheme in schemes])[:-1])
    renamed = union_names(schemes, names)
    pairs, skeleton, sides = [], [], schemes[0].sides
    for scheme, offset in zip(schemes, offsets):
        if scheme.mirrorable:
            pairs += [(a + offset, b + offset) for a, b in scheme.flip_pairs]
        skeleton += [(a + offset, b + offset) for a, b in scheme.skeleton]
    notes = [f"union of {len(schemes)} sources (sides: {sides}):"]
    notes += [f"{label}: {scheme.name} ({scheme.sides} sides{'' if scheme.sides == sides else ', renamed'}) "
              f"channels {offset}-{offset + scheme.num_keypoints - 1}"
              for label, scheme, offset in zip(names, schemes, offsets)]
    union = KeypointScheme(name="+".join(names), keypoint_names=tuple(name for own in renamed for name in own),
                           flip_pairs=tuple(pairs), skeleton=tuple(skeleton),
                           oks_sigmas=np.concatenate([scheme.oks_sigmas for scheme in schemes]), sides=sides,
                           notes=tuple(notes), mirrorable=bool(pairs))
    return SourceLayout(union, tuple(names), tuple(schemes), offsets)


def source_layout(data_section) -> SourceLayout:
    """The union of ``data.train.sources``' schemes; an unknown scheme is a :class:`ConfigError`
    naming the source's index and key."""
    schemes, names = [], []
    for index, source in enumerate(data_section.train.sources):
        key = f"data.train.sources[{index}].scheme"
        if not source.scheme:
            raise ConfigError(f"{key}: not set (each training source names its keypoint scheme)")
        try:
            schemes.append(load_scheme(source.scheme))
        except (ValueError, FileNotFoundError) as error:
            raise ConfigError(f"{key}={source.scheme!r}: {error}") from None
        names.append(source_name(source))
    if not schemes:
        raise ConfigError("data.scheme=union: data.train.sources lists no sources")
    return union_scheme(schemes, names)


# ----------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------
@dataclass
class SourceRecord(Record):
    """A record of one source, its instances' points placed in that source's union channels
    (the others unlabelled)."""

    source: int = 0  # the training source (its index in data.train.sources)


def embed(record: Record, source: int, layout: SourceLayout) -> SourceRecord:
    """``record`` (in its source's scheme) with each instance's points in the union's channels."""
    size, channels = layout.scheme.num_keypoints, layout.channels(source)
    instances = []
    for instance in record.instances:
        keypoints, visible = np.zeros((size, 2)), np.zeros(size, bool)
        keypoints[channels], visible[channels] = instance.keypoints, instance.visible
        instances.append(Instance(keypoints, visible, instance.bbox.copy(), dict(instance.extra)))
    return SourceRecord(record.image_path, record.width, record.height, instances, record.image_id, record.image,
                        exif_orientation=record.exif_orientation, source=source)


def native(record: SourceRecord, layout: SourceLayout) -> Record:
    """A union record back in its source's own scheme (the points it was read with)."""
    channels = layout.channels(record.source)
    instances = [Instance(i.keypoints[channels].copy(), i.visible[channels].copy(), i.bbox.copy(), dict(i.extra))
                 for i in record.instances]
    return Record(record.image_path, record.width, record.height, instances, record.image_id, record.image,
                  exif_orientation=record.exif_orientation)


def source_counts(records: Sequence, layout: SourceLayout) -> Dict[str, int]:
    """Records of each training source among ``records`` (union records)."""
    counts = Counter(int(record.source) for record in records)
    return {name: counts[index] for index, name in enumerate(layout.names) if counts[index]}


def _by_source(records: Sequence) -> Dict[int, List[int]]:
    positions: Dict[int, List[int]] = {}
    for position, record in enumerate(records):
        positions.setdefault(int(record.source), []).append(position)
    return positions


# ----------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------
class MixedSources(Dataset):
    """The sources' top-down datasets as one sequence: ``equal`` gives each source ``n_max`` items
    (item j of source s is its item ``j mod n_s``), ``proportional`` is their concatenation.
    Item ``index`` of epoch e is augmented by the draws of ``(seed, e, index)``, so repeats of a
    small source in one epoch are different crops; a sample also holds ``source``, and its
    ``record_index`` indexes the union records the sources were split from."""

    def __init__(self, parts: Sequence, record_positions: Sequence[Sequence[int]], sources: Sequence[int],
                 mix: str = "equal", seed: int = 0):
        if mix not in MIXES:
            raise ValueError(f"data.train.mix={mix!r}: choose one of {list(MIXES)}")
        self.parts, self.sources, self.mix, self.seed = list(parts), list(sources), mix, seed
        self.record_positions = [np.asarray(p, dtype=np.int64) for p in record_positions]
        self.sizes = [len(part) for part in self.parts]
        empty = [s for s, size in zip(self.sources, self.sizes) if not size]
        if empty:
            raise ValueError(f"data.train.sources[{empty[0]}]: no instances to train on")
        self.block = max(self.sizes) if self.sizes else 0
        self.starts = np.cumsum([0] + self.sizes)

    def __len__(self) -> int:
        return self.block * len(self.parts) if self.mix == "equal" else int(self.starts[-1])

    def locate(self, index: int) -> Tuple[int, int]:
        """(part, item of that part) of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        if self.mix == "equal":
            part = index // self.block
            return part, (index % self.block) % self.sizes[part]
        part = int(np.searchsorted(self.starts, index, side="right") - 1)
        return part, index - int(self.starts[part])

    def __getitem__(self, key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        index = int(index)
        part, item = self.locate(index)
        sample = self.parts[part]._make_sample(item, np.random.default_rng([self.seed, int(epoch), index]))
        sample["index"] = torch.tensor(index)
        sample["record_index"] = torch.tensor(int(self.record_positions[part][int(sample["record_index"])]))
        sample["source"] = torch.tensor(self.sources[part])
        return sample


def source_augmentation(config: DictConfig, section, where: str):
    """``data.augmentation`` with a training source's own settings (``augmentation: {...}``, the
    key ``where``)."""
    from .augmentation import Augmentation

    return Augmentation.from_config(config.data.augmentation, section.augmentation, where=where)


def build_source_dataset(config: DictConfig, records: Sequence, codec, train: bool) -> MixedSources:
    """The dataset of union ``records``: training sets mixed as ``data.train.mix`` says, each
    source augmented with its own settings; validation sets the concatenation, unaugmented."""
    from .data.pipelines import TopDownDataset
    from .data.transforms import NO_AUGMENTATION

    layout = source_layout(config.data)
    positions = _by_source(records)
    parts, sources = [], []
    for source in sorted(positions):
        augmentation = source_augmentation(config, config.data.train.sources[source],
                                           f"data.train.sources[{source}].augmentation") if train else NO_AUGMENTATION
        mine = [records[p] for p in positions[source]]
        parts.append(TopDownDataset(mine, codec, layout.flip_permutation(source), augmentation, config.data.padding,
                                    config.train.seed))
        sources.append(source)
    return MixedSources(parts, [positions[s] for s in sources], sources,
                        config.data.train.mix if train else "proportional", config.train.seed)


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------
class SourceChannels(torch.nn.Module):
    """A model seen through one source's channels: ``heatmaps(images)[:, channels]``."""

    def __init__(self, model: torch.nn.Module, channels: slice):
        super().__init__()
        self.model, self.channels = model, channels

    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.heatmaps(images)[:, self.channels]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[:, self.channels]


def normalised_error(records, predictions, scheme: KeypointScheme) -> Tuple[str, float]:
    """(name, value): a face source's inter-ocular NME, a body source's mean joint error over its
    torso (over the box's larger side where the scheme names no torso; instances whose torso
    joints are not both visible are left out, as PCK leaves them out)."""
    from . import metrics
    from .scoring import BODY_ERROR_NAMES, body_error, ground_truth, is_face_scheme

    truth = ground_truth(records, predictions)
    gt, visible = truth.keypoints, truth.visible
    if is_face_scheme(scheme):
        return "nme", float(metrics.nme(predictions.keypoints, gt, norm_indices=scheme.interocular,
                                        visible=visible).mean())
    found = metrics.scheme_normaliser(scheme, gt, visible, truth.boxes)
    return BODY_ERROR_NAMES[found.name], body_error(predictions.keypoints, gt, visible, found.values)


class SourcesEvaluator:
    """Validation of a union run: each validation source's records in its own scheme, predicted on
    its own channels, scored by its own metrics (``<name>/<metric>``); ``nme`` is the mean of the
    sources' normalised errors (:func:`normalised_error`), the number the run is selected by.
    ``predict`` and ``score`` are :class:`heatmapnet.evaluation.Evaluator`'s, per source."""

    def __init__(self, config: DictConfig, records: Sequence, parts: Callable, dist=None):
        """``parts(scheme)``: the data mode and the codec of a source in ``scheme``
        (:func:`heatmapnet.build.build_evaluator` passes the build layer's)."""
        from .data.transforms import NO_AUGMENTATION
        from .evaluation import Evaluator

        self.layout = layout = source_layout(config.data)
        self.mode = _SourcesResults(self)
        positions = _by_source(records)
        self.parts = []  # (label, source, records in its own scheme, Evaluator)
        for section in config.data.val.sources:
            source = layout.index(source_name(section))
            own = [native(records[p], layout) for p in positions.get(source, [])]
            if not own:
                continue
            scheme = layout.schemes[source]
            mode, codec = parts(scheme)
            eval_section = OmegaConf.create(OmegaConf.to_container(config.eval))
            if section.flip_test is not None:
                eval_section.flip_test = bool(section.flip_test)
            dataset = mode.dataset(own, codec, scheme, NO_AUGMENTATION, seed=config.train.seed)
            self.parts.append((source_name(section), source, own,
                               Evaluator(mode, dataset, own, codec, scheme, eval_section, dist)))

    def predict(self, model, codec=None) -> Dict[str, object]:
        """Each source's predictions (its own keypoints, original pixels); ``codec`` (another run
        codec, e.g. another ``refine``) lends its decoding options to each source's codec."""
        found = {}
        for label, source, _, evaluator in self.parts:
            own = evaluator.codec if codec is None else dataclasses.replace(
                evaluator.codec, refine=codec.refine, blur_sigma=codec.blur_sigma)
            found[label] = evaluator.predict(SourceChannels(model, self.layout.channels(source)), own)
        return found

    def score(self, predictions: Dict[str, object]) -> dict:
        result, errors = {}, []
        for label, source, records, evaluator in self.parts:
            scored = evaluator.score(predictions[label])
            name, value = normalised_error(records, predictions[label], evaluator.scheme)
            scored.setdefault(name, value)
            errors.append(value)
            result.update({f"{label}/{key}": value for key, value in scored.items()})
        return {"nme": float(np.mean(errors)) if errors else float("nan"), **result}

    def __call__(self, model, codec=None) -> dict:
        return self.score(self.predict(model, codec))


class _SourcesResults:
    """``evaluator.mode.results`` of a union run (``heatmapnet eval``'s predictions.json): each
    source's COCO-style results, marked with its name."""

    mean_shape_baseline = True  # the sources are top-down crops (source_problems)

    def __init__(self, evaluator: SourcesEvaluator):
        self.evaluator = evaluator

    def results(self, records, predictions: Dict[str, object]) -> List[dict]:
        found = []
        for label, _, own, evaluator in self.evaluator.parts:
            found += [{**entry, "source": label} for entry in evaluator.mode.results(own, predictions[label])]
        return found
