"""A camera calibration from a YAML file in the ROS calibration format (what
``camera_calibration`` writes and ``camera_info_manager`` reads), without ROS.

Recordings without a camera_info topic, and image folders, need the camera's intrinsics from a
file; this is the format a ROS user already has for their camera::

    image_width: 640
    image_height: 480
    camera_matrix: {rows: 3, cols: 3, data: [fx, 0, cx, 0, fy, cy, 0, 0, 1]}
    distortion_model: plumb_bob                         # optional, as the rest below
    distortion_coefficients: {rows: 1, cols: 5, data: [k1, k2, t1, t2, k3]}
    rectification_matrix: {rows: 3, cols: 3, data: [...]}
    projection_matrix: {rows: 3, cols: 4, data: [...]}

Missing optional entries describe an undistorted pinhole camera (zero D, identity R,
P = [K | 0]).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..config import ConfigError
from .calibration import Calibration

_MAX_FILE_BYTES = 1_000_000
"""A calibration file is a few hundred bytes; anything larger is not one."""


def read_calibration_yaml(path: str | Path) -> Calibration:
    """The calibration in the camera_info YAML file at ``path``; a ConfigError names the file
    and the entry that is missing or malformed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"camera calibration file {path} does not exist")
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise ConfigError(f"{path} is {path.stat().st_size} bytes, too large for a camera "
                          f"calibration file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a camera_info mapping (image_width, image_height, "
                          f"camera_matrix, ...)")
    height, width = (_size(values, key, path) for key in ("image_height", "image_width"))
    k = _matrix(values, "camera_matrix", (3, 3), path)
    if k is None:
        raise ConfigError(f"{path}: camera_matrix is missing (3x3 intrinsics, rows: 3, cols: 3, "
                          f"data: [fx, 0, cx, 0, fy, cy, 0, 0, 1])")
    pinhole = Calibration.pinhole(k, height, width)
    distortion = values.get("distortion_coefficients")
    d = (pinhole.d if distortion is None
         else np.asarray(_data(distortion, "distortion_coefficients", path), np.float64))
    r = _matrix(values, "rectification_matrix", (3, 3), path)
    p = _matrix(values, "projection_matrix", (3, 4), path)
    calibration = Calibration(
        height, width, str(values.get("distortion_model", pinhole.distortion_model)), d, k,
        pinhole.r if r is None else r, pinhole.p if p is None else p)
    if (problem := calibration.problem(height, width)) is not None:
        raise ConfigError(f"{path}: {problem}")
    return calibration


def _size(values: dict[str, Any], key: str, path: Path) -> int:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{path}: {key} must be a positive number of pixels, got {value!r}")
    return value


def _data(entry: Any, key: str, path: Path) -> list[float]:
    data = entry.get("data") if isinstance(entry, dict) else None
    if not isinstance(data, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in data):
        raise ConfigError(f"{path}: {key} must be a mapping with a list of numbers as data, "
                          f"got {entry!r}")
    return data


def _matrix(values: dict[str, Any], key: str, shape: tuple[int, int], path: Path
            ) -> np.ndarray | None:
    """The ``rows`` x ``cols`` matrix of ``key``, or None when the file has no such entry."""
    if key not in values:
        return None
    data = _data(values[key], key, path)
    if len(data) != shape[0] * shape[1]:
        raise ConfigError(f"{path}: {key} must hold {shape[0]}x{shape[1]} = "
                          f"{shape[0] * shape[1]} numbers, got {len(data)}")
    return np.asarray(data, np.float64).reshape(shape)
