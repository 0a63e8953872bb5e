"""Predictor latency, throughput, pre/post-processing share and memory, per runtime backend.

    python benchmarks/runtime_speed.py [--checkpoint CKPT] [--engine ENGINE] [--repeats 30]
                                       [--threads N] [--json OUT]

Every figure is for the whole ``Predictor.predict`` call on one uint8 frame (resize,
normalisation, network, up-sampling, arg-max), at the model's input size and on 640x480 camera
frames. Backends: PyTorch eager on CPU; ONNX Runtime on CPU, running the checkpoint exported
to a temporary ONNX file as ``densemtl-export`` writes it, and the end-to-end graph
(``densemtl-export --camera-size 480 640``: pre- and post-processing inside the graph, camera
frames only; its pre/post share is what the host still does); with CUDA, PyTorch float16
without and with CUDA graphs; TensorRT for ``--engine`` when TensorRT and a GPU are present. Each
backend runs in its own process so that its peak memory (RSS growth from before loading the
model; CUDA memory on GPU) is its own (Linux). Figures depend on the machine; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

CAMERA_SIZE = (480, 640)
FRAMES = 4
"""Distinct rendered frames cycled through, so caches do not see one image only."""
JSON_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Setup:
    """One backend configuration: the model file it loads (``checkpoint``, ``onnx`` or
    ``engine``), ``load_predictor`` arguments and a display name."""

    name: str
    source: str
    backend: str
    device: str
    half: bool = False
    cuda_graph: bool = False


@dataclass(frozen=True)
class Result:
    setup: str
    frame_size: tuple[int, int]
    network_size: tuple[int, int]
    p50_ms: float
    p95_ms: float
    throughput_fps: float
    processing_share: float
    peak_rss_delta_mib: float
    cuda_peak_mib: float | None


def _memory_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc, in MiB.

    The peak is per address space, so it starts afresh in each spawned process, unlike
    ``ru_maxrss``, which Linux carries over from the parent.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(setup: Setup, model_path: str, repeats: int, threads: int | None) -> list[Result]:
    """Run in a fresh process: load, warm up, time ``repeats`` predictions per frame size."""
    import torch

    from densemtl_core.data.synthetic import render_scene
    from densemtl_core.runtime import load_predictor

    if threads:
        torch.set_num_threads(threads)
    on_cuda = setup.device.startswith("cuda")
    baseline = _memory_mib("VmRSS")
    predictor = load_predictor(model_path, backend=setup.backend, device=setup.device,
                               threads=threads, half=setup.half, cuda_graph=setup.cuda_graph)
    results = []
    sizes = (CAMERA_SIZE,) if predictor.camera_size else (tuple(predictor.input_size), CAMERA_SIZE)
    for size in sizes:
        frames = [render_scene(seed, size)["image"] for seed in range(FRAMES)]
        for frame in frames:  # warm-up: allocations, lazy initialisation, graph capture
            predictor.predict(frame)
        if on_cuda:
            torch.cuda.reset_peak_memory_stats()
        latencies, shares = [], []
        started = time.perf_counter()
        for index in range(repeats):
            predictor.predict(frames[index % FRAMES])
            latencies.append(predictor.last_timings.total)
            shares.append(predictor.last_timings.processing_share)
        elapsed = time.perf_counter() - started
        peak = _memory_mib("VmHWM")
        cuda_peak = None
        if setup.source == "engine":
            cuda_peak = predictor.backend.device_bytes / 2**20
        elif on_cuda:
            cuda_peak = torch.cuda.max_memory_allocated() / 2**20
        results.append(Result(
            setup=setup.name, frame_size=size, network_size=tuple(predictor.input_size),
            p50_ms=statistics.median(latencies) * 1e3, p95_ms=_percentile(latencies, 0.95) * 1e3,
            throughput_fps=repeats / elapsed, processing_share=statistics.median(shares),
            peak_rss_delta_mib=peak - baseline, cuda_peak_mib=cuda_peak))
    return results


def available_setups(engine: str | None) -> tuple[list[Setup], list[str]]:
    """The setups this machine can run, and a note for each one it cannot."""
    import torch

    from densemtl_core.runtime.loading import tensorrt_unavailable_reason

    setups = [Setup("torch eager cpu", "checkpoint", "torch", "cpu"),
              Setup("onnxruntime cpu", "onnx", "onnxruntime", "cpu"),
              Setup("onnxruntime end-to-end", "camera_onnx", "onnxruntime", "cpu")]
    notes = []
    if torch.cuda.is_available():
        setups += [Setup("torch cuda fp16", "checkpoint", "torch", "cuda", half=True),
                   Setup("torch cuda fp16 graph", "checkpoint", "torch", "cuda", half=True,
                         cuda_graph=True)]
    else:
        notes.append("torch cuda: no CUDA device")
    reason = tensorrt_unavailable_reason()
    if engine is None:
        notes.append("tensorrt: no --engine given")
    elif reason is not None:
        notes.append(f"tensorrt: {reason}")
    else:
        setups.append(Setup("tensorrt", "engine", "tensorrt", "cuda"))
    return setups, notes


def export_to(path: Path, checkpoint: str, camera_size: tuple[int, int] | None = None) -> str:
    from densemtl_core.checkpoint import load_checkpoint
    from densemtl_core.export.onnx import export_onnx

    return str(export_onnx(*load_checkpoint(checkpoint), path, camera_size=camera_size))


def default_checkpoint() -> str:
    from densemtl_core.pretrained import DEFAULT_MODEL
    return str(DEFAULT_MODEL)


def print_table(results: list[Result]) -> None:
    print(f"{'backend':22s} {'frame':>8s} {'network':>8s} {'p50 ms':>8s} {'p95 ms':>8s} "
          f"{'fps':>7s} {'pre/post':>8s} {'RSS +MiB':>9s} {'CUDA MiB':>9s}")
    for r in results:
        cuda = f"{r.cuda_peak_mib:9.1f}" if r.cuda_peak_mib is not None else f"{'-':>9s}"
        print(f"{r.setup:22s} {'x'.join(map(str, r.frame_size)):>8s} "
              f"{'x'.join(map(str, r.network_size)):>8s} {r.p50_ms:8.2f} {r.p95_ms:8.2f} "
              f"{r.throughput_fps:7.2f} {r.processing_share:8.1%} {r.peak_rss_delta_mib:9.1f} {cuda}")


def print_speedups(results: list[Result]) -> None:
    by_key = {(r.setup, r.frame_size): r for r in results}
    for (setup, size), result in by_key.items():
        for reference in ("torch eager cpu", "onnxruntime cpu"):
            baseline = by_key.get((reference, size))
            if setup != reference and baseline is not None and (
                    reference == "torch eager cpu" or setup == "onnxruntime end-to-end"):
                print(f"{setup} vs {reference} at {'x'.join(map(str, size))}: "
                      f"{baseline.p50_ms / result.p50_ms:.2f}x the speed (p50)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument("--engine", default=None, help="TensorRT engine of the same model")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and ONNX Runtime intra-op threads (default: their own)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint or default_checkpoint()
    setups, notes = available_setups(args.engine)
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as folder:
        paths = {"checkpoint": checkpoint, "engine": args.engine,
                 "onnx": export_to(Path(folder) / "model.onnx", checkpoint),
                 "camera_onnx": export_to(Path(folder) / "camera.onnx", checkpoint, CAMERA_SIZE)}
        for setup in setups:
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                results += pool.submit(measure, setup, paths[setup.source], args.repeats,
                                       args.threads).result()
    print(f"{checkpoint}: {args.repeats} predictions per row, threads "
          f"{args.threads or 'default'}, {platform.processor() or platform.machine()}")
    print_table(results)
    print_speedups(results)
    for note in notes:
        print(f"skipped {note}")
    if args.json:
        report = {"format_version": JSON_FORMAT_VERSION, "checkpoint": checkpoint,
                  "engine": args.engine, "repeats": args.repeats, "threads": args.threads,
                  "python": sys.version.split()[0], "machine": platform.platform(),
                  "skipped": notes, "results": [asdict(r) for r in results]}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
