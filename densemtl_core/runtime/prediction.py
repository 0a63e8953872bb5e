"""What a predictor returns for one image: numpy arrays at the input's resolution."""
from __future__ import annotations

import numpy as np

from ..checkpoint import ModelMetadata
from ..tasks import TaskMaps


class Prediction(TaskMaps):
    """Every map has the input image's height and width; a task the model lacks is ``None``.
    One field per task of :data:`~densemtl_core.tasks.TASKS` (its ``field``):

    ``segmentation``: class ids, uint8 (uint16 beyond 256 classes), H x W.
    ``depth``: metres (a relative model's units: ``Predictor.depth_units``), float32 H x W,
    within the model's depth range.
    ``normals``: unit surface normals in the camera optical frame (x right, y down, z forward),
    float32 H x W x 3.
    ``edges``: edge probability in [0, 1], float32 H x W (from an end-to-end graph, in steps
    of 1/255: the graph quantises it as the node publishes it).

    Besides: ``probabilities``, class probabilities, float32 C x H x W, only when asked for;
    ``metadata``, the model's metadata (tasks, class names and colours, input size, depth range).
    """

    EXTRA_FIELDS = ("probabilities",)

    def __init__(self, *, metadata: ModelMetadata, **maps: np.ndarray | None) -> None:
        super().__init__(**maps)
        object.__setattr__(self, "metadata", metadata)
