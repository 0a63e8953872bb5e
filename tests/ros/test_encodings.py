"""densemtl_core.recordings.encodings against messages built independently from known pixels,
both as rclpy builds them (``data`` an ``array.array('B')``) and as a bag reader yields them
(rosbags messages serialised to CDR and deserialised: ``data`` a read-only uint8 numpy view)."""
import array
import io
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CompressedImage, Image

from densemtl_core.recordings.bags import BagWriter, open_bag
from densemtl_core.recordings.encodings import (ARRAY_ENCODINGS, SUPPORTED_ENCODINGS,
                                                ImageConversionError, camera_image_to_rgb,
                                                check_image, compress_rgb, compressed_to_rgb,
                                                image_fields, image_to_rgb, message_to_array)
from densemtl_core.tasks.depth import depth_as_published
from densemtl_core.tasks.spec import probability_to_mono8
from tests.ros.harness import YUV422_BYTE_ORDER, bayer_mosaic, packed_yuv422

MAX_PIXELS = 1920 * 1080
SIZES = [(1, 1), (5, 7), (4, 13), (48, 64)]
"""(height, width): odd widths make rows that are no multiple of 4 bytes."""
PADDINGS = [0, 1, 5]
"""Extra bytes at the end of each row (step - width * bytes per pixel)."""
GARBAGE = 0xAB
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
REPO = Path(__file__).resolve().parents[2]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(params=["rclpy", "rosbags"])
def flavour(request) -> str:
    return request.param


def _as_read_from_a_bag(msg):
    """A rosbags message after a CDR round trip, as AnyReader hands it out."""
    return TYPESTORE.deserialize_cdr(TYPESTORE.serialize_cdr(msg, msg.__msgtype__),
                                     msg.__msgtype__)


def _header():
    types = TYPESTORE.types
    return types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="camera")


def _image(flavour: str, *, height: int, width: int, encoding: str, step: int, data: bytes,
           is_bigendian: int = 0):
    """An Image of ``flavour`` with exactly these fields (nothing validated)."""
    fields = dict(height=height, width=width, encoding=encoding, is_bigendian=is_bigendian,
                  step=step)
    if flavour == "rclpy":
        return Image(**fields, data=data)
    return _as_read_from_a_bag(TYPESTORE.types["sensor_msgs/msg/Image"](
        header=_header(), **fields, data=np.frombuffer(data, np.uint8)))


def _compressed_message(flavour: str, fmt: str, data: bytes):
    if flavour == "rclpy":
        return CompressedImage(format=fmt, data=data)
    return _as_read_from_a_bag(TYPESTORE.types["sensor_msgs/msg/CompressedImage"](
        header=_header(), format=fmt, data=np.frombuffer(data, np.uint8)))


def _message(flavour: str, pixels: np.ndarray, encoding: str, padding: int = 0,
             bigendian: bool = False):
    """An Image holding ``pixels`` (HxW or HxWxC, stored in the byte order asked for) with
    ``padding`` garbage bytes after every row."""
    height, width = pixels.shape[:2]
    stored = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = np.ascontiguousarray(stored).view(np.uint8).reshape(height, -1)
    padded = np.full((height, rows.shape[1] + padding), GARBAGE, np.uint8)
    padded[:, :rows.shape[1]] = rows
    return _image(flavour, height=height, width=width, encoding=encoding,
                  is_bigendian=int(bigendian), step=padded.shape[1], data=padded.tobytes())


def _encoded(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """``rgb`` in the channel order of ``encoding`` (a random alpha where it has one)."""
    alpha = _rng(1).integers(0, 256, rgb.shape[:2] + (1,), dtype=np.uint8)
    return {"rgb8": rgb, "bgr8": rgb[..., ::-1],
            "rgba8": np.concatenate([rgb, alpha], axis=2),
            "bgra8": np.concatenate([rgb[..., ::-1], alpha], axis=2)}[encoding]


def _grey_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


def test_the_bag_tools_import_no_ros():
    code = ("import sys, {modules}; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('rclpy', 'sensor_msgs', 'std_msgs', 'builtin_interfaces')))")

    def ros_modules(*modules: str) -> str:
        command = [sys.executable, "-c", code.format(modules=", ".join(modules))]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert ros_modules("densemtl_core.recordings.encodings", "densemtl_core.recordings.bags",
                       "densemtl_core.recordings.calibration", "densemtl_ros.bag_tools.make_bag") == "[]"
    assert "'sensor_msgs'" in ros_modules("densemtl_ros.node.conversions")  # the check sees ROS


def test_message_data_is_what_each_reader_hands_out(flavour):
    msg = _message(flavour, np.arange(12, dtype=np.uint8).reshape(2, 2, 3), "rgb8")
    if flavour == "rclpy":
        assert isinstance(msg.data, array.array) and msg.data.typecode == "B"
    else:
        assert isinstance(msg.data, np.ndarray) and msg.data.dtype == np.uint8
        assert not msg.data.flags.writeable
    np.testing.assert_array_equal(image_to_rgb(msg, max_pixels=MAX_PIXELS),
                                  np.arange(12).reshape(2, 2, 3))


# ---------------------------------------------------------------------------------------------
# image_to_rgb


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("padding", PADDINGS)
def test_colour_encodings_give_the_exact_rgb_pixels(encoding, size, padding, flavour):
    rgb = _rng().integers(0, 256, size + (3,), dtype=np.uint8)
    out = image_to_rgb(_message(flavour, _encoded(rgb, encoding), encoding, padding),
                       max_pixels=MAX_PIXELS)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("padding", PADDINGS)
def test_mono8_is_replicated_to_three_channels(size, padding, flavour):
    grey = _rng().integers(0, 256, size, dtype=np.uint8)
    out = image_to_rgb(_message(flavour, grey, "mono8", padding), max_pixels=MAX_PIXELS)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, _grey_rgb(grey))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", PADDINGS)
def test_mono16_keeps_the_top_eight_bits(bigendian, padding, flavour):
    grey = _rng().integers(0, 65536, (6, 9), dtype=np.uint16)
    grey[0, :4] = [0, 255, 256, 65535]
    out = image_to_rgb(_message(flavour, grey, "mono16", padding, bigendian),
                       max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(out[0, :4, 0], [0, 0, 1, 255])
    np.testing.assert_array_equal(out, _grey_rgb((grey >> 8).astype(np.uint8)))


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_of_a_12_bit_camera_shifts_by_4_and_clips(bigendian, flavour):
    grey = np.array([[0, 15, 16, 4095], [2048, 4096, 5000, 65535]], np.uint16)
    out = image_to_rgb(_message(flavour, grey, "mono16", 1, bigendian), max_pixels=MAX_PIXELS,
                       mono16_bits=12)
    np.testing.assert_array_equal(out, _grey_rgb(np.array([[0, 0, 1, 255], [128, 255, 255, 255]],
                                                          np.uint8)))


# 4:2:2 YUV: BT.601 video range (Y 16..235, U and V 16..240 around 128), what V4L2 cameras send.
_PRIMARIES = {  # (Y, U, V) -> RGB, the BT.601 video-range reference colours
    (235, 128, 128): (255, 255, 255), (16, 128, 128): (0, 0, 0),
    (81, 90, 240): (255, 0, 0), (145, 54, 34): (0, 255, 0), (41, 240, 110): (0, 0, 255)}


def _bt601_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """RGB of video-range BT.601 Y, U, V (the textbook equations), rounded and clipped."""
    y, u, v = (np.asarray(channel, float) for channel in (y, u, v))
    luma = 1.164 * (y - 16)
    rgb = np.stack([luma + 1.596 * (v - 128), luma - 0.813 * (v - 128) - 0.391 * (u - 128),
                    luma + 2.018 * (u - 128)], axis=-1)
    return np.clip(np.rint(rgb), 0, 255)


def _primaries_yuv422(encoding: str) -> np.ndarray:
    """One row of ``encoding`` pixel pairs, each pair one of the reference colours."""
    yuv = np.array(list(_PRIMARIES), np.uint8)
    return packed_yuv422(np.repeat(yuv[:, 0], 2)[None], yuv[None, :, 1], yuv[None, :, 2],
                         encoding)


_PRIMARIES_RGB = np.repeat(np.array(list(_PRIMARIES.values())), 2, axis=0)[None]


@pytest.mark.parametrize("encoding", sorted(YUV422_BYTE_ORDER))
def test_yuv422_reference_colours(encoding, flavour):
    out = image_to_rgb(_message(flavour, _primaries_yuv422(encoding), encoding),
                       max_pixels=MAX_PIXELS)
    assert np.abs(out.astype(int) - _PRIMARIES_RGB).max() <= 1, out


@pytest.mark.parametrize("encoding", sorted(YUV422_BYTE_ORDER))
@pytest.mark.parametrize("padding", PADDINGS)
def test_yuv422_pixels_share_chroma_in_pairs(encoding, padding, flavour):
    """Each pixel has its own Y; a pair shares U and V, whichever byte order the encoding has."""
    rng = _rng(3)
    y = rng.integers(16, 236, (5, 8))
    u, v = rng.integers(16, 241, (2, 5, 4))
    out = image_to_rgb(_message(flavour, packed_yuv422(y, u, v, encoding), encoding, padding),
                       max_pixels=MAX_PIXELS)
    assert out.shape == (5, 8, 3) and out.flags.c_contiguous
    expected = _bt601_rgb(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))
    assert np.abs(out.astype(int) - expected).max() <= 1


BAYER_PATTERNS = ("rggb", "bggr", "gbrg", "grbg")


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
@pytest.mark.parametrize("bits, bigendian", [(8, False), (16, False), (16, True)])
def test_a_bayer_mosaic_of_a_flat_colour_gives_that_colour(pattern, bits, bigendian, flavour):
    colour = np.array([200, 90, 30], np.uint16)
    flat = np.broadcast_to(colour, (7, 10, 3))
    if bits == 16:
        flat = flat << 8 | 0x5A  # the low byte must not matter
    mosaic = bayer_mosaic(flat.astype(np.uint8 if bits == 8 else np.uint16), pattern)
    encoding = f"bayer_{pattern}{bits}"
    out = image_to_rgb(_message(flavour, mosaic, encoding, 3, bigendian),
                       max_pixels=MAX_PIXELS)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, np.broadcast_to(colour, (7, 10, 3)))


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_bayer_keeps_each_sample_in_its_own_channel(pattern, flavour):
    """Away from the border, demosaicing keeps the colour a pixel sampled and interpolates the
    other two: a pattern read the wrong way round moves the samples to other channels."""
    rgb = _rng(4).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    mosaic = bayer_mosaic(rgb, pattern)
    out = image_to_rgb(_message(flavour, mosaic, f"bayer_{pattern}8"), max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(bayer_mosaic(out, pattern)[1:-1, 1:-1], mosaic[1:-1, 1:-1])


def test_16_bit_bayer_honours_mono16_bits(flavour):
    colour = np.array([4095, 2048, 16], np.uint16)
    mosaic = bayer_mosaic(np.broadcast_to(colour, (4, 6, 3)), "rggb")
    out = image_to_rgb(_message(flavour, mosaic, "bayer_rggb16"), max_pixels=MAX_PIXELS,
                       mono16_bits=12)
    np.testing.assert_array_equal(out, np.broadcast_to(np.array([255, 128, 1]), (4, 6, 3)))


def test_every_supported_encoding_is_tested():
    tested = {"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", *YUV422_BYTE_ORDER,
              *(f"bayer_{pattern}{bits}" for pattern in BAYER_PATTERNS for bits in (8, 16))}
    assert tested == set(SUPPORTED_ENCODINGS)


def test_new_camera_encodings_read_from_a_rosbag2(tmp_path):
    """The bag tools read images with the same functions: a YUYV and a Bayer frame written to
    an MCAP bag and read back decode to their known pixels."""
    yuyv = _primaries_yuv422("yuyv")
    bayer = bayer_mosaic(np.broadcast_to(np.array([200, 90, 30], np.uint8), (4, 6, 3)), "gbrg")
    image_type = TYPESTORE.types["sensor_msgs/msg/Image"]
    with BagWriter(tmp_path / "bag", typestore=TYPESTORE) as writer:
        writer.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        for index, (pixels, encoding) in enumerate([(yuyv, "yuyv"), (bayer, "bayer_gbrg8")]):
            writer.write("/camera/image_raw", image_type(
                header=_header(), height=pixels.shape[0], width=pixels.shape[1],
                encoding=encoding, is_bigendian=0, step=pixels.strides[0],
                data=pixels.reshape(-1)), index + 1)
    with open_bag(tmp_path / "bag", typestore=TYPESTORE) as bag:
        decoded = [camera_image_to_rgb(item.message, compressed=False, max_pixels=MAX_PIXELS)
                   for item in bag.messages(["/camera/image_raw"])]
    assert np.abs(decoded[0].astype(int) - _PRIMARIES_RGB).max() <= 1
    np.testing.assert_array_equal(decoded[1], np.broadcast_to([200, 90, 30], (4, 6, 3)))


def test_unpadded_rgb8_is_returned_without_a_copy(flavour):
    msg = _message(flavour, _rng().integers(0, 256, (4, 6, 3), dtype=np.uint8), "rgb8")
    out = image_to_rgb(msg, max_pixels=MAX_PIXELS)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    # Writable where the message's buffer is: rclpy's array.array, not a deserialized view.
    assert out.flags.writeable == (flavour == "rclpy")


@pytest.mark.parametrize("bits", [7, 17])
def test_mono16_bits_outside_8_to_16_are_refused(bits, flavour):
    with pytest.raises(ImageConversionError, match=f"mono16_bits must be in 8..16, got {bits}"):
        image_to_rgb(_message(flavour, np.zeros((2, 2), np.uint16), "mono16"),
                     max_pixels=MAX_PIXELS, mono16_bits=bits)


@pytest.mark.parametrize("encoding", ["nv12", "32FC1", "bayer_rggb12"])
def test_unsupported_encodings_are_named(encoding, flavour):
    msg = _image(flavour, height=2, width=2, encoding=encoding, step=16, data=bytes(32))
    with pytest.raises(ImageConversionError) as raised:
        image_to_rgb(msg, max_pixels=MAX_PIXELS)
    assert f"unsupported encoding '{encoding}'" in str(raised.value)
    assert (raised.value.kind, raised.value.detail) == ("unsupported encoding", encoding)
    assert all(supported in str(raised.value) for supported in SUPPORTED_ENCODINGS)


def test_the_refusal_key_is_the_same_for_every_unknown_encoding(flavour):
    """The kind counts and throttles refusals: a name in it would let varied bad input
    multiply the keys; the name is the detail, cut to a bounded length."""
    kinds, details = set(), set()
    for name in ("bogus", "x" * 1000, "yuv420"):
        with pytest.raises(ImageConversionError) as raised:
            check_image(_image(flavour, height=2, width=2, encoding=name, step=8,
                               data=bytes(16)), max_pixels=MAX_PIXELS)
        kinds.add(raised.value.kind)
        details.add(raised.value.detail)
        assert len(str(raised.value)) < 500
    assert kinds == {"unsupported encoding"}
    assert details == {"bogus", "x" * 32, "yuv420"}


def test_a_step_shorter_than_a_row_is_refused(flavour):
    msg = _image(flavour, height=2, width=4, encoding="rgb8", step=11, data=bytes(24))
    with pytest.raises(ImageConversionError,
                       match="step 11 is less than width 4 x 3 bytes per rgb8 pixel = 12"):
        image_to_rgb(msg, max_pixels=MAX_PIXELS)


def test_truncated_data_is_refused_with_the_missing_byte_count(flavour):
    msg = _image(flavour, height=3, width=5, encoding="mono16", step=12, data=bytes(29))
    with pytest.raises(ImageConversionError,
                       match=r"data has 29 bytes, step 12 x height 3 needs 36 \(7 missing\)"):
        image_to_rgb(msg, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("height, width", [(0, 4), (4, 0)])
def test_zero_size_is_refused(height, width, flavour):
    msg = _image(flavour, height=height, width=width, encoding="rgb8", step=3 * width,
                 data=bytes(12))
    with pytest.raises(ImageConversionError, match=f"empty rgb8 image: height {height}"):
        image_to_rgb(msg, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("fields, kind", [
    (dict(encoding="nv12", height=4, width=4, step=8, data=bytes(32)),
     "unsupported encoding"),
    (dict(encoding="yuyv", height=4, width=3, step=6, data=bytes(24)),
     "width not a whole pixel group"),
    (dict(encoding="uyvy", height=4, width=4, step=7, data=bytes(28)), "step too small"),
    (dict(encoding="bayer_rggb16", height=4, width=4, step=7, data=bytes(28)),
     "step too small"),
    (dict(encoding="yuv422", height=4, width=4, step=8, data=bytes(31)), "truncated data"),
    (dict(encoding="rgb8", height=4, width=4, step=6, data=bytes(24)), "step too small"),
    (dict(encoding="rgb8", height=4, width=4, step=12, data=bytes(20)), "truncated data"),
    (dict(encoding="rgb8", height=0, width=0, step=0, data=b""), "empty image"),
    (dict(encoding="rgb8", height=8000, width=8000, step=24000, data=bytes(64)),
     "too many pixels"),
])
def test_check_image_refuses_from_the_header_fields_with_a_kind(fields, kind, flavour):
    with pytest.raises(ImageConversionError) as raised:
        check_image(_image(flavour, **fields), max_pixels=MAX_PIXELS)
    assert raised.value.kind == kind
    check_image(_message(flavour, np.zeros((4, 4, 3), np.uint8), "rgb8", padding=1),
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


def test_a_huge_header_with_tiny_data_is_refused_without_allocating(flavour):
    msg = _image(flavour, height=8000, width=8000, encoding="rgb8", step=24000, data=bytes(64))
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


def _compressed(flavour: str, image: np.ndarray, extension: str, fmt: str, *params: int):
    ok, encoded = cv2.imencode(extension, image, list(params))
    assert ok
    return _compressed_message(flavour, fmt, encoded.tobytes())


def test_jpeg_round_trip_within_compression_error(flavour):
    rows, cols = np.mgrid[0:48, 0:64]
    rgb = np.stack([cols * 4, rows * 5, (rows + cols) * 2], axis=-1).astype(np.uint8)
    msg = _compressed(flavour, rgb[..., ::-1], ".jpg", "rgb8; jpeg compressed bgr8",
                      cv2.IMWRITE_JPEG_QUALITY, 95)
    out = compressed_to_rgb(msg, max_pixels=MAX_PIXELS)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    # Swapped channels would be off by up to 250 here.
    assert np.abs(out.astype(int) - rgb).max() <= 8


def test_png_round_trip_is_exact(flavour):
    rgb = _rng().integers(0, 256, (17, 23, 3), dtype=np.uint8)
    out = compressed_to_rgb(_compressed(flavour, rgb[..., ::-1], ".png", "png"),
                            max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(out, rgb)


def test_png_with_alpha_drops_it(flavour):
    rgba = _rng().integers(0, 256, (5, 7, 4), dtype=np.uint8)
    bgra = np.concatenate([rgba[..., 2::-1], rgba[..., 3:]], axis=2)
    out = compressed_to_rgb(_compressed(flavour, bgra, ".png", "bgra8; png compressed"),
                            max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_grey_png_is_replicated(flavour):
    grey = _rng().integers(0, 256, (9, 11), dtype=np.uint8)
    out = compressed_to_rgb(_compressed(flavour, grey, ".png", "mono8; png compressed"),
                            max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(out, _grey_rgb(grey))


def test_16_bit_grey_png_keeps_the_top_eight_bits(flavour):
    grey = _rng().integers(0, 65536, (9, 11), dtype=np.uint16)
    out = compressed_to_rgb(_compressed(flavour, grey, ".png", "mono16; png compressed"),
                            max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(out, _grey_rgb((grey >> 8).astype(np.uint8)))


@pytest.mark.parametrize("data, reason", [
    (b"", "is not in a known image format"),
    (b"definitely not an image", "is not in a known image format"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "is not in a known image format"),
])
def test_unreadable_data_is_refused(data, reason, flavour):
    with pytest.raises(ImageConversionError, match=reason):
        compressed_to_rgb(_compressed_message(flavour, "png", data), max_pixels=MAX_PIXELS)


def test_a_valid_header_with_corrupt_pixels_is_refused(flavour):
    ok, encoded = cv2.imencode(".png", _rng().integers(0, 256, (16, 16, 3), dtype=np.uint8))
    corrupt = bytearray(encoded.tobytes())
    corrupt[60:90] = bytes(30)  # inside the IDAT chunk, after the 33-byte signature + IHDR
    with pytest.raises(ImageConversionError, match=r"cannot decode compressed image \(format "
                                                   r"'png', \d+ bytes\)"):
        compressed_to_rgb(_compressed_message(flavour, "png", bytes(corrupt)),
                          max_pixels=MAX_PIXELS)


def test_formats_other_than_jpeg_and_png_are_refused(flavour):
    msg = _compressed(flavour, np.zeros((4, 4, 3), np.uint8), ".bmp", "bmp")
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


def test_an_over_size_compressed_header_is_refused_before_decoding(flavour):
    msg = _compressed_message(flavour, "png", _png_header_only(8000, 6000))
    with pytest.raises(ImageConversionError, match=r"6000x8000 = 48000000 pixels, more "
                                                   rf"than max_pixels={MAX_PIXELS}"):
        compressed_to_rgb(msg, max_pixels=MAX_PIXELS)
    assert _peak_allocation_of_refusal(compressed_to_rgb, msg, max_pixels=MAX_PIXELS) < 100_000


def test_pillows_decompression_bomb_limit_refuses_too(flavour):
    msg = _compressed_message(flavour, "png", _png_header_only(30000, 20000))
    with pytest.raises(ImageConversionError, match="600000000 pixels"):
        compressed_to_rgb(msg, max_pixels=10 ** 9)


def test_compressed_max_pixels_is_inclusive(flavour):
    buffer = io.BytesIO()
    PILImage.new("RGB", (3, 2), (10, 20, 30)).save(buffer, "PNG")
    msg = _compressed_message(flavour, "png", buffer.getvalue())
    np.testing.assert_array_equal(compressed_to_rgb(msg, max_pixels=6),
                                  np.full((2, 3, 3), [10, 20, 30], np.uint8))
    with pytest.raises(ImageConversionError, match="2x3 = 6 pixels, more than max_pixels=5"):
        compressed_to_rgb(msg, max_pixels=5)


# ---------------------------------------------------------------------------------------------
# message_to_array


@pytest.mark.parametrize("encoding, values", [
    ("bgr8", np.arange(60, dtype=np.uint8).reshape(4, 5, 3)),
    ("8UC3", np.arange(60, dtype=np.uint8).reshape(4, 5, 3)),
    ("8UC1", np.arange(20, dtype=np.uint8).reshape(4, 5)),
    ("16UC1", np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000),
    ("32FC1", np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)),
    ("32FC3", np.linspace(-1, 1, 60, dtype=np.float32).reshape(4, 5, 3)),
    ("rgba8", np.arange(80, dtype=np.uint8).reshape(4, 5, 4)),
])
@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
def test_message_to_array_honours_step_and_byte_order(encoding, values, padding, bigendian,
                                                      flavour):
    out = message_to_array(_message(flavour, values, encoding, padding, bigendian))
    assert out.dtype == values.dtype and out.dtype.isnative and out.flags.c_contiguous
    np.testing.assert_array_equal(out, values)


def test_message_to_array_reuses_the_validation(flavour):
    with pytest.raises(ImageConversionError, match="unsupported encoding 'yuv422'"):
        message_to_array(_image(flavour, height=1, width=1, encoding="yuv422", step=2,
                                data=bytes(2)))
    with pytest.raises(ImageConversionError, match="4 missing"):
        message_to_array(_image(flavour, height=2, width=2, encoding="32FC1", step=8,
                                data=bytes(12)))


# ---------------------------------------------------------------------------------------------
# Arrays -> fields


_FIELD_CASES = [
    ("mono8", np.uint8, (3, 5)), ("mono16", np.uint16, (3, 5)), ("8UC1", np.uint8, (3, 5)),
    ("16UC1", np.uint16, (3, 5)), ("32FC1", np.float32, (3, 5)),
    ("rgb8", np.uint8, (3, 5, 3)), ("bgr8", np.uint8, (3, 5, 3)), ("8UC3", np.uint8, (3, 5, 3)),
    ("32FC3", np.float32, (3, 5, 3)), ("rgba8", np.uint8, (3, 5, 4)),
    ("bgra8", np.uint8, (3, 5, 4)),
]


def test_field_cases_cover_every_array_encoding():
    assert sorted(case[0] for case in _FIELD_CASES) == sorted(ARRAY_ENCODINGS)


@pytest.mark.parametrize("encoding, dtype, shape", _FIELD_CASES)
def test_image_fields_round_trip_through_message_to_array(encoding, dtype, shape, flavour):
    values = _rng().uniform(0, 200, shape).astype(dtype)
    fields = image_fields(values.astype(values.dtype.newbyteorder(">"))[:, ::-1], encoding)
    assert (fields.height, fields.width, fields.encoding, fields.is_bigendian) == (
        3, 5, encoding, 0)
    assert fields.step == values[0].nbytes and fields.data.dtype == np.uint8
    msg = _image(flavour, **fields._replace(data=fields.data.tobytes())._asdict())
    np.testing.assert_array_equal(message_to_array(msg), values[:, ::-1])


def test_image_fields_do_not_copy_contiguous_little_endian_pixels():
    depth = np.ones((3, 4), "<f4")
    assert np.shares_memory(image_fields(depth, "32FC1").data, depth)


@pytest.mark.parametrize("values, encoding, reason", [
    (np.zeros((2, 2, 3), np.float32), "rgb8",
     r"rgb8 needs a HxWx3 uint8 array, got shape \(2, 2, 3\) float32"),
    (np.zeros((2, 2), np.uint8), "rgb8", "rgb8 needs a HxWx3 uint8 array"),
    (np.zeros((2, 2, 4), np.float32), "32FC3", "32FC3 needs a HxWx3 float32 array"),
    (np.zeros((2, 2), np.float64), "32FC1", "32FC1 needs a HxW float32 array, got shape "
                                            r"\(2, 2\) float64"),
    (np.zeros((2, 2), np.uint8), "yuv422", "unsupported encoding 'yuv422'; supported: rgb8"),
])
def test_image_fields_refuse_wrong_arrays(values, encoding, reason):
    with pytest.raises(ImageConversionError, match=reason):
        image_fields(values, encoding)


def test_png_compression_is_lossless_and_jpeg_close(flavour):
    rows, cols = np.mgrid[0:24, 0:32]
    rgb = np.stack([cols * 8, rows * 10, (rows + cols) * 4], axis=-1).astype(np.uint8)
    fmt, data = compress_rgb(rgb, "png")
    assert fmt == "rgb8; png compressed bgr8" and data.dtype == np.uint8
    png = compressed_to_rgb(_compressed_message(flavour, fmt, data.tobytes()),
                            max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(png, rgb)
    fmt, data = compress_rgb(rgb, "jpeg", jpeg_quality=95)
    assert fmt == "rgb8; jpeg compressed bgr8" and bytes(data[:2]) == b"\xff\xd8"
    jpeg = compressed_to_rgb(_compressed_message(flavour, fmt, data.tobytes()),
                             max_pixels=MAX_PIXELS)
    assert np.abs(jpeg.astype(int) - rgb).max() <= 8  # swapped channels: off by up to 240


def test_compress_rgb_refuses_unknown_formats_and_arrays():
    with pytest.raises(ImageConversionError, match="unknown compression 'webp'; supported: "
                                                   "jpeg, png"):
        compress_rgb(np.zeros((2, 2, 3), np.uint8), "webp")
    with pytest.raises(ImageConversionError, match="rgb8 needs a HxWx3 uint8 array"):
        compress_rgb(np.zeros((2, 2), np.uint8), "png")


def test_probability_is_clipped_and_rounded_to_uint8():
    probability = np.array([[-0.5, 0.0, 0.2, 0.501], [1 / 255, 0.999, 1.0, 3.0]], np.float64)
    out = probability_to_mono8(probability)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 0, 51, 128], [1, 255, 255, 255]])
    assert probability[0, 0] == -0.5  # the input is left alone
    with pytest.raises(ImageConversionError, match="probability must be a floating-point"):
        probability_to_mono8(np.zeros((2, 2), np.uint8))


def test_depth_at_the_model_limits_is_published_as_nan():
    depth = np.array([[0.1, 0.10001, 0.1001, 5.0], [79.99, 79.999, 80.0, 95.0]], np.float32)
    out = depth_as_published(depth, (0.1, 80.0))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(out), [[True, True, False, False],
                                                  [False, True, True, True]])
    np.testing.assert_array_equal(out[~np.isnan(out)], depth[[0, 0, 1], [2, 3, 0]])
