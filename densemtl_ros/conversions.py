"""sensor_msgs images and CameraInfo from numpy arrays, for the node's rclpy publishers.

Reading messages into arrays needs no ROS and lives in :mod:`.encodings` (bag evaluation runs
without a ROS installation); its names are re-exported here for the node. Builders copy the
array once into the message (see :func:`message_bytes` for what rclpy's setter adds); output
messages are little-endian (``is_bigendian = 0``). Every refusal raises
:class:`ImageConversionError` saying what is wrong, with the numbers.
:func:`scale_camera_info` reuses the training library's ``scale_intrinsics`` (torch, which the
node has loaded for the model anyway), so both sides agree on the pixel-centre convention.
"""
from __future__ import annotations

import array

import numpy as np
import torch
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
from std_msgs.msg import Header

from densemtl_core.data.transforms import scale_intrinsics

from .encodings import (ARRAY_ENCODINGS, SUPPORTED_ENCODINGS, ImageConversionError, as_float32,
                        check_image, compressed_to_rgb, image_fields, image_to_rgb,
                        message_to_array, probability_to_mono8)

__all__ = [
    "ARRAY_ENCODINGS", "SUPPORTED_ENCODINGS", "ImageConversionError", "check_image",
    "compressed_to_rgb", "image_to_rgb", "message_to_array",  # from .encodings
    "array_to_msg", "labels_to_msg", "rgb_to_msg", "depth_to_msg", "normals_to_msg",
    "probability_to_msg", "message_bytes", "scale_camera_info",
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
    """An HxW probability map as mono8 (see :func:`.encodings.probability_to_mono8`),
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


def scale_camera_info(info: CameraInfo, height: int, width: int) -> CameraInfo:
    """The same camera as ``info`` (same header, distortion model and D, R) at
    ``height`` x ``width``, for outputs published at another resolution than the input.

    K and P follow :func:`densemtl_core.data.transforms.scale_intrinsics` (pixel centres at
    integer coordinates: ``c' = (c + 0.5) * s - 0.5``); P's Tx and Ty scale with fx and fy, an
    unset (all-zero) P stays unset. Binning is reset to 0, the ROI scaled (edges at ``x * s``).
    """
    if info.width == 0 or info.height == 0 or not any(info.k):
        raise ImageConversionError(
            f"camera info is uncalibrated: width {info.width}, height {info.height}, "
            f"K {list(info.k)}", kind="uncalibrated camera info")
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"target size must be positive, got {height}x{width}",
                                   kind="bad argument")
    source, target = (info.height, info.width), (height, width)
    scale_x, scale_y = width / info.width, height / info.height
    k = scale_intrinsics(torch.tensor(info.k, dtype=torch.float64).view(3, 3), source, target)
    p = torch.tensor(info.p, dtype=torch.float64).view(3, 4)
    if p.any():
        p[:, :3] = scale_intrinsics(p[:, :3], source, target)
        p[:2, 3] *= torch.tensor([scale_x, scale_y], dtype=torch.float64)
    return CameraInfo(header=info.header, height=height, width=width,
                      distortion_model=info.distortion_model, d=list(info.d), r=list(info.r),
                      k=k.flatten().tolist(), p=p.flatten().tolist(),
                      roi=_scaled_roi(info.roi, scale_x, scale_y))


def _scaled_roi(roi: RegionOfInterest, scale_x: float, scale_y: float) -> RegionOfInterest:
    """``roi`` in the scaled image; an unset ROI (zero size: the full image) stays unset."""
    if roi.width == 0 or roi.height == 0:
        return RegionOfInterest(do_rectify=roi.do_rectify)
    left, top = round(roi.x_offset * scale_x), round(roi.y_offset * scale_y)
    right = round((roi.x_offset + roi.width) * scale_x)
    bottom = round((roi.y_offset + roi.height) * scale_y)
    return RegionOfInterest(x_offset=left, y_offset=top, width=right - left,
                            height=bottom - top, do_rectify=roi.do_rectify)
