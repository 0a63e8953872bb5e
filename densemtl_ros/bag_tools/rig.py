"""A camera that plays frames to a densemtl node and a recorder of what the node publishes back,
over real ROS topics.

The live bag replay, the demo, the node benchmark and the ROS tests all do this; they share
this rig so that the node's output topics (from the outputs table), the QoS and the stamp keys
are spelled once. Both parts attach to an rclpy node of the caller's, spun by a
:class:`Spinner` (or by the caller). The node's outputs carry the input's header, so they are
told apart by header stamp (nanoseconds).
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from densemtl_core.recordings.bags import header_stamp_ns

from ..node.diagnostics import status_name
from ..node.outputs import output_specs
from ..published import recorded_outputs

OutputTopics = Mapping[str, tuple[str, type]]
"""Recorded name -> (topic under the node's name, message type)."""


def node_outputs(names: Iterable[str] | None = None) -> dict[str, tuple[str, type]]:
    """The node's outputs ``names`` (default: all of them, in the outputs table's order) by
    output name."""
    specs = output_specs()
    return {name: (specs[name].topic[2:], specs[name].message_type)
            for name in (specs if names is None else names)}


def map_outputs(fields: Iterable[str] | None = None) -> dict[str, tuple[str, type]]:
    """The outputs carrying each task's map as published, by map field (default: every
    task's), for recording maps to score."""
    topics = recorded_outputs()
    return {field: (topics[field], Image) for field in (topics if fields is None else fields)}


class CameraPlayer:
    """Publishers of a camera: its image (raw or compressed) and its camera_info, reliable, as
    a driver publishes them."""

    def __init__(self, node: Node, image_topic: str, camera_info_topic: str | None = None, *,
                 compressed: bool = False, depth: int = 10) -> None:
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.image_topic = image_topic
        self.image_publisher = node.create_publisher(
            CompressedImage if compressed else Image, image_topic, qos)
        self.info_publisher = (node.create_publisher(CameraInfo, camera_info_topic, qos)
                               if camera_info_topic else None)

    def send(self, image, info: CameraInfo | None = None) -> None:
        """Publish a frame: its camera_info first, as the node pairs them by arrival."""
        if info is not None:
            self.info_publisher.publish(info)
        self.image_publisher.publish(image)

    def subscribed(self) -> bool:
        """A node reads the images."""
        return self.image_publisher.get_subscription_count() > 0


class OutputRecorder:
    """Subscriptions to ``outputs`` of the node named ``node_name`` and to /diagnostics; what
    arrives is kept by header stamp.

    ``received[name][stamp]``: the message, through ``convert`` (the latest ``keep`` per output
    when given, so that a long run measures the node and not this process);
    ``arrivals[name]``: every (stamp, arrival time); ``answered[stamp]``: when the stamp's last
    output arrived, for stamps that have all of them.
    """

    def __init__(self, node: Node, outputs: OutputTopics, *, node_name: str = "/densemtl",
                 depth: int = 10, keep: int | None = None,
                 convert: Callable[[object], object] | None = None) -> None:
        self.node = node
        self.node_name = node_name
        self.topics = {name: f"{node_name}/{topic}" for name, (topic, _) in outputs.items()}
        self.received: dict[str, dict[int, object]] = defaultdict(dict)
        self.arrivals: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.answered: dict[int, float] = {}
        self.diagnostics: list[DiagnosticArray] = []
        self._keep, self._convert = keep, convert
        self._arrived: dict[int, set[str]] = defaultdict(set)
        self._changed = threading.Condition()
        for name, (_, message_type) in outputs.items():
            node.create_subscription(message_type, self.topics[name], self._recorder(name),
                                     QoSProfile(depth=depth))
        node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)

    def _recorder(self, name: str) -> Callable[[object], None]:
        def record(message) -> None:
            kept = message if self._convert is None else self._convert(message)
            now = time.monotonic()
            with self._changed:
                key = header_stamp_ns(message)
                received = self.received[name]
                received[key] = kept
                if self._keep is not None and len(received) > self._keep:
                    del received[next(iter(received))]
                self.arrivals[name].append((key, now))
                arrived = self._arrived[key]
                arrived.add(name)
                if len(arrived) == len(self.topics):
                    self.answered[key] = now
                    self._changed.notify_all()
        return record

    def outputs_for(self, key: int, names: Iterable[str]) -> dict[str, object] | None:
        """The kept outputs ``names`` of stamp ``key``, once all of them arrived."""
        with self._changed:
            if all(key in self.received[name] for name in names):
                return {name: self.received[name][key] for name in names}
        return None

    def wait_for_answer(self, key: int, timeout: float) -> bool:
        """Wait until every output of stamp ``key`` arrived; whether they did."""
        with self._changed:
            return self._changed.wait_for(lambda: key in self.answered, timeout)

    def publishing(self) -> bool:
        """Every recorded output has a publisher (the node is up)."""
        return all(self.node.count_publishers(topic) > 0 for topic in self.topics.values())

    def node_diagnostics(self) -> dict[str, str]:
        """The values of the node's latest /diagnostics status (empty before the first)."""
        name = status_name(self.node_name)
        for array in reversed(self.diagnostics):
            for status in array.status:
                if status.name == name:
                    return {item.key: item.value for item in status.values}
        return {}


class Spinner:
    """Spins nodes in a background thread until closed (``threads`` > 1: callbacks of several
    nodes at once, as a node under test in this process needs)."""

    def __init__(self, *nodes: Node, threads: int = 1, context: Context | None = None) -> None:
        self.executor = (SingleThreadedExecutor(context=context) if threads == 1
                         else MultiThreadedExecutor(num_threads=threads, context=context))
        for node in nodes:
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(timeout=5.0)
