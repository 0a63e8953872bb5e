"""A test-side camera: publishes images and camera_info to a node, records what comes back
(the rig of :mod:`densemtl_ros.bag_tools.rig`, as one test node).

Everything is real rclpy over Fast DDS; the node under test and this camera spin in one
background executor while the test thread publishes and waits.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from densemtl_ros.bag_tools import rig
from densemtl_ros.bag_tools.rig import CameraPlayer, OutputRecorder, node_outputs

StampKey = int
KEPT_MESSAGES = 32
"""Messages kept per output (arrival times are all kept)."""


def stamp_key(header: Header) -> StampKey:
    """The recorder's key of a stamp: nanoseconds."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def image_message(pixels: np.ndarray, encoding: str, header: Header) -> Image:
    """A sensor_msgs/Image holding ``pixels`` (already in ``encoding``'s channel order)."""
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                 step=pixels.strides[0], data=pixels.tobytes())


YUV422_BYTE_ORDER = {"uyvy": "U0V1", "yuv422": "U0V1", "yuyv": "0U1V", "yuv422_yuy2": "0U1V"}
"""Each 4:2:2 encoding's bytes for a pixel pair, 0 and 1 being the pixels' Y
(sensor_msgs/image_encodings.hpp: "yuv422" is UYVY, "yuv422_yuy2" is YUYV)."""


def packed_yuv422(y: np.ndarray, u: np.ndarray, v: np.ndarray, encoding: str) -> np.ndarray:
    """HxWx2 bytes of a 4:2:2 ``encoding`` holding luma ``y`` (HxW) and chroma ``u``, ``v``
    (one per pixel pair: HxW/2)."""
    parts = {"0": y[:, 0::2], "1": y[:, 1::2], "U": u, "V": v}
    pairs = np.stack([parts[name] for name in YUV422_BYTE_ORDER[encoding]], axis=-1)
    return pairs.astype(np.uint8).reshape(y.shape[0], y.shape[1], 2)


def bayer_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The HxW samples a Bayer sensor with ``pattern`` (its top-left 2x2 block read row by
    row, e.g. "rggb") takes of ``rgb``."""
    mosaic = np.empty(rgb.shape[:2], rgb.dtype)
    for index, colour in enumerate(pattern):
        row, column = divmod(index, 2)
        mosaic[row::2, column::2] = rgb[row::2, column::2, "rgb".index(colour)]
    return mosaic


def camera_info(header: Header, height: int, width: int, focal: float = 100.0) -> CameraInfo:
    info = CameraInfo(header=header, height=height, width=width, distortion_model="plumb_bob")
    info.d = [0.0] * 5
    info.k = [focal, 0.0, (width - 1) / 2, 0.0, focal, (height - 1) / 2, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [focal, 0.0, (width - 1) / 2, 0.0, 0.0, focal, (height - 1) / 2, 0.0,
              0.0, 0.0, 1.0, 0.0]
    return info


class TestCamera(Node):
    """Publishes on ``<prefix>/image_raw`` (or ``/compressed``) and ``<prefix>/camera_info``
    (a :class:`CameraPlayer`); records the outputs of the node living under
    ``node_namespace`` (an :class:`OutputRecorder`: every output by default)."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str, prefix: str, node_namespace: str = "/densemtl",
                 compressed: bool = False, outputs: Iterable[str] | None = None) -> None:
        super().__init__(name)
        suffix = "/image_raw/compressed" if compressed else "/image_raw"
        self.camera = CameraPlayer(self, prefix + suffix, prefix + "/camera_info",
                                   compressed=compressed)
        self.image_publisher = self.camera.image_publisher
        self.recorder = OutputRecorder(self, node_outputs(outputs), node_name=node_namespace,
                                       depth=50, keep=KEPT_MESSAGES)
        self.received, self.arrivals = self.recorder.received, self.recorder.arrivals
        self.diagnostics = self.recorder.diagnostics
        self.outputs_for = self.recorder.outputs_for
        self.send = self.camera.send


class Spinner(rig.Spinner):
    """Spins the node under test and the test camera in a background thread until closed."""

    def __init__(self, *nodes: Node) -> None:
        super().__init__(*nodes, threads=2)


@contextmanager
def running(*nodes: Node) -> Iterator[tuple[Node, ...]]:
    """The node under test and its peers (test cameras, managers), spinning until the block
    ends, then destroyed."""
    spinner = Spinner(*nodes)
    try:
        yield nodes
    finally:
        spinner.close()
        for node in nodes:
            node.destroy_node()


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``condition`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


_next_stamp = [1000]


def fresh_header(frame_id: str = "test_camera_optical") -> Header:
    """A header with a stamp never used before in this process."""
    _next_stamp[0] += 1
    return Header(stamp=Time(sec=_next_stamp[0], nanosec=123_456_789), frame_id=frame_id)


def exchange(camera: TestCamera, make_message: Callable[[Header], object],
             names: Iterable[str], info: Callable[[Header], CameraInfo] | None = None,
             timeout: float = 30.0) -> dict[str, object]:
    """Publish one frame (again every second: best-effort input may lose one) and return the
    node's outputs ``names`` for its stamp."""
    header = fresh_header()
    message = make_message(header)
    key = stamp_key(header)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        camera.send(message, info(header) if info else None)
        resend = time.monotonic() + 1.0
        while time.monotonic() < min(resend, deadline):
            outputs = camera.outputs_for(key, names)
            if outputs is not None:
                return outputs
            time.sleep(0.01)
    raise AssertionError(f"no outputs {sorted(names)} for stamp {key} within {timeout} s; "
                         f"got {[name for name in names if key in camera.received[name]]}")
