"""What the loaders of the public datasets share: layout errors, file readers, the resize to the
network size, the targets a dataset does not ship, splits, and the dataset base classes.

A loader only finds its files and decodes one sample at native resolution (its maps may even
differ in size, e.g. a pre-shrunk Cityscapes image next to its full-size disparity).
:class:`PublicDataset` then brings every sample to ``DataConfig.image_size`` and derives what is
missing, so that all datasets reach ``build_transforms`` in the same state:

* normals, when not shipped, come from the *metric* depth and the intrinsics of the resized
  image (:func:`normals_from_depth`), a deliberate deviation from the released code, which
  back-projects normalised inverse depth with unscaled intrinsics (METHOD.md sections 3.3, 9.5);
* edges, when not shipped, are the boundaries between semantic labels (:func:`label_boundaries`):
  the method trains edges on NYUDv2 only, and label boundaries are the one edge notion the outdoor
  datasets define exactly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..config import ConfigError, DataConfig
from ..labels import IGNORE_INDEX
from ..recordings.label_map import LabelMapping
from .synthetic import SPLITS
from .transforms import Resize, Sample

Record = dict[str, Path]
"""The files of one sample, keyed by what they hold (``image``, ``semseg``, ``depth``, ...)."""
Color = tuple[int, int, int]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_MULTICHANNEL_TYPES = (2, 4, 6)
"""PNG colour types with more than one channel: RGB, grey + alpha, RGBA."""


class DatasetLayoutError(ConfigError):
    """A dataset root lacks a file or folder, or a file is not what the loader expects.

    A ``ConfigError`` because the fix is in the configuration (``data.root``) or on disk; the
    message names the offending path and shows the expected layout.
    """


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------

def read_rgb(path: Path) -> Tensor:
    """An image file as a float32 3xHxW tensor in [0, 1]."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def read_png(path: Path) -> np.ndarray:
    """A PNG at its stored bit depth: (H, W) for one channel, (H, W, C) in file channel order.

    Pillow keeps 8-bit images and 16-bit single-channel ones exact but truncates 16-bit
    multi-channel images to 8 bits, so those (Synthia labels) are read with OpenCV, imported
    only then.
    """
    with path.open("rb") as handle:
        header = handle.read(26)
    if len(header) < 26 or not header.startswith(_PNG_SIGNATURE):
        raise DatasetLayoutError(f"{path} is not a PNG file")
    bit_depth, color_type = header[24], header[25]
    if bit_depth == 16 and color_type in _PNG_MULTICHANNEL_TYPES:
        try:
            import cv2
        except ImportError as error:
            raise ImportError(f"reading the 16-bit multi-channel PNG {path} needs OpenCV: "
                              "pip install opencv-python-headless") from error
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise DatasetLayoutError(f"{path}: OpenCV could not decode this PNG")
        return array[..., ::-1].copy()  # OpenCV returns BGR(A); the file stores RGB(A)
    with Image.open(path) as image:
        return np.asarray(image).copy()


def read_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array; pickled objects are refused, so a hostile file cannot run code."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        raise DatasetLayoutError(f"{path} is not a plain numpy array file: {error}") from error


def read_json(path: Path) -> dict[str, Any]:
    with path.open("r", encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise DatasetLayoutError(f"{path} is not valid JSON: {error}") from error


def single_channel(array: np.ndarray, path: Path) -> np.ndarray:
    """The first channel of a multi-channel map (the one that carries the value in the
    datasets' label and depth PNGs), or the map itself."""
    if array.ndim == 3:
        return array[..., 0]
    if array.ndim != 2:
        raise DatasetLayoutError(f"{path}: expected an HxW or HxWxC map, got shape {array.shape}")
    return array


class LabelMap:
    """Maps raw label ids to class indices; unlisted ids become ``IGNORE_INDEX``."""

    def __init__(self, mapping: Mapping[int, int]) -> None:
        self.table = np.full(max(mapping) + 1, IGNORE_INDEX, dtype=np.int64)
        for raw, label in mapping.items():
            self.table[raw] = label

    def __call__(self, raw: np.ndarray) -> Tensor:
        if raw.dtype.kind not in "ui" or raw.min(initial=0) < 0:
            raise ValueError(f"label ids must be non-negative integers, got {raw.dtype} values "
                             f"down to {raw.min()}")
        listed = raw < len(self.table)
        labels = np.where(listed, self.table[np.where(listed, raw, 0)], IGNORE_INDEX)
        return torch.from_numpy(labels.astype(np.int64))


def first_existing(candidates: Sequence[Path]) -> Path:
    """The first of ``candidates`` that exists, else the first one (to be named in the error)."""
    return next((path for path in candidates if path.exists()), candidates[0])


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> Tensor:
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


# ----------------------------------------------------------------------------------------------
# Targets at the network size
# ----------------------------------------------------------------------------------------------

def resize_sample(sample: Sample, size: tuple[int, int]) -> Sample:
    """Every map at ``size`` (H, W), intrinsics scaled to match.

    Image bilinear with antialiasing; labels, depth and normals nearest (``transforms.Resize``);
    edges are thin, so they are resized bilinearly and every pixel touched by an edge stays one,
    as the method does for NYUDv2 (nearest down-sampling would break them up).
    """
    resized = Resize(size)({key: value for key, value in sample.items() if key != "edges"})
    if "edges" in sample:
        edges = sample["edges"]
        if tuple(edges.shape[-2:]) != tuple(size):
            edges = F.interpolate(edges[None, None].float(), size=tuple(size), mode="bilinear",
                                  align_corners=False)[0, 0] > 0
        resized["edges"] = edges.long()
    return resized


def normals_from_depth(depth: Tensor, intrinsics: Tensor) -> Tensor:
    """Unit normals (3xHxW, optical frame, facing the camera) of a 1xHxW metric depth map.

    The method's estimator (METHOD.md section 3.3) on metric points: each pixel is
    back-projected with ``intrinsics``, and the normal is the sum of the cross products of the
    differences to its four axis and four diagonal neighbours. A pixel is valid when its whole
    3x3 neighbourhood has valid depth (> 0) and it lies at least two pixels inside the image
    (the method's one-pixel border plus a 3x3 erosion); invalid pixels get the zero vector.
    """
    z = depth[0].double()
    height, width = z.shape
    rows, cols = torch.meshgrid(torch.arange(height, dtype=z.dtype),
                                torch.arange(width, dtype=z.dtype), indexing="ij")
    k = intrinsics.double()
    points = torch.stack([(cols - k[0, 2]) / k[0, 0] * z, (rows - k[1, 2]) / k[1, 1] * z, z])

    def towards(dc: int, dr: int) -> Tensor:
        """P(v + dr, u + dc) - P(v, u); wrapped values only reach masked border pixels."""
        return points.roll(shifts=(-dr, -dc), dims=(1, 2)) - points

    pairs = (((1, 0), (0, -1)), ((-1, 0), (0, 1)), ((1, 1), (1, -1)), ((-1, -1), (-1, 1)))
    normals = sum(torch.linalg.cross(towards(*a), towards(*b), dim=0) for a, b in pairs)
    length = normals.norm(dim=0)
    normals = normals / length.clamp_min(1e-12)
    normals = torch.where((normals * points).sum(dim=0) > 0, -normals, normals)

    invalid = ~(z > 0)
    invalid[0, :] = invalid[-1, :] = True
    invalid[:, 0] = invalid[:, -1] = True
    invalid = F.max_pool2d(invalid[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    valid = ~invalid & (length > 0) & torch.isfinite(normals).all(dim=0)
    return torch.where(valid, normals, 0.0).float()


def label_boundaries(semseg: Tensor) -> Tensor:
    """Edge map (HxW int64): pixels with a 4-neighbour of another label, ignore label included.

    Both sides of a boundary are marked (two pixels wide), which keeps the map symmetric under
    horizontal flips.
    """
    edges = torch.zeros_like(semseg, dtype=torch.bool)
    vertical = semseg[1:, :] != semseg[:-1, :]
    horizontal = semseg[:, 1:] != semseg[:, :-1]
    edges[1:, :] |= vertical
    edges[:-1, :] |= vertical
    edges[:, 1:] |= horizontal
    edges[:, :-1] |= horizontal
    return edges.long()


UNLABELLED: dict[str, tuple[int, float]] = {
    "semseg": (0, IGNORE_INDEX), "depth": (1, 0.0), "normals": (3, 0.0)}
"""Task -> (channels, 0 for an HxW map; fill value) of the map that stands in for a missing
label in partly labelled datasets, which give every sample the same keys."""


def unlabelled_map(task: str, size: tuple[int, int]) -> Tensor:
    """The ``task`` map of a frame without that label: ignored classes, invalid depth or
    normals everywhere (its ``has_<task>`` flag says it is no label)."""
    channels, value = UNLABELLED[task]
    shape = (channels, *size) if channels else tuple(size)
    return torch.full(shape, value, dtype=torch.int64 if task == "semseg" else torch.float32)


def with_unlabelled(sample: Sample, tasks: Sequence[str], size: tuple[int, int]) -> Sample:
    """``sample`` with the :func:`unlabelled_map` of each of ``tasks`` it has no label for."""
    missing = {task: unlabelled_map(task, size) for task in tasks if task not in sample}
    return {**sample, **missing}


def label_tensor(task: str, values: np.ndarray, mapping: LabelMapping) -> Tensor:
    """A recorded label as a sample holds it: class ids mapped onto the model's (HxW int64),
    depth in metres (1xHxW) or normals (3xHxW), non-finite or negative values invalid (0)."""
    if task == "semseg":
        return torch.from_numpy(mapping.apply(values).astype(np.int64))
    values = np.where(np.isfinite(values), values, 0.0).astype(np.float32)
    if task == "depth":
        return torch.from_numpy(np.maximum(values, 0.0))[None]
    return torch.from_numpy(values).permute(2, 0, 1).contiguous()


def configured_label_mapping(spec: str | None, class_names: Sequence[str]) -> LabelMapping:
    """``data.label_map`` (recorded class ids -> the model's, by id or name) as a mapping; none
    keeps ids that are the model's and ignores the rest."""
    if spec is None:
        return LabelMapping.identity(len(class_names))
    try:
        return LabelMapping.parse(spec, len(class_names), class_names)
    except ValueError as error:
        raise ConfigError(f"data.label_map: {error}") from error


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------

def labelled_split(split: str) -> str:
    """``train`` or ``val``: the public datasets publish labels for these two splits only, so a
    ``test`` request evaluates on ``val``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return "val" if split == "test" else split


def seeded_split(count: int, split: str, seed: int, train_fraction: float) -> list[int]:
    """Sorted indices of ``split`` among ``count`` sorted items: one seeded permutation, the
    first ``int(train_fraction * count)`` for ``train`` and the rest for ``val``.

    Both splits come from the same permutation, so they are disjoint and cover every item; the
    released code shuffles separately for each split, which makes them overlap (METHOD.md 9.4).
    """
    order = np.random.default_rng(seed).permutation(count)
    cut = int(train_fraction * count)
    chosen = order[:cut] if labelled_split(split) == "train" else order[cut:]
    return sorted(chosen.tolist())


# ----------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassSet:
    """The classes a loader returns: names and display colours, index = class id."""

    names: tuple[str, ...]
    colors: tuple[Color, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.colors):
            raise ValueError("a class set needs one colour per class name")

    def subset(self, dropped: Sequence[str]) -> ClassSet:
        kept = [i for i, name in enumerate(self.names) if name not in dropped]
        return ClassSet(tuple(self.names[i] for i in kept), tuple(self.colors[i] for i in kept))

    def label_map(self, raw_names: Mapping[int, str],
                  folded: Mapping[str, str] | None = None) -> LabelMap:
        """Raw id -> index of the class of the same name; a raw class this set lacks joins the
        class ``folded`` names for it (car -> vehicle), else it is ignored."""
        folded = folded or {}
        mapping = {}
        for raw, name in raw_names.items():
            name = name if name in self.names else folded.get(name, "")
            if name in self.names:
                mapping[raw] = self.names.index(name)
        return LabelMap(mapping)


class PublicDataset(Dataset):
    """Base of the public-dataset loaders; a subclass finds records and decodes one of them.

    Subclasses set ``name``, ``layout`` (the expected folder tree, shown in errors) and
    ``label_sets`` (named class sets, the first is the default), and implement
    :meth:`find_records` and :meth:`decode`. Every file of every record is checked at
    construction, so a broken root fails at once with the missing path.
    """

    name: ClassVar[str]
    layout: ClassVar[str]
    label_sets: ClassVar[dict[str, ClassSet]]

    def __init__(self, root: str | Path, split: str, size: tuple[int, int],
                 transform: Callable[[Sample], Sample] | None = None,
                 label_set: str | None = None) -> None:
        self.root = Path(root).expanduser()
        self.split = labelled_split(split)
        self.size = (int(size[0]), int(size[1]))
        self.transform = transform
        self.label_set = self._check_label_set(label_set)
        classes = self.label_sets[self.label_set]
        self.class_names, self.class_colors = classes.names, classes.colors
        self.num_classes = len(classes.names)
        if not self.root.is_dir():
            raise self.layout_error(self.root, "is not a directory")
        self.records = self.find_records()
        if not self.records:
            raise self.layout_error(self.root, f"holds no {self.split} samples")
        for record in self.records:
            for path in record.values():
                if not path.is_file():
                    raise self.layout_error(path, "is missing")

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str,
                    transform: Callable[[Sample], Sample] | None = None,
                    sequence: bool = False) -> PublicDataset:
        """The dataset of ``cfg``; ``sequence`` asks for temporal samples (frames t - stride, t,
        t + stride), which only datasets with video sequences give."""
        if cfg.root is None:
            raise ConfigError(f"data.root must name the {cls.name} root folder")
        options = cls.config_options(cfg)
        if sequence:
            options.update(cls.sequence_options(cfg))
        return cls(cfg.root, split, cfg.image_size, transform=transform, label_set=cfg.label_set,
                   **options)

    @classmethod
    def config_options(cls, cfg: DataConfig) -> dict[str, Any]:
        """Constructor arguments a subclass takes from ``cfg`` beyond the common ones."""
        return {}

    @classmethod
    def sequence_options(cls, cfg: DataConfig) -> dict[str, Any]:
        """Constructor arguments for temporal samples; a dataset without video refuses."""
        raise ConfigError(f"{cls.name} has no video sequences, so it cannot give the frame "
                          f"triplets that learning depth from video needs; use data.dataset "
                          f"synthetic, cityscapes, rosbag or folder")

    def _check_label_set(self, label_set: str | None) -> str:
        if label_set is None:
            return next(iter(self.label_sets))
        if label_set not in self.label_sets:
            raise ConfigError(f"{self.name} has no label set {label_set!r}; "
                              f"available: {list(self.label_sets)}")
        return label_set

    def layout_error(self, path: Path, problem: str) -> DatasetLayoutError:
        return DatasetLayoutError(f"{self.name}: {path} {problem}; expected this layout under "
                                  f"the dataset root {self.root}:\n{self.layout}")

    def find_records(self) -> list[Record]:
        """The files of every sample of ``self.split``, in a fixed order."""
        raise NotImplementedError

    def decode(self, record: Record) -> Sample:
        """One sample at native resolution: image, semseg, depth, intrinsics of the image, and
        normals / edges when the dataset ships them."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        sample = resize_sample(self.decode(self.records[index]), self.size)
        if "normals" not in sample:
            sample["normals"] = normals_from_depth(sample["depth"], sample["intrinsics"])
        if "edges" not in sample:
            sample["edges"] = label_boundaries(sample["semseg"])
        return self.transform(sample) if self.transform is not None else sample


class SeededSplitDataset(PublicDataset):
    """A dataset without an official split: :func:`seeded_split` of all its sorted records
    (80 / 20 as in the method), seeded by ``DataConfig.seed``.

    The split is a function of the complete file listing: adding or removing files reshuffles
    it, and a frame-level split keeps neighbouring video frames on both sides, as the method's
    protocol does.
    """

    train_fraction: ClassVar[float] = 0.8

    def __init__(self, root: str | Path, split: str, size: tuple[int, int],
                 transform: Callable[[Sample], Sample] | None = None,
                 label_set: str | None = None, seed: int = 0) -> None:
        self.seed = seed
        super().__init__(root, split, size, transform, label_set)

    @classmethod
    def config_options(cls, cfg: DataConfig) -> dict[str, Any]:
        return {"seed": cfg.seed}

    def find_records(self) -> list[Record]:
        everything = self.find_all_records()
        return [everything[i] for i in seeded_split(len(everything), self.split, self.seed,
                                                    self.train_fraction)]

    def find_all_records(self) -> list[Record]:
        """Every sample of the dataset, sorted by image path."""
        raise NotImplementedError
