"""Play a bag's camera topics to a running densemtl node over real ROS topics, and record what
the node publishes back, so that the live outputs can be scored exactly like offline ones.

Playback follows the recorded timing scaled by ``rate`` (2.0: twice as fast), in which case a
node slower than the camera drops frames as it would on a robot; ``rate=0`` publishes each frame
once the node has answered the previous one (or after ``answer_timeout``), so every frame is
processed. :class:`~densemtl_ros.bag_tools.node_process.NodeProcess` starts a node in its own
process.

The node's outputs carry the input's header, so they are told apart by stamp. A bag whose
images share stamps (a driver that stamps 0) is replayed with ``restamp``: each image is
published with a stamp of its own (its position in the bag, in nanoseconds), which the node
uses for nothing else, so every output still finds its image.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import rclpy
from builtin_interfaces.msg import Time
from rclpy.context import Context
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from densemtl_core.recordings.bags import BagReader, header_stamp_ns
from densemtl_core.recordings.encodings import message_to_array

from ..published import PublishedMaps, recorded_outputs
from .rig import CameraPlayer, OutputRecorder, Spinner, map_outputs


def _header(message) -> Header:
    stamp = message.header.stamp
    return Header(stamp=Time(sec=stamp.sec, nanosec=stamp.nanosec),
                  frame_id=message.header.frame_id)


def to_ros_message(message, msgtype: str):
    """A bag message (rosbags' types, ROS 1 or 2) as the rclpy message to publish."""
    if msgtype.endswith("CompressedImage"):
        return CompressedImage(header=_header(message), format=message.format,
                               data=bytes(message.data))
    if msgtype.endswith("CameraInfo"):
        roi = message.roi
        # ROS 1 spells the matrices in capitals.
        matrices = {name: list(getattr(message, name, getattr(message, name.upper(), [])))
                    for name in ("d", "k", "r", "p")}
        return CameraInfo(header=_header(message), height=message.height, width=message.width,
                          distortion_model=message.distortion_model, **matrices,
                          binning_x=message.binning_x, binning_y=message.binning_y,
                          roi=RegionOfInterest(x_offset=roi.x_offset, y_offset=roi.y_offset,
                                               height=roi.height, width=roi.width,
                                               do_rectify=bool(roi.do_rectify)))
    return Image(header=_header(message), height=message.height, width=message.width,
                 encoding=message.encoding, is_bigendian=message.is_bigendian,
                 step=message.step, data=bytes(message.data))


@dataclass
class LiveRecording:
    """What came back from the node: maps by the stamp each image was published with, and how
    the replay went. ``stamps``: an image's position among the bag's images (corrupt ones
    included) -> the stamp it was published with (its own unless ``restamped``)."""

    outputs: dict[str, dict[int, object]] = field(default_factory=dict)  # field -> stamp -> map
    sent: dict[int, float] = field(default_factory=dict)  # published stamp -> publish time
    answered: dict[int, float] = field(default_factory=dict)  # stamp -> last output time
    diagnostics: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    rate: float = 1.0
    stamps: dict[int, int] = field(default_factory=dict)
    restamped: bool = False

    def maps(self, index: int) -> PublishedMaps | None:
        """What the node published for the bag's ``index``-th image; None if nothing."""
        stamp = self.stamps.get(index)
        if not any(stamp in maps for maps in self.outputs.values()):
            return None
        return PublishedMaps(**{name: self.outputs.get(name, {}).get(stamp)
                                for name in recorded_outputs()})

    def latencies(self) -> list[float]:
        """Seconds from publishing each answered image to its last output arriving."""
        return [self.answered[stamp] - sent for stamp, sent in self.sent.items()
                if stamp in self.answered]


class _Player:
    """The replaying side: the bag's camera played through a :class:`CameraPlayer`, the
    node's maps recorded by an :class:`OutputRecorder`."""

    def __init__(self, context: Context, node_name: str, wanted: Sequence[str],
                 image_topic: str, camera_info_topic: str | None, compressed: bool) -> None:
        self.node = Node("densemtl_bag_replay", context=context)
        self.recording = LiveRecording()
        self.camera = CameraPlayer(self.node, image_topic, camera_info_topic,
                                   compressed=compressed)
        self.publishers = {image_topic: self.camera.image_publisher,
                           camera_info_topic: self.camera.info_publisher}
        self.outputs = OutputRecorder(self.node, map_outputs(wanted), node_name=node_name,
                                      depth=100, convert=_copied_array)
        self.recording.outputs = self.outputs.received
        self.recording.answered = self.outputs.answered
        self._spinner = Spinner(self.node, context=context)

    def connected(self) -> bool:
        return self.camera.subscribed() and self.outputs.publishing()

    def close(self) -> None:
        self.recording.diagnostics = self.outputs.node_diagnostics()
        self._spinner.close()
        self.node.destroy_node()


def _copied_array(message: Image):
    return message_to_array(message).copy()  # the message buffer is reused


def replay_through_node(bag: BagReader, image_topic: str, camera_info_topic: str | None,
                        *, node_name: str = "/densemtl", rate: float = 1.0,
                        restamp: bool = False, outputs: Iterable[str] | None = None,
                        connect_timeout: float = 60.0, answer_timeout: float = 10.0,
                        drain_seconds: float = 3.0, progress=None) -> LiveRecording:
    """Publish the bag's ``image_topic`` (and ``camera_info_topic``) on the same topic names,
    record the node's outputs under ``node_name`` by input stamp; with ``restamp`` each image
    gets a stamp of its own; ``outputs``: the map fields to record (default: every task's).
    See the module docstring."""
    context = Context()
    rclpy.init(context=context)
    player = _Player(context, node_name, tuple(recorded_outputs() if outputs is None else outputs),
                     image_topic, camera_info_topic,
                     compressed=bag.topics[image_topic].endswith("CompressedImage"))
    player.recording.rate, player.recording.restamped = rate, restamp
    try:
        deadline = time.monotonic() + connect_timeout
        while not player.connected():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no densemtl node answered on {image_topic} -> "
                                   f"{node_name}/... within {connect_timeout:.0f} s; is it "
                                   f"running with image remapped to {image_topic}?")
            time.sleep(0.1)
        time.sleep(1.0)  # the node's side of discovery: it computes only subscribed outputs
        began = time.monotonic()
        _play(bag, image_topic, player, rate, answer_timeout, progress)
        _drain(player, drain_seconds)
        player.recording.wall_seconds = time.monotonic() - began
        return player.recording
    finally:
        player.close()
        rclpy.try_shutdown(context=context)


def _play(bag: BagReader, image_topic: str, player: _Player, rate: float,
          answer_timeout: float, progress) -> None:
    first_log_time = None
    began = time.monotonic()
    images = 0  # position among the images, corrupt ones included (as BagFrames counts)
    for item in bag.messages([topic for topic in player.publishers if topic]):
        position = images
        if item.topic == image_topic:
            images += 1
        if item.message is None:  # corrupt in the bag: the offline path counts it
            continue
        if first_log_time is None:
            first_log_time = item.log_time_ns
        if rate > 0:
            due = began + (item.log_time_ns - first_log_time) / 1e9 / rate
            time.sleep(max(0.0, due - time.monotonic()))
        message = to_ros_message(item.message, item.msgtype)
        if item.topic == image_topic:
            stamp = _stamp_image(player.recording, message, position)
            player.recording.sent[stamp] = time.monotonic()
        player.publishers[item.topic].publish(message)
        if item.topic == image_topic:
            if progress is not None:
                progress.update(1)
            if rate <= 0:
                player.outputs.wait_for_answer(stamp, answer_timeout)


def _stamp_image(recording: LiveRecording, message, position: int) -> int:
    """The stamp the ``position``-th image is published with (set on ``message``)."""
    if recording.restamped:
        sec, nanosec = divmod(position, 1_000_000_000)
        message.header.stamp = Time(sec=sec, nanosec=nanosec)
    recording.stamps[position] = header_stamp_ns(message)
    return recording.stamps[position]


def _drain(player: _Player, quiet_seconds: float) -> None:
    """Wait until every image is answered or no answer came for ``quiet_seconds``; then for
    one more diagnostics report, which covers the last frames."""
    recording = player.recording
    count, changed = len(recording.answered), time.monotonic()
    while len(recording.answered) < len(recording.sent):
        if time.monotonic() - changed > quiet_seconds:
            break
        time.sleep(0.05)
        if len(recording.answered) != count:
            count, changed = len(recording.answered), time.monotonic()
    time.sleep(1.2)
