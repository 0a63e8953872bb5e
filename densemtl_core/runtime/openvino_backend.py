"""OpenVINO backend: an ONNX file written by ``densemtl-export`` (or its bytes, exported in memory)
on an Intel CPU, integrated GPU or NPU.

The graph's own inputs and outputs drive it, so float32 network graphs, FP16 and INT8 (Q/DQ)
graphs and end-to-end graphs taking uint8 camera frames all run unchanged.
"""
from __future__ import annotations

import re

import numpy as np
import torch
from torch import Tensor

from .errors import ModelFileError, PredictorError
from .metadata import ONNX_METADATA_KEY, DeployedModelInfo

_DEVICE = re.compile(r"^(auto|cpu|gpu(\.\d+)?|npu)$")
OPENVINO_DEVICES = "auto, cpu, gpu, gpu.N or npu"


def _import_openvino():
    try:
        import openvino
    except ImportError as error:
        raise PredictorError("the openvino backend needs the openvino package "
                             "(pip install openvino)") from error
    return openvino


def openvino_device(device: str) -> str:
    """OpenVINO's name for a ``device`` setting: ``auto`` and ``cpu`` are its CPU plugin, ``gpu``
    (``gpu.N``) an Intel GPU, ``npu`` an Intel NPU."""
    if not _DEVICE.fullmatch(device):
        raise PredictorError(f"device {device!r} is not an OpenVINO device; use "
                             f"{OPENVINO_DEVICES}")
    return "CPU" if device == "auto" else device.upper()


def _compile_config(device: str, threads: int | None) -> dict[str, str]:
    """Latency over throughput (one stream: the node runs one frame at a time), and the
    arithmetic the graph carries: without ``ACCURACY`` the CPU plugin silently computes a float32
    graph in bfloat16 on CPUs that have it, and the GPU plugin in float16."""
    config = {"PERFORMANCE_HINT": "LATENCY", "EXECUTION_MODE_HINT": "ACCURACY"}
    if threads is not None and device == "CPU":
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return config


def _model_info(model, source: str) -> DeployedModelInfo:
    """The description the ONNX file carries (OpenVINO keeps ONNX metadata properties under
    ``framework`` in the model's runtime information)."""
    key = ["framework", ONNX_METADATA_KEY]
    properties = ({ONNX_METADATA_KEY: model.get_rt_info(key).astype(str)}
                  if model.has_rt_info(key) else {})
    return DeployedModelInfo.from_onnx_properties(properties, source)


class OpenVinoBackend:
    """``model`` is a path or the serialized bytes; ``source`` names it in errors. ``device`` is
    an OpenVINO device name (:func:`openvino_device`); ``threads`` the CPU inference threads
    (OpenVINO's default: one per physical core)."""

    name = "openvino"

    def __init__(self, model: str | bytes, *, source: str, device: str = "CPU",
                 threads: int | None = None) -> None:
        ov = _import_openvino()
        core = ov.Core()
        if device.split(".")[0] not in {name.split(".")[0] for name in core.available_devices}:
            raise PredictorError(f"OpenVINO device {device} is not available here (available: "
                                 f"{', '.join(core.available_devices)})")
        try:
            graph = (core.read_model(model, ov.Tensor(np.empty(0, np.uint8)))
                     if isinstance(model, bytes) else core.read_model(model))
        except Exception as error:  # OpenVINO raises bare RuntimeErrors for every failure
            raise ModelFileError(f"{source} is not a readable ONNX model: {error}") from error
        self.info = _model_info(graph, source)
        if len(graph.inputs) != 1:
            raise ModelFileError(f"{source}: expected one input, got "
                                 f"{[port.get_any_name() for port in graph.inputs]}")
        try:
            self.compiled = core.compile_model(graph, device, _compile_config(device, threads))
        except Exception as error:
            raise PredictorError(f"OpenVINO cannot compile {source} for {device}: "
                                 f"{error}") from error
        self.request = self.compiled.create_infer_request()
        self.input_size = self.info.input_size
        self.max_batch = None if self.info.dynamic_batch else 1
        self._outputs = [port.get_any_name() for port in self.compiled.outputs]

    def run(self, batch: Tensor) -> dict[str, Tensor]:
        """The graph's outputs by name, in the input batch's dtype and layout as the graph takes
        it; the arrays are the request's buffers, overwritten by the next call as the contract
        allows."""
        results = self.request.infer([batch.numpy()], share_inputs=True, share_outputs=True)
        return {name: torch.from_numpy(array)
                for name, array in zip(self._outputs, results.to_tuple())}
