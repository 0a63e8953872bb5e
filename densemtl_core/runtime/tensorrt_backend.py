"""TensorRT backend: a serialized engine run through TensorRT 10's named-tensor API.

Page-locked host buffers, device buffers (sized for the engine's largest batch) and one CUDA
stream are allocated once at load; a frame only copies in, enqueues and copies out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .cuda_buffers import DeviceArray, checked, import_cudart
from .errors import ModelFileError, PredictorError
from .graph import INPUT_NAME
from .sidecar import EngineSidecar, onnx_location, read_sidecar, recorded_settings, verify_engine
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

        sidecar = build_engine(onnx_path, engine_path, recorded_settings(engine_path, sidecar))
    return sidecar


class TensorRTBackend:
    """``engine_path`` with its sidecar; ``rebuild`` rebuilds an engine that does not fit this
    machine (or is corrupt) from its ONNX file instead of refusing it."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, *, device_index: int = 0,
                 rebuild: bool = False) -> None:
        engine_path = Path(engine_path)
        self.cudart = import_cudart()
        checked(self.cudart, self.cudart.cudaSetDevice(device_index))
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
        self.buffers: dict[str, DeviceArray] = {}
        self.stream = checked(self.cudart, self.cudart.cudaStreamCreate())
        self._batch = self.max_batch
        self.context.set_input_shape(INPUT_NAME, self.sidecar.input_shape)
        self._allocate(trt)

    def _allocate(self, trt: Any) -> None:
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        expected = {INPUT_NAME, *self.info.tasks}
        if set(names) != expected:
            raise ModelFileError(f"engine tensors {sorted(names)} do not match the model "
                                 f"description ({sorted(expected)})")
        for name in names:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ModelFileError(f"engine tensor {name} has an unresolved shape {shape}")
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            self.buffers[name] = DeviceArray(self.cudart, shape, dtype)
            self.context.set_tensor_address(name, self.buffers[name].device)

    @property
    def device_bytes(self) -> int:
        """GPU memory held: I/O buffers plus the engine's activation memory."""
        activations = getattr(self.engine, "device_memory_size_v2", None)
        if activations is None:
            activations = self.engine.device_memory_size
        return int(activations) + sum(b.nbytes for b in self.buffers.values())

    def run(self, batch: Tensor) -> dict[str, Tensor]:
        size = batch.shape[0]
        if size != self._batch:
            self.context.set_input_shape(INPUT_NAME, (size, *self.sidecar.input_shape[1:]))
            self._batch = size
        image = self.buffers[INPUT_NAME]
        np.copyto(image.host[:size], batch.numpy())
        image.upload(image.host[:size].nbytes, self.stream)
        if not self.context.execute_async_v3(int(self.stream)):
            raise PredictorError("TensorRT failed to enqueue the engine (see its log)")
        for task in self.info.tasks:
            output = self.buffers[task]
            output.download(output.host[:size].nbytes, self.stream)
        checked(self.cudart, self.cudart.cudaStreamSynchronize(self.stream))
        return {task: torch.from_numpy(self.buffers[task].host[:size])
                for task in self.info.tasks}

    def close(self) -> None:
        """Free the buffers and the stream (also done when the backend is garbage-collected)."""
        for buffer in self.buffers.values():
            buffer.free()
        self.buffers = {}
        if self.stream is not None:
            checked(self.cudart, self.cudart.cudaStreamDestroy(self.stream))
            self.stream = None

    def __del__(self) -> None:
        if getattr(self, "stream", None) is not None:  # fully or partly loaded
            try:
                self.close()
            except Exception:  # interpreter shutdown may have unloaded CUDA already
                pass
