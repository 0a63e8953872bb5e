"""What describes a task, from its head's channels to the topics the node publishes for it.

Torch, numpy and OpenCV only: the runtime and the ROS side read the table, so nothing here may
pull in training (the multi-task loss, datasets) or the picture-writing code (PIL).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..recordings.encodings import ImageConversionError, as_float32
from .upsampling import Size, resize_maps

if TYPE_CHECKING:
    from ..config import LossConfig, ModelConfig
    from ..metrics import Meter



@dataclass(frozen=True)
class ImageContext:
    """What a published picture may need besides its map: the input at the map's resolution
    (for overlays), the model's class colours and the overlay's weight."""

    rgb: np.ndarray
    class_colors: Sequence[Sequence[int]]
    overlay_alpha: float


@dataclass(frozen=True)
class PublishedImage:
    """One image output of the node (``segmentation_color`` is published on
    ``~/segmentation/color`` and switched by ``publish.segmentation_color``).

    ``pixels``: the task's published map -> (pixels, sensor_msgs encoding)."""

    name: str
    pixels: Callable[[np.ndarray, ImageContext], tuple[np.ndarray, str]]


@dataclass(frozen=True)
class StudyColumn:
    """How a study report's main table shows the task's main metric: the column header and
    the metric times ``scale`` with ``digits`` decimals."""

    header: str
    scale: float = 1.0
    digits: int = 3


@dataclass(frozen=True)
class TaskSpec:
    """Everything the library, the runtime and the ROS side know about one task.

    The raw head output goes through ``decode`` (differentiable, graph output ``name``), then at
    run time ``finish`` (up-sampling to the input, into the prediction's ``field``), then
    ``publish`` (the node's published map, also what a bag records and the bag evaluator
    scores through ``meter_inputs``).
    """

    name: str
    """Model task, batch key of its target and ONNX output name."""
    title: str
    field: str
    """Attribute of predictions, published maps and ground truth."""
    channels: Callable[[ModelConfig], int]
    """Raw output channels of the task's head."""
    loss: Callable[[Tensor, Tensor, LossConfig], Tensor]
    """(raw output at label resolution, target) -> scalar loss."""
    decode: Callable[[Tensor, ModelConfig], Tensor]
    """Raw output (B,C,H,W) -> the user-facing prediction (B,C',H,W), differentiable where it can be."""
    meter: type[Meter]
    """Its class declares the main metric (``main_metric``, ``higher_is_better``)."""
    update_meter: Callable[[Any, Tensor, Tensor], None]
    """(meter, decoded prediction, target) -> None."""
    render: Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]
    """(one prediction or target in display layout, display info) -> HxWx3 uint8."""
    to_display: Callable[[Tensor], np.ndarray]
    """One decoded prediction (C,H,W) -> display layout: HxW, or HxWx3 for normals."""
    finish: Callable[[Tensor, Size, bool], dict[str, np.ndarray]]
    """(decoded CxHxW map at network resolution, input size, probabilities wanted?) -> the
    prediction fields it fills, at the input size (the up-sampling rule of the task)."""
    tolerance: tuple[float, float]
    """(rtol, atol) of an exported graph's output against PyTorch's, in float32."""
    agreement: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    """How closely two backends' values of ``field`` agree (pixels first)."""
    as_decoded: Callable[[Any], Tensor]
    """A prediction's ``field`` back in the decoded 1xCxHxW layout ``update_meter`` takes."""
    images: tuple[PublishedImage, ...]
    """The node's image topics of this task, in publishing order."""
    meter_inputs: Callable[[np.ndarray, np.ndarray], tuple[Tensor, Tensor]]
    """(published map, ground truth) -> the meter's (prediction, target), batch of one."""
    read_truth: Callable[[np.ndarray, str], np.ndarray] | None = None
    """(a recorded ground-truth image's pixels, its encoding) -> the ground truth
    ``meter_inputs`` takes; an encoding that cannot hold it raises ImageConversionError (see
    :func:`wrong_truth_encoding`). None: recordings hold no ground truth of the task."""
    class_ids: bool = False
    """Its maps are the model's class ids, so a dataset's ids are mapped to them first."""
    publish: Callable[[np.ndarray, ModelConfig], np.ndarray] = lambda values, _: values
    """A prediction's ``field`` -> the map as the node publishes it."""
    published_display: Callable[[np.ndarray], np.ndarray] = lambda values: values
    """A published map -> the display layout ``render`` takes."""
    meter_arguments: Callable[[ModelConfig], dict[str, Any]] = field(
        default=lambda cfg: {})
    """The meter's settings from the model's (so the bag tools and the evaluator agree)."""
    study_column: StudyColumn | None = None
    """Defaults to the title and main metric, 3 decimals."""

    def __post_init__(self) -> None:
        if self.study_column is None:
            arrow = "↑" if self.higher_is_better else "↓"
            object.__setattr__(self, "study_column",
                               StudyColumn(f"{self.title} {self.main_metric} {arrow}"))

    @property
    def letter(self) -> str:
        """The task's letter in a study's task combinations (S, D, N, E)."""
        return self.name[0].upper()

    def make_meter(self, cfg: ModelConfig) -> Meter:
        return self.meter(**self.meter_arguments(cfg))

    @property
    def main_metric(self) -> str:
        """The metric key used for model selection, Δm and worst/best frames."""
        return self.meter.main_metric

    @property
    def higher_is_better(self) -> bool:
        return self.meter.higher_is_better


# -- Building blocks several tasks share -------------------------------------------------------

def channels_last(decoded: Tensor) -> np.ndarray:
    """A decoded CxHxW map -> HxW (one channel) or HxWxC, as numpy."""
    array = decoded.detach().float().cpu().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def finish_by_interpolation(field_name: str) -> Callable[[Tensor, Size, bool], dict[str, np.ndarray]]:
    """The finishing step of a one-channel map that is averaged as it is (a probability)."""
    def finish(values: Tensor, size: Size, _: bool) -> dict[str, np.ndarray]:
        return {field_name: resize_maps(values, size)[0].numpy()}
    return finish


def absolute_agreement(expected: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    gap = np.abs(actual - expected)
    return {"mean_abs": float(gap.mean()), "max_abs": float(gap.max())}


def tensor_of(array: np.ndarray, dtype: type) -> Tensor:
    """A tensor of ``array``; bag messages are read-only views, which torch will not share."""
    converted = np.asarray(array, dtype=dtype)
    return torch.from_numpy(converted if converted.flags.writeable else converted.copy())


def plain_map(field_name: str) -> Callable[[Any], Tensor]:
    """A prediction's HxW ``field_name`` as 1x1xHxW."""
    return lambda prediction: torch.from_numpy(getattr(prediction, field_name))[None, None]


def wrong_truth_encoding(field_name: str, requirement: str, encoding: str
                         ) -> ImageConversionError:
    """The refusal of recorded ground truth of ``field_name`` in ``encoding``, which does not
    meet ``requirement`` (e.g. "must be 32FC3")."""
    return ImageConversionError(f"{field_name} ground truth {requirement}, got {encoding}",
                                kind=f"{field_name} encoding {encoding}")


def probability_to_mono8(probability: np.ndarray) -> np.ndarray:
    """An HxW probability map as uint8, round(clip(p, 0, 1) * 255): how probability maps are
    published, and so what a consumer of the topic or a bag sees. Integers are refused
    (:func:`as_float32`): they would be 0..255 already."""
    scaled = np.clip(as_float32(probability, "probability"), 0.0, 1.0)
    scaled *= 255.0
    return np.rint(scaled, out=scaled).astype(np.uint8)


def mono8_to_probability(values: np.ndarray) -> np.ndarray:
    """A published mono8 probability map back in [0, 1]."""
    if values.dtype != np.uint8:
        raise ValueError(f"published probability maps must be uint8 0..255, not {values.dtype}")
    return values.astype(np.float32) / np.float32(255.0)
