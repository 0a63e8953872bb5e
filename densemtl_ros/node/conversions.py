"""sensor_msgs images and CameraInfo from numpy arrays, for the node's rclpy publishers.

Reading messages into arrays needs no ROS and lives in :mod:`.encodings` (bag evaluation runs
without a ROS installation); its names are re-exported here for the node. Builders copy the
array once into the message (see :func:`message_bytes` for what rclpy's setter adds); output
messages are little-endian (``is_bigendian = 0``). Every refusal raises
:class:`ImageConversionError` saying what is wrong, with the numbers. A CameraInfo is built
from a :class:`.calibration.Calibration`, which reads, checks and rescales any CameraInfo
without ROS (the bag tools write theirs from it too).
"""
from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
from std_msgs.msg import Header

from densemtl_core.recordings.calibration import Calibration
from densemtl_core.recordings.encodings import (ARRAY_ENCODINGS, SUPPORTED_ENCODINGS,
                                                ImageConversionError, as_float32, check_image,
                                                compressed_to_rgb, image_fields, image_to_rgb,
                                                message_to_array)
from densemtl_core.tasks.spec import probability_to_mono8

__all__ = [
    "ARRAY_ENCODINGS", "SUPPORTED_ENCODINGS", "ImageConversionError", "check_image",
    "compressed_to_rgb", "image_to_rgb", "message_to_array",  # from .encodings
    "array_to_msg", "labels_to_msg", "rgb_to_msg", "depth_to_msg", "normals_to_msg",
    "probability_to_msg", "message_bytes", "calibration_to_msg",
]


# ---------------------------------------------------------------------------------------------
# Arrays -> messages


def labels_to_msg(labels: np.ndarray, header: Header) -> Image:
    """HxW class labels as mono8 (uint8) or mono16 (uint16)."""
    encodings = {np.dtype(np.uint8): "mono8", np.dtype(np.uint16): "mono16"}
    encoding = encodings.get(labels.dtype.newbyteorder("="))
    if encoding is None:
        raise ImageConversionError(f"labels must be uint8 or uint16, got {labels.dtype}",
                                   kind="bad array")
    return array_to_msg(labels, header, encoding)


def rgb_to_msg(rgb: np.ndarray, header: Header) -> Image:
    """An HxWx3 uint8 RGB image as rgb8."""
    return array_to_msg(rgb, header, "rgb8")


def depth_to_msg(depth: np.ndarray, header: Header) -> Image:
    """HxW depth in metres (NaN where invalid) as 32FC1, the REP 118 depth image."""
    return array_to_msg(as_float32(depth, "depth"), header, "32FC1")


def normals_to_msg(normals: np.ndarray, header: Header) -> Image:
    """HxWx3 surface normals as 32FC3."""
    return array_to_msg(as_float32(normals, "normals"), header, "32FC3")


def probability_to_msg(probability: np.ndarray, header: Header) -> Image:
    """An HxW probability map as mono8 (see :func:`densemtl_core.tasks.spec.probability_to_mono8`),
    viewable as an image."""
    return array_to_msg(probability_to_mono8(probability), header, "mono8")


def message_bytes(values: np.ndarray) -> array.array:
    """The bytes of ``values`` (C order, native byte order) for a ``uint8[]`` message field.

    An ``array.array('B')`` filled by ``frombytes`` from a uint8 view is one memcpy, and the
    generated setters take it as it is: with ROS_PYTHON_CHECK_FIELDS=1 (and on Humble) without
    the per-element check that bytes or lists get (measured for a 640x480x3 float32 array:
    0.28 ms against 244 ms for bytes); otherwise the setter's ``array.array('B', value)`` adds
    one memcpy, as it does for bytes (0.57 ms either way). ``array.array('B', arr.tobytes())``
    copies three times (0.80 ms).
    """
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(values).reshape(-1).view(np.uint8))
    return data


def array_to_msg(pixels: np.ndarray, header: Header, encoding: str) -> Image:
    """An Image of ``encoding`` holding ``pixels`` (HxW or HxWxC of the encoding's dtype, any
    byte order and strides), little-endian, with ``header`` itself as its header."""
    fields = image_fields(pixels, encoding)
    msg = Image(header=header, height=fields.height, width=fields.width, encoding=encoding,
                is_bigendian=fields.is_bigendian, step=fields.step)
    msg.data = message_bytes(fields.data)  # not through __init__, which copies once more
    return msg


# ---------------------------------------------------------------------------------------------
# CameraInfo


def calibration_to_msg(calibration: Calibration, header: Header) -> CameraInfo:
    """A CameraInfo holding every field of ``calibration``, with ``header`` itself as its
    header."""
    roi = calibration.roi
    return CameraInfo(
        header=header, height=calibration.height, width=calibration.width,
        distortion_model=calibration.distortion_model, d=calibration.d.tolist(),
        k=calibration.k.reshape(-1).tolist(), r=calibration.r.reshape(-1).tolist(),
        p=calibration.p.reshape(-1).tolist(), binning_x=calibration.binning_x,
        binning_y=calibration.binning_y,
        roi=RegionOfInterest(x_offset=roi.x_offset, y_offset=roi.y_offset, height=roi.height,
                             width=roi.width, do_rectify=roi.do_rectify))
