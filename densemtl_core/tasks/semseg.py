"""Semantic segmentation: class probabilities in the graph, class ids everywhere after it."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..colormaps import colorize_segmentation, overlay_segmentation
from ..labels import IGNORE_INDEX
from ..metrics import SegmentationMeter
from .spec import (ImageContext, PublishedImage, StudyColumn, TaskSpec, tensor_of,
                   wrong_truth_encoding)
from .upsampling import Size, resize_maps
from .upsampling import upsampled_argmax


def semseg_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy averaged over the pixels whose label is not ``IGNORE_INDEX``.

    Dividing the summed loss by the clamped pixel count (instead of PyTorch's mean) keeps a batch
    without any labelled pixel at 0 with a valid gradient path instead of NaN.
    """
    target = target.long()
    summed = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
    labelled = (target != IGNORE_INDEX).sum().clamp_min(1)
    return summed / labelled


def _label_dtype(num_classes: int) -> type[np.integer]:
    return np.uint8 if num_classes <= 256 else np.uint16


def finish(probabilities: Tensor, size: Size, with_probabilities: bool) -> dict[str, np.ndarray]:
    """Class *probabilities* are interpolated and the label is their arg-max (an interpolated
    distribution is still a distribution); see :func:`upsampled_argmax`."""
    labels = upsampled_argmax(probabilities, size).numpy().astype(
        _label_dtype(probabilities.shape[0]))
    fields = {"segmentation": labels}
    if with_probabilities:
        fields["probabilities"] = resize_maps(probabilities, size).numpy()
    return fields


def _agreement(expected: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    return {"label_agreement": float(np.mean(expected == actual))}


def _render(labels: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
    return colorize_segmentation(labels, info["class_colors"])


def _class_ids(labels: np.ndarray, _: ImageContext) -> tuple[np.ndarray, str]:
    return labels, "mono8" if labels.dtype == np.uint8 else "mono16"


def _overlay(labels: np.ndarray, context: ImageContext) -> tuple[np.ndarray, str]:
    return overlay_segmentation(context.rgb, labels, context.class_colors,
                                context.overlay_alpha), "rgb8"


def read_truth(labels: np.ndarray, encoding: str) -> np.ndarray:
    """Recorded class ids, in the dataset's ids (mapped to the model's by the reader)."""
    if encoding not in ("mono8", "mono16", "8UC1", "16UC1"):
        raise wrong_truth_encoding("segmentation", "must hold class ids (mono8/mono16)",
                                   encoding)
    return labels


def _as_decoded(prediction) -> Tensor:
    """1 x C x H x W class scores of a prediction: its probabilities, or, from a graph that
    gives class ids only (an end-to-end graph), their one-hot maps (the same arg-max)."""
    if prediction.probabilities is not None:
        return torch.from_numpy(prediction.probabilities)[None]
    classes = prediction.metadata.config.model.num_classes
    labels = torch.from_numpy(prediction.segmentation.astype(np.int64))
    return F.one_hot(labels, classes).permute(2, 0, 1)[None].float()


def _labels(array: np.ndarray) -> Tensor:
    return tensor_of(array, np.int64)[None]


SPEC = TaskSpec(
    name="semseg", title="segmentation", field="segmentation",
    channels=lambda cfg: cfg.num_classes,
    loss=lambda output, target, cfg: semseg_loss(output, target),
    decode=lambda raw, _: raw.softmax(dim=1),
    meter=SegmentationMeter,
    meter_arguments=lambda cfg: {"num_classes": cfg.num_classes},
    update_meter=lambda meter, probs, target: meter.update(probs.argmax(dim=1), target),
    render=_render,
    to_display=lambda probs: probs.argmax(dim=0).cpu().numpy(),
    finish=finish,
    tolerance=(0.0, 1e-4),
    agreement=_agreement,
    as_decoded=_as_decoded,
    images=(PublishedImage("segmentation", _class_ids),
            PublishedImage("segmentation_color", _overlay)),
    meter_inputs=lambda pred, target: (_labels(pred), _labels(target)),
    read_truth=read_truth,
    class_ids=True,
    study_column=StudyColumn("mIoU % ↑", 100, 1),
)
"""``as_decoded`` takes the probabilities of a prediction made with ``probabilities=True``,
else the one-hot class ids."""
