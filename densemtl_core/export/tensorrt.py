"""TensorRT engines built from an exported ONNX file with the TensorRT 10 Python API.

FP32, FP16 or INT8 (entropy calibration on frames pre-processed like the predictor's, with a
calibration cache), a builder workspace limit and optional DLA core with GPU fallback. Every
engine gets its sidecar (``densemtl_core.runtime.sidecar``).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.cuda_buffers import DeviceArray, checked, import_cudart
from ..runtime.errors import ModelFileError, PredictorError
from ..runtime.metadata import DeployedModelInfo
from ..runtime.processing import as_rgb, prepare_batch
from ..runtime.sidecar import (BuildEnvironment, BuildSettings, EngineSidecar, sha256_file,
                               sidecar_path)
from ..runtime.tensorrt_environment import current_environment, import_tensorrt


def default_calibration_cache(engine_path: str | Path) -> Path:
    return Path(engine_path).with_suffix(".cache")


def calibration_batches(images: Iterable[np.ndarray], input_size: tuple[int, int],
                        batch_size: int) -> Iterator[np.ndarray]:
    """Float32 B x 3 x H x W batches for INT8 calibration, pre-processed exactly as the
    predictor pre-processes camera frames; a last incomplete batch is dropped (TensorRT
    calibrates with full batches only)."""
    pending: list[np.ndarray] = []
    for image in images:
        pending.append(as_rgb(image))
        if len(pending) == batch_size:
            yield np.ascontiguousarray(prepare_batch(pending, input_size).numpy())
            pending = []


def _entropy_calibrator(trt: Any, batches: Iterator[np.ndarray], batch_shape: tuple[int, ...],
                        cache_path: Path) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` feeding ``batches`` through one device buffer, reading
    and writing the calibration cache at ``cache_path`` (reused when it exists)."""
    cudart = import_cudart()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.buffer = DeviceArray(cudart, batch_shape, np.float32)

        def get_batch_size(self) -> int:
            return batch_shape[0]

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(batches, None)
            if batch is None:
                return None
            np.copyto(self.buffer.host, batch)
            self.buffer.upload(self.buffer.nbytes, 0)  # default stream, then wait for it
            checked(cudart, cudart.cudaStreamSynchronize(0))
            return [self.buffer.device]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


def _parse_onnx(trt: Any, network: Any, logger: Any, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFileError(f"TensorRT cannot parse {onnx_path}: {errors}")


def build_engine(onnx_path: str | Path, engine_path: str | Path, settings: BuildSettings,
                 calibration_images: Iterable[np.ndarray] | None = None) -> EngineSidecar:
    """Build and write ``engine_path`` and its sidecar from an exported ONNX file.

    INT8 calibrates with ``calibration_images`` (HxWx3 uint8 frames, e.g. dataset images) unless
    the calibration cache already exists; FP16 is enabled alongside INT8 for the layers that
    do not quantise. Uses TensorRT's implicit-quantisation calibrator API, deprecated since
    TensorRT 10.1 yet still the way to quantise a float ONNX graph without retraining.
    """
    from .onnx import read_onnx_info

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    info = read_onnx_info(onnx_path)
    if settings.max_batch > 1 and not info.dynamic_batch:
        raise ValueError(f"--max-batch {settings.max_batch} needs an ONNX file exported with "
                         f"--dynamic-batch; {onnx_path} has a static batch of 1")
    trt = import_tensorrt()
    environment = current_environment()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    _parse_onnx(trt, network, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    if settings.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    input_name = network.get_input(0).name
    shape = (settings.max_batch, 3, *info.input_size)
    profile = None
    if info.dynamic_batch:
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, (1, *shape[1:]), shape, shape)
        config.add_optimization_profile(profile)
    calibrator = None
    if settings.precision == "int8":
        cache = Path(settings.calibration_cache or default_calibration_cache(engine_path))
        if calibration_images is None and not cache.is_file():
            raise ValueError(f"int8 needs calibration images or an existing calibration cache "
                             f"({cache} does not exist)")
        config.set_flag(trt.BuilderFlag.INT8)
        batches = calibration_batches(calibration_images or (), info.input_size, shape[0])
        calibrator = _entropy_calibrator(trt, batches, shape, cache)
        config.int8_calibrator = calibrator
        if profile is not None:
            config.set_calibration_profile(profile)
        settings = replace(settings, calibration_cache=str(cache))
    if settings.dla_core is not None:
        if settings.dla_core >= builder.num_DLA_cores:
            raise ValueError(f"DLA core {settings.dla_core} requested; this device has "
                             f"{builder.num_DLA_cores}")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.buffer.free()
    if serialized is None:
        raise PredictorError(f"TensorRT could not build an engine from {onnx_path} "
                             f"(its log above says why)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    partial = engine_path.with_name(engine_path.name + ".partial")
    partial.write_bytes(bytes(serialized))
    partial.replace(engine_path)
    return _record(onnx_path, engine_path, settings, environment, info)


def register_engine(onnx_path: str | Path, engine_path: str | Path,
                    settings: BuildSettings) -> EngineSidecar:
    """Write the sidecar of an engine built on this machine by other means (``trtexec``) from
    ``onnx_path`` with ``settings``, so the runtime can check and load it."""
    from .onnx import read_onnx_info

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not engine_path.is_file():
        raise ModelFileError(f"TensorRT engine {engine_path} does not exist")
    return _record(onnx_path, engine_path, settings, current_environment(),
                   read_onnx_info(onnx_path))


def _record(onnx_path: Path, engine_path: Path, settings: BuildSettings,
            environment: BuildEnvironment, info: DeployedModelInfo) -> EngineSidecar:
    """Write the sidecar; paths in it are relative to the engine's folder, so the folder can move."""
    if settings.calibration_cache is not None:
        settings = replace(settings, calibration_cache=os.path.relpath(settings.calibration_cache,
                                                                       engine_path.parent))
    sidecar = EngineSidecar(
        engine_sha256=sha256_file(engine_path), onnx_sha256=sha256_file(onnx_path),
        onnx_path=os.path.relpath(onnx_path, engine_path.parent), environment=environment,
        settings=settings, input_shape=(settings.max_batch, 3, *info.input_size), model=info,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_sidecar(engine_path, sidecar)
    return sidecar


def write_sidecar(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
    """Write ``sidecar`` next to its engine, where
    :func:`~densemtl_core.runtime.sidecar.read_sidecar` finds it."""
    path = sidecar_path(engine_path)
    path.write_text(json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n",
                    encoding="utf-8")
    return path
