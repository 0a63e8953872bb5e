"""A camera's calibration (the body of a sensor_msgs/CameraInfo) as plain numpy values: read from
any CameraInfo, checked against the images it should describe, and rescaled with them.

Both the node (rclpy messages) and the bag tools (rosbags messages, ROS 1 or 2) describe their
outputs at another resolution than the camera's, so the rescaling is defined once here, without
ROS. K and P follow :func:`densemtl_core.geometry.scale_intrinsics` (pixel centres at integer
coordinates: ``c' = (c + 0.5) * s - 0.5``), the convention training uses; P's Tx and Ty
scale with fx and fy, and an unset (all-zero) P stays unset. D, R and the distortion model
describe the lens and the rectification, not the pixel grid, so they are kept as they are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..geometry import scale_intrinsics

ASPECT_TOLERANCE = 0.01
"""Largest relative difference between the aspect ratios of the calibration and of the image it
is meant for: more, and the intrinsics belong to another image (a crop, another camera)."""


@dataclass(frozen=True)
class RegionOfInterest:
    """sensor_msgs/RegionOfInterest; zero size means the full image."""

    x_offset: int = 0
    y_offset: int = 0
    height: int = 0
    width: int = 0
    do_rectify: bool = False

    def scaled(self, scale_x: float, scale_y: float) -> RegionOfInterest:
        """The region in the image scaled by ``scale_x``, ``scale_y`` (edges at ``x * s``); an
        unset region stays unset."""
        if self.width == 0 or self.height == 0:
            return RegionOfInterest(do_rectify=self.do_rectify)
        left, top = round(self.x_offset * scale_x), round(self.y_offset * scale_y)
        right = round((self.x_offset + self.width) * scale_x)
        bottom = round((self.y_offset + self.height) * scale_y)
        return RegionOfInterest(left, top, bottom - top, right - left, self.do_rectify)


def _matrix(values, shape: tuple[int, int]) -> np.ndarray:
    return np.array(values, dtype=np.float64).reshape(shape)


@dataclass(frozen=True)
class Calibration:
    """Every field of a CameraInfo except its header; ``k``, ``r`` and ``p`` as 3x3, 3x3 and
    3x4 float64 matrices, ``d`` as a vector (its length depends on the distortion model)."""

    height: int
    width: int
    distortion_model: str
    d: np.ndarray
    k: np.ndarray
    r: np.ndarray
    p: np.ndarray
    binning_x: int = 0
    binning_y: int = 0
    roi: RegionOfInterest = field(default_factory=RegionOfInterest)

    @classmethod
    def pinhole(cls, k: np.ndarray, height: int, width: int) -> Calibration:
        """An undistorted pinhole camera: plumb_bob with zero D, identity R, P = [K | 0]."""
        k = np.asarray(k, np.float64)
        if k.shape != (3, 3):
            raise ValueError(f"K must be 3x3, got shape {k.shape}")
        return cls(height, width, "plumb_bob", np.zeros(5), k.copy(), np.eye(3),
                   np.hstack([k, np.zeros((3, 1))]))

    @classmethod
    def of_message(cls, message) -> Calibration:
        """The calibration in a CameraInfo message: rclpy's, or rosbags' ROS 2 or ROS 1 (whose
        matrices are spelled D, K, R, P)."""
        def matrix(name: str):  # ROS 1 spells them in capitals
            return getattr(message, name) if hasattr(message, name) else getattr(
                message, name.upper())
        roi = message.roi
        return cls(
            int(message.height), int(message.width), str(message.distortion_model),
            np.array(matrix("d"), dtype=np.float64).reshape(-1),
            _matrix(matrix("k"), (3, 3)), _matrix(matrix("r"), (3, 3)),
            _matrix(matrix("p"), (3, 4)), int(message.binning_x), int(message.binning_y),
            RegionOfInterest(int(roi.x_offset), int(roi.y_offset), int(roi.height),
                             int(roi.width), bool(roi.do_rectify)))

    def problem(self, image_height: int, image_width: int) -> str | None:
        """Why this calibration cannot describe images of the given size, or None when it can:
        a zero size, a focal length that is not a positive finite number, or another aspect
        ratio than the images' (intrinsics of another picture)."""
        if self.height <= 0 or self.width <= 0:
            return f"camera_info size is {self.height}x{self.width}"
        fx, fy = self.k[0, 0], self.k[1, 1]
        if not (math.isfinite(fx) and math.isfinite(fy) and fx > 0 and fy > 0):
            return f"camera_info focal length is fx {fx:g}, fy {fy:g}"
        if not np.isfinite(self.k).all():
            return "camera_info K is not finite"
        own, image = self.width / self.height, image_width / image_height
        if abs(own - image) > ASPECT_TOLERANCE * image:
            return (f"camera_info is {self.height}x{self.width}, another aspect ratio than the "
                    f"{image_height}x{image_width} image")
        return None

    def scaled(self, height: int, width: int) -> Calibration:
        """The same camera at ``height`` x ``width`` (see the module docstring); binning becomes
        0, as the scaled image is what the intrinsics now describe. Check :meth:`problem` first:
        a zero size cannot be scaled."""
        if height <= 0 or width <= 0 or self.height <= 0 or self.width <= 0:
            raise ValueError(f"cannot scale a {self.height}x{self.width} calibration to "
                             f"{height}x{width}")
        source, target = (self.height, self.width), (height, width)
        scale_x, scale_y = width / self.width, height / self.height
        k = scale_intrinsics(self.k, source, target)
        p = self.p.copy()
        if p.any():
            p[:, :3] = scale_intrinsics(p[:, :3], source, target)
            p[:2, 3] *= (scale_x, scale_y)
        return replace(self, height=height, width=width, k=k, p=p, binning_x=0, binning_y=0,
                       roi=self.roi.scaled(scale_x, scale_y))
