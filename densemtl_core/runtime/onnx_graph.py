"""A network as a serialized ONNX model: the inference graph with a static input shape and the
model description.

The runtime builds one in memory to run a checkpoint on ONNX Runtime; ``densemtl-export``
writes the same bytes to a file. The graph (see :mod:`densemtl_core.runtime.graph`) holds input
normalisation, the network and the metric decoding, so ONNX Runtime and TensorRT return the same
tensors as PyTorch. It is written by torch's TorchScript-based exporter at opset 17 with
constant folding: its operators are all in TensorRT's ONNX parser (see
:data:`densemtl_core.export.onnx.TENSORRT_OPERATORS`) and it needs no extra package.
"""
from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

import torch

from ..checkpoint import ModelMetadata
from .end_to_end import EndToEndGraph
from .graph import INPUT_NAME, InferenceGraph, output_names
from .metadata import ONNX_METADATA_KEY, DeployedModelInfo

if TYPE_CHECKING:
    from ..models.network import MultiTaskNet

OPSET = 17
INPUT_SIZE_MULTIPLE = 16
"""The encoder's output stride: every input side must be a multiple of it."""


def import_onnx():
    try:
        import onnx
    except ImportError as error:
        raise ImportError("ONNX export needs the onnx package (pip install onnx)") from error
    return onnx


def check_input_size(input_size: tuple[int, int]) -> tuple[int, int]:
    height, width = (int(v) for v in input_size)
    if height <= 0 or width <= 0 or height % INPUT_SIZE_MULTIPLE or width % INPUT_SIZE_MULTIPLE:
        raise ValueError(f"input size {height}x{width} must be positive multiples of "
                         f"{INPUT_SIZE_MULTIPLE} (the encoder's output stride)")
    return height, width


def check_camera_size(camera_size: tuple[int, int]) -> tuple[int, int]:
    height, width = (int(v) for v in camera_size)
    if height <= 0 or width <= 0:
        raise ValueError(f"camera size {height}x{width} must be positive")
    return height, width


def onnx_model_bytes(model: MultiTaskNet, metadata: ModelMetadata, *,
                     input_size: tuple[int, int] | None = None, dynamic_batch: bool = False,
                     opset: int = OPSET, camera_size: tuple[int, int] | None = None) -> bytes:
    """``model`` as a serialized ONNX model.

    ``input_size`` (H, W) is fixed in the graph, by default the training input size from
    ``metadata``; ``dynamic_batch`` leaves the batch dimension symbolic (``batch``).
    ``camera_size`` (H, W) makes it the end-to-end graph of
    :mod:`densemtl_core.runtime.end_to_end`: uint8 camera frames of that size in, finished
    maps at that size out. The model
    description (:class:`DeployedModelInfo`) is stored as the metadata property ``densemtl``.
    The result passes the ONNX checker (full check, with shape inference).
    """
    onnx = import_onnx()
    size = check_input_size(input_size or metadata.input_size)
    camera = None if camera_size is None else check_camera_size(camera_size)
    info = DeployedModelInfo(metadata=metadata, input_size=size, dynamic_batch=dynamic_batch,
                             camera_size=camera)
    names = output_names(info.tasks)
    dynamic_axes = ({name: {0: "batch"} for name in [INPUT_NAME, *names]}
                    if dynamic_batch else None)
    if camera is None:
        graph, example = InferenceGraph(model).eval(), torch.zeros(1, 3, *size)
        described = (f"input {INPUT_NAME} RGB in [0, 1] {size[0]}x{size[1]}; outputs decoded "
                     f"at that resolution")
    else:
        graph = EndToEndGraph(model, size, camera).eval()
        example = torch.zeros(1, *camera, 3, dtype=torch.uint8)
        described = (f"input {INPUT_NAME} uint8 RGB camera frames {camera[0]}x{camera[1]}x3, "
                     f"network at {size[0]}x{size[1]}; outputs finished at the camera size")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (see the module docstring); strided
        # slices (SxTAM's query sub-sampling) are exported unfolded, which is correct.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(graph, (example,), buffer, opset_version=opset,
                          dynamo=False, input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    proto.doc_string = f"densemtl {'/'.join(info.tasks)}: {described}"
    onnx.helper.set_model_props(proto, {ONNX_METADATA_KEY: info.to_json()})
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()
