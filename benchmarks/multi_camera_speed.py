"""Several cameras through one node (one network, batched) against one node per camera.

    python benchmarks/multi_camera_speed.py [--cameras 2 4] [--rate 15] [--seconds 20]
                                            [--outputs segmentation,depth] [--threads N]
                                            [--json OUT]

For each camera count N, this process publishes N cameras of 640x480 rgb8 frames (with
camera_info) at ``--rate`` Hz each over Fast DDS and records the subscribed outputs of:

- one node serving the N cameras (``cameras:=[cam0, ...]``): the network runs on the newest
  frame of every camera at once, as one batch;
- N nodes, one per camera, each its own process with the same model and parameters.

Both run the shipped model with the node's defaults (``model.threads`` 0: all cores but one
per process) or ``--threads``. Reported per set-up, after a warm-up: total output sets per second (a frame
counts once every subscribed output of it has arrived), each camera's rate and its end-to-end
latency (publish here -> last output here, p50/p95), and the nodes' resident memory (the sum
over their processes, and its peak). Figures depend on the machine; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from densemtl_ros.resources import dds_profile

REPOSITORY = Path(__file__).resolve().parents[1]
CAMERA_SIZE = (480, 640)
JSON_FORMAT_VERSION = 1
WARM_UP_SECONDS = 5.0


def _messages(camera: int) -> list:
    """A few rendered frames and their camera_info for camera ``camera``."""
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    from densemtl_core.data.synthetic import render_scene
    from densemtl_ros.node.conversions import rgb_to_msg

    height, width = CAMERA_SIZE
    messages = []
    for seed in range(3):
        frame_id = f"cam{camera}_optical"
        info = CameraInfo(header=Header(frame_id=frame_id), height=height, width=width)
        info.k = [500.0, 0.0, width / 2, 0.0, 500.0, height / 2, 0.0, 0.0, 1.0]
        info.p = [500.0, 0.0, width / 2, 0.0, 0.0, 500.0, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
        image = render_scene(100 * camera + seed, CAMERA_SIZE)["image"]
        messages.append((rgb_to_msg(image, Header(frame_id=frame_id)), info))
    return messages


def _memory_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) MiB of process ``pid``."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


class Rig:
    """This process's side: N camera publishers and the recorders of their outputs."""

    def __init__(self, count: int, output_names: list[str], node_names: list[str]) -> None:
        from rclpy.node import Node

        from densemtl_ros.bag_tools.rig import (CameraPlayer, OutputRecorder, Spinner,
                                                node_outputs)

        self.node = Node("densemtl_multi_camera_benchmark")
        self.cameras = [CameraPlayer(self.node, f"/cam{index}/image_raw",
                                     f"/cam{index}/camera_info", depth=5)
                        for index in range(count)]
        self.recorders = [OutputRecorder(self.node, node_outputs(output_names),
                                         node_name=node_names[index], keep=0)
                          for index in range(count)]
        self.messages = [_messages(index) for index in range(count)]
        self.spinner = Spinner(self.node, threads=2)

    def connected(self) -> bool:
        return all(camera.subscribed() for camera in self.cameras) and all(
            recorder.publishing() for recorder in self.recorders)

    def publish_for(self, seconds: float, rate: float) -> list[dict[int, float]]:
        """Every camera at ``rate`` Hz for ``seconds`` (their frames interleaved, each
        camera's stamps its own); per camera, stamp -> send time."""
        from builtin_interfaces.msg import Time

        from densemtl_core.recordings.bags import header_stamp_ns

        sent: list[dict[int, float]] = [{} for _ in self.cameras]
        period, began, tick = 1.0 / rate, time.monotonic(), 0
        while time.monotonic() - began < seconds:
            for index, camera in enumerate(self.cameras):
                image, info = self.messages[index][tick % len(self.messages[index])]
                image.header.stamp = info.header.stamp = Time(sec=int(time.time()),
                                                              nanosec=tick)
                sent[index][header_stamp_ns(image)] = time.monotonic()
                camera.send(image, info)
            tick += 1
            time.sleep(max(0.0, began + tick * period - time.monotonic()))
        return sent

    def close(self) -> None:
        self.spinner.close()
        self.node.destroy_node()


def _set_up(mode: str, count: int, output_names: list[str], threads: int
            ) -> tuple[list, list[str]]:
    """The node processes of ``mode`` ("one node" or "separate nodes") and, per camera, the
    name its outputs live under."""
    from densemtl_ros.bag_tools.node_process import NodeProcess, node_arguments
    from densemtl_ros.node.outputs import output_specs

    parameters = {"model.threads": threads}
    parameters.update({f"publish.{name}": False for name in output_specs()
                       if name not in output_names})
    if mode == "one node":
        names = [f"cam{index}" for index in range(count)]
        arguments = node_arguments(parameters={**parameters,
                                               "cameras": f"[{', '.join(names)}]"})
        return [NodeProcess(arguments, cwd=REPOSITORY)], [f"/densemtl/{name}" for name in names]
    processes = [NodeProcess([*node_arguments(f"/cam{index}/image_raw",
                                              f"/cam{index}/camera_info", parameters),
                              "-r", f"__node:=densemtl_cam{index}"], cwd=REPOSITORY)
                 for index in range(count)]
    return processes, [f"/densemtl_cam{index}" for index in range(count)]


def measure(mode: str, count: int, rate: float, seconds: float, output_names: list[str],
            threads: int) -> dict:
    import rclpy

    processes, node_names = _set_up(mode, count, output_names, threads)
    rclpy.init()
    rig = Rig(count, output_names, node_names)
    try:
        deadline = time.monotonic() + 120
        while not rig.connected():
            failed = [process for process in processes if not process.running]
            if time.monotonic() > deadline or failed:
                raise RuntimeError(f"the nodes did not come up:\n"
                                   f"{(failed or processes)[0].output}")
            time.sleep(0.1)
        rig.publish_for(WARM_UP_SECONDS, rate)
        time.sleep(1.0)
        sent = rig.publish_for(seconds, rate)
        time.sleep(1.5)  # the last frames finish
        memory = [_memory_mb(process.process.pid) for process in processes]
        per_camera = []
        for stamps, recorder in zip(sent, rig.recorders):
            answered = {key: arrival for key, arrival in recorder.answered.items()
                        if key in stamps}
            latencies = [(answered[key] - stamps[key]) * 1e3 for key in answered]
            p50, p95 = (np.percentile(latencies, (50, 95)) if latencies
                        else (float("nan"), float("nan")))
            per_camera.append({"sent": len(stamps), "out": len(answered),
                               "fps": len(answered) / seconds,
                               "latency_p50_ms": float(p50), "latency_p95_ms": float(p95)})
        return {"mode": mode, "cameras": count, "rate_hz": rate,
                "total_fps": sum(camera["fps"] for camera in per_camera),
                "per_camera": per_camera,
                "resident_mb": sum(resident for resident, _ in memory),
                "peak_resident_mb": sum(peak for _, peak in memory)}
    finally:
        rig.close()
        rclpy.try_shutdown()
        for process in processes:
            process.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rate", type=float, default=15.0, help="each camera's rate (Hz)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--outputs", default="segmentation,depth",
                        help="comma-separated outputs subscribed to per camera")
    parser.add_argument("--threads", type=int, default=0,
                        help="model.threads of every node (0: the node's default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(dds_profile())
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    output_names = [name.strip() for name in args.outputs.split(",") if name.strip()]
    results = []
    for count in args.cameras:
        for mode in ("one node", "separate nodes"):
            print(f"{count} cameras at {args.rate:.0f} Hz, {mode}, {args.seconds:.0f} s ...",
                  flush=True)
            results.append(measure(mode, count, args.rate, args.seconds, output_names,
                                   args.threads))
    height, width = CAMERA_SIZE
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"{width}x{height} rgb8 at {args.rate:.0f} Hz per camera; outputs "
          f"{', '.join(output_names)}; model.threads {args.threads}")
    print(f"{'cameras':>7} {'set-up':<15} {'total fps':>9} {'x':>6} {'per camera fps':<24} "
          f"{'p95 latency per camera (ms)':<30} {'memory MiB':>10}")
    for result in results:
        separate = next(other for other in results if other["cameras"] == result["cameras"]
                        and other["mode"] == "separate nodes")
        rates = " ".join(f"{camera['fps']:.1f}" for camera in result["per_camera"])
        latencies = " ".join(f"{camera['latency_p95_ms']:.0f}" for camera in result["per_camera"])
        print(f"{result['cameras']:>7} {result['mode']:<15} {result['total_fps']:9.1f} "
              f"{result['total_fps'] / max(separate['total_fps'], 1e-9):6.2f} {rates:<24} "
              f"{latencies:<30} {result['resident_mb']:10.0f}")
    if args.json:
        args.json.write_text(json.dumps({"format_version": JSON_FORMAT_VERSION,
                                         "frame_size": CAMERA_SIZE, "outputs": output_names,
                                         "model_threads": args.threads, "results": results},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
