"""``load_predictor``: the right backend for a model file and a machine."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from ..devices import resolve_device
from ..pretrained import DEFAULT_MODEL
from .errors import ModelFileError, PredictorError
from .predictor import Predictor

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt", "openvino")
CHECKPOINT_SUFFIXES = (".safetensors",)
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan")

_log = logging.getLogger(__name__)


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    for kind, suffixes in (("checkpoint", CHECKPOINT_SUFFIXES), ("onnx", ONNX_SUFFIXES),
                           ("engine", ENGINE_SUFFIXES)):
        if suffix in suffixes:
            return kind
    raise PredictorError(f"{path}: unknown model file type {suffix!r}; expected a checkpoint "
                         f"{CHECKPOINT_SUFFIXES}, an ONNX file {ONNX_SUFFIXES} or a TensorRT "
                         f"engine {ENGINE_SUFFIXES}")


def tensorrt_unavailable_reason() -> str | None:
    """Why TensorRT engines cannot run here, or None when they can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed"
    from .cuda_buffers import cuda_api

    try:
        count = cuda_api().device_count()
    except PredictorError as error:
        return str(error)
    return "no CUDA GPU is visible" if count == 0 else None


def _onnx_export_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def _torch_predictor(path: Path, device: torch.device, half: bool, cuda_graph: bool) -> Predictor:
    from ..checkpoint import load_checkpoint
    from .torch_backend import TorchBackend

    model, metadata = load_checkpoint(path, device="cpu")
    backend = TorchBackend(model, metadata.input_size, device, half=half, cuda_graph=cuda_graph)
    return Predictor(backend, metadata)


def _onnxruntime_predictor(model: str | bytes, source: str, device: torch.device,
                           threads: int | None) -> Predictor:
    from .onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(model, source=source, device=device, threads=threads)
    return Predictor(backend, backend.info.metadata)


def _openvino_predictor(path: Path, kind: str, device: str, threads: int | None) -> Predictor:
    from .openvino_backend import OpenVinoBackend, openvino_device

    target = openvino_device(device)  # checked before a checkpoint is exported
    if kind == "onnx":
        backend = OpenVinoBackend(str(path), source=str(path), device=target, threads=threads)
    else:
        backend = OpenVinoBackend(_exported_in_memory(path), device=target, threads=threads,
                                  source=f"{path} (exported in memory)")
    return Predictor(backend, backend.info.metadata)


def _exported_in_memory(path: Path) -> bytes:
    """A checkpoint exported to ONNX in memory (a few seconds for the small model; nothing is
    written, so nothing can go stale)."""
    from ..checkpoint import load_checkpoint
    from .onnx_graph import onnx_model_bytes

    model, metadata = load_checkpoint(path, device="cpu")
    return onnx_model_bytes(model, metadata, dynamic_batch=True)


def _engine_fallback(path: Path, reason: str, threads: int | None) -> Predictor:
    """``auto`` with an engine where TensorRT cannot run: the engine's ONNX file on ONNX Runtime."""
    from .sidecar import onnx_location, read_sidecar

    onnx_path = onnx_location(path, read_sidecar(path))
    if not onnx_path.is_file():
        raise PredictorError(f"cannot run {path}: {reason}, and its ONNX file {onnx_path} "
                             f"is missing")
    _log.warning("cannot run TensorRT engine %s (%s); running %s with onnxruntime instead",
                 path, reason, onnx_path)
    return _onnxruntime_predictor(str(onnx_path), str(onnx_path), torch.device("cpu"), threads)


def _engine_predictor(path: Path, backend: str, device: str, threads: int | None,
                      rebuild: bool) -> Predictor:
    from .tensorrt_backend import TensorRTBackend

    if backend not in ("auto", "tensorrt"):
        raise PredictorError(f"{path} is a TensorRT engine: use backend tensorrt (or auto), "
                             f"or load its ONNX file for {backend}")
    # TensorRT does not need a CUDA build of torch, so the device is not checked through torch.
    target = torch.device("cuda", 0) if device == "auto" else _parse_device(device)
    reason = (tensorrt_unavailable_reason() if target.type == "cuda"
              else f"device {device} was requested")
    if reason is None:
        engine = TensorRTBackend(path, device_index=target.index or 0, rebuild=rebuild)
        return Predictor(engine, engine.info.metadata)
    if backend == "tensorrt":
        raise PredictorError(f"cannot run TensorRT engine {path}: {reason}")
    return _engine_fallback(path, reason, threads)


def _parse_device(device: str) -> torch.device:
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise PredictorError(f"invalid device {device!r}: {error}") from error


def load_predictor(path: str | Path | None = None, backend: str = "auto", device: str = "auto",
                   *, threads: int | None = None, rebuild: bool = False, half: bool = False,
                   cuda_graph: bool = False) -> Predictor:
    """A :class:`Predictor` for a checkpoint (.safetensors), ONNX file or TensorRT engine.

    ``path=None`` loads the shipped default model. ``backend="auto"`` chooses by file and machine:

    * engine: TensorRT when it and a CUDA GPU are there; otherwise the engine's ONNX file (named
      in its sidecar) on ONNX Runtime, with a warning;
    * ONNX file: ONNX Runtime;
    * checkpoint: PyTorch on a CUDA device; on CPU, ONNX Runtime on the checkpoint exported in
      memory (faster than PyTorch eager; no file is written), or PyTorch when onnx or
      onnxruntime is not installed.

    ``backend="openvino"`` runs an ONNX file, or a checkpoint exported in memory, with OpenVINO;
    ``auto`` never chooses it.

    ``device``: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; for OpenVINO
    ``auto`` (its CPU), ``cpu``, ``gpu``, ``gpu.N`` or ``npu``. ``threads``: ONNX Runtime
    intra-op or OpenVINO inference threads (default: one per physical core). ``rebuild``:
    rebuild a TensorRT engine that does not fit this machine instead of refusing it. ``half`` and
    ``cuda_graph``: PyTorch on CUDA only (float16 autocast; CUDA graph replay).

    Raises PredictorError (ModelFileError for a missing, corrupt or foreign ONNX file or
    engine, EngineMismatchError for an engine built elsewhere) or CheckpointError.
    """
    if backend not in BACKENDS:
        raise PredictorError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    path = DEFAULT_MODEL if path is None else Path(path)
    kind = _file_kind(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    if (half or cuda_graph) and not (kind == "checkpoint" and backend in ("auto", "torch")):
        raise PredictorError("half and cuda_graph apply to the torch backend on a checkpoint")
    if kind == "engine":
        return _engine_predictor(path, backend, device, threads, rebuild)
    if backend == "openvino":  # OpenVINO names its own devices (Intel GPUs and NPUs)
        return _openvino_predictor(path, kind, device, threads)
    try:
        resolved = resolve_device(device)
    except RuntimeError as error:
        raise PredictorError(str(error)) from error
    if kind == "onnx":
        if backend == "tensorrt":
            raise PredictorError(f"{path} is an ONNX file: build an engine first with "
                                 f"densemtl-export --onnx {path} --engine "
                                 f"{path.with_suffix('.engine')}")
        if backend == "torch":
            raise PredictorError(f"{path} is an ONNX file: run it with backend onnxruntime, or "
                                 f"load the checkpoint it was exported from for torch")
        return _onnxruntime_predictor(str(path), str(path), resolved, threads)
    if backend == "tensorrt":
        raise PredictorError(f"{path} is a checkpoint: build an engine first with densemtl-export "
                             f"--checkpoint {path} --onnx MODEL.onnx --engine MODEL.engine")
    if backend == "onnxruntime" or (backend == "auto" and resolved.type == "cpu"
                                    and not (half or cuda_graph) and _onnx_export_available()):
        return _onnxruntime_predictor(_exported_in_memory(path), f"{path} (exported in memory)",
                                      resolved, threads)
    return _torch_predictor(path, resolved, half, cuda_graph)
