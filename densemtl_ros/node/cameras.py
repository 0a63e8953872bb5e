"""The cameras one node serves: each camera's topics, counters, publishers and calibration.

With the ``cameras`` parameter empty the node serves one camera on today's topics (``image``,
``camera_info``, outputs ``~/segmentation``, ...). Each name ``C`` of ``cameras`` reads
``C/image_raw`` (``C/image_raw/compressed``, the image_transport name of its compressed
stream) and ``C/camera_info``, all relative and remappable, and publishes ``~/C/segmentation``,
``~/C/depth``, ...: one network, N cameras, nothing shared between them but the network.
"""
from __future__ import annotations

from dataclasses import dataclass

from densemtl_core.recordings.calibration import Calibration

from .diagnostics import DiagnosticsReporter
from .outputs import OutputPublishers
from .qos_events import QoSEvents
from .telemetry import Telemetry


@dataclass(frozen=True)
class CameraTopics:
    """A camera's topics before the node resolves them (namespace, remapping)."""

    name: str  # "" for the single camera of a node without ``cameras``
    image: str
    camera_info: str
    output_prefix: str  # the outputs' names start with it: "~/" or "~/C/"

    @classmethod
    def of(cls, name: str) -> "CameraTopics":
        if not name:
            return cls(name="", image="image", camera_info="camera_info", output_prefix="~/")
        return cls(name=name, image=f"{name}/image_raw", camera_info=f"{name}/camera_info",
                   output_prefix=f"~/{name}/")

    @property
    def label(self) -> str:
        """How warnings and /diagnostics name the camera."""
        return self.name or "camera"


class Camera:
    """One camera's state while the node is configured. The subscription callbacks write
    ``calibration``; the processing threads read it (a reference swap, atomic in Python)."""

    def __init__(self, index: int, topics: CameraTopics, image_topic: str,
                 telemetry: Telemetry, qos_events: QoSEvents, outputs: OutputPublishers,
                 reporter: DiagnosticsReporter) -> None:
        self.index = index
        self.topics = topics
        self.image_topic = image_topic  # resolved, with /compressed when subscribed so
        self.telemetry = telemetry
        self.qos_events = qos_events
        self.outputs = outputs
        self.reporter = reporter
        self.calibration: Calibration | None = None  # the latest camera_info's
        self.reported_calibration_problem: str | None = None
