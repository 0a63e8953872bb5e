"""Datasets: every one returns the same sample dict (see ``densemtl_core.data.synthetic``)."""
from __future__ import annotations

import dataclasses

from torch.utils.data import Dataset

from ..config import DATASET_NAMES, SYNTHETIC_DOMAINS, ConfigError, DataConfig
from .cityscapes import Cityscapes
from .common import DatasetLayoutError, PublicDataset
from .folder import ImageFolder
from .nyudv2 import NYUDv2
from .recording import RecordingDataset
from .synthetic import RENDER_DOMAINS, SyntheticScenes, SyntheticSequences
from .synthia import Synthia
from .target import TargetImages
from .transforms import build_transforms
from .vkitti2 import VirtualKitti2

PUBLIC_DATASETS: dict[str, type[PublicDataset]] = {
    cls.name: cls for cls in (NYUDv2, Cityscapes, VirtualKitti2, Synthia)}
assert set(("synthetic", *PUBLIC_DATASETS)) <= set(DATASET_NAMES)
assert tuple(RENDER_DOMAINS) == SYNTHETIC_DOMAINS

__all__ = ["DatasetLayoutError", "PUBLIC_DATASETS", "TargetImages", "build_dataset",
           "build_target_images"]


def build_dataset(cfg: DataConfig, split: str, train: bool = False,
                  sequence: bool = False) -> Dataset:
    """The dataset named by ``cfg.dataset`` for ``split``, with training augmentation if asked.

    Every dataset goes through the same ``build_transforms`` and exposes ``num_classes``,
    ``class_names`` and ``class_colors``. The public datasets have labels for train and val
    only, so ``test`` reads their val split. ``sequence`` asks for temporal samples (frames
    t - stride, t, t + stride and ``travel``), for learning depth from video; without it every
    dataset gives single frames. Synthetic single frames are :class:`SyntheticScenes` even for a
    model trained on :class:`SyntheticSequences` (see there why).
    """
    transform = build_transforms(cfg, train=train)
    if cfg.dataset in PUBLIC_DATASETS:
        return PUBLIC_DATASETS[cfg.dataset].from_config(cfg, split, transform,
                                                        sequence=sequence)
    if cfg.dataset == "rosbag":
        return RecordingDataset.from_config(cfg, split, transform, sequence=sequence)
    if cfg.dataset == "folder":
        return ImageFolder.from_config(cfg, split, transform, sequence=sequence)
    if cfg.dataset != "synthetic":
        raise ValueError(f"unknown dataset {cfg.dataset!r}; available: {list(DATASET_NAMES)}")
    lengths = {"train": cfg.train_length, "val": cfg.val_length, "test": cfg.test_length}
    if split not in lengths:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(lengths)}")
    if cfg.domain not in RENDER_DOMAINS:
        raise ConfigError(f"data.domain must be one of {list(RENDER_DOMAINS)}, "
                          f"got {cfg.domain!r}")
    domain = RENDER_DOMAINS[cfg.domain]
    if sequence:
        return SyntheticSequences(split, lengths[split], size=cfg.image_size, seed=cfg.seed,
                                  transform=transform, cache=cfg.cache, stride=cfg.frame_stride,
                                  domain=domain)
    return SyntheticScenes(split, lengths[split], size=cfg.image_size, seed=cfg.seed,
                           transform=transform, cache=cfg.cache, domain=domain)


def build_target_images(cfg: DataConfig) -> TargetImages:
    """The training images of the domain a run adapts to, with the training augmentation.

    A recording is opened without its ground-truth topics, so no label is even decoded; every
    dataset goes through :class:`TargetImages`, which passes on the images alone.
    """
    images_only = dataclasses.replace(cfg, truth_topics={}, label_map=None)
    return TargetImages(build_dataset(images_only, "train", train=True))
