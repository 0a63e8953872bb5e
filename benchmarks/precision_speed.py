"""Speed and accuracy of FP16 and INT8 graphs against FP32, in ONNX Runtime on this CPU.

    python benchmarks/precision_speed.py [--checkpoint CKPT] [--sizes 64 80 128 160 480 640]
        [--accuracy-sizes 64 80 128 160] [--scenes 200] [--repeats 20] [--threads 1]
        [--calib-frames 64] [--out results.json]

The checkpoint (default: the shipped model) is exported at each network size as
``densemtl-export --precision`` writes it: fp32, fp16, int8 (TensorRT's form: symmetric signed
activations) and int8 with uint8 activations (ONNX Runtime's fast form on x86), INT8 calibrated
on the synthetic training scenes. Latency is one network-graph call (batch 1) in ONNX Runtime,
all variants timed in turn in one process so that a busy machine slows them alike. Accuracy is
each task's main metric on the rendered test scenes (the Predictor's full path), as the change
from fp32: mIoU in points, depth RMSE in per cent, normals mean angle in degrees, edges ODS-F.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from densemtl_core.checkpoint import load_checkpoint
from densemtl_core.export.accuracy import main_metrics
from densemtl_core.export.calibration import CalibrationSource
from densemtl_core.export.onnx import export_onnx
from densemtl_core.export.precision import set_graph_precision
from densemtl_core.export.samples import synthetic_frames
from densemtl_core.pretrained import DEFAULT_MODEL
from densemtl_core.runtime.loading import load_predictor
from densemtl_core.runtime.processing import prepare_batch

JSON_FORMAT_VERSION = 1
VARIANTS = {"fp32": ("fp32", None), "fp16": ("fp16", None), "int8": ("int8", "int8"),
            "int8-u8": ("int8", "uint8")}
"""Name -> (graph precision, INT8 activation type)."""
TIMING_CALIBRATION_FRAMES = 16
"""Calibration frames of sizes only timed: their number changes ranges, not speed, and
calibration holds every activation of every frame in memory."""


def export_variants(checkpoint: Path, size: tuple[int, int], folder: Path,
                    calib_frames: int) -> dict[str, Path]:
    model, metadata = load_checkpoint(checkpoint)
    paths = {}
    for name, (precision, activations) in VARIANTS.items():
        path = export_onnx(model, metadata, folder / f"{name}-{size[0]}x{size[1]}.onnx",
                           input_size=size)
        source = CalibrationSource(frames=calib_frames, activations=activations or "int8")
        set_graph_precision(path, precision, source)
        paths[name] = path
    return paths


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def latencies(paths: dict[str, Path], size: tuple[int, int], repeats: int,
              threads: int) -> dict[str, dict[str, float]]:
    """p50/p95 in ms of one graph call per variant, the variants taking turns."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {name: ort.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
                for name, path in paths.items()}
    frame = prepare_batch([synthetic_frames(1, size)[0]["image"]], size).numpy()
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for run in range(repeats + 3):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {session.get_inputs()[0].name: frame})
            if run >= 3:  # warm-up
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: {"p50_ms": statistics.median(values), "p95_ms": _percentile(values, 0.95)}
            for name, values in times.items()}


def accuracies(paths: dict[str, Path], size: tuple[int, int], scenes: int,
               threads: int) -> dict[str, dict[str, float]]:
    """Each task's main metric per variant on ``scenes`` rendered test scenes."""
    frames = synthetic_frames(scenes, size)
    images = [frame["image"] for frame in frames]
    return {name: main_metrics(load_predictor(path, backend="onnxruntime", device="cpu",
                                              threads=threads).predict_batch(
                                   images, probabilities=True), frames)
            for name, path in paths.items()}


def changes(metrics: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """Change from fp32 in the units of the table."""
    result = {}
    for task, value in metrics.items():
        if task == "semseg":
            result["miou_points"] = 100 * (value - reference[task])
        elif task == "depth":
            result["depth_rmse_percent"] = 100 * (value / reference[task] - 1)
        elif task == "normals":
            result["normals_mean_deg"] = value - reference[task]
        elif task == "edges":
            result["edges_ods_f"] = value - reference[task]
    return result


def _pairs(values: list[int]) -> list[tuple[int, int]]:
    return [(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="H W pairs timed (default: the checkpoint's, 128 160, 480 640)")
    parser.add_argument("--accuracy-sizes", type=int, nargs="+", default=None,
                        help="H W pairs scored on the test scenes (default: the checkpoint's)")
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calib-frames", type=int, default=64)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    trained = tuple(load_checkpoint(args.checkpoint)[1].input_size)
    sizes = _pairs(args.sizes) if args.sizes else [trained, (128, 160), (480, 640)]
    scored = set(_pairs(args.accuracy_sizes)) if args.accuracy_sizes else {trained}
    rows = []
    with tempfile.TemporaryDirectory(prefix="densemtl-precision-") as folder:
        for size in sizes:
            frames = args.calib_frames if size in scored else min(args.calib_frames,
                                                                  TIMING_CALIBRATION_FRAMES)
            paths = export_variants(args.checkpoint, size, Path(folder), frames)
            speed = latencies(paths, size, args.repeats, args.threads)
            metrics = accuracies(paths, size, args.scenes, args.threads) if size in scored else {}
            for name in paths:
                rows.append({"variant": name, "size": list(size), **speed[name],
                             "speedup": speed["fp32"]["p50_ms"] / speed[name]["p50_ms"],
                             "metrics": metrics.get(name),
                             "change": changes(metrics[name], metrics["fp32"]) if metrics
                             else None})
    print(f"ONNX Runtime {ort.__version__}, {args.threads} thread(s), {platform.machine()}; "
          f"accuracy on {args.scenes} synthetic test scenes")
    print(f"{'size':>8s} {'variant':8s} {'p50 ms':>8s} {'p95 ms':>8s} {'speedup':>7s} "
          f"{'mIoU pt':>8s} {'RMSE %':>7s} {'normals':>8s} {'ODS-F':>7s}")
    for row in rows:
        change = row["change"] or {}
        cells = [f"{change[key]:+{width}.{digits}f}" if key in change else f"{'':>{width}s}"
                 for key, width, digits in (("miou_points", 8, 2), ("depth_rmse_percent", 7, 2),
                                            ("normals_mean_deg", 8, 3), ("edges_ods_f", 7, 4))]
        print(f"{row['size'][0]:>3d}x{row['size'][1]:<4d} {row['variant']:8s} "
              f"{row['p50_ms']:8.2f} {row['p95_ms']:8.2f} {row['speedup']:6.2f}x {' '.join(cells)}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "format_version": JSON_FORMAT_VERSION, "onnxruntime": ort.__version__,
            "threads": args.threads, "scenes": args.scenes, "command": " ".join(sys.argv),
            "numpy": np.__version__, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
