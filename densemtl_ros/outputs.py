"""The node's output topics: which exist, which are wanted now, and the messages of a frame.

An output exists when the model has its task; it is produced for a frame only when its
``publish.*`` parameter is on and someone subscribes, and the Predictor is asked only for the
tasks those outputs need (up-sampling a map nobody reads is most of the post-processing cost).
Every message carries the input image's header unchanged; the pixels are
:mod:`densemtl_ros.published`'s, which the bag evaluator scores and records too.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from densemtl_core.checkpoint import ModelMetadata

from .conversions import array_to_msg, scale_camera_info
from .parameters import OUTPUTS, NodeSettings
from .pointcloud import make_pointcloud
from .published import PublishedMaps, published_image


@dataclass(frozen=True)
class OutputSpec:
    topic: str
    message_type: type
    tasks: tuple[str, ...]  # the model tasks the output is computed from


OUTPUT_SPECS: dict[str, OutputSpec] = {
    "segmentation": OutputSpec("~/segmentation", Image, ("semseg",)),
    "segmentation_color": OutputSpec("~/segmentation/color", Image, ("semseg",)),
    "depth": OutputSpec("~/depth", Image, ("depth",)),
    "normals": OutputSpec("~/normals", Image, ("normals",)),
    "normals_color": OutputSpec("~/normals/color", Image, ("normals",)),
    "edges": OutputSpec("~/edges", Image, ("edges",)),
    "camera_info": OutputSpec("~/camera_info", CameraInfo, ()),
    "points": OutputSpec("~/points", PointCloud2, ("depth",)),
}
assert tuple(OUTPUT_SPECS) == OUTPUTS


@dataclass(frozen=True)
class FrameOutputs:
    """Everything one frame's outputs are made of, at the output resolution."""

    header: Header
    rgb: np.ndarray
    maps: PublishedMaps
    camera_info: CameraInfo | None


class OutputPublishers:
    """The publishers of one node, and the work of filling them for a frame."""

    def __init__(self, node: Node, metadata: ModelMetadata, qos: QoSProfile) -> None:
        self.metadata = metadata
        tasks = set(metadata.tasks)
        self.publishers = {
            name: node.create_publisher(spec.message_type, spec.topic, qos)
            for name, spec in OUTPUT_SPECS.items() if set(spec.tasks) <= tasks}

    def active(self, settings: NodeSettings, have_camera_info: bool) -> frozenset[str]:
        """The outputs to produce now: enabled, subscribed and computable."""
        active = {name for name, publisher in self.publishers.items()
                  if name in settings.publish and publisher.get_subscription_count() > 0}
        if not have_camera_info:
            active -= {"camera_info", "points"}
        return frozenset(active)

    def needed_tasks(self, active: frozenset[str]) -> frozenset[str]:
        """Model tasks the Predictor must finish for ``active`` outputs (the cloud's points
        carry class labels when the model segments)."""
        tasks = {task for name in active for task in OUTPUT_SPECS[name].tasks}
        if "points" in active and "semseg" in self.metadata.tasks:
            tasks.add("semseg")
        return frozenset(tasks)

    def _message(self, name: str, frame: FrameOutputs, settings: NodeSettings):
        if name == "camera_info":
            return frame.camera_info
        if name == "points":
            return make_pointcloud(frame.header, frame.maps.depth, frame.camera_info,
                                   rgb=frame.rgb, labels=frame.maps.segmentation,
                                   stride=settings.points_stride,
                                   max_depth=settings.points_max_depth)
        pixels, encoding = published_image(name, frame.maps, frame.rgb,
                                           self.metadata.class_colors, settings.overlay_alpha)
        return array_to_msg(pixels, frame.header, encoding)

    def publish(self, active: frozenset[str], frame: FrameOutputs, settings: NodeSettings
                ) -> tuple[float, float]:
        """Build and publish the ``active`` outputs of one frame; returns the seconds spent
        building messages and publishing them."""
        building = sending = 0.0
        for name in OUTPUTS:
            if name not in active:
                continue
            began = time.perf_counter()
            message = self._message(name, frame, settings)
            built = time.perf_counter()
            self.publishers[name].publish(message)
            building += built - began
            sending += time.perf_counter() - built
        return building, sending


def camera_info_for(info: CameraInfo | None, header: Header, height: int, width: int
                    ) -> CameraInfo | None:
    """The latest camera_info described at the output resolution, with the frame's header."""
    if info is None:
        return None
    if (info.height, info.width) != (height, width):
        info = scale_camera_info(info, height, width)
    else:
        info = copy.copy(info)  # the stored message is shared with the subscription thread
    info.header = header
    return info
