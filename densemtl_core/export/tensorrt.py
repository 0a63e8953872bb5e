"""TensorRT engines built from an exported ONNX file: strongly typed networks on TensorRT 10
and 11, the precision being the graph's.

An fp16 graph gives an fp16 engine, an int8 graph (explicit quantize/dequantize nodes) an int8
engine; no precision builder flag and no calibrator is ever set. TensorRT 11 removed both
(``BuilderFlag.FP16``/``INT8``/..., ``IBuilderConfig.int8_calibrator``,
``set_calibration_profile``; NVIDIA's "Removed Python APIs and Replacements" for 10.x to 11.x)
and always types strongly; on TensorRT 10 the network is created with the ``STRONGLY_TYPED``
flag, so both majors build the same engine from the same graph
(:func:`~densemtl_core.runtime.tensorrt_environment.network_creation_flags`). Kept from before,
unchanged in 11: ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)``, optimization
profiles for a dynamic batch, and DLA (``default_device_type = DeviceType.DLA``, ``DLA_core``,
``BuilderFlag.GPU_FALLBACK``), which runs fp16 or int8 tensors only, so it needs such a graph.

What the builder sets is worked out first from the graph's description alone
(:func:`plan_build`), so a request that cannot work fails before TensorRT is imported. Every
engine gets its sidecar (``densemtl_core.runtime.sidecar``).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runtime.errors import ModelFileError, PredictorError
from ..runtime.metadata import DeployedModelInfo
from ..runtime.sidecar import (BuildEnvironment, BuildSettings, EngineSidecar, sha256_file,
                               sidecar_path)
from ..runtime.tensorrt_environment import (current_environment, import_tensorrt,
                                            network_creation_flags, tensorrt_major)

DLA_PRECISIONS = ("fp16", "int8")


def graph_input_shape(info: DeployedModelInfo, batch: int) -> tuple[int, ...]:
    """The input tensor's shape at ``batch``: B x 3 x H x W float32 for a network graph,
    B x H x W x 3 uint8 camera frames for an end-to-end graph (``info.camera_size``)."""
    if info.camera_size is not None:
        return (batch, *info.camera_size, 3)
    return (batch, 3, *info.input_size)


@dataclass(frozen=True)
class BuildPlan:
    """What the builder sets for one graph: the input shape at the largest batch, the
    optimization profile's smallest shape (None: static batch, no profile), the workspace
    limit in bytes, the DLA core (None: GPU only) and the precision the graph carries."""

    input_shape: tuple[int, ...]
    min_input_shape: tuple[int, ...] | None
    workspace_bytes: int
    dla_core: int | None
    precision: str


def plan_build(info: DeployedModelInfo, settings: BuildSettings, source: str | Path) -> BuildPlan:
    """The builder's settings for the graph ``info`` read from ``source``; ValueError (naming
    the option to change) when ``settings`` cannot apply to this graph."""
    if settings.max_batch > 1 and not info.dynamic_batch:
        raise ValueError(f"--max-batch {settings.max_batch} needs an ONNX file exported with "
                         f"--dynamic-batch; {source} has a static batch of 1")
    if settings.dla_core is not None and info.precision not in DLA_PRECISIONS:
        raise ValueError(f"DLA cores run fp16 or int8 graphs; {source} is {info.precision}: "
                         f"export it with densemtl-export --precision fp16 (or int8)")
    shape = graph_input_shape(info, settings.max_batch)
    return BuildPlan(input_shape=shape,
                     min_input_shape=(1, *shape[1:]) if info.dynamic_batch else None,
                     workspace_bytes=settings.workspace_mib << 20, dla_core=settings.dla_core,
                     precision=info.precision)


def _parse_onnx(trt: Any, network: Any, logger: Any, onnx_path: Path) -> Any:
    """Parse into ``network``; the parser must outlive the build (it owns the weights)."""
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFileError(f"TensorRT cannot parse {onnx_path}: {errors}")
    return parser


def _check_parsed_input(network: Any, plan: BuildPlan, onnx_path: Path) -> str:
    """The parsed network's one input name, once its shape agrees with the description."""
    if network.num_inputs != 1:
        raise ModelFileError(f"{onnx_path} has {network.num_inputs} inputs; expected one")
    tensor = network.get_input(0)
    dims = tuple(tensor.shape)
    if len(dims) != len(plan.input_shape) or any(
            d not in (-1, e) for d, e in zip(dims[1:], plan.input_shape[1:])):
        raise ModelFileError(f"{onnx_path}: input {tensor.name} has shape {dims}, its "
                             f"description says {plan.input_shape}")
    return tensor.name


def _configure(trt: Any, builder: Any, plan: BuildPlan, input_name: str) -> Any:
    """The builder config for ``plan``; no precision flag (the network is strongly typed)."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    if plan.min_input_shape is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, plan.min_input_shape, plan.input_shape, plan.input_shape)
        config.add_optimization_profile(profile)
    if plan.dla_core is not None:
        if plan.dla_core >= builder.num_DLA_cores:
            raise ValueError(f"DLA core {plan.dla_core} requested; this device has "
                             f"{builder.num_DLA_cores}")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    return config


def build_engine(onnx_path: str | Path, engine_path: str | Path,
                 settings: BuildSettings) -> EngineSidecar:
    """Build and write ``engine_path`` and its sidecar from an exported ONNX file, in the
    precision the graph carries."""
    from .onnx import read_onnx_info

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    info = read_onnx_info(onnx_path)
    plan = plan_build(info, settings, onnx_path)
    trt = import_tensorrt()
    environment = current_environment()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = network_creation_flags(tensorrt_major(trt.__version__),
                                   int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    network = builder.create_network(flags)
    parser = _parse_onnx(trt, network, logger, onnx_path)
    config = _configure(trt, builder, plan, _check_parsed_input(network, plan, onnx_path))
    serialized = builder.build_serialized_network(network, config)
    del parser
    if serialized is None:
        raise PredictorError(f"TensorRT could not build an engine from {onnx_path} "
                             f"(its log above says why)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    partial = engine_path.with_name(engine_path.name + ".partial")
    partial.write_bytes(bytes(serialized))
    partial.replace(engine_path)
    return _record(onnx_path, engine_path, plan, settings, environment, info)


def register_engine(onnx_path: str | Path, engine_path: str | Path,
                    settings: BuildSettings) -> EngineSidecar:
    """Write the sidecar of an engine built on this machine by other means (``trtexec
    --stronglyTyped``) from ``onnx_path`` with ``settings``, so the runtime can check and load it."""
    from .onnx import read_onnx_info

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not engine_path.is_file():
        raise ModelFileError(f"TensorRT engine {engine_path} does not exist")
    info = read_onnx_info(onnx_path)
    plan = plan_build(info, settings, onnx_path)
    return _record(onnx_path, engine_path, plan, settings, current_environment(), info)


def _record(onnx_path: Path, engine_path: Path, plan: BuildPlan, settings: BuildSettings,
            environment: BuildEnvironment, info: DeployedModelInfo) -> EngineSidecar:
    """Write the sidecar; the ONNX path in it is relative to the engine's folder, so the folder
    can move."""
    sidecar = EngineSidecar(
        engine_sha256=sha256_file(engine_path), onnx_sha256=sha256_file(onnx_path),
        onnx_path=os.path.relpath(onnx_path, engine_path.parent), environment=environment,
        settings=settings, input_shape=plan.input_shape, model=info,
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
