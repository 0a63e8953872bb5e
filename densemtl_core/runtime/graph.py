"""The deployed computation: what the ONNX file, the TensorRT engine and the torch backend run.

Input normalisation, the network and each task's metric decoding at the network resolution, with
a flat tuple of named outputs (one per task, in the model's task order), so that every backend
returns the same tensors and the shared post-processing finishes them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

if TYPE_CHECKING:  # only named here: running an ONNX file or an engine loads no network code
    from ..models.network import MultiTaskNet

INPUT_NAME = "image"
"""Float32 RGB batch B x 3 x H x W in [0, 1] at the network input size (an end-to-end graph's,
:mod:`densemtl_core.runtime.end_to_end`: uint8 RGB camera frames B x H x W x 3)."""


def output_names(tasks: tuple[str, ...]) -> list[str]:
    """Graph output names: the task names (semseg: class probabilities; depth: metres, or a
    relative model's units; normals: unit vectors in the camera optical frame; edges: edge
    probability), each B x C x H x W."""
    return list(tasks)


class InferenceGraph(nn.Module):
    """A trained :class:`MultiTaskNet` reduced to its deployable part: final-scale decoded outputs."""

    def __init__(self, model: MultiTaskNet) -> None:
        super().__init__()
        self.model = model
        self.tasks = tuple(model.tasks)

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        decoded = self.model.decode(self.model(image))
        return tuple(decoded[task] for task in self.tasks)
