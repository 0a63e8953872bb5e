"""ONNX Runtime backend: a file written by ``densemtl-export`` (or its bytes, exported in memory)."""
from __future__ import annotations

import torch
from torch import Tensor

from .errors import ModelFileError, PredictorError
from .graph import INPUT_NAME, output_names
from .metadata import DeployedModelInfo


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise PredictorError("the onnxruntime backend needs the onnxruntime package "
                             "(pip install onnxruntime)") from error
    return onnxruntime


def _session_options(ort, threads: int | None):
    """All graph optimisations; ``threads`` intra-op threads (ONNX Runtime's default: one per
    physical core); one inter-op thread, since the graph is a single chain of operators."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    return options


class OnnxRuntimeBackend:
    """``model`` is a path or the serialized bytes; ``source`` names it in errors. ``device``
    ``cuda`` uses ONNX Runtime's CUDA execution provider (onnxruntime-gpu)."""

    name = "onnxruntime"

    def __init__(self, model: str | bytes, *, source: str, device: torch.device = torch.device("cpu"),
                 threads: int | None = None) -> None:
        ort = _import_onnxruntime()
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise PredictorError("device cuda with onnxruntime needs the onnxruntime-gpu "
                                     "package (its CUDA execution provider is not available)")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        try:
            self.session = ort.InferenceSession(model, _session_options(ort, threads),
                                                providers=providers)
        except Exception as error:  # ONNX Runtime raises its own unrelated types per failure
            raise ModelFileError(f"{source} is not a readable ONNX model: {error}") from error
        self.info = DeployedModelInfo.from_onnx_properties(
            self.session.get_modelmeta().custom_metadata_map, source)
        inputs = [node.name for node in self.session.get_inputs()]
        if inputs != [INPUT_NAME]:
            raise ModelFileError(f"{source}: expected one input named {INPUT_NAME!r}, got {inputs}")
        self.input_size = self.info.input_size
        self.max_batch = None if self.info.dynamic_batch else 1
        self._outputs = output_names(self.info.tasks)

    def run(self, batch: Tensor) -> dict[str, Tensor]:
        arrays = self.session.run(self._outputs, {INPUT_NAME: batch.numpy()})
        return {task: torch.from_numpy(array) for task, array in zip(self.info.tasks, arrays)}
