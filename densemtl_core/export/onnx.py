"""Checkpoint -> ONNX file: :func:`~densemtl_core.runtime.onnx_graph.onnx_model_bytes` written
to disk, read back and checked for the operators TensorRT parses.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import ModelMetadata
from ..models.network import MultiTaskNet
from ..runtime.errors import ModelFileError
from ..runtime.metadata import DeployedModelInfo
from ..runtime.onnx_graph import OPSET, import_onnx, onnx_model_bytes

TENSORRT_OPERATORS = frozenset({
    "Add", "ArgMax", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
    "DequantizeLinear", "Div", "Elu", "Expand", "Gather", "GlobalAveragePool", "Identity",
    "MatMul", "MaxPool", "Mul", "Pad", "QuantizeLinear", "Reciprocal", "ReduceL2", "Relu",
    "Reshape", "Resize", "Round", "Shape", "Sigmoid", "Slice", "Softmax", "Sqrt", "Squeeze",
    "Sub", "Transpose", "Unsqueeze",
})
"""Operators the exported graphs may use: each is in the ONNX parser's supported-operator list of
TensorRT 10 (Pad in constant and reflect mode, Resize in nearest and linear mode; uint8, which
Cast converts an end-to-end graph's input from and its class ids and edges to, only as graph
input and output; QuantizeLinear/DequantizeLinear of an INT8 graph with zero points 0, the
explicit quantization of strongly typed networks), all in the default ONNX domain. A model
change that brings in anything else fails a test before it fails on a robot."""


def export_onnx(model: MultiTaskNet, metadata: ModelMetadata, path: str | Path, *,
                input_size: tuple[int, int] | None = None, dynamic_batch: bool = False,
                opset: int = OPSET, camera_size: tuple[int, int] | None = None) -> Path:
    """Write :func:`onnx_model_bytes` to ``path`` atomically and return the path."""
    serialized = onnx_model_bytes(model, metadata, input_size=input_size,
                                  dynamic_batch=dynamic_batch, opset=opset,
                                  camera_size=camera_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(serialized)
    partial.replace(path)
    return path


def load_onnx(path: str | Path) -> Any:
    """The ``onnx.ModelProto`` at ``path``, or ModelFileError naming the file."""
    onnx = import_onnx()
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"ONNX file {path} does not exist")
    try:
        return onnx.load(str(path))
    except Exception as error:  # protobuf's DecodeError and onnx's own errors share no base
        raise ModelFileError(f"{path} is not a readable ONNX model: {error}") from error


def read_onnx_info(path: str | Path) -> DeployedModelInfo:
    """The model description embedded in an exported ONNX file."""
    proto = load_onnx(path)
    properties = {prop.key: prop.value for prop in proto.metadata_props}
    return DeployedModelInfo.from_onnx_properties(properties, str(path))


def graph_operators(proto: Any) -> set[str]:
    """Operator types of the main graph, as ``domain::Op`` outside the default ONNX domain."""
    return {f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx")
            else node.op_type for node in proto.graph.node}
