"""The end-to-end graph: camera frames in, the maps a robot publishes out, with the host's pre-
and post-processing inside the graph so that an accelerator runs them too.

Input: B x H x W x 3 uint8 RGB frames at the camera size, the layout of a ``rgb8`` image
message's buffer (``bgr8`` and the other encodings are converted on the host, as for the
network graph). Inside, in the order and with the filters of
:mod:`densemtl_core.runtime.processing`:

* the frame is resized to the network input with torch's anti-aliased bilinear filter (the
  training pipeline's), as two matrix products whose matrices are that filter's weights; the
  host path resizes the uint8 frame with torch's integer kernel instead, within one grey level;
* normalisation to [0, 1], the network and each task's metric decoding
  (:class:`~densemtl_core.runtime.graph.InferenceGraph`);
* each map is resized back to the camera size (bilinear, ``align_corners=False``) and finished:
  the arg-max of the interpolated class probabilities, the inverse of the interpolated inverse
  depth, the interpolated normals re-normalised, the interpolated edge probability quantised.

Outputs (named after the tasks): ``semseg`` uint8 class ids B x H x W, ``depth`` float32 B x H x
W (the model's units), ``normals`` float32 unit vectors B x H x W x 3, ``edges`` uint8
round(255 * probability) B x H x W (how the node publishes edges): what the Predictor returns,
so the host only wraps arrays. Every operator is in TensorRT 10's ONNX parser (uint8 only as
graph input and output, as TensorRT requires).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .graph import InferenceGraph

if TYPE_CHECKING:
    from ..models.network import MultiTaskNet

Size = tuple[int, int]
MAX_LABEL_CLASSES = 256
"""Class ids are uint8 (TensorRT has no 16-bit unsigned type)."""


def resize_matrix(source: int, target: int) -> Tensor:
    """The ``target`` x ``source`` float32 matrix of torch's anti-aliased bilinear resize along
    one axis (``align_corners=False``): row i holds output sample i's weights.

    Read off torch's own kernel (the resize of each unit vector, in float64), so the graph's
    filter is the one training and the host path use, not a reimplementation of it.
    """
    units = torch.eye(source, dtype=torch.float64).reshape(source, 1, 1, source)
    columns = F.interpolate(units, size=(1, target), mode="bilinear", align_corners=False,
                            antialias=True)
    return columns[:, 0, 0, :].T.contiguous().float()


def _resized(maps: Tensor, size: Size | None) -> Tensor:
    """``maps`` resized bilinearly to ``size``; None: already at the camera size (no resize, as
    on the host)."""
    if size is None:
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def _labels(probabilities: Tensor, size: Size | None) -> Tensor:
    # ArgMax keeps the first of equal maxima, as the host's arg-max does.
    return _resized(probabilities, size).argmax(dim=1).to(torch.uint8)


def _depth(depth: Tensor, size: Size | None) -> Tensor:
    if size is None:
        return depth[:, 0]
    return _resized(depth.reciprocal(), size).reciprocal()[:, 0]


def _normals(normals: Tensor, size: Size | None) -> Tensor:
    if size is not None:  # the decoded normals are unit length already
        normals = _resized(normals, size)
        # The squared length from per-channel products: cheaper than a reduction over the
        # channel axis on a CPU, and the host's formula.
        x, y, z = normals[:, 0:1], normals[:, 1:2], normals[:, 2:3]
        normals = normals * (x * x + y * y + z * z).clamp_min(1e-12).sqrt().reciprocal()
    return normals.permute(0, 2, 3, 1)


def _edges(probability: Tensor, size: Size | None) -> Tensor:
    scaled = _resized(probability, size)[:, 0].clamp(0.0, 1.0) * 255.0
    return scaled.round().to(torch.uint8)


_FINISH = {"semseg": _labels, "depth": _depth, "normals": _normals, "edges": _edges}
"""Per task: decoded B x C x h x w maps at the network size, and the camera size to resize
them to (None: the sizes are equal) -> the task's output."""


class EndToEndGraph(nn.Module):
    """:class:`InferenceGraph` with the camera-size pre- and post-processing around it."""

    def __init__(self, model: MultiTaskNet, input_size: Size, camera_size: Size) -> None:
        super().__init__()
        if model.cfg.num_classes > MAX_LABEL_CLASSES and "semseg" in model.tasks:
            raise ValueError(f"an end-to-end graph outputs uint8 class ids: at most "
                             f"{MAX_LABEL_CLASSES} classes, the model has {model.cfg.num_classes}")
        self.network = InferenceGraph(model)
        self.tasks = self.network.tasks
        self.input_size = tuple(input_size)
        self.camera_size = tuple(camera_size)
        # 1/255 folded into the row weights: the normalisation costs nothing.
        self.register_buffer("rows", resize_matrix(camera_size[0], input_size[0]) / 255.0)
        self.register_buffer("columns", resize_matrix(camera_size[1], input_size[1]).T.contiguous())

    def preprocess(self, frames: Tensor) -> Tensor:
        """B x H x W x 3 uint8 -> B x 3 x h x w float32 in [0, 1] at the network size: the rows
        are resized in the frame's own layout, then the (smaller) result is made planar."""
        height, width = self.camera_size
        pixels = frames.to(torch.float32).reshape(-1, height, width * 3)
        pixels = torch.matmul(self.rows, pixels).reshape(-1, self.input_size[0], width, 3)
        pixels = pixels.permute(0, 3, 1, 2)
        if width == self.input_size[1]:
            return pixels
        return torch.matmul(pixels, self.columns)

    def finish(self, decoded: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """Decoded maps at the network size -> the graph's outputs at the camera size."""
        size = None if self.camera_size == self.input_size else self.camera_size
        return tuple(_FINISH[task](decoded[task], size) for task in self.tasks)

    def forward(self, frames: Tensor) -> tuple[Tensor, ...]:
        outputs = self.network(self.preprocess(frames))
        return self.finish(dict(zip(self.tasks, outputs)))

