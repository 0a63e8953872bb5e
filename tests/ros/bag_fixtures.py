"""Tiny camera recordings with ground truth chosen by the test, for the densemtl-bag-eval tests.

A :class:`Recording` is a list of frames (RGB image, header stamp) plus ground-truth topics, each
a list of arrays with an encoding and, optionally, its own stamps (to test stamp matching).
It is written as a rosbag2 (MCAP or SQLite 3) through
:class:`densemtl_core.recordings.bags.BagWriter` or as a ROS 1 bag through rosbags' ROS 1
writer; every message is logged at its header stamp, in log-time order, as a recorder would have
written it, unless the header stamps are set apart from the log times (:func:`with_header_stamps`:
a driver that stamps 0, or stamps twice alike).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.typesys import Stores, get_typestore

from densemtl_core.data.synthetic import render_trajectory, scene_seed
from densemtl_core.recordings.bags import BagWriter, calibration_message, image_message
from densemtl_core.recordings.calibration import Calibration
from densemtl_ros.bag_tools.make_bag import CAMERA_INFO_TOPIC, FRAME_ID, IMAGE_TOPIC, START_NS

IMAGE, CAMERA_INFO = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"
PERIOD_NS = 100_000_000
"""10 Hz camera."""
CORRUPT_BYTES = b"\x00\x01\x00\x00garbage that is no Image"


def render_frames(count: int, size: tuple[int, int], seed: int = 1) -> list[dict[str, np.ndarray]]:
    """``count`` frames of one test-split synthetic scene (keys of ``render_trajectory``)."""
    return list(render_trajectory(scene_seed(0, "test", seed), count, size))


def frame_stamps(count: int, period_ns: int = PERIOD_NS) -> list[int]:
    return [START_NS + index * period_ns for index in range(count)]


@dataclass
class Truth:
    """One ground-truth topic: an array per frame in ``encoding``, stamped ``stamps`` (default:
    the frames' stamps) and logged at ``log_times`` (default: the stamps)."""

    encoding: str
    arrays: Sequence[np.ndarray]
    stamps: Sequence[int] | None = None
    log_times: Sequence[int] | None = None


@dataclass
class Recording:
    """Camera frames (rgb8 on IMAGE_TOPIC, camera_info on CAMERA_INFO_TOPIC) and ground truth.

    ``stamps`` are the frames' log times, and their header stamps unless ``header_stamps`` says
    otherwise. camera_info holds ``calibration`` (default: an undistorted pinhole camera with
    ``intrinsics``); every header carries ``frame_id``. ``corrupt_images``: frame indices whose
    image message is written as bytes that do not deserialize (with the frame's log time)."""

    rgbs: Sequence[np.ndarray]
    stamps: Sequence[int]
    intrinsics: np.ndarray
    truth: dict[str, Truth] = field(default_factory=dict)
    corrupt_images: frozenset[int] = frozenset()
    header_stamps: Sequence[int] | None = None
    calibration: Calibration | None = None
    frame_id: str = FRAME_ID

    def topics(self) -> dict[str, str]:
        return {IMAGE_TOPIC: IMAGE, CAMERA_INFO_TOPIC: CAMERA_INFO,
                **{topic: IMAGE for topic in self.truth}}

    def messages(self, store) -> list[tuple[int, str, object]]:
        """(log time, topic, message or raw bytes) of every message, in log-time order (images
        first among equal times, as a camera driver publishes before any ground truth)."""
        height, width = self.rgbs[0].shape[:2]
        calibration = self.calibration or Calibration.pinhole(self.intrinsics, height, width)
        header_stamps = self.stamps if self.header_stamps is None else self.header_stamps
        items = []
        for index, (rgb, time, stamp) in enumerate(zip(self.rgbs, self.stamps, header_stamps)):
            image = (CORRUPT_BYTES if index in self.corrupt_images
                     else image_message(store, rgb, "rgb8", stamp, self.frame_id))
            items.append((time, 0, IMAGE_TOPIC, image))
            items.append((time, 1, CAMERA_INFO_TOPIC, calibration_message(
                store, calibration, stamp, self.frame_id)))
        for order, (topic, truth) in enumerate(self.truth.items(), start=2):
            stamps = self.stamps if truth.stamps is None else truth.stamps
            times = stamps if truth.log_times is None else truth.log_times
            assert len(truth.arrays) == len(stamps) == len(times), topic
            for array, stamp, time in zip(truth.arrays, stamps, times):
                items.append((time, order, topic,
                              image_message(store, array, truth.encoding, stamp, self.frame_id)))
        items.sort(key=lambda item: item[:2])
        return [(stamp, topic, message) for stamp, _, topic, message in items]

    def write(self, path: Path, storage: str = "mcap") -> Path:
        """A rosbag2 folder at ``path``."""
        with BagWriter(path, storage) as bag:
            for topic, msgtype in self.topics().items():
                bag.add_topic(topic, msgtype)
            for stamp, topic, message in self.messages(bag.typestore):
                if isinstance(message, bytes):
                    bag.write_serialized(topic, message, stamp)
                else:
                    bag.write(topic, message, stamp)
        return path

    def write_ros1(self, path: Path) -> Path:
        """A ROS 1 ``.bag`` file at ``path`` (Noetic definitions: Header has a seq field)."""
        store = get_typestore(Stores.ROS1_NOETIC)
        with Ros1Writer(path) as writer:
            connections = {topic: writer.add_connection(topic, msgtype, typestore=store)
                           for topic, msgtype in self.topics().items()}
            for stamp, topic, message in self.messages(store):
                data = (message if isinstance(message, bytes)
                        else store.serialize_ros1(message, connections[topic].msgtype))
                writer.write(connections[topic], stamp, data)
        return path


def with_header_stamps(recording: Recording, stamps: Sequence[int],
                       truth_stamps: dict[str, Sequence[int]] | None = None) -> Recording:
    """``recording`` logged at the same times, with other header stamps: ``stamps`` for the
    images (and camera_info), ``truth_stamps[topic]`` for ground truth (default: ``stamps``),
    as a driver that does not stamp (all 0) or stamps several frames alike records them."""
    truth_stamps = truth_stamps or {}
    truth = {topic: replace(value, stamps=truth_stamps.get(topic, stamps),
                            log_times=value.log_times or value.stamps or recording.stamps)
             for topic, value in recording.truth.items()}
    return replace(recording, header_stamps=list(stamps), truth=truth)


def node_processes() -> list[int]:
    """Process ids of ``densemtl_ros.node`` processes that are children of this process
    (zombies included: a child that was never waited for still shows up)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read()
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and (b"densemtl_ros.node" in command or not command):
            found.append(int(entry))
    return found
