"""densemtl_ros.node.conversions: rclpy messages built from arrays, read back and sent over DDS, and
CameraInfo from a calibration (reading messages is tested in test_encodings.py, calibrations
in test_bags.py)."""
import array
import time

import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
from std_msgs.msg import Header

from densemtl_core.recordings import encodings
from densemtl_core.recordings.calibration import Calibration
from densemtl_ros.node import conversions
from densemtl_ros.node.conversions import (ImageConversionError, calibration_to_msg, depth_to_msg,
                                      labels_to_msg, message_to_array, normals_to_msg,
                                      probability_to_msg, rgb_to_msg)
from densemtl_ros.node.outputs import camera_info_for


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture
def header() -> Header:
    return Header(frame_id="camera_optical_frame")


def test_the_ros_free_names_are_re_exported_unchanged():
    moved = ["ARRAY_ENCODINGS", "SUPPORTED_ENCODINGS", "ImageConversionError", "check_image",
             "compressed_to_rgb", "image_to_rgb", "message_to_array"]
    assert set(moved) <= set(conversions.__all__)
    assert all(getattr(conversions, name) is getattr(encodings, name) for name in moved)
    assert all(hasattr(conversions, name) for name in conversions.__all__)


# ---------------------------------------------------------------------------------------------
# Builders and message_to_array


def _builders_cases():
    rng = _rng()
    depth = rng.uniform(0.5, 20.0, (7, 9)).astype(np.float32)
    depth[0, 0] = np.nan
    return [
        (labels_to_msg, rng.integers(0, 40, (7, 9), dtype=np.uint8), "mono8", 9),
        (labels_to_msg, rng.integers(0, 65536, (7, 9), dtype=np.uint16), "mono16", 18),
        (rgb_to_msg, rng.integers(0, 256, (7, 9, 3), dtype=np.uint8), "rgb8", 27),
        (depth_to_msg, depth, "32FC1", 36),
        (normals_to_msg, rng.normal(size=(7, 9, 3)).astype(np.float32), "32FC3", 108),
    ]


@pytest.mark.parametrize("builder, values, encoding, step", _builders_cases())
def test_builders_round_trip_through_message_to_array(builder, values, encoding, step, header):
    msg = builder(values, header)
    assert msg.header is header
    assert (msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian) == (
        encoding, 7, 9, step, 0)
    assert isinstance(msg.data, array.array) and len(msg.data) == step * 7
    out = message_to_array(msg)
    assert out.dtype == values.dtype and out.shape == values.shape
    np.testing.assert_array_equal(out, values)


def test_builders_take_big_endian_and_strided_arrays(header):
    depth = (np.arange(24).reshape(4, 6) / 8).astype(">f4")
    msg = depth_to_msg(depth, header)
    assert msg.is_bigendian == 0
    np.testing.assert_array_equal(np.frombuffer(msg.data, "<f4").reshape(4, 6), depth)
    rgb = _rng().integers(0, 256, (5, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(message_to_array(rgb_to_msg(rgb[:, ::2], header)), rgb[:, ::2])


def test_probability_is_clipped_and_rounded_to_mono8(header):
    probability = np.array([[-0.5, 0.0, 0.2, 0.501], [1 / 255, 0.999, 1.0, 3.0]], np.float32)
    msg = probability_to_msg(probability, header)
    assert msg.encoding == "mono8" and msg.header is header
    np.testing.assert_array_equal(message_to_array(msg), [[0, 0, 51, 128], [1, 255, 255, 255]])


@pytest.mark.parametrize("builder, values, reason", [
    (labels_to_msg, np.zeros((2, 2), np.int64), "labels must be uint8 or uint16, got int64"),
    (rgb_to_msg, np.zeros((2, 2, 3), np.float32), "rgb8 needs a HxWx3 uint8 array, got shape "
                                                  r"\(2, 2, 3\) float32"),
    (rgb_to_msg, np.zeros((2, 2), np.uint8), r"rgb8 needs a HxWx3 uint8 array"),
    (depth_to_msg, np.zeros((2, 2), np.uint16), "depth must be a floating-point array"),
    (normals_to_msg, np.zeros((2, 2, 4), np.float32), "32FC3 needs a HxWx3 float32 array"),
])
def test_builders_refuse_wrong_arrays(builder, values, reason, header):
    with pytest.raises(ImageConversionError, match=reason):
        builder(values, header)


def test_message_to_array_does_not_copy_unpadded_native_data(header):
    msg = depth_to_msg(np.ones((3, 4), np.float32), header)
    assert np.shares_memory(message_to_array(msg), np.frombuffer(msg.data, np.uint8))


def _round_trip_over_dds(msg: Image, topic: str) -> Image:
    """``msg`` as another node's subscription receives it (published until one arrives)."""
    node = Node(f"conversions_test_{topic}")
    received: list[Image] = []
    try:
        publisher = node.create_publisher(Image, topic, 10)
        node.create_subscription(Image, topic, received.append, 10)
        deadline = time.monotonic() + 10.0
        while not received and time.monotonic() < deadline:
            publisher.publish(msg)
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
    assert received, f"nothing received on {topic} within 10 s"
    return received[0]


@pytest.mark.parametrize("builder, values", [
    (normals_to_msg, _rng().normal(size=(31, 17, 3)).astype(np.float32)),
    (labels_to_msg, _rng().integers(0, 65536, (31, 17), dtype=np.uint16)),
])
def test_published_messages_survive_dds(ros, builder, values):
    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 1234, 567
    sent = builder(values, header)
    received = _round_trip_over_dds(sent, f"roundtrip_{sent.encoding.lower()}")
    assert received is not sent
    assert isinstance(received.data, array.array) and received.data.typecode == "B"
    assert (received.header.frame_id, received.header.stamp.sec,
            received.header.stamp.nanosec) == ("camera_optical_frame", 1234, 567)
    assert (received.encoding, received.step) == (sent.encoding, sent.step)
    np.testing.assert_array_equal(message_to_array(received), values)


# ---------------------------------------------------------------------------------------------
# CameraInfo


def _camera_info() -> CameraInfo:
    info = CameraInfo(header=Header(frame_id="camera_optical_frame"), height=480, width=640,
                      distortion_model="plumb_bob", d=[0.1, -0.2, 0.001, 0.002, 0.03],
                      binning_x=1, binning_y=1,
                      roi=RegionOfInterest(x_offset=100, y_offset=50, width=401, height=300,
                                           do_rectify=True))
    info.k = [500.0, 0.0, 319.5, 0.0, 480.0, 239.5, 0.0, 0.0, 1.0]
    info.r = [0.999, -0.0447, 0.0, 0.0447, 0.999, 0.0, 0.0, 0.0, 1.0]
    info.p = [510.0, 0.0, 321.5, -51.0, 0.0, 490.0, 241.5, 4.9, 0.0, 0.0, 1.0, 0.0]
    return info


def _assert_same_camera(built: CameraInfo, info: CameraInfo) -> None:
    for name in ("height", "width", "distortion_model", "binning_x", "binning_y", "roi"):
        assert getattr(built, name) == getattr(info, name), name
    for name in ("d", "k", "r", "p"):
        np.testing.assert_array_equal(getattr(built, name), getattr(info, name))


def test_calibration_to_msg_keeps_every_field_and_takes_the_header(header):
    info = _camera_info()
    built = calibration_to_msg(Calibration.of_message(info), header)
    assert built.header is header
    _assert_same_camera(built, info)


def test_camera_info_for_the_camera_size_is_the_camera_info_with_the_frame_header(header):
    info = _camera_info()
    published = camera_info_for(Calibration.of_message(info), header, 480, 640)
    assert published.header is header
    _assert_same_camera(published, info)


def _project(k, point):
    u, v, w = np.asarray(k, np.float64).reshape(3, 3) @ point
    return np.array([u / w, v / w])


@pytest.mark.parametrize("height, width", [(240, 320), (960, 1280), (300, 500)])
def test_a_projected_point_lands_on_the_scaled_pixel(height, width, header):
    info = _camera_info()
    scaled = camera_info_for(Calibration.of_message(info), header, height, width)
    assert (scaled.height, scaled.width, scaled.distortion_model) == (height, width,
                                                                      "plumb_bob")
    np.testing.assert_array_equal(scaled.d, info.d)
    np.testing.assert_array_equal(scaled.r, info.r)
    scale = np.array([width / 640, height / 480])
    for point in ([0.3, -0.2, 2.5], [-1.0, 0.7, 4.0], [0.0, 0.0, 1.0]):
        original = _project(info.k, np.array(point))
        # Pixel centres at integers: the pixel edge at c + 0.5 scales by s.
        np.testing.assert_allclose(_project(scaled.k, np.array(point)),
                                   (original + 0.5) * scale - 0.5, rtol=1e-12)
