"""Tiny camera recordings written as real bags for the recording dataset's tests.

A :class:`Shot` is one camera frame with what the test wants beside it (ground truth, the
camera's position, a broken message); :func:`write_bag` records a list of them as a rosbag2
folder (MCAP or SQLite 3, through :class:`BagWriter`) or a ROS 1 ``.bag`` (rosbags' writer,
Noetic definitions), every message logged at its header stamp.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.typesys import Stores, get_typestore

from densemtl_core.recordings.bags import (BagWriter, camera_info_message,
                                           compressed_image_message, image_message,
                                           odometry_message, transform_message)

IMAGE_TOPIC = "/cam/image_raw"
COMPRESSED_TOPIC = "/cam/image_raw/compressed"
CAMERA_INFO_TOPIC = "/cam/camera_info"
TRUTH_TOPICS = {"semseg": "/cam/truth/segmentation", "depth": "/cam/truth/depth",
                "normals": "/cam/truth/normals"}
ODOMETRY_TOPIC, TF_TOPIC = "/odom", "/tf"
MOVING_FRAME = "base_link"
START_NS = 1_700_000_000 * 1_000_000_000
PERIOD_NS = 100_000_000
CORRUPT_BYTES = b"\x00\x01\x00\x00not an image message"
TYPES = {IMAGE_TOPIC: "sensor_msgs/msg/Image", COMPRESSED_TOPIC: "sensor_msgs/msg/CompressedImage",
         CAMERA_INFO_TOPIC: "sensor_msgs/msg/CameraInfo", ODOMETRY_TOPIC: "nav_msgs/msg/Odometry",
         TF_TOPIC: "tf2_msgs/msg/TFMessage",
         **dict.fromkeys(TRUTH_TOPICS.values(), "sensor_msgs/msg/Image")}


def intrinsics(height: int, width: int) -> np.ndarray:
    return np.array([[0.9 * width, 0, width / 2 - 0.3], [0, 0.9 * width, height / 2 + 0.2],
                     [0, 0, 1]])


@dataclass
class Shot:
    """One frame: ``rgb`` stamped ``stamp_ns``; ``truth``: task -> (array, encoding);
    ``position``: the camera's (x, y, z) metres; ``broken``: "truncated" (an Image whose data is
    cut short: it deserializes but does not decode) or "garbage" (bytes that do not
    deserialize); ``log_time_ns``: when the image was logged (default: its stamp)."""

    rgb: np.ndarray
    stamp_ns: int
    truth: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)
    position: tuple[float, float, float] | None = None
    broken: str | None = None
    log_time_ns: int | None = None


def random_rgb(seed: int, size: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def shots(count: int, size: tuple[int, int] = (32, 64), start: int = 0,
          start_ns: int = START_NS, step: float | None = None) -> list[Shot]:
    """``count`` frames of random pixels 10 Hz apart; ``step``: metres moved along x a frame."""
    return [Shot(random_rgb(start + i, size), start_ns + i * PERIOD_NS,
                 position=None if step is None else (step * i, 0.0, 0.0)) for i in range(count)]


def write_bag(path: Path, frames: Sequence[Shot], storage: str = "mcap", *,
              compressed: bool = False, camera_info: bool = True,
              odometry: str | None = None) -> Path:
    """A bag of ``frames`` at ``path``; ``storage`` "mcap", "sqlite3" or "ros1" (then ``path``
    ends in .bag); ``compressed``: PNG CompressedImages on COMPRESSED_TOPIC instead of raw
    ones; ``odometry``: "odometry" (nav_msgs/Odometry on /odom) or "tf" (/tf)."""
    if storage == "ros1":
        store = get_typestore(Stores.ROS1_NOETIC)
        with Ros1Writer(path) as writer:
            connections = {}
            for time, topic, message in _messages(store, frames, compressed, camera_info,
                                                  odometry):
                if topic not in connections:
                    connections[topic] = writer.add_connection(topic, TYPES[topic],
                                                               typestore=store)
                data = message if isinstance(message, bytes) else store.serialize_ros1(
                    message, TYPES[topic])
                writer.write(connections[topic], time, data)
        return path
    with BagWriter(path, storage) as bag:
        added = set()
        for time, topic, message in _messages(bag.typestore, frames, compressed, camera_info,
                                              odometry):
            if topic not in added:
                bag.add_topic(topic, TYPES[topic])
                added.add(topic)
            if isinstance(message, bytes):
                bag.write_serialized(topic, message, time)
            else:
                bag.write(topic, message, time)
    return path


def _messages(store, frames: Sequence[Shot], compressed: bool, camera_info: bool,
              odometry: str | None) -> list[tuple[int, str, object]]:
    frame_id = "camera_optical_frame"
    items = []
    for shot in frames:
        stamp = shot.stamp_ns
        height, width = shot.rgb.shape[:2]
        if shot.broken == "garbage":
            image = CORRUPT_BYTES
        elif compressed:
            image = compressed_image_message(store, shot.rgb, stamp, frame_id, kind="png")
        else:
            image = image_message(store, shot.rgb, "rgb8", stamp, frame_id)
            if shot.broken == "truncated":
                image.data = image.data[: len(image.data) // 2]
        items.append((stamp if shot.log_time_ns is None else shot.log_time_ns,
                      COMPRESSED_TOPIC if compressed else IMAGE_TOPIC, image))
        if camera_info:
            items.append((stamp, CAMERA_INFO_TOPIC, camera_info_message(
                store, intrinsics(height, width), height, width, stamp, frame_id)))
        for task, (array, encoding) in shot.truth.items():
            items.append((stamp, TRUTH_TOPICS[task],
                          image_message(store, array, encoding, stamp, frame_id)))
        if odometry and shot.position is not None:
            pose = np.eye(4)
            pose[:3, 3] = shot.position
            if odometry == "odometry":
                items.append((stamp, ODOMETRY_TOPIC,
                              odometry_message(store, pose, stamp, "odom", MOVING_FRAME)))
            else:
                items.append((stamp, TF_TOPIC,
                              transform_message(store, pose, stamp, "odom", MOVING_FRAME)))
    return items
