"""Training data from a folder of images (``data.dataset: folder``).

Layout under ``data.root``, ``<stem>`` being an image's file name without its suffix::

    images/<stem>.png | .jpg | .jpeg   the frames: one video, in file-name order
    semseg/<stem>.png                  optional: class ids, one 8- or 16-bit channel, mapped to
                                       the model's classes by data.label_map
    depth/<stem>.png | <stem>.npy      optional: 16-bit millimetres, or float metres (HxW);
                                       0, negative or non-finite: invalid
    normals/<stem>.npy                 optional: HxWx3 unit normals, optical frame (x right,
                                       y down, z forward); 0: invalid
    camera_info.yaml                   the intrinsics (ROS camera_info YAML), unless
                                       data.intrinsics names the file

Any frame may lack any label: every sample has the keys of every label folder present, with the
unlabelled filler and ``has_<task>`` False where the frame has no file. The intrinsics are the
calibration's, scaled to ``data.image_size``; every image must have the calibration's aspect
ratio.

Frame i is stamped i / ``data.frame_rate`` seconds, so the rules of :mod:`.sequences` apply as
to a recording: triplets of ``data.frame_stride``, train and validation by time blocks
(``data.split_block``, ``data.val_fraction``), near-static frames skipped by
``data.min_image_change`` (measured once, on grey thumbnails, when the dataset is built). There
is no odometry: ``travel`` is unknown (NaN). ``sequence=False`` gives the split's single frames,
only the labelled ones when it has any. Classes are the model's default set, as for recordings.
An image file that does not decode skips its sample (the next one in order takes its place; the
count is in ``skipped``); a broken label file is an error naming it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..config import ConfigError, DataConfig
from ..recordings.calibration import Calibration
from ..recordings.calibration_yaml import read_calibration_yaml
from .common import (DatasetLayoutError, configured_label_mapping, label_tensor, read_png,
                     read_rgb, resize_sample, single_channel, with_unlabelled)
from .frame_samples import FrameSamples, UnreadableFrame
from .recording_index import grey_thumbnail
from .sequences import NS_PER_S, Timeline, plan_split
from .synthetic import SYNTHETIC_CLASSES, SYNTHETIC_COLORS
from .transforms import Sample

LAYOUT = """\
images/<stem>.png | .jpg | .jpeg   (the frames, in file-name order)
semseg/<stem>.png                  (optional: class ids)
depth/<stem>.png | <stem>.npy      (optional: 16-bit millimetres or float metres)
normals/<stem>.npy                 (optional: HxWx3 optical-frame unit normals)
camera_info.yaml                   (the intrinsics, unless data.intrinsics names the file)"""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABEL_SUFFIXES = {"semseg": (".png",), "depth": (".npy", ".png"), "normals": (".npy",)}
"""Label folder -> accepted file suffixes, by preference."""
MAX_LABEL_PIXELS = 64_000_000
"""A label array larger than this is refused before it is loaded."""


class ImageFolder(FrameSamples):
    """Samples of one split of an image folder (see the module docstring)."""

    num_classes = len(SYNTHETIC_CLASSES)
    class_names = SYNTHETIC_CLASSES
    class_colors = SYNTHETIC_COLORS
    has_odometry = False

    def __init__(self, cfg: DataConfig, split: str,
                 transform: Callable[[Sample], Sample] | None = None,
                 sequence: bool = False) -> None:
        if cfg.root is None:
            raise ConfigError("data.dataset=folder needs data.root, the folder holding images/")
        self.root = Path(cfg.root).expanduser()
        self.size = (int(cfg.image_size[0]), int(cfg.image_size[1]))
        self.split, self.sequence = split, sequence
        self.images = self._images()
        self.labels = self._labels()
        self.calibration = self._calibration(cfg.intrinsics)
        self.mapping = configured_label_mapping(cfg.label_map, self.class_names)
        stamps = np.round(np.arange(len(self.images)) * NS_PER_S / cfg.frame_rate)
        if sequence and cfg.min_image_change > 0:
            timeline = Timeline(stamps.astype(np.int64), image_change=self._image_change())
        else:  # single frames are never skipped as static: no need to measure the change
            timeline = Timeline(stamps.astype(np.int64))
            cfg = replace(cfg, min_image_change=0.0)
        plan = plan_split([timeline], split, cfg)
        if sequence:
            samples = [tuple(frame for _, frame in triplet) for triplet in plan.triplets]
        else:
            frames = [frame for _, frame in plan.frames]
            labelled = [f for f in frames if any(f in paths for paths in self.labels.values())]
            samples = [(frame,) for frame in labelled or frames]
        if not samples:
            kind = "frame triplets" if sequence else "frames"
            raise ConfigError(
                f"no {split} {kind} in {self.root}: {len(self.images)} images at "
                f"data.frame_rate={cfg.frame_rate}, {len(plan.frames)} of them in the {split} "
                f"blocks (data.split_block={cfg.split_block} s, data.val_fraction="
                f"{cfg.val_fraction}); add images, shorten data.split_block or lower "
                f"data.frame_stride or data.min_image_change")
        super().__init__(samples, transform)

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str,
                    transform: Callable[[Sample], Sample] | None = None,
                    sequence: bool = False) -> ImageFolder:
        return cls(cfg, split, transform, sequence)

    # -- construction -------------------------------------------------------------------------

    def layout_error(self, path: Path, problem: str) -> DatasetLayoutError:
        return DatasetLayoutError(f"folder: {path} {problem}; expected this layout under "
                                  f"data.root {self.root}:\n{LAYOUT}")

    def _images(self) -> list[Path]:
        folder = self.root / "images"
        if not folder.is_dir():
            raise self.layout_error(folder, "is missing")
        images = sorted(path for path in folder.iterdir()
                        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
        if not images:
            raise self.layout_error(folder, "holds no .png or .jpg images")
        return images

    def _labels(self) -> dict[str, dict[int, Path]]:
        """Task -> {frame: label file} for every label folder present."""
        labels: dict[str, dict[int, Path]] = {}
        for task, suffixes in LABEL_SUFFIXES.items():
            folder = self.root / task
            if not folder.is_dir():
                continue
            labels[task] = {}
            for frame, image in enumerate(self.images):
                found = [folder / f"{image.stem}{suffix}" for suffix in suffixes]
                existing = [path for path in found if path.is_file()]
                if existing:
                    labels[task][frame] = existing[0]
        return labels

    def _calibration(self, override: str | None) -> Calibration:
        default = self.root / "camera_info.yaml"
        if override is None and not default.is_file():
            raise ConfigError(f"{self.root}: the intrinsics of the images are needed: set "
                              f"data.intrinsics to a camera_info YAML file (the ROS calibration "
                              f"format) or put one at {default}")
        return read_calibration_yaml(override if override is not None else default)

    def _image_change(self) -> np.ndarray:
        """Mean absolute grey change of each frame from the previous one (0 for the first)."""
        thumbnails = []
        for path in self.images:
            with Image.open(path) as image:
                thumbnails.append(grey_thumbnail(np.asarray(image.convert("RGB"))))
        change = np.zeros(len(thumbnails))
        change[1:] = np.abs(np.diff(np.stack(thumbnails), axis=0)).mean(axis=(1, 2))
        return change

    # -- samples ------------------------------------------------------------------------------

    def nothing_decodes(self) -> Exception:
        return DatasetLayoutError(f"no image in {self.root / 'images'} could be decoded")

    def describe(self, frames: tuple[int, ...]) -> str:
        return str(self.root)

    def make_sample(self, frames: tuple[int, ...]) -> Sample:
        centre = len(frames) // 2
        sample = self._frame(frames[centre])
        if self.sequence:
            sample["image_prev"] = self._frame(frames[0], labels=False)["image"]
            sample["image_next"] = self._frame(frames[-1], labels=False)["image"]
            sample["travel"] = torch.full((2,), float("nan"))
        return sample

    def _frame(self, frame: int, labels: bool = True) -> Sample:
        """One frame at the training size: image, intrinsics and, if asked, its labels."""
        path = self.images[frame]
        try:
            image = read_rgb(path)
        except OSError as error:
            raise UnreadableFrame(f"{path} does not decode ({error})") from error
        problem = self.calibration.problem(*image.shape[-2:])
        if problem is not None:
            raise ConfigError(f"{path}: {problem}; give the intrinsics of these images as "
                              f"data.intrinsics")
        maps = {"image": image, "intrinsics": torch.from_numpy(
            self.calibration.scaled(*image.shape[-2:]).k).float()}
        flags = {}
        if labels:
            for task, paths in self.labels.items():
                flags[f"has_{task}"] = torch.tensor(frame in paths)
                if frame in paths:
                    maps[task] = self._read_label(task, paths[frame])
        tasks = tuple(self.labels) if labels else ()
        return {**with_unlabelled(resize_sample(maps, self.size), tasks, self.size), **flags}

    def _read_label(self, task: str, path: Path) -> Tensor:
        if path.suffix == ".npy":
            values = _read_array(path, 2 if task == "depth" else 3)
        else:
            values = single_channel(read_png(path), path)
        if task == "semseg" and values.dtype.kind not in "ui":
            raise DatasetLayoutError(f"{path}: class ids must be integers, got {values.dtype}")
        if task == "depth" and path.suffix == ".png":
            values = values.astype(np.float32) / 1000.0  # millimetres
        return label_tensor(task, values, self.mapping)


def _read_array(path: Path, ndim: int) -> np.ndarray:
    """A label ``.npy`` of ``ndim`` dimensions (HxW, or HxWx3), its size checked before it is
    read; pickled objects are refused."""
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise DatasetLayoutError(f"{path} is not a plain numpy array file: {error}") from error
    expected = "HxW" if ndim == 2 else "HxWx3"
    if mapped.ndim != ndim or (ndim == 3 and mapped.shape[-1] != 3):
        raise DatasetLayoutError(f"{path}: expected an {expected} array, got shape {mapped.shape}")
    if mapped.size > MAX_LABEL_PIXELS * (1 if ndim == 2 else 3):
        raise DatasetLayoutError(f"{path}: {mapped.shape} is too large for a label map")
    return np.array(mapped)
