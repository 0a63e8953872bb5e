"""What a predictor returns for one image: numpy arrays at the input's resolution."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checkpoint import ModelMetadata


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """Every map has the input image's height and width; a task the model lacks is ``None``.

    ``segmentation``: class ids, uint8 (uint16 beyond 256 classes), H x W.
    ``probabilities``: class probabilities, float32 C x H x W; only when asked for.
    ``depth``: metres, float32 H x W, within the model's depth range.
    ``normals``: unit surface normals in the camera optical frame (x right, y down, z forward),
    float32 H x W x 3.
    ``edges``: edge probability in [0, 1], float32 H x W.
    ``metadata``: the model's metadata (tasks, class names and colours, input size, depth range).
    """

    metadata: ModelMetadata
    segmentation: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    depth: np.ndarray | None = None
    normals: np.ndarray | None = None
    edges: np.ndarray | None = None
