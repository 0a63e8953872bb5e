"""TensorRT backend: a serialized engine run through the named-tensor API of TensorRT 10 and 11
(``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``: unchanged in 11).

Page-locked host buffers, device buffers (sized for the engine's largest batch) and one CUDA
stream are allocated once at load, through cuda-python or pycuda
(:mod:`~densemtl_core.runtime.cuda_buffers`); a frame only copies in, enqueues and copies out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .cuda_buffers import HostDeviceBuffer, cuda_api
from .errors import ModelFileError, PredictorError
from .sidecar import EngineSidecar, onnx_location, read_sidecar, verify_engine
from .tensorrt_environment import current_environment, import_tensorrt


def _verified_sidecar(engine_path: Path, device_index: int, rebuild: bool) -> EngineSidecar:
    """The engine's sidecar once the engine is known to fit this machine (rebuilt if asked).

    Rebuilding is the one place the runtime uses the export side (the engine builder): only when
    asked, and imported here so that running an engine never loads the builder.
    """
    sidecar = read_sidecar(engine_path)
    running = current_environment(device_index)
    try:
        verify_engine(engine_path, sidecar, running)
    except ModelFileError as error:
        if not rebuild:
            raise
        onnx_path = onnx_location(engine_path, sidecar)
        if not onnx_path.is_file():
            raise ModelFileError(f"cannot rebuild {engine_path}: its ONNX file {onnx_path} "
                                 f"is missing") from error
        from ..export.tensorrt import build_engine

        sidecar = build_engine(onnx_path, engine_path, sidecar.settings)
    return sidecar


class TensorRTBackend:
    """``engine_path`` with its sidecar; ``rebuild`` rebuilds an engine that does not fit this
    machine (or is corrupt) from its ONNX file instead of refusing it."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, *, device_index: int = 0,
                 rebuild: bool = False) -> None:
        engine_path = Path(engine_path)
        self.cuda = cuda_api()
        self.cuda.use_device(device_index)
        self.sidecar = _verified_sidecar(engine_path, device_index, rebuild)
        self.info = self.sidecar.model
        self.input_size = self.info.input_size
        self.max_batch = self.sidecar.input_shape[0]
        trt = import_tensorrt()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if self.sidecar.settings.dla_core is not None:
            self._runtime.DLA_core = self.sidecar.settings.dla_core
        self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise ModelFileError(f"TensorRT could not deserialize {engine_path} (see its log); "
                                 f"rebuild it with densemtl-export")
        self.context = self.engine.create_execution_context()
        self.buffers: dict[str, HostDeviceBuffer] = {}
        self.stream = self.cuda.stream()
        self._batch = self.max_batch
        self.input_name = self._input_name(trt)
        self.context.set_input_shape(self.input_name, self.sidecar.input_shape)
        self._allocate(trt)

    def _input_name(self, trt: Any) -> str:
        """The engine's one input; its outputs must be the model's tasks."""
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = set(names) - set(inputs)
        if len(inputs) != 1 or outputs != set(self.info.tasks):
            raise ModelFileError(f"engine tensors {sorted(names)} do not match the model "
                                 f"description (one input, outputs {sorted(self.info.tasks)})")
        return inputs[0]

    def _allocate(self, trt: Any) -> None:
        for name in (self.input_name, *self.info.tasks):
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ModelFileError(f"engine tensor {name} has an unresolved shape {shape}")
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            self.buffers[name] = self.cuda.allocate(shape, dtype)
            self.context.set_tensor_address(name, self.buffers[name].device)

    @property
    def device_bytes(self) -> int:
        """GPU memory held: I/O buffers plus the engine's activation memory
        (``device_memory_size_v2``: TensorRT 10 and 11; 11 removed ``device_memory_size``)."""
        return int(self.engine.device_memory_size_v2) + sum(b.nbytes for b in self.buffers.values())

    def run(self, batch: Tensor) -> dict[str, Tensor]:
        size = batch.shape[0]
        if size != self._batch:
            self.context.set_input_shape(self.input_name, (size, *self.sidecar.input_shape[1:]))
            self._batch = size
        image = self.buffers[self.input_name]
        np.copyto(image.host[:size], batch.numpy())
        image.upload(size, self.stream)
        if not self.context.execute_async_v3(self.stream.handle):
            raise PredictorError("TensorRT failed to enqueue the engine (see its log)")
        for task in self.info.tasks:
            self.buffers[task].download(size, self.stream)
        self.stream.synchronize()
        return {task: torch.from_numpy(self.buffers[task].host[:size])
                for task in self.info.tasks}

    def close(self) -> None:
        """Free the buffers and the stream (also done when the backend is garbage-collected)."""
        for buffer in self.buffers.values():
            buffer.free()
        self.buffers = {}
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def __del__(self) -> None:
        if getattr(self, "stream", None) is not None:  # fully or partly loaded
            try:
                self.close()
            except Exception:  # interpreter shutdown may have unloaded CUDA already
                pass
