"""Export a checkpoint to ONNX and build TensorRT engines from it.

    densemtl-export --checkpoint CKPT --onnx OUT.onnx [--input-size H W] [--dynamic-batch]
                    [--camera-size H W]   (pre- and post-processing in the graph)
                    [--precision fp32|fp16|int8 [--calib-images DIR | --calib-bag BAG
                     --calib-topic TOPIC] [--calib-frames N] [--calib-method minmax]
                     [--int8-activations int8|uint8]]
    densemtl-export --onnx MODEL.onnx --engine OUT.engine [--dla-core N] ...  (graph's precision)
    densemtl-export --onnx MODEL.onnx --engine BUILT.engine --register ...   (trtexec-built)

An export is checked by the ONNX checker and by comparing ONNX Runtime with PyTorch on rendered
scenes (tolerances per output: each task's ``tolerance`` in ``densemtl_core.tasks``). A build
is followed by an accuracy check of the engine against ONNX Runtime on rendered scenes.
Exit status: 0 success, 1 outputs outside tolerance, 2 unusable input.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..checkpoint import CheckpointError
from ..recordings.bags import BagError
from ..runtime.errors import PredictorError
from ..runtime.metadata import GRAPH_PRECISIONS
from ..runtime.onnx_graph import OPSET
from ..runtime.sidecar import BuildSettings, sidecar_path
from ..tasks import TASKS
from .accuracy import END_TO_END_ALLOWANCES
from .calibration import ACTIVATION_TYPES, CALIBRATION_METHODS, CalibrationSource
from .pipeline import (EngineBuildOptions, OnnxExportOptions, build_engine_file, check_engine,
                       check_export, export_checkpoint)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densemtl-export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a .safetensors checkpoint to export to --onnx")
    parser.add_argument("--onnx", required=True,
                        help="ONNX file: written from --checkpoint, else read to build --engine")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="static network input size (default: the checkpoint's)")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="leave the batch dimension symbolic (default: batch of 1)")
    parser.add_argument("--camera-size", type=int, nargs=2, metavar=("H", "W"),
                        help="end-to-end graph: uint8 RGB camera frames of this size in, class "
                             "ids, depth, normals and edges at this size out")
    parser.add_argument("--precision", choices=GRAPH_PRECISIONS, default="fp32",
                        help="arithmetic the graph carries: fp16 (float32 I/O and decoding) or "
                             "int8 (explicit quantize/dequantize nodes, calibrated)")
    parser.add_argument("--calib-images", help="int8: calibrate on the images of this folder")
    parser.add_argument("--calib-bag", help="int8: calibrate on the camera frames of this "
                                            "recording (with --calib-topic)")
    parser.add_argument("--calib-topic", help="camera topic of --calib-bag")
    parser.add_argument("--calib-frames", type=int, default=64,
                        help="int8: frames to calibrate on (default 64; without --calib-images "
                             "or --calib-bag, rendered training scenes)")
    parser.add_argument("--calib-method", choices=CALIBRATION_METHODS, default="minmax",
                        help="int8: activation range estimator")
    parser.add_argument("--int8-activations", choices=ACTIVATION_TYPES, default="int8",
                        help="int8: activation type; int8 (symmetric) for TensorRT, uint8 for "
                             "the fastest ONNX Runtime on x86 CPUs (TensorRT refuses it)")
    parser.add_argument("--opset", type=int, default=OPSET)
    parser.add_argument("--validate-frames", type=int, default=4,
                        help="rendered scenes on which ONNX Runtime is compared with PyTorch")
    engine = parser.add_argument_group("TensorRT engine")
    engine.add_argument("--engine", help="build a serialized engine here from --onnx")
    engine.add_argument("--register", action="store_true",
                        help="do not build: write the sidecar of an --engine built from --onnx "
                             "on this machine by other means (trtexec), with the settings given")
    engine.add_argument("--workspace-mib", type=int, default=1024,
                        help="builder workspace limit in MiB")
    engine.add_argument("--dla-core", type=int, default=None,
                        help="Jetson DLA core to run on (unsupported layers fall back to the GPU)")
    engine.add_argument("--max-batch", type=int, default=1,
                        help="largest batch (needs an ONNX file exported with --dynamic-batch)")
    engine.add_argument("--accuracy-frames", type=int, default=8,
                        help="rendered scenes for the engine-vs-ONNX Runtime check (0: skip)")
    return parser


def _export_options(args: argparse.Namespace) -> OnnxExportOptions | None:
    """The export asked for on the command line, or None without ``--checkpoint``."""
    if not args.checkpoint:
        return None
    return OnnxExportOptions(
        checkpoint=Path(args.checkpoint), onnx=Path(args.onnx),
        input_size=tuple(args.input_size) if args.input_size else None,
        dynamic_batch=args.dynamic_batch, opset=args.opset, validate_frames=args.validate_frames,
        camera_size=tuple(args.camera_size) if args.camera_size else None,
        precision=args.precision, calibration=_calibration_source(args))


def _calibration_source(args: argparse.Namespace) -> CalibrationSource:
    """The INT8 calibration frames asked for on the command line."""
    if args.calib_images and args.calib_bag:
        raise ValueError("give --calib-images or --calib-bag, not both")
    if bool(args.calib_bag) != bool(args.calib_topic):
        raise ValueError("--calib-bag and --calib-topic go together")
    if args.calib_images:
        return CalibrationSource("images", Path(args.calib_images), frames=args.calib_frames,
                                 method=args.calib_method, activations=args.int8_activations)
    if args.calib_bag:
        return CalibrationSource("recording", Path(args.calib_bag), args.calib_topic,
                                 args.calib_frames, args.calib_method, args.int8_activations)
    return CalibrationSource(frames=args.calib_frames, method=args.calib_method,
                             activations=args.int8_activations)


def _engine_options(args: argparse.Namespace) -> EngineBuildOptions | None:
    """The engine build asked for on the command line, or None without ``--engine``."""
    if not args.engine:
        return None
    settings = BuildSettings(workspace_mib=args.workspace_mib, dla_core=args.dla_core,
                             max_batch=args.max_batch)
    return EngineBuildOptions(onnx=Path(args.onnx), engine=Path(args.engine), settings=settings,
                              register=args.register, accuracy_frames=args.accuracy_frames)


def export_and_validate(options: OnnxExportOptions) -> bool:
    """Export and print what was written and how ONNX Runtime compares with PyTorch; True when
    every output is within tolerance."""
    exported = export_checkpoint(options)
    info = exported.info
    batch = 'B' if info.dynamic_batch else 1
    network = f"{info.input_size[0]}x{info.input_size[1]}"
    camera = info.camera_size
    graph_input = (f"{batch}x3x{network}" if camera is None else
                   f"{batch}x{camera[0]}x{camera[1]}x3 uint8, network {network}")
    print(f"wrote {exported.path} ({exported.path.stat().st_size / 2**20:.1f} MiB, opset "
          f"{options.opset}, input {graph_input}, outputs {', '.join(info.tasks)}); operators: "
          f"{', '.join(exported.operators)}")
    if options.validate_frames <= 0:
        return True
    differences = check_export(exported, options.validate_frames)
    print(f"ONNX Runtime vs PyTorch on {options.validate_frames} rendered scenes:")
    for task, difference in differences.items():
        rtol, atol = TASKS[task].tolerance
        verdict = "ok" if difference.within_tolerance else "OUT OF TOLERANCE"
        if info.precision != "fp32":
            verdict = f"({info.precision} graph: float32 tolerances do not apply)"
        measure = f"max |diff| {difference.max_abs:.3e}  (atol {atol:g}, rtol {rtol:g})"
        if info.camera_size is not None and task in END_TO_END_ALLOWANCES:
            measure = (f"{'pixels differing' if task == 'semseg' else 'max |diff| in 1/255'} "
                       f"{difference.max_abs:.3g}  (allowed {END_TO_END_ALLOWANCES[task]:g})")
        print(f"  {task:8s} {measure} {verdict}")
    return info.precision != "fp32" or all(d.within_tolerance for d in differences.values())


def build_and_check(options: EngineBuildOptions) -> None:
    """Build (or register) the engine and print it and its comparison with ONNX Runtime."""
    sidecar = build_engine_file(options)
    sidecar_file = sidecar_path(options.engine)
    written = sidecar_file if options.register else f"{options.engine} and {sidecar_file}"
    print(f"wrote {written}: {sidecar.model.precision} graph, input "
          f"{'x'.join(map(str, sidecar.input_shape))}, {sidecar.environment.describe()}")
    if options.accuracy_frames <= 0:
        return
    report = check_engine(options)
    print(f"TensorRT ({sidecar.model.precision}) vs ONNX Runtime on {options.accuracy_frames} "
          f"rendered scenes:")
    for line in report.lines("onnxruntime", "tensorrt"):
        print(f"  {line}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.checkpoint and not args.engine:
        print("densemtl-export: nothing to do; give --checkpoint (export to --onnx) and/or "
              "--engine (build from --onnx)", file=sys.stderr)
        return 2
    if args.register and not args.engine:
        print("densemtl-export: --register needs the --engine to register", file=sys.stderr)
        return 2
    try:
        onnx_export, engine_build = _export_options(args), _engine_options(args)
        matches = export_and_validate(onnx_export) if onnx_export else True
        if engine_build:
            build_and_check(engine_build)
    except (CheckpointError, PredictorError, BagError, ValueError, OSError) as error:
        print(f"densemtl-export: {error}", file=sys.stderr)
        return 2
    if not matches:
        print("densemtl-export: ONNX Runtime outputs differ from PyTorch beyond tolerance",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
