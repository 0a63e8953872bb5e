"""How a bag evaluation runs: the model and the pairing with ground truth, and, live, the node
it plays the bag to. Plain values, light on purpose: the command line and the demo fill them
before torch and the runtime are imported."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OUTPUT_NAMESPACE = "/densemtl"
"""The node's name as the launch file and ``densemtl-node`` start it: where its outputs are,
and the namespace of the prediction topics in an output bag."""


@dataclass(frozen=True)
class EvaluationSettings:
    """The model and how to run it, and how to pair ground truth with the images.

    ``model``: checkpoint, ONNX file or engine (None: the shipped model); ``label_map``: a
    :meth:`LabelMapping.parse` spec (None: ground truth in the model's ids);
    ``relative_depth_scale``: metres per unit of a relative-depth model's depth, as the node
    takes it (0: not given; see :mod:`densemtl_ros.depth_units`)."""

    model: str | None = None
    backend: str = "auto"
    device: str = "auto"
    label_map: str | None = None
    stamp_tolerance_ms: float = 5.0
    progress: bool = True
    relative_depth_scale: float = 0.0


@dataclass(frozen=True)
class LiveSettings:
    """Playing the bag to a node: its name (where its outputs are), the playback speed (0:
    each frame once the node has answered the previous one), and whether to start one (same
    model and backend), logging to ``node_log``."""

    node: str = OUTPUT_NAMESPACE
    rate: float = 1.0
    start_node: bool = False
    node_log: Path | None = None
