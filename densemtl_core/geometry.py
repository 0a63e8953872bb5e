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
