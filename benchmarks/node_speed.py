"""The ROS node's throughput and added latency against the bare Predictor, on camera frames.

    python benchmarks/node_speed.py [--backend onnxruntime] [--seconds 20] [--rate 60]
                                    [--outputs segmentation,depth,normals,edges] [--json OUT]
                                    [--end-to-end]

1. The bare Predictor (``load_predictor(None, backend)``) predicts 640x480 rgb8 frames back to
   back in this process: its throughput and latency.
2. The node runs in its own process (``python -m densemtl_ros.node``, the ``densemtl-node``
   console script) on the same model and backend. This process publishes 640x480 rgb8 frames
   and camera_info over Fast DDS and subscribes to ``--outputs`` (the node computes only
   subscribed outputs).
   - Throughput: frames are published at ``--rate`` Hz, faster than the node infers, so it
     always has a frame waiting; its throughput is the rate at which complete output sets
     arrive here, after a warm-up.
   - Added latency: then frames come at 15 Hz, which the node sustains; the node's own
     measurement (``/diagnostics``) of the time from its subscription callback to its last
     publish, minus the Predictor's work (network and up-sampling), p50 and p95 over the
     latest 300 frames. End-to-end latency (publish here -> last output received here) is
     measured over the same frames.
Both processes use ``config/fastdds_large_images.xml`` (``--no-dds-profile``: Fast DDS defaults).
``--end-to-end`` then measures the same model exported as an end-to-end graph for 640x480
frames (``densemtl-export --camera-size 480 640``: resizing, decoding and the arg-max inside the
graph) in the same way, and prints both side by side, with the node's CPU time outside the
backend call (convert + build + publish). Figures depend on the machine; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from densemtl_ros.published import map_output_names
from densemtl_ros.resources import dds_profile
from densemtl_ros.node.telemetry import STAGES

REPOSITORY = Path(__file__).resolve().parents[1]
CAMERA_SIZE = (480, 640)
JSON_FORMAT_VERSION = 2
WARM_UP_SECONDS = 3.0
SLOW_RATE_HZ = 15.0
SLOW_SECONDS = 21.0
"""Long enough that the node's latency window (its latest 300 frames) holds only these."""


def _frames(count: int = 4) -> list[np.ndarray]:
    from densemtl_core.data.synthetic import render_scene

    return [render_scene(seed, CAMERA_SIZE)["image"] for seed in range(count)]


def _percentiles(values: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(values, (50, 95))
    return float(p50), float(p95)


def bare_predictor(backend: str, seconds: float, frames: list[np.ndarray],
                   model: str | None = None) -> dict:
    """Back-to-back ``predict`` calls: the throughput the node is compared with."""
    from densemtl_core.runtime import load_predictor

    predictor = load_predictor(model, backend=backend)
    for frame in frames:
        predictor.predict(frame)
    latencies = []
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        start = time.perf_counter()
        predictor.predict(frames[len(latencies) % len(frames)])
        latencies.append(time.perf_counter() - start)
    p50, p95 = _percentiles(latencies)
    return {"backend": predictor.backend.name, "fps": len(latencies) / sum(latencies),
            "p50_ms": p50 * 1e3, "p95_ms": p95 * 1e3, "frames": len(latencies)}


class Bench:
    """This process's side: a camera publisher and a recorder of the node's outputs."""

    def __init__(self, outputs: list[str]) -> None:
        from rclpy.node import Node

        from densemtl_ros.bag_tools.rig import CameraPlayer, OutputRecorder, Spinner, node_outputs

        self.node = Node("densemtl_benchmark")
        self.camera = CameraPlayer(self.node, "/bench/image_raw", "/bench/camera_info", depth=5)
        self.recorder = OutputRecorder(self.node, node_outputs(outputs), keep=0)
        self.spinner = Spinner(self.node)

    def connected(self) -> bool:
        return self.camera.subscribed() and self.recorder.publishing()

    def complete(self) -> dict[int, float]:
        """Stamp -> arrival of the frame's last output, for frames with every output."""
        return dict(self.recorder.answered)

    def publish_for(self, seconds: float, rate: float, messages: list) -> dict:
        """Publish at ``rate`` Hz for ``seconds``; stamp -> send time."""
        from builtin_interfaces.msg import Time

        from densemtl_core.recordings.bags import header_stamp_ns

        sent = {}
        period, began = 1.0 / rate, time.monotonic()
        index = 0
        while time.monotonic() - began < seconds:
            image, info = messages[index % len(messages)]
            image.header.stamp = info.header.stamp = Time(sec=int(time.time()), nanosec=index)
            sent[header_stamp_ns(image)] = time.monotonic()
            self.camera.send(image, info)
            index += 1
            time.sleep(max(0.0, began + index * period - time.monotonic()))
        return sent

    def close(self) -> None:
        self.spinner.close()
        self.node.destroy_node()


def _messages(frames: list[np.ndarray]) -> list:
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    from densemtl_ros.node.conversions import rgb_to_msg

    height, width = CAMERA_SIZE
    messages = []
    for frame in frames:
        header = Header(frame_id="camera_optical")
        info = CameraInfo(header=Header(frame_id="camera_optical"), height=height, width=width)
        info.k = [500.0, 0.0, width / 2, 0.0, 500.0, height / 2, 0.0, 0.0, 1.0]
        info.p = [500.0, 0.0, width / 2, 0.0, 0.0, 500.0, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
        messages.append((rgb_to_msg(frame, header), info))
    return messages


def _stages(values: dict[str, str]) -> dict[str, float]:
    return {key: float(value) for key, value in values.items() if key.endswith("(ms)")}


def run_node(backend: str, outputs: list[str], seconds: float, rate: float,
             frames: list[np.ndarray], model: str | None = None) -> dict:
    import rclpy

    from densemtl_ros.bag_tools.node_process import NodeProcess, node_arguments
    from densemtl_ros.node.outputs import output_specs

    parameters = {"model.backend": backend, **({"model.path": model} if model else {}),
                  **{f"publish.{name}": False for name in output_specs() if name not in outputs}}
    node = NodeProcess(node_arguments("/bench/image_raw", "/bench/camera_info", parameters),
                       cwd=REPOSITORY)
    rclpy.init()
    bench = Bench(outputs)
    try:
        deadline = time.monotonic() + 60
        while not bench.connected():
            if time.monotonic() > deadline or not node.running:
                raise RuntimeError(f"the node did not come up within 60 s:\n{node.output}")
            time.sleep(0.1)
        messages = _messages(frames)
        bench.publish_for(WARM_UP_SECONDS, rate, messages)
        time.sleep(1.0)
        sent = bench.publish_for(seconds, rate, messages)
        time.sleep(0.5)
        arrived = {key: time for key, time in bench.complete().items() if key in sent}
        load = bench.recorder.node_diagnostics()
        times = sorted(arrived.values())
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        slow = bench.publish_for(SLOW_SECONDS, SLOW_RATE_HZ, messages)
        time.sleep(2.0)
        steady = bench.recorder.node_diagnostics()
        complete = bench.complete()
        latencies = [complete[key] - sent_at for key, sent_at in slow.items() if key in complete]
        end_to_end = _percentiles(latencies) if latencies else (float("nan"),) * 2
        return {"fps": fps, "frames_sent": len(sent), "frames_out": len(arrived),
                "node_output_rate_hz": float(load.get("output rate (Hz)", "nan")),
                "node_input_rate_hz": float(load.get("input rate (Hz)", "nan")),
                "stages_under_load_ms": _stages(load), "stages_steady_ms": _stages(steady),
                "added_p50_ms": float(steady.get("added latency p50 (ms)", "nan")),
                "added_p95_ms": float(steady.get("added latency p95 (ms)", "nan")),
                "end_to_end_p50_ms": end_to_end[0] * 1e3,
                "end_to_end_p95_ms": end_to_end[1] * 1e3}
    finally:
        bench.close()
        rclpy.try_shutdown()
        node.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="onnxruntime",
                        choices=("onnxruntime", "torch", "tensorrt"))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=60.0, help="input rate under load (Hz)")
    parser.add_argument("--outputs", default=",".join(map_output_names()),
                        help="comma-separated outputs subscribed to (see config/densemtl.yaml;"
                             " default: each task's map)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--end-to-end", action="store_true",
                        help="also measure the model exported as an end-to-end graph for the "
                             "frames' size, side by side")
    parser.add_argument("--no-dds-profile", action="store_true",
                        help="Fast DDS default transports instead of config/"
                             "fastdds_large_images.xml")
    args = parser.parse_args(argv)
    if not args.no_dds_profile:
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(dds_profile())
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    outputs = [name.strip() for name in args.outputs.split(",") if name.strip()]
    frames = _frames()
    with tempfile.TemporaryDirectory() as folder:
        models = {"host path": None}
        if args.end_to_end:
            models["end-to-end graph"] = _end_to_end_model(Path(folder) / "camera.onnx")
        results = {name: measure(args, outputs, frames, model) for name, model in models.items()}
    height, width = CAMERA_SIZE
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"{width}x{height} rgb8; backend {args.backend}; outputs {', '.join(outputs)}")
    for name, (bare, node) in results.items():
        print(f"\n{name}:")
        print_figures(bare, node, args.rate)
    if len(results) > 1:
        print_outside_backend(results)
    print(f"DDS profile: {'Fast DDS defaults' if args.no_dds_profile else dds_profile().name}")
    if args.json:
        args.json.write_text(json.dumps({
            "format_version": JSON_FORMAT_VERSION, "frame_size": CAMERA_SIZE,
            "outputs": outputs, "input_rate_hz": args.rate,
            "results": {name: {"bare": bare, "node": node}
                        for name, (bare, node) in results.items()}}, indent=2))
    return 0


def _end_to_end_model(path: Path) -> str:
    """The shipped model exported as an end-to-end graph for the benchmark's frames."""
    from densemtl_core.checkpoint import load_checkpoint
    from densemtl_core.export.onnx import export_onnx
    from densemtl_core.pretrained import DEFAULT_MODEL

    return str(export_onnx(*load_checkpoint(DEFAULT_MODEL), path, camera_size=CAMERA_SIZE))


def measure(args: argparse.Namespace, outputs: list[str], frames: list[np.ndarray],
            model: str | None) -> tuple[dict, dict]:
    """The bare Predictor (before and after the node: on a shared machine the speed drifts,
    the mean is kept) and the node, on ``model`` (None: the shipped one)."""
    print(f"bare Predictor, {args.seconds / 2:.0f} s ...", flush=True)
    before = bare_predictor(args.backend, args.seconds / 2, frames, model)
    print(f"node at {args.rate:.0f} Hz input, {args.seconds:.0f} s, then at {SLOW_RATE_HZ:.0f} Hz"
          f" ...", flush=True)
    node = run_node(args.backend, outputs, args.seconds, args.rate, frames, model)
    print(f"bare Predictor again, {args.seconds / 2:.0f} s ...", flush=True)
    after = bare_predictor(args.backend, args.seconds / 2, frames, model)
    bare = {key: (before[key] + after[key]) / 2 if isinstance(before[key], float) else before[key]
            for key in before}
    return bare, node


def print_figures(bare: dict, node: dict, rate: float) -> None:
    print(f"bare Predictor:  {bare['fps']:.1f} fps (p50 {bare['p50_ms']:.1f} ms, "
          f"p95 {bare['p95_ms']:.1f} ms)")
    print(f"node:            {node['fps']:.1f} fps = {100 * node['fps'] / bare['fps']:.1f} % of "
          f"the bare Predictor ({node['frames_out']} of {node['frames_sent']} frames at "
          f"{rate:.0f} Hz)")
    print(f"                 the node's own rates under load: input "
          f"{node['node_input_rate_hz']:.1f} Hz, output {node['node_output_rate_hz']:.1f} Hz")
    print(f"added latency at {SLOW_RATE_HZ:.0f} Hz: p50 {node['added_p50_ms']:.2f} ms, p95 "
          f"{node['added_p95_ms']:.2f} ms (callback to last publish, minus network and "
          f"up-sampling)")
    print(f"end to end at {SLOW_RATE_HZ:.0f} Hz: p50 {node['end_to_end_p50_ms']:.1f} ms, p95 "
          f"{node['end_to_end_p95_ms']:.1f} ms (publish -> last output received, across "
          f"processes)")
    print(f"stage          {rate:>4.0f} Hz p50    p95    {SLOW_RATE_HZ:>4.0f} Hz p50    "
          f"p95 (ms)")
    for stage in STAGES:
        figures = [node[phase].get(f"{stage} {quantile} (ms)", float("nan"))
                   for phase in ("stages_under_load_ms", "stages_steady_ms")
                   for quantile in ("p50", "p95")]
        print(f"  {stage:<12}" + "".join(f"{figure:9.2f}" for figure in figures))


OUTSIDE_BACKEND = ("convert", "build", "publish")
"""The node's own CPU work per frame around the Predictor."""


def print_outside_backend(results: dict[str, tuple[dict, dict]]) -> None:
    """Per model, at the steady rate: the stages' p50 outside the backend call and the
    Predictor's host share (its "upsample" stage: wrapping only, for an end-to-end graph)."""
    print(f"\nat {SLOW_RATE_HZ:.0f} Hz, p50 ms      " + "".join(
        f"{stage:>9s}" for stage in (*OUTSIDE_BACKEND, "sum", "upsample", "network")))
    for name, (_, node) in results.items():
        steady = node["stages_steady_ms"]
        figures = [steady.get(f"{stage} p50 (ms)", float("nan")) for stage in OUTSIDE_BACKEND]
        figures += [sum(figures)] + [steady.get(f"{stage} p50 (ms)", float("nan"))
                                     for stage in ("upsample", "network")]
        print(f"  {name:<20}" + "".join(f"{figure:9.2f}" for figure in figures))

if __name__ == "__main__":
    sys.exit(main())
