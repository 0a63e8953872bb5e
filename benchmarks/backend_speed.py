"""OpenVINO against ONNX Runtime on this CPU: the same ONNX file, the same threads, side by side.

    python benchmarks/backend_speed.py [--checkpoint CKPT] [--sizes 64x80 480x640]
                                       [--threads 1 2] [--repeats 30]

For each network input size (the checkpoint exported at that size; default: the model's own and
480x640) and thread count, both backends are loaded in this process and their ``predict`` calls
alternate on the same rendered frames (at the network size, so the figures are mostly the
network's), so a busy machine slows both alike. Per call: p50/p95 of the whole call and p50 of
the backend's network run. Figures depend on the machine; nothing is asserted.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np

BACKENDS = ("onnxruntime", "openvino")
FRAMES = 4
"""Distinct rendered frames cycled through, so caches do not see one image only."""
WARM_UP = 3


def parse_size(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    return int(height), int(width)


def export_at(checkpoint: str, size: tuple[int, int] | None, folder: Path) -> Path:
    """The checkpoint as ``densemtl-export`` writes it, at network input ``size`` (None: the
    model's own)."""
    from densemtl_core.checkpoint import load_checkpoint
    from densemtl_core.export.onnx import export_onnx

    model, metadata = load_checkpoint(checkpoint)
    name = "model" if size is None else f"model_{size[0]}x{size[1]}"
    return export_onnx(model, metadata, folder / f"{name}.onnx", input_size=size)


def measure(onnx: Path, threads: int, repeats: int) -> dict[str, dict[str, float]]:
    """Per backend: p50 and p95 of the whole call and p50 of the network run, in ms."""
    import torch

    from densemtl_core.data.synthetic import render_scene
    from densemtl_core.runtime import load_predictor

    torch.set_num_threads(threads)
    predictors = {name: load_predictor(onnx, backend=name, device="cpu", threads=threads)
                  for name in BACKENDS}
    size = tuple(predictors["onnxruntime"].input_size)
    frames = [render_scene(seed, size)["image"] for seed in range(FRAMES)]
    totals: dict[str, list[float]] = {name: [] for name in BACKENDS}
    networks: dict[str, list[float]] = {name: [] for name in BACKENDS}
    for index in range(WARM_UP + repeats):
        for name, predictor in predictors.items():
            predictor.predict(frames[index % FRAMES])
            if index >= WARM_UP:
                totals[name].append(predictor.last_timings.total * 1e3)
                networks[name].append(predictor.last_timings.network * 1e3)
    return {name: {"p50": float(np.percentile(totals[name], 50)),
                   "p95": float(np.percentile(totals[name], 95)),
                   "network_p50": float(np.percentile(networks[name], 50))}
            for name in BACKENDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument("--sizes", nargs="+", default=["model", "480x640"],
                        help="network input sizes HxW; model: the checkpoint's own")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    from densemtl_core.pretrained import DEFAULT_MODEL

    checkpoint = args.checkpoint or str(DEFAULT_MODEL)
    print(f"{checkpoint}: {args.repeats} calls per backend and row, alternating; "
          f"{platform.processor() or platform.machine()}")
    print("| network input | threads | ONNX Runtime p50 / p95 ms (network p50) | "
          "OpenVINO p50 / p95 ms (network p50) | OpenVINO speed-up (p50) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for text in args.sizes:
            onnx = export_at(checkpoint, None if text == "model" else parse_size(text),
                             Path(folder))
            for threads in args.threads:
                figures = measure(onnx, threads, args.repeats)
                cells = [f"{f['p50']:.1f} / {f['p95']:.1f} ({f['network_p50']:.1f})"
                         for f in figures.values()]
                ratio = figures["onnxruntime"]["p50"] / figures["openvino"]["p50"]
                size = "x".join(map(str, parse_size(text))) if text != "model" else "model's"
                print(f"| {size} | {threads} | {cells[0]} | {cells[1]} | {ratio:.2f}x |",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
