"""The description a deployed model carries: its checkpoint metadata plus how it was exported.

It travels as JSON in the ONNX file's metadata properties (key ``densemtl``) and, copied from
there, in the sidecar of every TensorRT engine, so a predictor needs nothing but the file. The
runtime reads it; :mod:`densemtl_core.runtime.onnx_graph` embeds it in the graph.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..checkpoint import CheckpointError, ModelMetadata
from .errors import ModelFileError

ONNX_METADATA_KEY = "densemtl"
FORMAT_NAME = "densemtl-onnx"
FORMAT_VERSION = 2
GRAPH_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class DeployedModelInfo:
    """``input_size`` is the network's static H x W (chosen at export, may differ from the
    training size); ``dynamic_batch`` says whether the batch dimension is symbolic.

    ``precision`` is the arithmetic the graph itself carries: ``fp32``, ``fp16`` (a half-precision
    graph) or ``int8`` (explicit quantize/dequantize nodes); ``calibration`` describes the
    frames an ``int8`` graph was calibrated on. ``camera_size`` (H, W) marks an end-to-end graph:
    it takes B x H x W x 3 uint8 camera frames and returns outputs at that size, pre- and
    post-processing inside the graph; None for a graph of the network alone.
    """

    metadata: ModelMetadata
    input_size: tuple[int, int]
    dynamic_batch: bool = False
    precision: str = "fp32"
    calibration: dict[str, Any] | None = None
    camera_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.precision not in GRAPH_PRECISIONS:
            raise ValueError(f"graph precision must be one of {GRAPH_PRECISIONS}, "
                             f"got {self.precision!r}")

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.metadata.tasks

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "input_size": list(self.input_size), "dynamic_batch": self.dynamic_batch,
                "precision": self.precision, "calibration": self.calibration,
                "camera_size": None if self.camera_size is None else list(self.camera_size),
                "outputs": list(self.tasks), "model": self.metadata.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Any, source: str) -> "DeployedModelInfo":
        """Parse ``values`` read from ``source`` (named in every error)."""
        if not isinstance(values, dict) or values.get("format") != FORMAT_NAME:
            raise ModelFileError(f"{source}: the embedded model description is not a "
                                 f"{FORMAT_NAME} record")
        version = values.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFileError(f"{source}: model description format version {version!r} is "
                                 f"newer than this library reads ({FORMAT_VERSION}); upgrade "
                                 f"densemtl_core or export the model again")
        try:
            metadata = ModelMetadata.from_dict(values["model"])
            height, width = (int(v) for v in values["input_size"])
            camera = values.get("camera_size")  # absent before format version 2, as below
            return cls(metadata=metadata, input_size=(height, width),
                       dynamic_batch=bool(values.get("dynamic_batch", False)),
                       precision=str(values.get("precision", "fp32")),
                       calibration=values.get("calibration"),
                       camera_size=None if camera is None else (int(camera[0]), int(camera[1])))
        except (CheckpointError, KeyError, TypeError, ValueError, IndexError) as error:
            raise ModelFileError(f"{source}: invalid model description: {error}") from error

    @classmethod
    def from_onnx_properties(cls, properties: dict[str, str], source: str) -> "DeployedModelInfo":
        """From an ONNX file's metadata properties (as ONNX Runtime or the onnx package list them)."""
        if ONNX_METADATA_KEY not in properties:
            raise ModelFileError(f"{source} carries no densemtl model description; export it with "
                                 f"densemtl-export --checkpoint CKPT --onnx {source}")
        try:
            values = json.loads(properties[ONNX_METADATA_KEY])
        except json.JSONDecodeError as error:
            raise ModelFileError(f"{source}: model description is not valid JSON: {error}") from error
        return cls.from_dict(values, source)
