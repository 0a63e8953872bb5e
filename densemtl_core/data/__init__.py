"""Datasets: every one returns the same sample dict (see ``densemtl_core.data.synthetic``)."""
from __future__ import annotations

from torch.utils.data import Dataset

from ..config import DataConfig


def build_dataset(cfg: DataConfig, split: str, train: bool = False) -> Dataset:
    """The dataset named by ``cfg.dataset`` for ``split``, with training augmentation if asked.

    Datasets expose ``num_classes``, ``class_names`` and ``class_colors``.
    """
    from .synthetic import SyntheticScenes
    from .transforms import build_transforms

    if cfg.dataset != "synthetic":
        raise ValueError(f"unknown dataset {cfg.dataset!r}; available: synthetic")
    lengths = {"train": cfg.train_length, "val": cfg.val_length, "test": cfg.test_length}
    if split not in lengths:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(lengths)}")
    return SyntheticScenes(split, lengths[split], size=cfg.image_size, seed=cfg.seed,
                           transform=build_transforms(cfg, train=train), cache=cfg.cache)
