"""Geometry helpers shared by the data tests, handed out as fixtures."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest


def back_project(depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(H, W, 3) optical-frame points of a depth map (z = depth), pixel centres at integers."""
    rows, cols = np.mgrid[: depth.shape[0], : depth.shape[1]]
    return np.stack([(cols - intrinsics[0, 2]) / intrinsics[0, 0] * depth,
                     (rows - intrinsics[1, 2]) / intrinsics[1, 1] * depth, depth], axis=-1)


def normals_from_depth(depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit normals from central-difference cross products of the back-projected
    points, turned to face the camera; zero on the one-pixel border."""
    points = back_project(depth.astype(np.float64), intrinsics.astype(np.float64))
    along_x = points[1:-1, 2:] - points[1:-1, :-2]
    along_y = points[2:, 1:-1] - points[:-2, 1:-1]
    normals = np.zeros_like(points)
    normals[1:-1, 1:-1] = np.cross(along_x, along_y)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    away = np.sum(normals * points, axis=-1) > 0
    normals[away] *= -1
    return normals


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2 radius + 1)^2 square."""
    padded = np.pad(mask.astype(bool), radius)
    height, width = mask.shape
    out = np.zeros((height, width), dtype=bool)
    for dr in range(2 * radius + 1):
        for dc in range(2 * radius + 1):
            out |= padded[dr:dr + height, dc:dc + width]
    return out


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cosine = np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


@pytest.fixture
def geometry() -> SimpleNamespace:
    """The helpers above, so that both data test files can use them without an import path."""
    return SimpleNamespace(back_project=back_project, normals_from_depth=normals_from_depth,
                           dilate=dilate, angle_deg=angle_deg)
