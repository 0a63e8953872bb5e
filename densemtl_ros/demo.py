"""The demo: the shipped model in the live ROS node on a recorded camera, scored and animated.

    python -m densemtl_ros.demo [--out outputs/demo] [--frames 48] [--rate 1.0]

1. writes the sample recording (``densemtl-make-bag``: a camera walking through a synthetic room,
   with ground-truth segmentation, depth and normals) unless it is already there;
2. starts the densemtl node (shipped model, ONNX Runtime) in its own process, plays the
   recording to it over ROS topics at its recorded rate, and records what the node publishes;
3. scores the node's outputs against the ground truth exactly like ``densemtl-bag-eval``
   (``report.json``, ``frames.csv``, mosaics of the worst and best frames) and checks that the
   offline Predictor scores the same frames the same;
4. writes ``demo.gif`` (input, segmentation, depth, normals, edges as the node published them)
   and ``node_speed.json``, and prints the node's frame rate and latency.

ROS traffic stays on this computer (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) and, unless
``ROS_DOMAIN_ID`` is set, on domain 73, away from a robot's cameras on the default domain.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

DEMO_DOMAIN = "73"
GIF_TILE_HEIGHT = 120
GIF_FRAME_MS = 100


def _isolate_ros_traffic() -> None:
    os.environ.setdefault("ROS_DOMAIN_ID", DEMO_DOMAIN)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def _animation_frames(output_bag: Path) -> list[np.ndarray]:
    """One picture per frame: input | segmentation | depth | normals | edges, as published.

    Depth is coloured over the range the recording spans (2nd to 98th percentile), not the
    model's whole range, so that a room's few metres get the whole colour ramp."""
    from densemtl_core.recordings.bags import header_stamp_ns, open_bag
    from densemtl_core.recordings.encodings import message_to_array
    from densemtl_core.colormaps import colorize_depth, colorize_edges
    from densemtl_core.tasks import TASKS
    from densemtl_core.viz import mosaic

    from .published import topic_suffix

    shown = {"/densemtl/image": "input",
             **{f"/densemtl/{topic_suffix(spec.images[-1].name)}": spec.field
                for spec in TASKS.values()}}  # each task's last image: coloured where it can
    by_stamp: dict[int, dict[str, np.ndarray]] = {}
    with open_bag(output_bag) as bag:
        for item in bag.messages([topic for topic in shown if topic in bag.topics]):
            array = message_to_array(item.message)
            if shown[item.topic] == "edges":
                array = colorize_edges(array / 255.0)
            by_stamp.setdefault(header_stamp_ns(item.message), {})[shown[item.topic]] = array
    depths = [tiles["depth"] for tiles in by_stamp.values() if "depth" in tiles]
    if depths:
        finite = np.concatenate([depth[np.isfinite(depth)] for depth in depths])
        near, far = np.percentile(finite, (2, 98)) if finite.size else (0.1, 10.0)
        for tiles in by_stamp.values():
            if "depth" in tiles:
                tiles["depth"] = colorize_depth(tiles["depth"], float(near), float(far))
    order = list(shown.values())
    return [mosaic([[(name, tiles[name]) for name in order if name in tiles]],
                   tile_height=GIF_TILE_HEIGHT)
            for _, tiles in sorted(by_stamp.items())]


def write_gif(frames: list[np.ndarray], path: Path) -> Path:
    pictures = [Image.fromarray(frame) for frame in frames]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=GIF_FRAME_MS,
                     loop=0, optimize=True)
    return path


def node_speed(report: dict) -> dict:
    """The node's own figures (its /diagnostics) and what the replay measured, for
    ``node_speed.json``; a figure the node has not measured (yet) is None."""
    diagnostics = report["live"]["node_diagnostics"]

    def number(key: str) -> float | None:  # the node writes "nan" before its first frame
        try:
            value = float(diagnostics[key])
        except (KeyError, ValueError):
            return None
        return value if math.isfinite(value) else None
    return {
        "frames_sent": report["live"]["frames_sent"],
        "frames_processed": report["live"]["frames_answered"],
        "frames_dropped": report["live"]["frames_dropped"],
        "node_output_rate_hz": number("output rate (Hz)"),
        "node_added_latency_ms": {"p50": number("added latency p50 (ms)"),
                                  "p95": number("added latency p95 (ms)")},
        "node_network_ms": {"p50": number("network p50 (ms)"), "p95": number("network p95 (ms)")},
        "end_to_end_latency_ms": {"p50": report["timing"]["latency_ms_p50"],
                                  "p95": report["timing"]["latency_ms_p95"]}
        if report.get("timing") else None,
        "backend": diagnostics.get("backend"),
    }


def score_live(recording: Path, out: Path, output_bag: Path, rate: float) -> dict | None:
    """The node (started here) scored on ``recording`` as ``densemtl-bag-eval --live`` scores
    it, its outputs written to ``output_bag``; the report (also in ``out``), or None after
    printing why there is none."""
    from densemtl_core.recordings.bags import BagError
    from densemtl_core.runtime import PredictorError

    from .bag_tools.bag_eval import evaluate_bag, print_summary
    from .bag_tools.bag_evaluation import nothing_scored, warnings
    from .bag_tools.bag_topics import BagTopics
    from .bag_tools.make_bag import (CAMERA_INFO_TOPIC, DEPTH_TOPIC, IMAGE_TOPIC, NORMALS_TOPIC,
                                     SEGMENTATION_TOPIC)
    from .bag_tools.report_folder import NODE_LOG_FILE
    from .bag_tools.settings import EvaluationSettings, LiveSettings

    topics = BagTopics(IMAGE_TOPIC, CAMERA_INFO_TOPIC, {
        "segmentation": SEGMENTATION_TOPIC, "depth": DEPTH_TOPIC, "normals": NORMALS_TOPIC})
    live = LiveSettings(rate=rate, start_node=True, node_log=out / NODE_LOG_FILE)
    try:
        report = evaluate_bag(recording, topics, out, EvaluationSettings(backend="onnxruntime"),
                              live=live, output_bag=output_bag, overwrite=True)
    except (BagError, ValueError, TimeoutError, PredictorError, OSError) as error:
        print(f"densemtl-demo: error: {error}", file=sys.stderr)
        return None
    print_summary(report, out)
    for line in [*warnings(report), *filter(None, [nothing_scored(report)])]:
        print(f"densemtl-demo: warning: {line}", file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--rate", type=float, default=1.0,
                        help="playback speed of the recording (1: recorded 10 Hz)")
    args = parser.parse_args(argv)
    _isolate_ros_traffic()
    from densemtl_core.recordings.bags import open_bag
    from densemtl_core.strict_json import write_json

    from .bag_tools.make_bag import IMAGE_TOPIC, write_sample_bag

    args.out.mkdir(parents=True, exist_ok=True)
    recording = args.out / "sample_bag"
    if not recording.exists():
        write_sample_bag(recording, frames=args.frames, progress=True)
    else:
        with open_bag(recording) as bag:
            print(f"using {recording} ({bag.message_counts.get(IMAGE_TOPIC, 0)} frames)")
    node_outputs = args.out / "node_outputs"
    if node_outputs.exists():
        import shutil
        shutil.rmtree(node_outputs)
    report = score_live(recording, args.out, node_outputs, args.rate)
    if report is None:
        return 2
    if not any(report["frames_scored"].values()):
        return 1
    gif = write_gif(_animation_frames(node_outputs), args.out / "demo.gif")
    speed = node_speed(report)
    write_json(args.out / "node_speed.json", speed)
    latency = speed["node_added_latency_ms"]
    print(f"node: {speed['frames_processed']} of {speed['frames_sent']} frames processed at "
          f"{speed['node_output_rate_hz']} Hz, added latency p50 {latency['p50']} ms / p95 "
          f"{latency['p95']} ms, network p50 {speed['node_network_ms']['p50']} ms")
    print(f"wrote {gif}, {args.out / 'node_speed.json'}, {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
