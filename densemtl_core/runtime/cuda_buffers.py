"""Page-locked host buffers, device buffers and CUDA streams through whichever CUDA Python
binding is installed: cuda-python (NVIDIA's bindings) first, else pycuda.

One small interface (:class:`CudaApi`: devices, :meth:`~CudaApi.allocate`, :meth:`~CudaApi.stream`;
:class:`HostDeviceBuffer`: ``upload``/``download``/``free``) with two implementations, so the
TensorRT backend never branches on the binding. Both work on the device's primary context, the
one TensorRT's runtime-API calls use.

APIs used, as documented: cuda-python's runtime module is ``cuda.bindings.runtime`` (cuda-python
12.6 and later; ``cuda.cudart`` before, kept there as a deprecated alias), whose calls return
``(cudaError_t, value...)`` tuples (cudaMallocHost, cudaMalloc, cudaMemcpyAsync,
cudaStreamCreate/Synchronize/Destroy, cudaGetDeviceProperties). pycuda's driver module
(doc/driver.rst of inducer/pycuda): ``init``, ``Device(n).retain_primary_context()`` (2020.1,
then ``Context.push``), ``pagelocked_empty``, ``mem_alloc`` (int() of it is the device
pointer), ``memcpy_htod_async``/``memcpy_dtoh_async(dest, src, stream)`` and ``Stream``, whose
``handle`` is what TensorRT's execute call takes (as in TensorRT's own pycuda samples).
"""
from __future__ import annotations

import atexit
import ctypes
import functools
import importlib
import importlib.util
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .errors import PredictorError

CUDA_BINDINGS = ("cuda.bindings.runtime", "cuda.cudart", "pycuda.driver")
"""Modules tried in order: cuda-python (current, then pre-12.6 path), then pycuda."""

MISSING_BINDINGS = ("TensorRT engines need CUDA Python bindings: pip install cuda-python "
                    "(or pycuda, e.g. JetPack's python3-pycuda)")


class Stream(Protocol):
    handle: int

    def synchronize(self) -> None: ...

    def close(self) -> None: ...


class HostDeviceBuffer(Protocol):
    """A page-locked host array ``host`` and a device allocation (pointer ``device``) of the
    same shape; ``upload``/``download`` copy the first ``rows`` of the leading dimension."""

    host: np.ndarray
    device: int
    nbytes: int

    def upload(self, rows: int, stream: Stream) -> None: ...

    def download(self, rows: int, stream: Stream) -> None: ...

    def free(self) -> None: ...


class CudaApi(Protocol):
    name: str

    def device_count(self) -> int: ...

    def use_device(self, index: int) -> None: ...

    def current_device(self) -> int: ...

    def device_identity(self, index: int) -> tuple[str, str]:
        """GPU name and compute capability ("8.7")."""

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> HostDeviceBuffer: ...

    def stream(self) -> Stream: ...


def _module_present(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def find_cuda_binding(present: Callable[[str], bool] = _module_present) -> str | None:
    """The first of :data:`CUDA_BINDINGS` that ``present`` says is installed, or None."""
    return next((name for name in CUDA_BINDINGS if present(name)), None)


@functools.cache
def cuda_api() -> CudaApi:
    """The CUDA API of the installed binding (cuda-python preferred), or PredictorError. One per
    process, so that pycuda's context is pushed once."""
    name = find_cuda_binding()
    if name is None:
        raise PredictorError(MISSING_BINDINGS)
    module = importlib.import_module(name)
    return PycudaApi(module) if name == "pycuda.driver" else CudaPythonApi(module)


def _bytes_of(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


# cuda-python ---------------------------------------------------------------------------------

class CudaPythonApi:
    """cuda-python's runtime API (``cudart``)."""

    name = "cuda-python"

    def __init__(self, cudart: Any) -> None:
        self.cudart = cudart

    def call(self, result: tuple) -> Any:
        """The value of a call returning ``(error, value...)``, or PredictorError."""
        error, *values = result
        if error != self.cudart.cudaError_t.cudaSuccess:
            _, name = self.cudart.cudaGetErrorName(error)
            raise PredictorError(f"CUDA runtime call failed: "
                                 f"{name.decode() if isinstance(name, bytes) else name}")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def device_count(self) -> int:
        return int(self.call(self.cudart.cudaGetDeviceCount()))

    def use_device(self, index: int) -> None:
        self.call(self.cudart.cudaSetDevice(index))

    def current_device(self) -> int:
        return int(self.call(self.cudart.cudaGetDevice()))

    def device_identity(self, index: int) -> tuple[str, str]:
        properties = self.call(self.cudart.cudaGetDeviceProperties(index))
        name = properties.name
        name = name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)
        return name, f"{properties.major}.{properties.minor}"

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> HostDeviceBuffer:
        return _CudaPythonBuffer(self, shape, dtype)

    def stream(self) -> Stream:
        return _CudaPythonStream(self)


class _CudaPythonStream:
    def __init__(self, api: CudaPythonApi) -> None:
        self._api = api
        self._stream = api.call(api.cudart.cudaStreamCreate())
        self.handle = int(self._stream)

    def synchronize(self) -> None:
        self._api.call(self._api.cudart.cudaStreamSynchronize(self._stream))

    def close(self) -> None:
        if self.handle:
            self._api.call(self._api.cudart.cudaStreamDestroy(self._stream))
            self.handle = 0


class _CudaPythonBuffer:
    def __init__(self, api: CudaPythonApi, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._api = api
        self.nbytes = _bytes_of(shape, dtype)
        self._host_pointer = int(api.call(api.cudart.cudaMallocHost(self.nbytes)))
        self.device = int(api.call(api.cudart.cudaMalloc(self.nbytes)))
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self._host_pointer)
        self.host = np.frombuffer(raw, dtype=dtype).reshape(shape)

    def _copy(self, destination: int, source: int, rows: int, kind: Any, stream: Stream) -> None:
        cudart = self._api.cudart
        self._api.call(cudart.cudaMemcpyAsync(destination, source, self.host[:rows].nbytes,
                                              kind, stream.handle))

    def upload(self, rows: int, stream: Stream) -> None:
        self._copy(self.device, self._host_pointer, rows,
                   self._api.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def download(self, rows: int, stream: Stream) -> None:
        self._copy(self._host_pointer, self.device, rows,
                   self._api.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    def free(self) -> None:
        if self.device:
            self._api.cudart.cudaFree(self.device)
            self._api.cudart.cudaFreeHost(self._host_pointer)
            self.device = 0
            self.host = np.empty((0,), dtype=self.host.dtype)  # never a view of freed memory


# pycuda --------------------------------------------------------------------------------------

class PycudaApi:
    """pycuda's driver API on the device's primary context (pushed once, kept current)."""

    name = "pycuda"

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        try:
            driver.init()
        except Exception as error:  # pycuda.driver.Error: no driver or no device
            raise PredictorError(f"CUDA is not usable through pycuda: {error}") from error
        self._context: Any = None
        self._device = -1

    def device_count(self) -> int:
        return int(self.driver.Device.count())

    def use_device(self, index: int) -> None:
        if index == self._device:
            return
        if self._context is not None:
            self.driver.Context.pop()
        else:  # pop it at exit, as pycuda.autoprimaryctx does, or pycuda reports a leak
            atexit.register(self.driver.Context.pop)
        self._context = self.driver.Device(index).retain_primary_context()
        self._context.push()
        self._device = index

    def current_device(self) -> int:
        if self._context is None:
            self.use_device(0)
        return self._device

    def device_identity(self, index: int) -> tuple[str, str]:
        device = self.driver.Device(index)
        major, minor = device.compute_capability()
        return str(device.name()), f"{major}.{minor}"

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> HostDeviceBuffer:
        return _PycudaBuffer(self.driver, shape, dtype)

    def stream(self) -> Stream:
        return _PycudaStream(self.driver)


class _PycudaStream:
    def __init__(self, driver: Any) -> None:
        self.native = driver.Stream()
        self.handle = int(self.native.handle)

    def synchronize(self) -> None:
        self.native.synchronize()

    def close(self) -> None:
        self.native = None
        self.handle = 0


class _PycudaBuffer:
    def __init__(self, driver: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._driver = driver
        self.nbytes = _bytes_of(shape, dtype)
        self.host = driver.pagelocked_empty(shape, dtype)
        self._allocation = driver.mem_alloc(self.nbytes)
        self.device = int(self._allocation)

    def upload(self, rows: int, stream: _PycudaStream) -> None:
        self._driver.memcpy_htod_async(self.device, self.host[:rows], stream.native)

    def download(self, rows: int, stream: _PycudaStream) -> None:
        self._driver.memcpy_dtoh_async(self.host[:rows], self.device, stream.native)

    def free(self) -> None:
        if self.device:
            self._allocation.free()
            self.host.base.free()
            self.device = 0
            self.host = np.empty((0,), dtype=self.host.dtype)
