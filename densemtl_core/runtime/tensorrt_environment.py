"""The TensorRT package and GPU of this process: what an engine is tied to.

The runtime checks an engine's sidecar against :func:`current_environment` before loading it;
the engine builder records the same environment in the sidecar it writes.
"""
from __future__ import annotations

from typing import Any

from .cuda_buffers import checked, import_cudart
from .errors import PredictorError
from .sidecar import BuildEnvironment

TENSORRT_MAJOR = 10
"""The API generation used here: named I/O tensors, ``execute_async_v3``, the entropy calibrator."""


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as error:
        raise PredictorError("TensorRT engines need the tensorrt Python package (JetPack 6 ships "
                             "it; on a desktop pip install 'tensorrt>=10,<11') and a CUDA "
                             "GPU") from error
    major = int(tensorrt.__version__.split(".")[0])
    if major != TENSORRT_MAJOR:
        raise PredictorError(f"TensorRT {tensorrt.__version__} found; this code uses the "
                             f"TensorRT {TENSORRT_MAJOR} API (JetPack 6, or pip install "
                             f"'tensorrt>=10,<11')")
    return tensorrt


def current_environment(device_index: int | None = None) -> BuildEnvironment:
    """The running TensorRT version and GPU ``device_index`` (default: the current CUDA device)."""
    trt, cudart = import_tensorrt(), import_cudart()
    count = checked(cudart, cudart.cudaGetDeviceCount())
    if device_index is None:
        device_index = checked(cudart, cudart.cudaGetDevice())
    if device_index >= count:
        raise PredictorError(f"CUDA device {device_index} requested, {count} present")
    properties = checked(cudart, cudart.cudaGetDeviceProperties(device_index))
    name = properties.name
    name = name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)
    return BuildEnvironment(trt.__version__, name, f"{properties.major}.{properties.minor}")
