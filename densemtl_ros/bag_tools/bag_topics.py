"""Which topic of a recording holds what, for bag evaluation: one topic per role, each checked
against the message types the role needs.

Light on purpose (no torch, no model): the command line checks a bag's topics with it before
anything heavy loads.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from densemtl_core.recordings.bags import BagReader

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
GROUND_TRUTH_TYPES = ("sensor_msgs/msg/Image",)
CAMERA_INFO_TYPES = ("sensor_msgs/msg/CameraInfo",)


@dataclass(frozen=True)
class BagTopics:
    """Which topic holds what; ground-truth topics are optional, keyed by the ground truth's
    field (a task's ``field`` in the task table: ``segmentation``, ``depth``...)."""

    image: str
    camera_info: str | None = None
    ground_truth: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """One topic per role: a ground-truth topic equal to the camera's, or two roles on one
        topic, would silently score nothing or one task in place of another."""
        roles = {"image": self.image, "camera_info": self.camera_info,
                 **{f"{name} ground-truth": topic for name, topic in self.ground_truth.items()}}
        seen: dict[str, str] = {}
        for role, topic in roles.items():
            if topic and topic in seen:
                raise ValueError(f"topic {topic} is given as both the {seen[topic]} and the "
                                 f"{role} topic; each needs a topic of its own")
            if topic:
                seen[topic] = role

    def require(self, bag: BagReader) -> None:
        """Refuse ``bag`` unless it has every topic given, of a type its role accepts."""
        wanted = {self.image: IMAGE_TYPES}
        wanted.update({topic: GROUND_TRUTH_TYPES for topic in self.ground_truth.values()})
        if self.camera_info:
            wanted[self.camera_info] = CAMERA_INFO_TYPES
        bag.require(wanted)
