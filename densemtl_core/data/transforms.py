"""Augmentations that keep every target of a sample dict consistent with its image.

A sample is a dict of tensors in the library's conventions (``image`` 3xHxW in [0, 1], ``semseg``
and ``edges`` int64 HxW, ``depth`` 1xHxW metres, ``normals`` 3xHxW optical frame, ``intrinsics``
3x3); any key may be missing. Temporal samples add the neighbouring frames ``image_prev`` and
``image_next`` (treated exactly like ``image``: one flip, one jitter, one crop for all frames) and
values that are not maps (:data:`NON_MAP_KEYS` and every ``has_<task>`` flag), which no transform
resizes, crops or mirrors as pixels; every other key must be a map shaped HxW or CxHxW.
Geometry-changing transforms move the intrinsics with the pixels so that back-projecting the
depth keeps giving the same 3-D points. Randomness comes from torch's global generator, so
``torch.manual_seed`` makes every transform reproducible.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import geometry
from ..config import DataConfig
from ..labels import IGNORE_INDEX

Sample = dict[str, Tensor]

IMAGE_KEYS: tuple[str, ...] = ("image", "image_prev", "image_next")
"""The frames of a sample (t, t - s, t + s): resized bilinearly, jittered alike, flipped
together."""
NON_MAP_KEYS: tuple[str, ...] = ("intrinsics", "travel", "pose_prev", "pose_next")
"""Keys whose values are not pixel maps (besides the ``has_<task>`` flags): ``intrinsics`` 3x3,
``travel`` (2,) metres to the neighbouring frames, ``pose_prev`` / ``pose_next`` 4x4 transforms
of points from the centre camera's optical frame into the neighbour's."""

_PAD_VALUES = {"image": 0.0, "image_prev": 0.0, "image_next": 0.0, "semseg": IGNORE_INDEX,
               "depth": 0.0, "normals": 0.0, "edges": 0}
"""What fills pixels that a scaled-down sample no longer covers: unlabelled and invalid."""
_MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
"""A horizontal flip mirrors the optical frame's x axis."""


def is_map(key: str) -> bool:
    """Whether the value of ``key`` is a pixel map that moves with the image."""
    return key not in NON_MAP_KEYS and not key.startswith("has_")


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for transform in self.transforms:
            sample = transform(sample)
        return sample


class RandomHorizontalFlip:
    """Mirror the sample left-right with probability ``p``, all its frames together.

    Mirroring the image mirrors the scene about the camera's y-z plane: the normals' x component
    changes sign, the principal point moves to ``cx' = W - 1 - cx`` (pixel centres at integer
    coordinates), and the relative poses become ``M T M`` with ``M = diag(-1, 1, 1, 1)`` (the
    mirrored camera moves in the mirrored world). Distances (``travel``) do not change.
    """

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample: Sample) -> Sample:
        if torch.rand(()) >= self.p:
            return sample
        flipped = {key: value.flip(-1) if is_map(key) else value
                   for key, value in sample.items()}
        for key in ("pose_prev", "pose_next"):
            if key in flipped:
                mirror = _MIRROR.to(flipped[key].dtype)
                flipped[key] = mirror @ flipped[key] @ mirror
        if "normals" in flipped:
            flipped["normals"] = flipped["normals"] * torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
        if "intrinsics" in flipped:
            intrinsics = flipped["intrinsics"].clone()
            intrinsics[0, 2] = sample["image"].shape[-1] - 1 - intrinsics[0, 2]
            flipped["intrinsics"] = intrinsics
        return flipped


class ColorJitter:
    """Random brightness, contrast and saturation factors in [1 - strength, 1 + strength],
    applied to the frames only (in that order).

    Every frame of a sample goes through the same colour mapping, contrast included (it pivots
    on the mean of ``image``, frame t), so that a surface keeps one colour across the frames that
    the photometric loss compares.
    """

    def __init__(self, strength: float):
        self.strength = strength

    def __call__(self, sample: Sample) -> Sample:
        brightness, contrast, saturation = 1.0 + self.strength * (2 * torch.rand(3) - 1)
        pivot = sample["image"].mean() * brightness

        def jitter(image: Tensor) -> Tensor:
            image = image * brightness
            image = (image - pivot) * contrast + pivot
            grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0)
            return ((image - grey) * saturation + grey).clamp(0.0, 1.0)

        return {**sample, **{key: jitter(sample[key]) for key in IMAGE_KEYS if key in sample}}


def scale_intrinsics(intrinsics: Tensor, from_size: Sequence[int], to_size: Sequence[int]
                     ) -> Tensor:
    """:func:`densemtl_core.geometry.scale_intrinsics` for a sample's 3x3 CPU tensor."""
    return torch.from_numpy(geometry.scale_intrinsics(intrinsics.numpy(), from_size, to_size))


def _resize(sample: Sample, size: tuple[int, int]) -> Sample:
    """Resize every map to ``size`` (frames bilinear, everything else nearest, both with pixel
    centres at half-pixel positions) and scale the intrinsics to match. Depth values stay in
    metres: a larger image of the same view simply has a longer focal length. Maps may come at
    another resolution than the image (a dataset's native files); each is resized on its own,
    and the intrinsics follow the image."""
    height, width = sample["image"].shape[-2:]
    if all(tuple(value.shape[-2:]) == tuple(size)
           for key, value in sample.items() if is_map(key)):
        return sample
    resized = {}
    for key, value in sample.items():
        if key == "intrinsics":
            resized[key] = scale_intrinsics(value, (height, width), size)
        elif not is_map(key):
            resized[key] = value
        elif key in IMAGE_KEYS:
            resized[key] = F.interpolate(value[None], size=size, mode="bilinear",
                                         align_corners=False, antialias=True)[0]
        else:
            maps = value if value.dim() == 3 else value[None]
            out = F.interpolate(maps[None].float(), size=size, mode="nearest-exact")[0]
            resized[key] = out.to(value.dtype).reshape(value.shape[:-2] + tuple(size))
    return resized


def _crop(sample: Sample, top: int, left: int, size: tuple[int, int]) -> Sample:
    """Cut a ``size`` window whose top-left corner is at (``top``, ``left``), which may be
    negative or reach past the border: uncovered pixels get ``_PAD_VALUES``."""
    height, width = sample["image"].shape[-2:]
    rows = slice(max(top, 0), min(top + size[0], height))
    cols = slice(max(left, 0), min(left + size[1], width))
    placed = (..., slice(rows.start - top, rows.stop - top),
              slice(cols.start - left, cols.stop - left))
    cropped = {}
    for key, value in sample.items():
        if key == "intrinsics":
            intrinsics = value.clone()
            intrinsics[0, 2] -= left
            intrinsics[1, 2] -= top
            cropped[key] = intrinsics
            continue
        if not is_map(key):
            cropped[key] = value
            continue
        window = value.new_full(value.shape[:-2] + tuple(size), _PAD_VALUES.get(key, 0))
        window[placed] = value[..., rows, cols]
        cropped[key] = window
    return cropped


class Resize:
    """Deterministically resize a sample to ``size`` (H, W); a no-op when it already has it."""

    def __init__(self, size: tuple[int, int]):
        self.size = tuple(size)

    def __call__(self, sample: Sample) -> Sample:
        return _resize(sample, self.size)


class RandomScaleCrop:
    """Zoom by a random factor from ``scale_range`` and cut a random ``out_size`` window.

    Factor 1 means the smallest size that covers ``out_size`` at the input's aspect ratio, so a
    sample already at ``out_size`` is returned unchanged by factor 1; factors below 1 leave a
    border that is padded as unlabelled and invalid.
    """

    def __init__(self, scale_range: tuple[float, float], out_size: tuple[int, int]):
        self.scale_range = scale_range
        self.out_size = tuple(out_size)

    def __call__(self, sample: Sample) -> Sample:
        height, width = sample["image"].shape[-2:]
        low, high = self.scale_range
        factor = low + (high - low) * float(torch.rand(()))
        cover = max(self.out_size[0] / height, self.out_size[1] / width)
        scaled = (max(1, round(height * cover * factor)), max(1, round(width * cover * factor)))
        sample = _resize(sample, scaled)
        top = _random_offset(scaled[0] - self.out_size[0])
        left = _random_offset(scaled[1] - self.out_size[1])
        return _crop(sample, top, left, self.out_size)


def _random_offset(slack: int) -> int:
    """Window offset: anywhere inside when the image is larger (slack > 0), anywhere around it
    (negative) when smaller."""
    if slack == 0:
        return 0
    offset = int(torch.randint(0, abs(slack) + 1, ()))
    return offset if slack > 0 else -offset


def build_transforms(data_cfg: DataConfig, train: bool) -> Compose:
    """Training: scale-and-crop to ``image_size`` (when a scale range is set), horizontal flip
    (p = 0.5) and colour jitter as configured. Evaluation: only a resize to ``image_size``."""
    size = tuple(data_cfg.image_size)
    if not train:
        return Compose([Resize(size)])
    transforms: list[Callable[[Sample], Sample]] = []
    if tuple(data_cfg.scale_range) != (1.0, 1.0):
        transforms.append(RandomScaleCrop(data_cfg.scale_range, size))
    else:
        transforms.append(Resize(size))
    if data_cfg.hflip:
        transforms.append(RandomHorizontalFlip(0.5))
    if data_cfg.color_jitter > 0:
        transforms.append(ColorJitter(data_cfg.color_jitter))
    return Compose(transforms)
