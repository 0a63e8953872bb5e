"""The node's output topics: which exist, which are wanted now, and the messages of a frame.

An output exists when the model has its task and publishes it (a relative depth without a
scale is withheld); it is produced for a frame only when its ``publish.*`` parameter is on and
someone subscribes, and the Predictor is asked only for the tasks those outputs need
(up-sampling a map nobody reads is most of the post-processing cost). Every message carries
the input image's header unchanged; the pixels are :mod:`densemtl_ros.published`'s, which the
bag evaluator scores and records too. The outputs that need camera_info
(:data:`CAMERA_INFO_OUTPUTS`) are produced only with a usable one. The outputs are read from
the task table when a node starts (:func:`output_specs`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from densemtl_core.checkpoint import ModelMetadata
from densemtl_core.recordings.calibration import Calibration

from .conversions import array_to_msg, calibration_to_msg
from .parameters import CAMERA_OUTPUTS, NodeSettings
from .pointcloud import make_pointcloud
from .qos_events import QoSEvents
from ..published import PublishedMaps, image_outputs, published_image, topic_suffix


@dataclass(frozen=True)
class OutputSpec:
    topic: str
    message_type: type
    tasks: tuple[str, ...]  # the model tasks the output is computed from
    needs_camera_info: bool = False


_CAMERA_SPECS: dict[str, OutputSpec] = {
    "camera_info": OutputSpec("~/camera_info", CameraInfo, (), needs_camera_info=True),
    "points": OutputSpec("~/points", PointCloud2, ("depth",), needs_camera_info=True),
}
assert tuple(_CAMERA_SPECS) == CAMERA_OUTPUTS

CAMERA_INFO_OUTPUTS = frozenset(name for name, spec in _CAMERA_SPECS.items()
                                if spec.needs_camera_info)


def output_specs() -> dict[str, OutputSpec]:
    """Every output of the node in :func:`.parameters.outputs`' order: the tasks' images
    (from the task table as it is now), then the calibration and the cloud."""
    specs = {name: OutputSpec(f"~/{topic_suffix(name)}", Image, (spec.name,))
             for name, (spec, _) in image_outputs().items()}
    specs.update(_CAMERA_SPECS)
    return specs


@dataclass(frozen=True)
class FrameOutputs:
    """Everything one frame's outputs are made of, at the output resolution."""

    header: Header
    rgb: np.ndarray
    maps: PublishedMaps
    camera_info: CameraInfo | None


class OutputPublishers:
    """The publishers of one node, and the work of filling them for a frame."""

    def __init__(self, node: LifecycleNode, metadata: ModelMetadata, qos: QoSProfile,
                 withheld_tasks: frozenset[str] = frozenset(),
                 qos_events: QoSEvents | None = None, prefix: str = "~/") -> None:
        """Lifecycle publishers of ``node``: they publish only while it is active.
        ``withheld_tasks``: tasks of the model never to publish, nor any output computed
        from them (a relative depth without a scale, see :mod:`densemtl_ros.depth_units`);
        ``qos_events``: what reports a subscriber with incompatible QoS (rclpy's default
        warning without); ``prefix``: what the topics' names start with, ``~/C/`` for camera C
        of several."""
        self._node = node
        self.metadata = metadata
        self.specs = output_specs()
        tasks = set(metadata.tasks) - withheld_tasks
        self.publishers = {}
        for name, spec in self.specs.items():
            if set(spec.tasks) <= tasks:
                topic = prefix + spec.topic.removeprefix("~/")
                self.publishers[name] = node.create_lifecycle_publisher(
                    spec.message_type, topic, qos,
                    event_callbacks=qos_events.publisher(topic, qos) if qos_events else None)

    def destroy(self) -> None:
        """Remove the publishers from the graph (the node is cleaned up)."""
        for publisher in self.publishers.values():
            self._node.destroy_lifecycle_publisher(publisher)
        self.publishers = {}

    def wanted(self, settings: NodeSettings) -> frozenset[str]:
        """The outputs enabled and subscribed now (those in :data:`CAMERA_INFO_OUTPUTS` can
        be produced only with a usable camera_info)."""
        return frozenset(name for name, publisher in self.publishers.items()
                         if name in settings.publish and publisher.get_subscription_count() > 0)

    def needed_tasks(self, active: frozenset[str]) -> frozenset[str]:
        """Model tasks the Predictor must finish for ``active`` outputs (the cloud's points
        carry class labels when the model segments)."""
        tasks = {task for name in active for task in self.specs[name].tasks}
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
        for name in self.specs:
            if name not in active:
                continue
            began = time.perf_counter()
            message = self._message(name, frame, settings)
            built = time.perf_counter()
            self.publishers[name].publish(message)
            building += built - began
            sending += time.perf_counter() - built
        return building, sending


def camera_info_for(calibration: Calibration | None, header: Header, height: int, width: int
                    ) -> CameraInfo | None:
    """The camera_info of a usable ``calibration`` described at the output resolution, with the
    frame's header."""
    if calibration is None:
        return None
    if (calibration.height, calibration.width) != (height, width):
        calibration = calibration.scaled(height, width)
    return calibration_to_msg(calibration, header)
