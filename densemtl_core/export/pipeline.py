"""The steps of ``densemtl-export`` as a library: typed options in, files and checks out.

Each job is two steps, so a caller can report what was written before the slower check runs
(and a failing check never hides the file that was written): :func:`export_checkpoint` then
:func:`check_export`, :func:`build_engine_file` then :func:`check_engine`. The command line
(:mod:`densemtl_core.export.cli`) only fills the options and prints the results.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoint import load_checkpoint
from ..models.network import MultiTaskNet
from ..runtime.loading import load_predictor
from ..runtime.metadata import DeployedModelInfo
from ..runtime.onnx_graph import OPSET
from ..runtime.sidecar import BuildSettings, EngineSidecar
from .accuracy import (AccuracyReport, OutputDifference, compare_backends, end_to_end_parity,
                       onnx_parity)
from .calibration import CalibrationSource
from .onnx import export_onnx, graph_operators, load_onnx, read_onnx_info
from .precision import set_graph_precision
from .samples import synthetic_frames
from .tensorrt import build_engine, register_engine

@dataclass(frozen=True)
class OnnxExportOptions:
    """Export ``checkpoint`` to ``onnx`` at ``input_size`` (None: the checkpoint's), with a
    symbolic batch dimension when ``dynamic_batch``, then compare ONNX Runtime with PyTorch on
    ``validate_frames`` rendered scenes (0: no comparison). ``camera_size`` (H, W) writes the
    end-to-end graph for camera frames of that size (``densemtl_core.runtime.end_to_end``).
    ``precision`` is the graph's arithmetic; an ``int8`` graph is calibrated on ``calibration``."""

    checkpoint: Path
    onnx: Path
    input_size: tuple[int, int] | None = None
    dynamic_batch: bool = False
    opset: int = OPSET
    validate_frames: int = 4
    camera_size: tuple[int, int] | None = None
    precision: str = "fp32"
    calibration: CalibrationSource = field(default_factory=CalibrationSource)


@dataclass(frozen=True)
class EngineBuildOptions:
    """Build ``engine`` from ``onnx`` with ``settings`` (or, when ``register``, only write the
    sidecar of an engine built there by other means), then compare it with ONNX Runtime on
    ``accuracy_frames`` rendered scenes (0: no comparison). The engine's precision is the
    graph's (written by the export)."""

    onnx: Path
    engine: Path
    settings: BuildSettings = field(default_factory=BuildSettings)
    register: bool = False
    accuracy_frames: int = 8


@dataclass(frozen=True)
class ExportedOnnx:
    """An ONNX file just written, its embedded description and operators, and the network it
    was exported from (the reference of :func:`check_export`)."""

    path: Path
    info: DeployedModelInfo
    operators: tuple[str, ...]
    model: MultiTaskNet


def export_checkpoint(options: OnnxExportOptions) -> ExportedOnnx:
    """Write the ONNX file of ``options.checkpoint`` to ``options.onnx``."""
    model, metadata = load_checkpoint(options.checkpoint)
    path = export_onnx(model, metadata, options.onnx, input_size=options.input_size,
                       dynamic_batch=options.dynamic_batch, opset=options.opset,
                       camera_size=options.camera_size)
    set_graph_precision(path, options.precision, options.calibration)
    return ExportedOnnx(path, read_onnx_info(path), tuple(sorted(graph_operators(load_onnx(path)))),
                        model)


def check_export(exported: ExportedOnnx, frames: int) -> dict[str, OutputDifference]:
    """Per output, how far ONNX Runtime on the file strays from PyTorch on ``frames`` rendered
    scenes (tolerances: each task's ``tolerance`` in ``densemtl_core.tasks``; an end-to-end
    graph's uint8 outputs: ``accuracy.END_TO_END_ALLOWANCES``), at the camera size for an
    end-to-end graph."""
    camera_size = exported.info.camera_size
    scenes = synthetic_frames(frames, camera_size or exported.info.input_size)
    parity = onnx_parity if camera_size is None else end_to_end_parity
    return parity(exported.model, exported.path, [scene["image"] for scene in scenes])


def build_engine_file(options: EngineBuildOptions) -> EngineSidecar:
    """Build (or register) ``options.engine`` and write its sidecar."""
    if options.register:
        return register_engine(options.onnx, options.engine, options.settings)
    return build_engine(options.onnx, options.engine, options.settings)


def check_engine(options: EngineBuildOptions) -> AccuracyReport:
    """The engine against ONNX Runtime on the ONNX file, on ``options.accuracy_frames``
    rendered scenes."""
    candidate = load_predictor(options.engine, backend="tensorrt")
    reference = load_predictor(options.onnx, backend="onnxruntime", device="cpu")
    size = candidate.camera_size or candidate.input_size  # an end-to-end graph's camera frames
    return compare_backends(reference, candidate, synthetic_frames(options.accuracy_frames, size))
