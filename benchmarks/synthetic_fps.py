"""Frames per second of the synthetic scene renderer (single process, all outputs).

    python benchmarks/synthetic_fps.py [--frames 100] [--repeats 3]

(with the package installed, or from the repository root with ``PYTHONPATH=.``).

Each resolution renders ``--frames`` different scenes ``--repeats`` times and reports the best
pass, which is the least disturbed by other processes on the machine.
"""
from __future__ import annotations

import argparse
import time

from densemtl_core.data.synthetic import render_scene

SIZES = ((128, 160), (480, 640))


def frames_per_second(size: tuple[int, int], frames: int, repeats: int) -> float:
    render_scene(0, size)  # warm-up: imports, allocator
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for seed in range(frames):
            render_scene(seed, size)
        best = min(best, time.perf_counter() - start)
    return frames / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="scenes per pass at 128x160")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for height, width in SIZES:
        # Keep each pass a few seconds long whatever the resolution.
        frames = max(5, args.frames * 128 * 160 // (height * width))
        fps = frames_per_second((height, width), frames, args.repeats)
        print(f"{height}x{width}: {fps:7.1f} frames/s ({frames} scenes, best of {args.repeats})")


if __name__ == "__main__":
    main()
