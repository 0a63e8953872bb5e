"""The console script as users start it: a real process, seen from this one over DDS.

``densemtl-node`` is the console script of setup.py (``densemtl_ros.node.densemtl_node:console_main``). An
editable install made before the entry point existed lacks ``.venv/bin/densemtl-node``; then
the same ``console_main`` runs through ``python -m densemtl_ros.node``.
"""
from __future__ import annotations

import gc
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter as ParameterMessage
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.node import Node
from rclpy.parameter import parameter_value_to_python
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from densemtl_core.data.synthetic import render_scene
from densemtl_core.recordings.encodings import compress_rgb
from densemtl_ros.bag_tools.node_process import MODULE_COMMAND, NodeProcess
from densemtl_ros.published import image_outputs
from densemtl_ros.bag_tools.rig import CameraPlayer, OutputRecorder, node_outputs
from densemtl_ros.node.ros_arguments import params_file_problem

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "densemtl-node"
NODE_COMMAND = [str(SCRIPT)] if SCRIPT.is_file() else list(MODULE_COMMAND)
CONFIG = REPO / "config" / "densemtl.yaml"
IMAGE_TOPIC = "/test_camera/image_raw"
READY = re.compile(r"\[densemtl\]: ready\b")
LOADING = re.compile(r"\[densemtl\]: loading ")
START_TIMEOUT = 60.0


def interrupt(node: NodeProcess, timeout: float = 15.0) -> None:
    """Ctrl-C: it must stop within ``timeout`` seconds, with code 0 and no traceback."""
    try:
        code = node.interrupt(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the node did not stop within {timeout:.0f} s of SIGINT:\n"
                    f"{node.output}")
    assert code == 0, node.output
    assert "Traceback" not in node.output, node.output


@pytest.fixture
def start_node():
    started: list[NodeProcess] = []

    def start(*ros_args: str) -> NodeProcess:
        node = NodeProcess(["--ros-args", *ros_args], command=NODE_COMMAND, cwd=REPO)
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()  # a failed test left it running


@pytest.fixture
def probe(ros):
    node = Node("densemtl_console_probe")
    yield node
    node.destroy_node()


def wait_until(condition, timeout: float, node: Node | None = None):
    """Poll ``condition`` (spinning ``node`` meanwhile) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        if node is not None:
            rclpy.spin_once(node, timeout_sec=0.1)
        else:
            time.sleep(0.1)


def call(probe: Node, service_type, name: str, request):
    client = probe.create_client(service_type, name)
    try:
        assert client.wait_for_service(timeout_sec=15.0), f"{name} is not offered"
        future = client.call_async(request)
        rclpy.spin_until_future_complete(probe, future, timeout_sec=15.0)
        assert future.done(), f"{name} did not answer"
        return future.result()
    finally:
        probe.destroy_client(client)


def get_parameters(probe: Node, names: list[str]) -> list:
    response = call(probe, GetParameters, "/densemtl/get_parameters",
                    GetParameters.Request(names=names))
    return [parameter_value_to_python(value) for value in response.values]


def set_parameter(probe: Node, name: str, value: ParameterValue):
    request = SetParameters.Request(parameters=[ParameterMessage(name=name, value=value)])
    (result,) = call(probe, SetParameters, "/densemtl/set_parameters", request).results
    return result


def test_node_runs_is_visible_and_stops_on_sigint(start_node, probe):
    gc.collect()  # in-process nodes of earlier tests whose start failed leave the graph
    alone = wait_until(lambda: "densemtl" not in probe.get_node_names(), 10.0)
    assert alone, ("another node named densemtl is in this test domain: the graph checks "
                   "below could not tell it from the process under test")
    node = start_node("--params-file", str(CONFIG), "-r", f"image:={IMAGE_TOPIC}")
    ready = node.wait_for_line(READY, START_TIMEOUT)
    assert ready is not None, (f"no 'ready' line within {START_TIMEOUT:.0f} s from "
                               f"{node.command}:\n{node.output}")
    assert IMAGE_TOPIC in ready, ready  # the remapping reached the subscription

    names = wait_until(lambda: "densemtl" in probe.get_node_names(), 20.0)
    assert names, f"node densemtl not discovered; nodes: {probe.get_node_names()}"
    expected = {
        "/densemtl/segmentation": "sensor_msgs/msg/Image",
        "/densemtl/segmentation/color": "sensor_msgs/msg/Image",
        "/densemtl/depth": "sensor_msgs/msg/Image",
        "/densemtl/camera_info": "sensor_msgs/msg/CameraInfo",
        "/densemtl/points": "sensor_msgs/msg/PointCloud2",
        "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
        IMAGE_TOPIC: "sensor_msgs/msg/Image",
        "/camera_info": "sensor_msgs/msg/CameraInfo",
    }

    def topics():
        return dict(probe.get_topic_names_and_types())

    wait_until(lambda: expected.keys() <= topics().keys(), 20.0)
    found = topics()
    for topic, message_type in expected.items():
        assert topic in found, f"{topic} missing; topics: {sorted(found)}"
        assert message_type in found[topic], (topic, found[topic])
    publishers = probe.get_publisher_names_and_types_by_node("densemtl", "/")
    assert "/densemtl/segmentation" in dict(publishers)
    subscriptions = dict(probe.get_subscriber_names_and_types_by_node("densemtl", "/"))
    assert IMAGE_TOPIC in subscriptions and "/camera_info" in subscriptions

    # The params file was read, and the parameters answer over the ROS services.
    assert get_parameters(probe, ["points.stride", "model.device", "color.overlay_alpha"]) == [
        4, "auto", 0.5]
    refused = set_parameter(probe, "output.resolution",
                            ParameterValue(type=ParameterType.PARAMETER_STRING,
                                           string_value="half"))
    assert not refused.successful and "output.resolution" in refused.reason
    accepted = set_parameter(probe, "points.stride",
                             ParameterValue(type=ParameterType.PARAMETER_INTEGER,
                                            integer_value=8))
    assert accepted.successful, accepted.reason
    assert get_parameters(probe, ["points.stride"]) == [8]

    # Diagnostics flow, and say that no image arrived.
    reports: list[DiagnosticArray] = []
    subscription = probe.create_subscription(DiagnosticArray, "/diagnostics", reports.append,
                                             10)
    wait_until(lambda: any(status.name.startswith("/densemtl:") for report in reports
                           for status in report.status), 10.0, node=probe)
    probe.destroy_subscription(subscription)
    statuses = [status for report in reports for status in report.status
                if status.name.startswith("/densemtl:")]
    assert statuses, "no /diagnostics report from the node"
    assert statuses[-1].level == DiagnosticStatus.WARN
    assert "no images" in statuses[-1].message

    interrupt(node)
    gone = wait_until(lambda: "densemtl" not in probe.get_node_names(), 10.0)
    assert gone, "the node is still in the graph after it exited"


def test_sigint_while_the_model_loads_stops_without_a_traceback(start_node):
    node = start_node("--params-file", str(CONFIG))
    assert node.wait_for_line(LOADING, START_TIMEOUT) is not None, node.output
    interrupt(node, timeout=30.0)
    assert "stopped while starting" in node.output and not READY.search(node.output)


def test_sigint_while_frames_flow_stops_without_an_error(start_node, probe):
    """Ctrl-C once shut the context down before the pipeline stopped: the frame being
    published failed ("publisher's context is invalid") and was logged as a failure. Large
    JPEG frames (small to send, large to publish) keep the publishing stage busy."""
    node = start_node("--params-file", str(CONFIG), "-r", f"image:={IMAGE_TOPIC}",
                      "-p", "input.compressed:=true")
    assert node.wait_for_line(READY, START_TIMEOUT) is not None, node.output
    outputs = OutputRecorder(probe, node_outputs(image_outputs()), keep=0)
    camera = CameraPlayer(probe, IMAGE_TOPIC + "/compressed", compressed=True, depth=1)
    image_format, data = compress_rgb(render_scene(3, (960, 1280))["image"], "jpeg")
    frame = CompressedImage(header=Header(frame_id="camera"), format=image_format,
                            data=data.tobytes())
    streaming = threading.Event()
    streaming.set()

    def stream() -> None:
        while streaming.is_set():
            camera.send(frame)
            time.sleep(0.01)
    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        assert wait_until(lambda: sum(map(len, outputs.arrivals.values())) >= 12, 60.0,
                          node=probe), node.output
        interrupt(node)
    finally:
        streaming.clear()
        streamer.join()
    for failure in ("context is invalid", "frame failed"):
        assert failure not in node.output, node.output


@pytest.mark.parametrize("ros_args, named", [
    (("-p", "points.stride:=0"), "points.stride"),
    (("-p", "model.path:=/nonexistent/model.onnx"), "/nonexistent/model.onnx"),
    (("-p", "output.resolution:=half"), "output.resolution"),
    (("-p", "color.overlay_alpha:=1"), "color.overlay_alpha"),  # an integer for a double
], ids=["out-of-range", "missing-model", "bad-choice", "wrong-type"])
def test_invalid_start_exits_with_one_clear_error(start_node, ros_args, named):
    node = start_node("--params-file", str(CONFIG), *ros_args)
    try:
        code = node.wait(timeout=60.0)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{node.command} still runs after 60 s:\n{node.output}")
    output = node.output
    assert code == 1, output
    assert named in output, output
    assert "Traceback" not in output, output
    assert not READY.search(output), output


@pytest.mark.parametrize("content, named", [
    (None, "cannot read the parameters file {path}: No such file or directory"),
    ("densemtl:\n  ros__parameters:\n    points: [1, 2\n",
     "the parameters file {path} is not valid YAML (line 4)"),
], ids=["missing", "malformed"])
def test_an_unusable_params_file_exits_with_one_clear_line(start_node, tmp_path, content,
                                                            named):
    """rcl refused these with a traceback."""
    path = tmp_path / "params.yaml"
    if content is not None:
        path.write_text(content)
    node = start_node("--params-file", str(path))
    code = node.wait(timeout=60.0)
    assert code == 2, node.output
    assert node.output.count("\n") == 1 and named.format(path=path) in node.output, node.output


def test_invalid_ros_arguments_exit_without_a_traceback(start_node):
    node = start_node("-r")  # a remapping without its rule
    code = node.wait(timeout=60.0)
    assert code == 2, node.output
    assert "invalid ROS arguments" in node.output and "Traceback" not in node.output
    assert ", at /" not in node.output.splitlines()[-1]  # rcl's source locations are dropped


@pytest.mark.parametrize("content, problem", [
    ("/**/densemtl:\n  ros__parameters:\n    points.stride: 8\n", None),
    ("perception:\n  densemtl:\n    ros__parameters: {points.stride: 8}\n", None),
    ("just a string\n", "has no ros__parameters; it is keyed by node name"),
    ("densemtl:\n  points.stride: 8\n", "has no ros__parameters"),
    ("densemtl:\n  ros__parameters: 8\n", "has no ros__parameters"),
    (b"\xff\xfe\x00", "is not UTF-8 text"),
    ("a: [", "is not valid YAML (line 1)"),
])
def test_params_file_problem_reads_each_params_file(tmp_path, content, problem):
    path = tmp_path / "params.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    good = tmp_path / "good.yaml"
    good.write_text("/**:\n  ros__parameters: {}\n")
    found = params_file_problem(["densemtl-node", "--ros-args", "--params-file", str(good),
                                 "-p", "a:=1", "--params-file", str(path)], "densemtl")
    assert found == problem if problem is None else problem in found
    # Outside --ros-args ... -- the same words are the program's own arguments.
    assert params_file_problem(["densemtl-node", "--params-file", str(path), "--ros-args",
                                "--", "--params-file", str(path)], "densemtl") is None
