"""Export a checkpoint to ONNX and build TensorRT engines from it.

    densemtl-export --checkpoint CKPT --onnx OUT.onnx [--input-size H W] [--dynamic-batch]
    densemtl-export --onnx MODEL.onnx --engine OUT.engine [--precision fp16|fp32|int8] ...
    densemtl-export --onnx MODEL.onnx --engine BUILT.engine --register ...   (trtexec-built)

An export is checked by the ONNX checker and by comparing ONNX Runtime with PyTorch on rendered
scenes (tolerances per output: each task's ``tolerance`` in ``densemtl_core.tasks``). A build
is followed by an accuracy check of the engine against ONNX Runtime on rendered scenes.
Exit status: 0 success, 1 outputs outside tolerance, 2 unusable input.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..checkpoint import CheckpointError, load_checkpoint
from ..runtime.errors import PredictorError
from ..runtime.loading import load_predictor
from ..runtime.onnx_graph import OPSET
from ..runtime.sidecar import PRECISIONS, BuildSettings, sidecar_path
from ..tasks import TASKS
from .accuracy import compare_backends, onnx_parity
from .onnx import export_onnx, graph_operators, load_onnx, read_onnx_info
from .samples import synthetic_frames
from .tensorrt import build_engine, register_engine

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densemtl-export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a .safetensors checkpoint to export to --onnx")
    parser.add_argument("--onnx", required=True,
                        help="ONNX file: written from --checkpoint, else read to build --engine")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="static network input size (default: the checkpoint's)")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="leave the batch dimension symbolic (default: batch of 1)")
    parser.add_argument("--opset", type=int, default=OPSET)
    parser.add_argument("--validate-frames", type=int, default=4,
                        help="rendered scenes on which ONNX Runtime is compared with PyTorch")
    engine = parser.add_argument_group("TensorRT engine")
    engine.add_argument("--engine", help="build a serialized engine here from --onnx")
    engine.add_argument("--register", action="store_true",
                        help="do not build: write the sidecar of an --engine built from --onnx "
                             "on this machine by other means (trtexec), with the settings given")
    engine.add_argument("--precision", choices=PRECISIONS, default="fp16")
    engine.add_argument("--workspace-mib", type=int, default=1024,
                        help="builder workspace limit in MiB")
    engine.add_argument("--dla-core", type=int, default=None,
                        help="Jetson DLA core to run on (unsupported layers fall back to the GPU)")
    engine.add_argument("--max-batch", type=int, default=1,
                        help="largest batch (needs an ONNX file exported with --dynamic-batch)")
    engine.add_argument("--calib-images", help="folder of images for INT8 calibration "
                                               "(default: rendered training scenes)")
    engine.add_argument("--calib-frames", type=int, default=64,
                        help="number of calibration images (default 64)")
    engine.add_argument("--calib-cache", help="INT8 calibration cache, reused when it exists "
                                              "(default: next to the engine, .cache)")
    engine.add_argument("--accuracy-frames", type=int, default=8,
                        help="rendered scenes for the engine-vs-ONNX Runtime check (0: skip)")
    return parser


def folder_images(folder: Path, limit: int) -> Iterator[np.ndarray]:
    """Up to ``limit`` images of ``folder`` (sorted by name) as RGB uint8 arrays."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"no {'/'.join(IMAGE_SUFFIXES)} images in {folder}")
    for path in paths[:limit]:
        with Image.open(path) as image:
            yield np.asarray(image.convert("RGB"))


def export_and_validate(args: argparse.Namespace) -> bool:
    """Export ``--checkpoint`` to ``--onnx``; True when ONNX Runtime matches PyTorch."""
    model, metadata = load_checkpoint(args.checkpoint)
    path = export_onnx(model, metadata, args.onnx, input_size=args.input_size,
                       dynamic_batch=args.dynamic_batch, opset=args.opset)
    info = read_onnx_info(path)
    operators = sorted(graph_operators(load_onnx(path)))
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, opset {args.opset}, input "
          f"{'B' if info.dynamic_batch else 1}x3x{info.input_size[0]}x{info.input_size[1]}, "
          f"outputs {', '.join(info.tasks)}); operators: {', '.join(operators)}")
    if args.validate_frames <= 0:
        return True
    frames = synthetic_frames(args.validate_frames, info.input_size)
    differences = onnx_parity(model, path, [frame["image"] for frame in frames])
    print(f"ONNX Runtime vs PyTorch on {len(frames)} rendered scenes:")
    for task, difference in differences.items():
        rtol, atol = TASKS[task].tolerance
        verdict = "ok" if difference.within_tolerance else "OUT OF TOLERANCE"
        print(f"  {task:8s} max |diff| {difference.max_abs:.3e}  (atol {atol:g}, rtol {rtol:g}) "
              f"{verdict}")
    return all(d.within_tolerance for d in differences.values())


def build_and_check(args: argparse.Namespace) -> None:
    """Build ``--engine`` from ``--onnx`` and compare it with ONNX Runtime."""
    settings = BuildSettings(precision=args.precision, workspace_mib=args.workspace_mib,
                             dla_core=args.dla_core, max_batch=args.max_batch,
                             calibration_cache=args.calib_cache)
    if args.register:
        sidecar = register_engine(args.onnx, args.engine, settings)
        print(f"wrote {sidecar_path(args.engine)}", end=": ")
    else:
        calibration = None
        if args.precision == "int8":
            input_size = read_onnx_info(args.onnx).input_size
            calibration = (folder_images(Path(args.calib_images), args.calib_frames)
                           if args.calib_images else (frame["image"] for frame in synthetic_frames(
                               args.calib_frames, input_size, "train")))
        sidecar = build_engine(args.onnx, args.engine, settings, calibration)
        print(f"wrote {args.engine} and {sidecar_path(args.engine)}", end=": ")
    print(f"{sidecar.settings.precision}, input {'x'.join(map(str, sidecar.input_shape))}, "
          f"{sidecar.environment.describe()}")
    if args.accuracy_frames <= 0:
        return
    candidate = load_predictor(args.engine, backend="tensorrt")
    reference = load_predictor(args.onnx, backend="onnxruntime", device="cpu")
    frames = synthetic_frames(args.accuracy_frames, candidate.input_size)
    report = compare_backends(reference, candidate, frames)
    print(f"TensorRT ({sidecar.settings.precision}) vs ONNX Runtime on {len(frames)} rendered "
          f"scenes:")
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
        matches = export_and_validate(args) if args.checkpoint else True
        if args.engine:
            build_and_check(args)
    except (CheckpointError, PredictorError, ValueError, OSError) as error:
        print(f"densemtl-export: {error}", file=sys.stderr)
        return 2
    if not matches:
        print("densemtl-export: ONNX Runtime outputs differ from PyTorch beyond tolerance",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
