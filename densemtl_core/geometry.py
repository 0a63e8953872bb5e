"""Camera geometry shared by training and the ROS side, in numpy so that rescaling a 3x3
matrix needs no torch."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def scale_intrinsics(intrinsics: np.ndarray, from_size: Sequence[int], to_size: Sequence[int]
                     ) -> np.ndarray:
    """The intrinsics of an image of ``from_size`` (H, W) resized to ``to_size``, with pixel
    centres at integer coordinates (so the principal point moves by the half-pixel offset):
    ``f' = f * s`` and ``c' = (c + 0.5) * s - 0.5``. A new array of the input's dtype."""
    scale = np.array([to_size[1] / from_size[1], to_size[0] / from_size[0]],
                     dtype=intrinsics.dtype)
    scaled = intrinsics.copy()
    scaled[:2, :2] *= scale[:, None]
    scaled[:2, 2] = (intrinsics[:2, 2] + 0.5) * scale - 0.5
    return scaled


def quaternion_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """The unit quaternion (x, y, z, w), w >= 0, of a 3x3 rotation matrix, as ROS messages
    carry orientations. Shepperd's method: the largest of the four candidate components is
    computed first, so the division is well conditioned for every rotation."""
    m = np.asarray(rotation, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"expected a 3x3 rotation matrix, got shape {m.shape}")
    largest = int(np.argmax([np.trace(m), m[0, 0], m[1, 1], m[2, 2]]))
    if largest == 0:
        w = np.sqrt(1.0 + np.trace(m)) / 2
        q = [(m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w),
             (m[1, 0] - m[0, 1]) / (4 * w), w]
    else:
        i = largest - 1
        j, k = (i + 1) % 3, (i + 2) % 3
        q = [0.0, 0.0, 0.0, 0.0]
        q[i] = np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k]) / 2
        q[j] = (m[j, i] + m[i, j]) / (4 * q[i])
        q[k] = (m[k, i] + m[i, k]) / (4 * q[i])
        q[3] = (m[k, j] - m[j, k]) / (4 * q[i])
    quaternion = np.array(q)
    quaternion /= np.linalg.norm(quaternion)
    return -quaternion if quaternion[3] < 0 else quaternion


def rotation_from_quaternion(quaternion: Sequence[float]) -> np.ndarray:
    """The 3x3 rotation matrix of a quaternion (x, y, z, w); it is normalised first, since
    recorded orientations are rounded."""
    q = np.asarray(quaternion, dtype=np.float64)
    norm = np.linalg.norm(q)
    if q.shape != (4,) or not norm > 0:
        raise ValueError(f"expected a non-zero quaternion (x, y, z, w), got {quaternion!r}")
    x, y, z, w = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
