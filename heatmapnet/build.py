"""The build layer: a run config -> scheme, mode, codec, model, loss, optimiser, datasets and evaluator.

Training, evaluation, prediction, viz, ablate and bench build everything here, each component
by the name its config section gives, from its module's registry:

=================  ==========================  ===========================
config key         registry                    module
=================  ==========================  ===========================
``data.mode``      :data:`MODES`               :mod:`heatmapnet.modes`
(the mode's)       :data:`CODECS`              :mod:`heatmapnet.codec`
``target.sigma_policy``  :data:`SIGMA_POLICIES`  :mod:`heatmapnet.targets`
``model.head``     :data:`HEADS`               :mod:`heatmapnet.models`
``loss.name``      :data:`LOSSES`              :mod:`heatmapnet.losses`
``train.optimizer``  :data:`OPTIMIZERS`        :mod:`heatmapnet.optimizers`
=================  ==========================  ===========================

(``bottomup``'s codec lives in :mod:`heatmapnet.bottomup`.)

A new head, loss, sigma policy, codec, mode or optimiser is one registered class; nothing here changes.
The loss decides the model's output activation (a sigmoid for focal losses), and the codec's
``auto`` target follows it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

from .codec import CODECS
from .data.build import read_source_records, read_split, resolve_scheme
from .data.label_noise import label_noise_from_config
from .data.readers import InvalidAnnotationError
from .data.transforms import NO_AUGMENTATION, Augmentation
from .distributed import DistInfo
from .errors import DataError, UserError
from .evaluation import Evaluator
from .finetune import parameter_groups
from .losses import LOSSES
from .metadata import KeypointScheme
from .models import HeatmapModel, ModelConfig
from .modes import MODES
from .multisource import SourcesEvaluator, build_source_dataset, is_union
from .optimizers import OPTIMIZERS


def output_activation(config: DictConfig) -> str:
    """``sigmoid`` for losses on logits, ``identity`` for losses on the heatmap itself."""
    return LOSSES.get(config.loss.name).output_activation


def build_scheme(config: DictConfig) -> KeypointScheme:
    return resolve_scheme(config.data, config.data.train)


def build_mode(config: DictConfig, scheme: KeypointScheme):
    return MODES.get(config.data.mode).from_config(config, scheme)


def build_codec(config: DictConfig, scheme: KeypointScheme):
    codec = CODECS.get(MODES.get(config.data.mode).codec)
    return codec.from_config(config, scheme, output_activation(config))


def build_model(config: DictConfig, scheme: KeypointScheme) -> HeatmapModel:
    """The model, with as many output channels as the mode asks for (one per keypoint type, or a
    bottom-up model's heatmaps, offsets and sizes)."""
    section, mode = config.model, build_mode(config, scheme)
    return HeatmapModel(ModelConfig(backbone=section.backbone, head=section.head, head_channels=section.head_channels,
                                    head_norm=section.head_norm, num_keypoints=mode.num_outputs(scheme),
                                    pretrained_path=section.pretrained_path,
                                    output_activation=output_activation(config),
                                    heatmap_channels=mode.heatmap_channels(scheme)))


def build_loss(config: DictConfig):
    """The loss ``loss.name`` names, with every setting of its section ``loss.<name>``."""
    name = config.loss.name
    settings = OmegaConf.to_container(config.loss[name]) if name in config.loss else {}
    return LOSSES.get(name)(**settings)


def build_criterion(config: DictConfig, scheme: KeypointScheme):
    """What the training step minimises: the mode's criterion around :func:`build_loss`."""
    return build_mode(config, scheme).criterion(build_loss(config), config, scheme)


def build_optimizer(config: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimiser ``train.optimizer`` names over every parameter of ``model``, frozen ones too (they
    get no gradient, so no update until ``train.unfreeze_step``), in ``train.lr_mult``'s groups."""
    train = config.train
    return OPTIMIZERS.get(train.optimizer)(parameter_groups(model, train.lr, train.lr_mult), lr=train.lr,
                                           weight_decay=train.weight_decay)


def build_dataset(config: DictConfig, records, codec, scheme: KeypointScheme, train: bool):
    """The torch dataset of one split (``train`` or ``val``) over ``records``, as the mode frames it;
    training sets are augmented as ``data.augmentation`` says, their labels made noisy as
    ``data.label_noise`` says."""
    if is_union(config):  # several sources: each its own channels, augmentation and share of the epoch
        return build_source_dataset(config, records, codec, train)
    augmentation = Augmentation.from_config(config.data.augmentation) if train else NO_AUGMENTATION
    dataset = build_mode(config, scheme).dataset(records, codec, scheme, augmentation, seed=config.train.seed)
    if train:  # data.label_noise: training labels only, validation stays as annotated
        dataset.label_noise = label_noise_from_config(config.data, scheme, config.train.seed)
    return dataset


def read_records(config: DictConfig, split_name: str):
    """The records of ``data.<split_name>``. A bad sample is the reader's :class:`InvalidAnnotationError`;
    any other problem of the split (a file in no known format, a missing field, a bad subset) is a
    :class:`DataError` naming the split."""
    name = f"data.{split_name}"
    if is_union(config):  # several sources, in the union scheme; their errors name the source
        return read_source_records(config, split_name)
    try:
        return read_split(config.data[split_name], config.data.skip_invalid, name, config.data.exif_orientation)
    except (InvalidAnnotationError, UserError):
        raise
    except ValueError as error:  # the readers' errors about a file as a whole
        raise DataError(str(error) if str(error).startswith(name) else f"{name}: {error}") from error


@dataclass
class RunRecords:
    """Both splits' records of a run and their scheme: as the pre-flight passed them
    (:func:`heatmapnet.preflight.checked_run_records`: every image opened, with ``data.skip_invalid``
    the bad ones dropped) or as :func:`read_run_records` reads them (the annotations alone)."""

    scheme: KeypointScheme
    train: object
    val: object


def read_run_records(config: DictConfig) -> RunRecords:
    """The scheme and both splits' records, no image opened (see :func:`read_records`)."""
    return RunRecords(build_scheme(config), read_records(config, "train"), read_records(config, "val"))


@dataclass
class RunData:
    """What one run reads: the scheme, both splits' records and their datasets."""

    scheme: KeypointScheme
    train_records: object
    val_records: object
    train_set: object
    val_set: object


def build_run_data(config: DictConfig, codec, records: RunRecords) -> RunData:
    """The run's datasets over ``records``."""
    return RunData(records.scheme, records.train, records.val,
                   build_dataset(config, records.train, codec, records.scheme, train=True),
                   build_dataset(config, records.val, codec, records.scheme, train=False))


def build_evaluator(config: DictConfig, records, dataset, codec, scheme: KeypointScheme,
                    dist: Optional[DistInfo] = None) -> Evaluator:
    """Validation of ``dataset`` (over ``records``) as ``config.eval`` and the mode say; a union
    run's is per source (:class:`heatmapnet.multisource.SourcesEvaluator`, over the records alone)."""
    if is_union(config):
        return SourcesEvaluator(config, records, lambda scheme: (build_mode(config, scheme), build_codec(config, scheme)),
                                dist)
    return Evaluator(build_mode(config, scheme), dataset, records, codec, scheme, config.eval, dist)
