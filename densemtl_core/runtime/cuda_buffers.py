"""Page-locked host and device buffers and a CUDA stream, through cuda-python's runtime API.

The TensorRT backend and the INT8 calibrator allocate everything once; per frame they only copy.
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from .errors import PredictorError


def import_cudart() -> Any:
    """cuda-python's runtime module (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as error:
            raise PredictorError("the tensorrt backend needs cuda-python "
                                 "(pip install cuda-python)") from error
    return runtime


def checked(cudart: Any, result: tuple) -> Any:
    """The value of a cuda-python call (``(error, value...)``), or PredictorError on failure."""
    error, *values = result
    if error != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(error)
        raise PredictorError(f"CUDA runtime call failed: {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class DeviceArray:
    """A page-locked host array (numpy view ``host``) and a device allocation of the same size."""

    def __init__(self, cudart: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._cudart = cudart
        self.nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self._host_pointer = int(checked(cudart, cudart.cudaMallocHost(self.nbytes)))
        self.device = int(checked(cudart, cudart.cudaMalloc(self.nbytes)))
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self._host_pointer)
        self.host = np.frombuffer(raw, dtype=dtype).reshape(shape)

    def upload(self, nbytes: int, stream: Any) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        checked(self._cudart, self._cudart.cudaMemcpyAsync(self.device, self._host_pointer,
                                                           nbytes, kind, stream))

    def download(self, nbytes: int, stream: Any) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        checked(self._cudart, self._cudart.cudaMemcpyAsync(self._host_pointer, self.device,
                                                           nbytes, kind, stream))

    def free(self) -> None:
        if self.device:
            self._cudart.cudaFree(self.device)
            self._cudart.cudaFreeHost(self._host_pointer)
            self.device = 0
            self.host = np.empty((0,), dtype=self.host.dtype)  # never a view of freed memory
