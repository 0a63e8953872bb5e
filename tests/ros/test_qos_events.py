"""Incompatible QoS between the node and a camera or a subscriber is warned about and reported
on /diagnostics, instead of data silently going nowhere (real rclpy over Fast DDS)."""
from collections.abc import Callable

import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Log
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from densemtl_ros.node.densemtl_node import DenseMTLNode
from densemtl_ros.node.diagnostics import DiagnosticsReporter, status_name
from densemtl_ros.node.telemetry import Telemetry
from tests.ros.harness import running, wait_for

PREFIX = "/qos_test"
IMAGE_TOPIC = f"{PREFIX}/image_raw"
SEGMENTATION_TOPIC = "/qos/densemtl/segmentation"


class _Peer(Node):
    """The other side: records the node's warnings (from /rosout's history, so none is
    missed) and its /diagnostics."""

    def __init__(self) -> None:
        super().__init__("qos_test_peer")
        self.warnings: list[str] = []
        self.statuses: list[DiagnosticStatus] = []
        self.create_subscription(Log, "/rosout", self._on_log, QoSProfile(
            depth=1000, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda array: self.statuses.extend(array.status), 10)

    def _on_log(self, log: Log) -> None:
        if log.name == "qos.densemtl" and log.level == Log.WARN:
            self.warnings.append(log.msg)


@pytest.fixture(scope="module")
def system(ros):
    """A node subscribing reliable and publishing best-effort, the opposite of its defaults."""
    node = DenseMTLNode(
        namespace="/qos", cli_args=["--ros-args", "-r", f"image:={IMAGE_TOPIC}",
                                    "-r", f"camera_info:={PREFIX}/camera_info"],
        parameter_overrides=[Parameter("qos.input.reliability", value="reliable"),
                             Parameter("qos.output.reliability", value="best_effort"),
                             Parameter("diagnostics.period", value=0.2)])
    with running(node, _Peer()) as nodes:
        yield nodes


def _qos(reliability: ReliabilityPolicy) -> QoSProfile:
    return QoSProfile(depth=1, reliability=reliability)


def _reported(node: DenseMTLNode, peer: _Peer,
              condition: Callable[[dict[str, str]], bool]) -> DiagnosticStatus | None:
    name = status_name(node.get_fully_qualified_name())
    for status in reversed(peer.statuses):
        if status.name == name and condition({item.key: item.value for item in status.values}):
            return status
    return None


def _count(node: DenseMTLNode, topic: str) -> int:
    return node.cameras[0].telemetry.snapshot().incompatible_qos.get(topic, 0)


def test_a_best_effort_camera_to_a_reliable_node_is_warned_and_reported(system):
    node, peer = system
    before = _count(node, IMAGE_TOPIC)
    camera = peer.create_publisher(Image, IMAGE_TOPIC, _qos(ReliabilityPolicy.BEST_EFFORT))
    try:
        wait_for(lambda: _count(node, IMAGE_TOPIC) > before, 10, "the incompatible QoS event")
        warning = wait_for(lambda: [text for text in peer.warnings if IMAGE_TOPIC in text], 10,
                           "the warning")[0]
        assert "RELIABILITY" in warning and "reliability reliable" in warning, warning
        assert "set qos.input.reliability to best_effort" in warning, warning
        status = wait_for(lambda: _reported(
            node, peer, lambda values: f"incompatible QoS: {IMAGE_TOPIC}" in values), 10,
            "a /diagnostics report of it")
        values = {item.key: item.value for item in status.values}
        assert values[f"incompatible QoS: {IMAGE_TOPIC}: latest"] == "RELIABILITY"
        assert status.level == DiagnosticStatus.WARN
        assert f"incompatible QoS on {IMAGE_TOPIC} (RELIABILITY)" in status.message
    finally:
        peer.destroy_publisher(camera)


def test_a_reliable_subscriber_of_best_effort_outputs_is_warned_and_reported(system):
    node, peer = system
    before = _count(node, SEGMENTATION_TOPIC)
    subscription = peer.create_subscription(Image, SEGMENTATION_TOPIC, lambda message: None,
                                            _qos(ReliabilityPolicy.RELIABLE))
    try:
        wait_for(lambda: _count(node, SEGMENTATION_TOPIC) > before, 10,
                 "the incompatible QoS event")
        warning = wait_for(lambda: [text for text in peer.warnings
                                    if SEGMENTATION_TOPIC in text], 10, "the warning")[0]
        assert "subscriber" in warning and "set qos.output.reliability to reliable" in warning
        status = wait_for(lambda: _reported(
            node, peer, lambda values: f"incompatible QoS: {SEGMENTATION_TOPIC}" in values),
            10, "a /diagnostics report of it")
        assert status.level == DiagnosticStatus.WARN
    finally:
        peer.destroy_subscription(subscription)


def test_matching_qos_is_not_reported(system):
    """A reliable camera (a reliable subscription takes it) and a best-effort subscriber
    match: they connect and nothing is counted or warned."""
    node, peer = system
    before = node.cameras[0].telemetry.snapshot().incompatible_qos
    warned = len(peer.warnings)
    camera = peer.create_publisher(Image, IMAGE_TOPIC, _qos(ReliabilityPolicy.RELIABLE))
    subscription = peer.create_subscription(Image, SEGMENTATION_TOPIC, lambda message: None,
                                            _qos(ReliabilityPolicy.BEST_EFFORT))
    try:
        publisher = node.cameras[0].outputs.publishers["segmentation"]
        wait_for(lambda: camera.get_subscription_count() > 0
                 and publisher.get_subscription_count() > 0, 10, "the matches")
        # A report after the match: an incompatible-QoS event would have been handled by now.
        reports = len(peer.statuses)
        wait_for(lambda: len(peer.statuses) > reports + 1, 10, "two more reports")
        assert node.cameras[0].telemetry.snapshot().incompatible_qos == before
        assert not [text for text in peer.warnings[warned:] if "incompatible QoS" in text]
    finally:
        peer.destroy_publisher(camera)
        peer.destroy_subscription(subscription)


def test_an_incompatible_endpoint_keeps_the_status_at_warn_since_it_was_seen():
    """DDS reports the endpoint when it appears, never when it leaves: the status stays WARN on
    every later report, with frames flowing and the counts per topic."""
    telemetry = Telemetry()
    reporter = DiagnosticsReporter("node", "hw", {})
    telemetry.incompatible_qos("/camera/image_raw", "RELIABILITY", 2)
    for _ in range(3):
        for _ in range(3):
            telemetry.frame_received()
            telemetry.frame_processed({})
        status = reporter.report(telemetry.snapshot(), Time()).status[0]
        values = {item.key: item.value for item in status.values}
        assert status.level == DiagnosticStatus.WARN
        assert status.message.endswith("; incompatible QoS on /camera/image_raw (RELIABILITY)")
        assert values["incompatible QoS: /camera/image_raw"] == "2"
