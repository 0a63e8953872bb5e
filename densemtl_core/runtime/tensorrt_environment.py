"""The TensorRT package and GPU of this process: what an engine is tied to, and the few places
where TensorRT 10 and 11 differ.

The runtime checks an engine's sidecar against :func:`current_environment` before loading it;
the engine builder records the same environment in the sidecar it writes. Supported: TensorRT
10 (JetPack 6.1/6.2 ship 10.3, JetPack 7 ships 10.13 to 10.16) and 11 (pip on desktops).
What differs, from NVIDIA's "Migrating from TensorRT 10.x to 11.x" guide (Python API reference
and patterns): 11 is always strongly typed and keeps ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
only as an ignored, deprecated flag, while 10 builds weakly typed networks unless asked
(``1 << STRONGLY_TYPED``); 11 removed ``ICudaEngine.device_memory_size`` (use
``device_memory_size_v2``, present since 10.0). Everything else used here (named I/O tensors,
``execute_async_v3``, ``set_tensor_address``, ``set_memory_pool_limit``, DLA core and
``BuilderFlag.GPU_FALLBACK``) is the same in both.
"""
from __future__ import annotations

from typing import Any

from .cuda_buffers import cuda_api
from .errors import PredictorError
from .sidecar import BuildEnvironment

SUPPORTED_MAJORS = (10, 11)
"""TensorRT generations this code builds and runs engines with."""


def tensorrt_major(version: str) -> int:
    """The major version of a TensorRT version string ("10.3.0.30" -> 10); PredictorError
    when the string does not start with a number."""
    head = version.strip().split(".", 1)[0]
    if not head.isdigit():
        raise PredictorError(f"cannot read the TensorRT version {version!r}")
    return int(head)


def check_tensorrt_version(version: str) -> int:
    """The major version when this code supports it, otherwise a one-line PredictorError."""
    major = tensorrt_major(version)
    if major < SUPPORTED_MAJORS[0]:
        raise PredictorError(f"TensorRT {version} is too old: engines need TensorRT 10 or 11 "
                             f"(JetPack 6.1 or later; on a desktop pip install 'tensorrt>=10')")
    if major > SUPPORTED_MAJORS[-1]:
        raise PredictorError(f"TensorRT {version} is newer than this code knows (10 and 11); "
                             f"install 'tensorrt>=10,<12' or upgrade densemtl_ros")
    return major


def network_creation_flags(major: int, strongly_typed_flag: int) -> int:
    """``create_network`` flags for a strongly typed network: TensorRT 10 needs the
    ``STRONGLY_TYPED`` bit (value ``strongly_typed_flag`` of the enum), TensorRT 11 always
    types strongly and ignores the deprecated flag, so it gets none."""
    return 0 if major >= 11 else 1 << strongly_typed_flag


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, checked to be a supported version."""
    try:
        import tensorrt
    except ImportError as error:
        raise PredictorError("TensorRT engines need the tensorrt Python package (JetPack ships "
                             "it; on a desktop pip install 'tensorrt>=10,<12') and a CUDA "
                             "GPU") from error
    check_tensorrt_version(tensorrt.__version__)
    return tensorrt


def current_environment(device_index: int | None = None) -> BuildEnvironment:
    """The running TensorRT version and GPU ``device_index`` (default: the current CUDA device)."""
    trt, cuda = import_tensorrt(), cuda_api()
    count = cuda.device_count()
    if device_index is None:
        device_index = cuda.current_device()
    if device_index >= count:
        raise PredictorError(f"CUDA device {device_index} requested, {count} present")
    name, capability = cuda.device_identity(device_index)
    return BuildEnvironment(trt.__version__, name, capability)
