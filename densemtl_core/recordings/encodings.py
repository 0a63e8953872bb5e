"""Image messages <-> numpy arrays, without ROS: the pixel side of the node's
``densemtl_ros.node.conversions``.

Bag evaluation and training read recordings with rosbags on machines without a ROS installation,
so nothing here imports rclpy or a message package. Functions work on any object with the fields of
sensor_msgs/Image (``height, width, encoding, is_bigendian, step, data``) or CompressedImage
(``format, data``): rclpy messages, whose ``data`` is an ``array.array('B')``, rosbags messages,
whose ``data`` is a uint8 numpy array (read-only once deserialized), or anything holding bytes.

Built for a node that converts every camera frame (640x480 at 30 Hz and more on a 2-core CPU):
messages are validated from their header fields before any pixel is read, pixels are read
through a zero-copy strided view of ``msg.data`` that honours ``step`` and ``is_bigendian``,
and a conversion to an array makes at most one copy (channel reordering and grey replication
go through OpenCV: 0.02 ms for a 640x480 frame against 1.2 ms for numpy's strided copy).

Every refusal of a message or an array raises :class:`ImageConversionError` saying what is
wrong, with the numbers. Pixels for new messages are laid out little-endian
(``is_bigendian = 0``) by :func:`image_fields`, which the rclpy and the rosbags builders share.
"""
from __future__ import annotations

import functools
import io
import sys
from typing import Any, Literal, NamedTuple, Protocol

import cv2
import numpy as np


class _Layout(NamedTuple):
    """How an encoding stores its pixels."""

    kind: str  # numpy dtype code of one channel (byte order from is_bigendian)
    channels: int  # channels stored per pixel
    block_width: int = 1  # pixels stored together in a row (4:2:2 YUV: a pair sharing U, V)


_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout("u1", 3), "bgr8": _Layout("u1", 3), "rgba8": _Layout("u1", 4),
    "bgra8": _Layout("u1", 4), "mono8": _Layout("u1", 1), "mono16": _Layout("u2", 1),
    "8UC1": _Layout("u1", 1), "8UC3": _Layout("u1", 3), "16UC1": _Layout("u2", 1),
    "32FC1": _Layout("f4", 1), "32FC3": _Layout("f4", 3),
    # 4:2:2 packed YUV, two bytes a pixel. sensor_msgs/image_encodings.hpp names UYVY "uyvy"
    # (formerly "yuv422") and YUYV "yuyv" (formerly "yuv422_yuy2").
    **dict.fromkeys(("uyvy", "yuv422", "yuyv", "yuv422_yuy2"), _Layout("u1", 2, 2)),
    **{f"bayer_{pattern}{bits}": _Layout(kind, 1)
       for pattern in ("rggb", "bggr", "gbrg", "grbg") for bits, kind in ((8, "u1"), (16, "u2"))},
}
"""Encoding -> how its pixels are stored."""

ARRAY_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "16UC1",
                   "32FC1", "32FC3")
"""The encodings :func:`message_to_array` reads and :func:`image_fields` writes."""

_BAYER_TO_RGB = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB,
                 "gbrg": cv2.COLOR_BayerGR2RGB, "grbg": cv2.COLOR_BayerGB2RGB}
"""ROS names a Bayer pattern by its top-left 2x2 block read row by row (rggb: R G over G B),
OpenCV by the second and third pixels of its second row (so ROS's rggb is OpenCV's BG)."""

_TO_RGB: dict[str, int | None] = {
    "rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB, "mono16": cv2.COLOR_GRAY2RGB,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY, "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "yuyv": cv2.COLOR_YUV2RGB_YUYV, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV,
    **{f"bayer_{pattern}{bits}": code for pattern, code in _BAYER_TO_RGB.items()
       for bits in (8, 16)},
}
"""Camera encoding -> the OpenCV conversion that makes it RGB (None: it is), applied once
16-bit samples are reduced to 8 bits. YUV is converted as BT.601 video range (Y 16..235),
what V4L2 cameras send; Bayer is demosaiced bilinearly."""

SUPPORTED_ENCODINGS = tuple(_TO_RGB)
"""The camera encodings :func:`image_to_rgb` accepts."""

_DECODED_TO_RGB = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}
"""cv2.imdecode's channel count -> the conversion to RGB (OpenCV decodes colour as BGR)."""

_COMPRESSED_FORMATS = ("JPEG", "PNG")

_DETAIL_CHARACTERS = 32
"""The most of an input's string that an error shows (a message may hold anything)."""

_COMPRESSED_WRITERS = {"jpeg": ".jpg", "png": ".png"}
"""compress_rgb's formats -> the file extension that selects OpenCV's encoder."""


class ImageMessage(Protocol):
    """The fields of sensor_msgs/Image that conversions read."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: Any  # any buffer: array.array('B') (rclpy), uint8 ndarray (rosbags), bytes


class CompressedImageMessage(Protocol):
    """The fields of sensor_msgs/CompressedImage that conversions read."""

    format: str
    data: Any


class ImageConversionError(ValueError):
    """A message or array that cannot be converted; the text says exactly why. ``kind`` names
    the class of problem in a few fixed words (a key for counting and throttling refusals, e.g.
    "truncated data"), ``detail`` the input's value that varies within it (e.g. the unsupported
    encoding's name), so that varied bad input cannot multiply the keys."""

    def __init__(self, text: str, *, kind: str, detail: str | None = None) -> None:
        super().__init__(text)
        self.kind = kind
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# Messages -> arrays


def check_image(msg: ImageMessage, *, max_pixels: int) -> None:
    """Refuse an Image that :func:`image_to_rgb` would refuse, from its header fields alone
    (cheap enough for a subscription callback)."""
    _checked_layout(msg, SUPPORTED_ENCODINGS, max_pixels)


def image_to_rgb(msg: ImageMessage, *, max_pixels: int, mono16_bits: int = 16) -> np.ndarray:
    """A camera image as a C-contiguous HxWx3 uint8 RGB array (the predictor's input).

    16-bit samples (mono16, 16-bit Bayer) keep bits ``mono16_bits - 8`` to ``mono16_bits - 1``
    (12 for a 12-bit camera), brighter values clip to 255; then the encoding's OpenCV
    conversion makes RGB (see ``_TO_RGB``): mono is replicated to three channels, alpha
    dropped, YUV converted, Bayer demosaiced. An unpadded rgb8 message is returned without a
    copy: the array shares memory with ``msg.data`` (writable for rclpy's ``array.array``,
    read-only for a deserialized rosbags message).
    """
    if not 8 <= mono16_bits <= 16:
        raise ImageConversionError(f"mono16_bits must be in 8..16, got {mono16_bits}",
                                   kind="bad argument")
    dtype, channels = _checked_layout(msg, SUPPORTED_ENCODINGS, max_pixels)
    pixels = _decode(msg, dtype, channels)
    if dtype.itemsize == 2:
        pixels = _to_8bit(pixels, mono16_bits)
    conversion = _TO_RGB[msg.encoding]
    if conversion is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels, conversion)


def compressed_to_rgb(msg: CompressedImageMessage, *, max_pixels: int) -> np.ndarray:
    """A JPEG or PNG CompressedImage as a C-contiguous HxWx3 uint8 RGB array.

    The size is read from the image header before anything is decoded, so an over-large image
    costs no memory. 16-bit PNGs keep their 8 most significant bits.
    """
    width, height = _compressed_size(msg)
    _check_pixel_count("compressed image", height, width, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise ImageConversionError(f"cannot decode {_describe(msg)}: {error}",
                                   kind="corrupt compressed data") from error
    if image is None:
        raise ImageConversionError(f"cannot decode {_describe(msg)}",
                                   kind="corrupt compressed data")
    if image.dtype == np.uint16:
        image = _to_8bit(image, 16)
    channels = 1 if image.ndim == 2 else image.shape[2]
    return cv2.cvtColor(image, _DECODED_TO_RGB[channels])


def camera_image_to_rgb(msg: ImageMessage | CompressedImageMessage, *, compressed: bool,
                        max_pixels: int, mono16_bits: int = 16) -> np.ndarray:
    """A camera message, raw (:func:`image_to_rgb`) or ``compressed``
    (:func:`compressed_to_rgb`), as HxWx3 uint8 RGB."""
    if compressed:
        return compressed_to_rgb(msg, max_pixels=max_pixels)
    return image_to_rgb(msg, max_pixels=max_pixels, mono16_bits=mono16_bits)

def message_to_array(msg: ImageMessage) -> np.ndarray:
    """An Image's pixels as a C-contiguous native-endian array: HxW for one channel, HxWxC
    otherwise, with the encoding's dtype (uint8, uint16 or float32).

    Unpadded native-endian data comes back without a copy, sharing memory with ``msg.data``.
    """
    dtype, channels = _checked_layout(msg, ARRAY_ENCODINGS)
    pixels = np.ascontiguousarray(_pixel_view(msg, dtype, channels),
                                  dtype=dtype.newbyteorder("="))
    return pixels if channels > 1 else pixels.reshape(msg.height, msg.width)


def _checked_layout(msg: ImageMessage, accepted: tuple[str, ...], max_pixels: int | None = None
                    ) -> tuple[np.dtype, int]:
    """(channel dtype in the message's byte order, channels) of a message whose header fields
    describe pixels that are all present; checked before any pixel is touched."""
    layout = _layout(msg.encoding, accepted)
    dtype = np.dtype(layout.kind).newbyteorder(">" if msg.is_bigendian else "<")
    height, width = msg.height, msg.width
    if height == 0 or width == 0:
        raise ImageConversionError(f"empty {msg.encoding} image: height {height}, width {width}",
                                   kind="empty image")
    if max_pixels is not None:
        _check_pixel_count(f"{msg.encoding} image", height, width, max_pixels)
    if width % layout.block_width:
        raise ImageConversionError(
            f"{msg.encoding} stores pixels in groups of {layout.block_width}: width {width} is "
            f"not a multiple of {layout.block_width}", kind="width not a whole pixel group")
    pixel_bytes = layout.channels * dtype.itemsize
    if msg.step < width * pixel_bytes:
        raise ImageConversionError(
            f"step {msg.step} is less than width {width} x {pixel_bytes} bytes per "
            f"{msg.encoding} pixel = {width * pixel_bytes}", kind="step too small")
    needed, present = msg.step * height, len(msg.data)
    if present < needed:
        raise ImageConversionError(
            f"truncated {msg.encoding} image: data has {present} bytes, step {msg.step} x "
            f"height {height} needs {needed} ({needed - present} missing)",
            kind="truncated data")
    return dtype, layout.channels


def _layout(encoding: str, accepted: tuple[str, ...]) -> _Layout:
    """How ``encoding`` stores its pixels, refused unless it is ``accepted``."""
    if encoding not in accepted:
        shown = encoding[:_DETAIL_CHARACTERS]
        cut = f" (cut from {len(encoding)} characters)" if shown != encoding else ""
        raise ImageConversionError(
            f"unsupported encoding {shown!r}{cut}; supported: {', '.join(accepted)}",
            kind="unsupported encoding", detail=shown)
    return _LAYOUTS[encoding]


def _check_pixel_count(what: str, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise ImageConversionError(
            f"{what} is {height}x{width} = {height * width} pixels, more than "
            f"max_pixels={max_pixels}", kind="too many pixels")


def _pixel_view(msg: ImageMessage, dtype: np.dtype, channels: int) -> np.ndarray:
    """A zero-copy HxWxC view of a validated message's pixels (rows ``step`` bytes apart)."""
    return np.ndarray((msg.height, msg.width, channels), dtype=dtype, buffer=msg.data,
                      strides=(msg.step, channels * dtype.itemsize, dtype.itemsize))


def _decode(msg: ImageMessage, dtype: np.dtype, channels: int) -> np.ndarray:
    """The pixels of a validated message as HxWxC, through cv_bridge where it decodes them
    correctly, else through :func:`_pixel_view`.

    cv_bridge's Python decoder computes the row length as ``step // pixel size`` (wrong for
    padding that is not a whole number of pixels) and byte-swaps with
    ``ndarray.newbyteorder``, which numpy 2 removed; those messages take the numpy path.
    """
    bridge = _cv_bridge()
    native_order = bool(msg.is_bigendian) == (sys.byteorder == "big")
    if bridge is None or not native_order or msg.step % (channels * dtype.itemsize):
        return _pixel_view(msg, dtype, channels)
    converter, refusal = bridge
    try:
        decoded = converter.imgmsg_to_cv2(msg, desired_encoding="passthrough")
    except refusal:  # an encoding older cv_bridge releases do not know ("uyvy", "yuyv")
        return _pixel_view(msg, dtype, channels)
    return decoded.reshape(msg.height, msg.width, channels)


@functools.lru_cache(maxsize=1)
def _cv_bridge() -> tuple[Any, type[Exception]] | None:
    """(a CvBridge, the error it raises) when cv_bridge is installed (ROS installations), else
    None; imported on first use, so importing this module never pulls in ROS."""
    try:
        from cv_bridge import CvBridge, CvBridgeError
    except ImportError:
        return None
    return CvBridge(), CvBridgeError


def _to_8bit(pixels: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned ``bits``-bit values as uint8: the top 8 of the ``bits``, larger values clipped."""
    return np.minimum(pixels >> (bits - 8), 255).astype(np.uint8)


def _compressed_size(msg: CompressedImageMessage) -> tuple[int, int]:
    """(width, height) from the JPEG or PNG header alone (Pillow decodes no pixels here).

    Pillow is imported here, on first use: the task table publishes through this module's
    :func:`as_float32`, and running a model loads no picture library."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(msg.data)) as header:
            found, size = header.format, header.size
    except PILImage.UnidentifiedImageError as error:  # its text names the BytesIO object
        raise ImageConversionError(f"{_describe(msg)} is not in a known image format",
                                   kind="corrupt compressed data") from error
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as error:
        raise ImageConversionError(f"cannot read the header of {_describe(msg)}: {error}",
                                   kind="corrupt compressed data") from error
    if found not in _COMPRESSED_FORMATS:
        raise ImageConversionError(
            f"{_describe(msg)} holds {found}; supported: {', '.join(_COMPRESSED_FORMATS)}",
            kind="unsupported compressed format")
    return size


def _describe(msg: CompressedImageMessage) -> str:
    return f"compressed image (format {msg.format!r}, {len(msg.data)} bytes)"


# ---------------------------------------------------------------------------------------------
# Arrays -> message fields


class ImageFields(NamedTuple):
    """The fields of a sensor_msgs/Image but its header; ``data`` is a flat uint8 array that
    may share memory with the array it was made from (each builder copies it into its message
    type's own container)."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


def image_fields(pixels: np.ndarray, encoding: str) -> ImageFields:
    """The Image fields holding ``pixels`` (HxW or HxWxC of the encoding's dtype, any byte
    order and strides) as little-endian rows without padding.

    Contiguous little-endian pixels are not copied, so builders copy exactly once.
    """
    layout = _layout(encoding, ARRAY_ENCODINGS)
    channels, dtype = layout.channels, np.dtype(layout.kind).newbyteorder("<")
    shape_ok = pixels.ndim == 2 if channels == 1 else (
        pixels.ndim == 3 and pixels.shape[2] == channels)
    if not shape_ok or pixels.dtype.newbyteorder("=") != dtype.newbyteorder("="):
        expected = "HxW" if channels == 1 else f"HxWx{channels}"
        raise ImageConversionError(f"{encoding} needs a {expected} {dtype.name} array, got "
                                   f"shape {pixels.shape} {pixels.dtype}", kind="bad array")
    height, width = pixels.shape[:2]
    data = np.ascontiguousarray(pixels, dtype=dtype).reshape(-1).view(np.uint8)
    return ImageFields(height=height, width=width, encoding=encoding, is_bigendian=0,
                       step=width * channels * dtype.itemsize, data=data)


def compress_rgb(rgb: np.ndarray, kind: Literal["jpeg", "png"], *, jpeg_quality: int = 90
                 ) -> tuple[str, np.ndarray]:
    """(CompressedImage format, data) of an HxWx3 uint8 RGB image, as image_transport's
    compressed plugin writes them (the format string says the pixels were bgr8 when encoded)."""
    if kind not in _COMPRESSED_WRITERS:
        raise ImageConversionError(f"unknown compression {kind!r}; supported: "
                                   f"{', '.join(_COMPRESSED_WRITERS)}", kind="bad argument")
    bgr = cv2.cvtColor(image_fields(rgb, "rgb8").data.reshape(rgb.shape), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(_COMPRESSED_WRITERS[kind], bgr,
                               [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if kind == "jpeg" else [])
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {rgb.shape} image as {kind}",
                                   kind="bad array")
    return f"rgb8; {kind} compressed bgr8", encoded.reshape(-1)


def as_float32(values: np.ndarray, what: str) -> np.ndarray:
    """``values`` as float32 (no copy when they are already); integers are refused, as they
    would hide a units mistake (millimetre depth, 0..255 probabilities)."""
    if not np.issubdtype(values.dtype, np.floating):
        raise ImageConversionError(f"{what} must be a floating-point array, got {values.dtype}",
                                   kind="bad array")
    return values.astype(np.float32, copy=False)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An image at another resolution (height, width), area-averaged: the input at the outputs'
    resolution, for overlays and point colours."""
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
