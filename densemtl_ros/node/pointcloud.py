"""Depth map + pinhole intrinsics -> sensor_msgs/PointCloud2, coloured and labelled.

Points are in the camera's optical frame (x right, y down, z forward), the frame of the depth
image's header, so the cloud reuses that header. One point per valid pixel (optionally every
``stride``-th row and column), unorganised (height 1) with invalid pixels dropped; the cloud
is marked dense only when every coordinate is finite (a huge depth can still overflow).

Point layout (:data:`POINT_DTYPE`, 20 bytes, every field 4-byte aligned): x, y, z float32;
rgb float32 whose bits are 0x00RRGGBB (the PCL/RViz convention); label uint32. uint32 rather
than uint16 because it is PCL's ``PointXYZRGBL`` label type, so ``pcl::fromROSMsg`` fills that
point type directly, and it keeps every point 4-byte aligned at no cost (a uint16 label would
need two padding bytes to stay aligned anyway).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField
from std_msgs.msg import Header

from .conversions import message_bytes

POINT_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb", "label"],
                        "formats": ["<f4", "<f4", "<f4", "<f4", "<u4"],
                        "offsets": [0, 4, 8, 12, 16]})
"""One point of the clouds made here; the PointFields below are derived from it."""

_NUMPY_TYPES = {PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2",
                PointField.UINT16: "u2", PointField.INT32: "i4", PointField.UINT32: "u4",
                PointField.FLOAT32: "f4", PointField.FLOAT64: "f8"}
"""PointField datatype -> numpy type (without byte order)."""

_DATATYPES = {kind: code for code, kind in _NUMPY_TYPES.items()}

POINT_FIELDS = tuple(
    PointField(name=name, offset=offset, datatype=_DATATYPES[field_type.str[1:]], count=1)
    for name, (field_type, offset) in POINT_DTYPE.fields.items())
"""The PointFields of :data:`POINT_DTYPE` (shared by every cloud made here: read-only)."""


def depth_to_points(depth: np.ndarray, fx: float, fy: float, cx: float, cy: float, *,
                    stride: int = 1, max_depth: float = math.inf
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Back-project the valid pixels of every ``stride``-th row and column.

    Returns (N x 3 float32 points, N x 2 (row, col) pixel indices, to gather colours and
    labels with), in row-major pixel order. A pixel is valid when its depth is finite,
    positive and at most ``max_depth``. Pixel centres are at integer coordinates, like the
    intrinsics scaled by :meth:`densemtl_core.recordings.calibration.Calibration.scaled`.
    """
    valid = _valid_samples(depth, stride, max_depth)
    points = np.stack(_back_project(depth, valid, (fx, fy, cx, cy), stride), axis=1)
    return points, np.argwhere(valid) * stride


def make_pointcloud(header: Header, depth: np.ndarray,
                    camera_info_or_intrinsics: CameraInfo | np.ndarray, *,
                    rgb: np.ndarray | None = None, labels: np.ndarray | None = None,
                    stride: int = 1, max_depth: float = math.inf) -> PointCloud2:
    """The cloud of ``depth`` (HxW metres, NaN/0 where invalid) seen by a pinhole camera.

    ``camera_info_or_intrinsics`` is a CameraInfo of the depth's resolution (its K is used) or
    a 3x3 intrinsic matrix. ``rgb`` (HxWx3 uint8) and ``labels`` (HxW unsigned integers) give
    each point its colour and label; 0 when not given. ``header`` is the depth image's.
    The points are those of :func:`depth_to_points`, selected with its validity mask rather
    than through pixel indices, which is several times faster.
    """
    intrinsics = _intrinsics(camera_info_or_intrinsics, depth.shape)
    _check_per_pixel("rgb", rgb, depth)
    _check_per_pixel("labels", labels, depth)
    valid = _valid_samples(depth, stride, max_depth)
    coordinates = _back_project(depth, valid, intrinsics, stride)
    cloud = np.empty(len(coordinates[0]), POINT_DTYPE)
    for name, values in zip("xyz", coordinates):
        cloud[name] = values
    # Written through a uint32 view: the packed colours are bit patterns, not numbers.
    cloud["rgb"].view("<u4")[:] = (
        0 if rgb is None else _packed_colours(rgb[::stride, ::stride], valid))
    cloud["label"] = 0 if labels is None else labels[::stride, ::stride][valid]
    dense = all(np.isfinite(values).all() for values in coordinates)
    return _cloud_message(header, cloud, dense)


def read_points(msg: PointCloud2) -> np.ndarray:
    """A cloud's points as a numpy structured array (height * width points, row-major), built
    from its fields, point_step and endianness: a view of ``msg.data`` unless rows are padded.

    For consumers without sensor_msgs_py; fields with ``count > 1`` become subarrays.
    """
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({"names": [field.name for field in msg.fields],
                      "formats": [(order + _NUMPY_TYPES[field.datatype], (field.count,))
                                  if field.count > 1 else order + _NUMPY_TYPES[field.datatype]
                                  for field in msg.fields],
                      "offsets": [field.offset for field in msg.fields],
                      "itemsize": msg.point_step})
    if msg.row_step < msg.width * msg.point_step or len(msg.data) < msg.row_step * msg.height:
        raise ValueError(
            f"inconsistent cloud: {msg.height} rows of {msg.width} points of {msg.point_step} "
            f"bytes, row_step {msg.row_step}, {len(msg.data)} bytes of data")
    rows = np.ndarray((msg.height, msg.width), dtype=dtype, buffer=msg.data,
                      strides=(msg.row_step, msg.point_step))
    return rows.reshape(msg.height * msg.width)


def _intrinsics(source: CameraInfo | np.ndarray, shape: tuple[int, ...]
                ) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) from a CameraInfo of the depth's ``shape`` or a 3x3 matrix."""
    if isinstance(source, CameraInfo):
        if (source.height, source.width) != tuple(shape):
            raise ValueError(
                f"camera_info describes {source.height}x{source.width} images but the depth is "
                f"{shape[0]}x{shape[1]}; scale it with Calibration.scaled")
        source = source.k
    matrix = np.asarray(source, dtype=np.float64).reshape(3, 3)
    return matrix[0, 0], matrix[1, 1], matrix[0, 2], matrix[1, 2]


def _valid_samples(depth: np.ndarray, stride: int, max_depth: float) -> np.ndarray:
    """Which pixels of ``depth[::stride, ::stride]`` have a finite depth in (0, max_depth]."""
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"depth must be an HxW floating-point array, got shape {depth.shape} "
                         f"{depth.dtype}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    sampled = depth[::stride, ::stride]
    return np.isfinite(sampled) & (sampled > 0) & (sampled <= max_depth)


def _back_project(depth: np.ndarray, valid: np.ndarray,
                  intrinsics: tuple[float, float, float, float], stride: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z (N float32 each) of the ``valid`` samples of ``depth[::stride, ::stride]``.

    x / z depends on the column only and y / z on the row only: small tables broadcast over
    the samples, then a masked selection keeps the valid ones in row-major order. (Selecting
    N x 3 rows or gathering through pixel indices is ten times slower.)
    """
    fx, fy, cx, cy = intrinsics
    if fx == 0 or fy == 0 or not all(map(math.isfinite, intrinsics)):
        raise ValueError(f"intrinsics must be finite with non-zero focal lengths, got fx={fx}, "
                         f"fy={fy}, cx={cx}, cy={cy}")
    z = depth[::stride, ::stride].astype(np.float32, copy=False)
    x_per_z = ((np.arange(0, depth.shape[1], stride) - cx) / fx).astype(np.float32)
    y_per_z = ((np.arange(0, depth.shape[0], stride) - cy) / fy).astype(np.float32)
    # inf * 0 at invalid samples, dropped here; an overflow makes the cloud not dense
    with np.errstate(invalid="ignore", over="ignore"):
        return (z * x_per_z)[valid], (z * y_per_z[:, None])[valid], z[valid]


_PER_PIXEL = {"rgb": ((3,), np.uint8, "uint8"),
              "labels": ((), np.unsignedinteger, "unsigned integer")}
"""What make_pointcloud's per-pixel inputs must be: (channels, dtype kind, its name)."""


def _check_per_pixel(name: str, values: np.ndarray | None, depth: np.ndarray) -> None:
    """Refuse ``values`` of another size than ``depth`` or of the wrong dtype (None passes)."""
    channels, kind, kind_name = _PER_PIXEL[name]
    if values is not None and (values.shape != depth.shape + channels
                               or not np.issubdtype(values.dtype, kind)):
        expected = "x".join(map(str, depth.shape + channels))
        raise ValueError(f"{name} must be a {expected} {kind_name} array like the depth, got "
                         f"shape {values.shape} {values.dtype}")


def _packed_colours(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The uint32 0x00RRGGBB colours of the ``valid`` pixels of HxWx3 ``rgb``.

    BGRA bytes read as a little-endian uint32 are 0xAARRGGBB; OpenCV writes them, alpha 255
    then cleared (three times faster than shifting and or-ing the selected channels).
    """
    bgra = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    packed = bgra.view("<u4")[..., 0][valid]
    packed &= 0x00FFFFFF
    return packed


def _cloud_message(header: Header, cloud: np.ndarray, dense: bool) -> PointCloud2:
    """An unorganised little-endian PointCloud2 of ``cloud`` (POINT_DTYPE points)."""
    create_cloud = _sensor_msgs_py_create_cloud()
    if create_cloud is not None:
        msg = create_cloud(header, list(POINT_FIELDS), cloud)
    else:
        msg = PointCloud2(header=header, height=1, width=len(cloud), fields=list(POINT_FIELDS),
                          is_bigendian=False, point_step=POINT_DTYPE.itemsize,
                          row_step=POINT_DTYPE.itemsize * len(cloud))
        msg.data = message_bytes(cloud)
    msg.is_dense = dense
    return msg


@functools.lru_cache(maxsize=1)
def _sensor_msgs_py_create_cloud() -> Callable[..., PointCloud2] | None:
    """sensor_msgs_py's create_cloud when installed (ROS installations), else None."""
    try:
        from sensor_msgs_py.point_cloud2 import create_cloud
    except ImportError:
        return None
    return create_cloud
