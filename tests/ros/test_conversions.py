"""densemtl_ros.conversions against messages built independently from known pixels."""
import array
import io
import struct
import time
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
import rclpy
from PIL import Image as PILImage
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from densemtl_ros.conversions import (ImageConversionError, SUPPORTED_ENCODINGS, check_image,
                                      compressed_to_rgb, depth_to_msg, image_to_rgb,
                                      labels_to_msg, message_to_array, normals_to_msg,
                                      probability_to_msg, rgb_to_msg, scale_camera_info)

MAX_PIXELS = 1920 * 1080
SIZES = [(1, 1), (5, 7), (4, 13), (48, 64)]
"""(height, width): odd widths make rows that are no multiple of 4 bytes."""
PADDINGS = [0, 1, 5]
"""Extra bytes at the end of each row (step - width * bytes per pixel)."""
GARBAGE = 0xAB


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _message(pixels: np.ndarray, encoding: str, padding: int = 0, bigendian: bool = False
             ) -> Image:
    """An Image holding ``pixels`` (HxW or HxWxC, stored in the byte order asked for) with
    ``padding`` garbage bytes after every row."""
    height, width = pixels.shape[:2]
    stored = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = np.ascontiguousarray(stored).view(np.uint8).reshape(height, -1)
    padded = np.full((height, rows.shape[1] + padding), GARBAGE, np.uint8)
    padded[:, :rows.shape[1]] = rows
    return Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian),
                 step=padded.shape[1], data=padded.tobytes())


def _encoded(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """``rgb`` in the channel order of ``encoding`` (a random alpha where it has one)."""
    alpha = _rng(1).integers(0, 256, rgb.shape[:2] + (1,), dtype=np.uint8)
    return {"rgb8": rgb, "bgr8": rgb[..., ::-1],
            "rgba8": np.concatenate([rgb, alpha], axis=2),
            "bgra8": np.concatenate([rgb[..., ::-1], alpha], axis=2)}[encoding]


def _grey_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


@pytest.fixture
def header() -> Header:
    return Header(frame_id="camera_optical_frame")


# ---------------------------------------------------------------------------------------------
# image_to_rgb


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("padding", PADDINGS)
def test_colour_encodings_give_the_exact_rgb_pixels(encoding, size, padding):
    rgb = _rng().integers(0, 256, size + (3,), dtype=np.uint8)
    out = image_to_rgb(_message(_encoded(rgb, encoding), encoding, padding),
                       max_pixels=MAX_PIXELS)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("padding", PADDINGS)
def test_mono8_is_replicated_to_three_channels(size, padding):
    grey = _rng().integers(0, 256, size, dtype=np.uint8)
    out = image_to_rgb(_message(grey, "mono8", padding), max_pixels=MAX_PIXELS)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, _grey_rgb(grey))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", PADDINGS)
def test_mono16_keeps_the_top_eight_bits(bigendian, padding):
    grey = _rng().integers(0, 65536, (6, 9), dtype=np.uint16)
    grey[0, :4] = [0, 255, 256, 65535]
    out = image_to_rgb(_message(grey, "mono16", padding, bigendian), max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(out[0, :4, 0], [0, 0, 1, 255])
    np.testing.assert_array_equal(out, _grey_rgb((grey >> 8).astype(np.uint8)))


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_of_a_12_bit_camera_shifts_by_4_and_clips(bigendian):
    grey = np.array([[0, 15, 16, 4095], [2048, 4096, 5000, 65535]], np.uint16)
    out = image_to_rgb(_message(grey, "mono16", 1, bigendian), max_pixels=MAX_PIXELS,
                       mono16_bits=12)
    np.testing.assert_array_equal(out, _grey_rgb(np.array([[0, 0, 1, 255], [128, 255, 255, 255]],
                                                          np.uint8)))


def test_unpadded_rgb8_is_returned_without_a_copy():
    msg = _message(_rng().integers(0, 256, (4, 6, 3), dtype=np.uint8), "rgb8")
    out = image_to_rgb(msg, max_pixels=MAX_PIXELS)
    assert isinstance(msg.data, array.array)
    assert out.flags.writeable and np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("bits", [7, 17])
def test_mono16_bits_outside_8_to_16_are_refused(bits):
    with pytest.raises(ImageConversionError, match=f"mono16_bits must be in 8..16, got {bits}"):
        image_to_rgb(_message(np.zeros((2, 2), np.uint16), "mono16"), max_pixels=MAX_PIXELS,
                     mono16_bits=bits)


@pytest.mark.parametrize("encoding", ["yuv422", "32FC1", "bayer_rggb8"])
def test_unsupported_encodings_are_named(encoding):
    msg = Image(height=2, width=2, encoding=encoding, step=16, data=bytes(32))
    with pytest.raises(ImageConversionError) as raised:
        image_to_rgb(msg, max_pixels=MAX_PIXELS)
    assert f"unsupported encoding '{encoding}'" in str(raised.value)
    assert raised.value.kind == f"unsupported encoding {encoding}"
    assert all(supported in str(raised.value) for supported in SUPPORTED_ENCODINGS)


def test_a_step_shorter_than_a_row_is_refused():
    msg = Image(height=2, width=4, encoding="rgb8", step=11, data=bytes(24))
    with pytest.raises(ImageConversionError,
                       match="step 11 is less than width 4 x 3 bytes per rgb8 pixel = 12"):
        image_to_rgb(msg, max_pixels=MAX_PIXELS)


def test_truncated_data_is_refused_with_the_missing_byte_count():
    msg = _message(np.zeros((3, 5), np.uint16), "mono16", padding=2)
    msg.data = msg.data[:-7]
    with pytest.raises(ImageConversionError,
                       match=r"data has 29 bytes, step 12 x height 3 needs 36 \(7 missing\)"):
        image_to_rgb(msg, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("height, width", [(0, 4), (4, 0)])
def test_zero_size_is_refused(height, width):
    msg = Image(height=height, width=width, encoding="rgb8", step=3 * width, data=bytes(12))
    with pytest.raises(ImageConversionError, match=f"empty rgb8 image: height {height}"):
        image_to_rgb(msg, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("fields, kind", [
    (dict(encoding="yuv422", height=4, width=4, step=8, data=bytes(32)),
     "unsupported encoding yuv422"),
    (dict(encoding="rgb8", height=4, width=4, step=6, data=bytes(24)), "step too small"),
    (dict(encoding="rgb8", height=4, width=4, step=12, data=bytes(20)), "truncated data"),
    (dict(encoding="rgb8", height=0, width=0, step=0, data=b""), "empty image"),
    (dict(encoding="rgb8", height=8000, width=8000, step=24000, data=bytes(64)),
     "too many pixels"),
])
def test_check_image_refuses_from_the_header_fields_with_a_kind(fields, kind):
    with pytest.raises(ImageConversionError) as raised:
        check_image(Image(**fields), max_pixels=MAX_PIXELS)
    assert raised.value.kind == kind
    check_image(_message(np.zeros((4, 4, 3), np.uint8), "rgb8", padding=1),
                max_pixels=MAX_PIXELS)


def _peak_allocation_of_refusal(function, *args, **kwargs) -> int:
    """Peak bytes allocated while ``function`` refuses its input (numpy reports its buffers
    to tracemalloc)."""
    tracemalloc.start()
    try:
        with pytest.raises(ImageConversionError):
            function(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_huge_header_with_tiny_data_is_refused_without_allocating():
    msg = Image(height=8000, width=8000, encoding="rgb8", step=24000, data=bytes(64))
    with pytest.raises(ImageConversionError, match="8000x8000 = 64000000 pixels, more than "
                                                   f"max_pixels={MAX_PIXELS}"):
        image_to_rgb(msg, max_pixels=MAX_PIXELS)
    # Within max_pixels the length check refuses it, still before anything is allocated.
    with pytest.raises(ImageConversionError, match="191999936 missing"):
        image_to_rgb(msg, max_pixels=10 ** 9)
    assert _peak_allocation_of_refusal(image_to_rgb, msg, max_pixels=MAX_PIXELS) < 100_000
    assert _peak_allocation_of_refusal(image_to_rgb, msg, max_pixels=10 ** 9) < 100_000


# ---------------------------------------------------------------------------------------------
# compressed_to_rgb


def _compressed(image: np.ndarray, extension: str, fmt: str, *params: int) -> CompressedImage:
    ok, encoded = cv2.imencode(extension, image, list(params))
    assert ok
    return CompressedImage(format=fmt, data=encoded.tobytes())


def test_jpeg_round_trip_within_compression_error():
    rows, cols = np.mgrid[0:48, 0:64]
    rgb = np.stack([cols * 4, rows * 5, (rows + cols) * 2], axis=-1).astype(np.uint8)
    msg = _compressed(rgb[..., ::-1], ".jpg", "rgb8; jpeg compressed bgr8",
                      cv2.IMWRITE_JPEG_QUALITY, 95)
    out = compressed_to_rgb(msg, max_pixels=MAX_PIXELS)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    # Swapped channels would be off by up to 250 here.
    assert np.abs(out.astype(int) - rgb).max() <= 8


def test_png_round_trip_is_exact():
    rgb = _rng().integers(0, 256, (17, 23, 3), dtype=np.uint8)
    out = compressed_to_rgb(_compressed(rgb[..., ::-1], ".png", "png"), max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(out, rgb)


def test_png_with_alpha_drops_it():
    rgba = _rng().integers(0, 256, (5, 7, 4), dtype=np.uint8)
    bgra = np.concatenate([rgba[..., 2::-1], rgba[..., 3:]], axis=2)
    out = compressed_to_rgb(_compressed(bgra, ".png", "bgra8; png compressed"),
                            max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_grey_png_is_replicated():
    grey = _rng().integers(0, 256, (9, 11), dtype=np.uint8)
    out = compressed_to_rgb(_compressed(grey, ".png", "mono8; png compressed"),
                            max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(out, _grey_rgb(grey))


def test_16_bit_grey_png_keeps_the_top_eight_bits():
    grey = _rng().integers(0, 65536, (9, 11), dtype=np.uint16)
    out = compressed_to_rgb(_compressed(grey, ".png", "mono16; png compressed"),
                            max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(out, _grey_rgb((grey >> 8).astype(np.uint8)))


@pytest.mark.parametrize("data, reason", [
    (b"", "is not in a known image format"),
    (b"definitely not an image", "is not in a known image format"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "is not in a known image format"),
])
def test_unreadable_data_is_refused(data, reason):
    with pytest.raises(ImageConversionError, match=reason):
        compressed_to_rgb(CompressedImage(format="png", data=data), max_pixels=MAX_PIXELS)


def test_a_valid_header_with_corrupt_pixels_is_refused():
    msg = _compressed(_rng().integers(0, 256, (16, 16, 3), dtype=np.uint8), ".png", "png")
    corrupt = bytearray(msg.data)
    corrupt[60:90] = bytes(30)  # inside the IDAT chunk, after the 33-byte signature + IHDR
    with pytest.raises(ImageConversionError, match=r"cannot decode compressed image \(format "
                                                   r"'png', \d+ bytes\)"):
        compressed_to_rgb(CompressedImage(format="png", data=bytes(corrupt)),
                          max_pixels=MAX_PIXELS)


def test_formats_other_than_jpeg_and_png_are_refused():
    msg = _compressed(np.zeros((4, 4, 3), np.uint8), ".bmp", "bmp")
    with pytest.raises(ImageConversionError, match="holds BMP; supported: JPEG, PNG"):
        compressed_to_rgb(msg, max_pixels=MAX_PIXELS)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG announcing ``width`` x ``height`` RGB pixels without any pixel data: signature,
    IHDR and an empty IDAT (where Pillow stops reading the header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"")


def test_an_over_size_compressed_header_is_refused_before_decoding():
    msg = CompressedImage(format="png", data=_png_header_only(8000, 6000))
    with pytest.raises(ImageConversionError, match=r"6000x8000 = 48000000 pixels, more "
                                                   rf"than max_pixels={MAX_PIXELS}"):
        compressed_to_rgb(msg, max_pixels=MAX_PIXELS)
    assert _peak_allocation_of_refusal(compressed_to_rgb, msg, max_pixels=MAX_PIXELS) < 100_000


def test_pillows_decompression_bomb_limit_refuses_too():
    msg = CompressedImage(format="png", data=_png_header_only(30000, 20000))
    with pytest.raises(ImageConversionError, match="600000000 pixels"):
        compressed_to_rgb(msg, max_pixels=10 ** 9)


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


@pytest.mark.parametrize("encoding, values", [
    ("bgr8", np.arange(60, dtype=np.uint8).reshape(4, 5, 3)),
    ("8UC3", np.arange(60, dtype=np.uint8).reshape(4, 5, 3)),
    ("8UC1", np.arange(20, dtype=np.uint8).reshape(4, 5)),
    ("16UC1", np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000),
    ("32FC1", np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)),
    ("rgba8", np.arange(80, dtype=np.uint8).reshape(4, 5, 4)),
])
@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
def test_message_to_array_honours_step_and_byte_order(encoding, values, padding, bigendian):
    out = message_to_array(_message(values, encoding, padding, bigendian))
    assert out.dtype == values.dtype and out.dtype.isnative and out.flags.c_contiguous
    np.testing.assert_array_equal(out, values)


def test_message_to_array_reuses_the_validation():
    with pytest.raises(ImageConversionError, match="unsupported encoding 'yuv422'"):
        message_to_array(Image(height=1, width=1, encoding="yuv422", step=2, data=bytes(2)))
    with pytest.raises(ImageConversionError, match="4 missing"):
        message_to_array(Image(height=2, width=2, encoding="32FC1", step=8, data=bytes(12)))


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
# scale_camera_info


def _camera_info() -> CameraInfo:
    info = CameraInfo(header=Header(frame_id="camera_optical_frame"), height=480, width=640,
                      distortion_model="plumb_bob", d=[0.1, -0.2, 0.001, 0.002, 0.03],
                      binning_x=1, binning_y=1,
                      roi=RegionOfInterest(x_offset=100, y_offset=50, width=401, height=300,
                                           do_rectify=True))
    info.k = [500.0, 0.0, 319.5, 0.0, 480.0, 239.5, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [510.0, 0.0, 321.5, -51.0, 0.0, 490.0, 241.5, 4.9, 0.0, 0.0, 1.0, 0.0]
    return info


@pytest.mark.parametrize("height, width, k, p", [
    (240, 320, [250.0, 0.0, 159.5, 0.0, 240.0, 119.5, 0.0, 0.0, 1.0],
     [255.0, 0.0, 160.5, -25.5, 0.0, 245.0, 120.5, 2.45, 0.0, 0.0, 1.0, 0.0]),
    (960, 1280, [1000.0, 0.0, 639.5, 0.0, 960.0, 479.5, 0.0, 0.0, 1.0],
     [1020.0, 0.0, 643.5, -102.0, 0.0, 980.0, 483.5, 9.8, 0.0, 0.0, 1.0, 0.0]),
])
def test_halving_and_doubling_scale_k_and_p(height, width, k, p):
    info = _camera_info()
    scaled = scale_camera_info(info, height, width)
    assert (scaled.height, scaled.width) == (height, width)
    np.testing.assert_allclose(scaled.k, k, rtol=1e-12)
    np.testing.assert_allclose(scaled.p, p, rtol=1e-12)
    np.testing.assert_array_equal(scaled.r, info.r)
    assert scaled.header is info.header
    assert scaled.distortion_model == "plumb_bob" and list(scaled.d) == list(info.d)
    assert (scaled.binning_x, scaled.binning_y) == (0, 0)
    np.testing.assert_array_equal(info.k, _camera_info().k)  # the original is left alone


def _project(k, point):
    u, v, w = np.asarray(k, np.float64).reshape(3, 3) @ point
    return np.array([u / w, v / w])


@pytest.mark.parametrize("height, width", [(240, 320), (960, 1280), (300, 500)])
def test_a_projected_point_lands_on_the_scaled_pixel(height, width):
    info = _camera_info()
    scaled = scale_camera_info(info, height, width)
    scale = np.array([width / 640, height / 480])
    for point in ([0.3, -0.2, 2.5], [-1.0, 0.7, 4.0], [0.0, 0.0, 1.0]):
        original = _project(info.k, np.array(point))
        # Pixel centres at integers: the pixel edge at c + 0.5 scales by s.
        np.testing.assert_allclose(_project(scaled.k, np.array(point)),
                                   (original + 0.5) * scale - 0.5, rtol=1e-12)


def test_roi_is_scaled_and_an_unset_roi_stays_unset():
    roi = scale_camera_info(_camera_info(), 240, 320).roi
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height, roi.do_rectify) == (
        50, 25, 200, 150, True)
    info = _camera_info()
    info.roi = RegionOfInterest()
    roi = scale_camera_info(info, 240, 320).roi
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (0, 0, 0, 0)


def test_an_unset_projection_stays_unset():
    info = _camera_info()
    info.p = [0.0] * 12
    assert not any(scale_camera_info(info, 240, 320).p)


@pytest.mark.parametrize("field, value", [("width", 0), ("height", 0), ("k", [0.0] * 9)])
def test_uncalibrated_camera_info_is_refused(field, value):
    info = _camera_info()
    setattr(info, field, value)
    with pytest.raises(ImageConversionError, match="camera info is uncalibrated"):
        scale_camera_info(info, 240, 320)


def test_compressed_max_pixels_is_inclusive():
    buffer = io.BytesIO()
    PILImage.new("RGB", (3, 2), (10, 20, 30)).save(buffer, "PNG")
    msg = CompressedImage(format="png", data=buffer.getvalue())
    np.testing.assert_array_equal(compressed_to_rgb(msg, max_pixels=6),
                                  np.full((2, 3, 3), [10, 20, 30], np.uint8))
    with pytest.raises(ImageConversionError, match="2x3 = 6 pixels, more than max_pixels=5"):
        compressed_to_rgb(msg, max_pixels=5)
