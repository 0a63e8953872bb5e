"""Colour maps: how a person looks at the dense outputs, as HxWx3 uint8 RGB images.

Numpy and OpenCV only (no PIL), so the runtime side (the ROS node, the bag tools) colours
predictions exactly as the evaluator does without loading the picture-writing code of
:mod:`densemtl_core.viz`.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

# A blue -> cyan -> green -> yellow -> red ramp (perceptually ordered, readable in print).
_RAMP_POSITIONS = np.array([0.0, 0.15, 0.35, 0.5, 0.65, 0.85, 1.0])
_RAMP_COLORS = np.array([
    [48, 18, 59], [62, 101, 227], [27, 207, 212], [97, 252, 108],
    [210, 233, 53], [251, 128, 34], [122, 4, 3]], dtype=np.float64)


def apply_colormap(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Map values in [0, 1] to RGB; pixels outside ``valid`` are black."""
    values = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0)
    rgb = np.stack([np.interp(values, _RAMP_POSITIONS, _RAMP_COLORS[:, c]) for c in range(3)], -1)
    rgb = rgb.round().astype(np.uint8)
    if valid is not None:
        rgb[~valid] = 0
    return rgb


def colorize_segmentation(labels: np.ndarray, colors: Sequence[Sequence[int]]) -> np.ndarray:
    """Class ids -> palette colours; ids without a colour (ignore label) are black.

    uint8 labels go through a 256-entry look-up table (OpenCV), several times faster than
    numpy indexing at camera resolution: the ROS node colours every frame."""
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    if labels.dtype == np.uint8 and labels.ndim == 2:
        table = np.zeros((256, 1, 3), dtype=np.uint8)
        table[:len(colors), 0] = colors[:256]
        labels = np.ascontiguousarray(labels)
        return cv2.LUT(cv2.merge([labels, labels, labels]), table)
    palette = np.zeros((max(len(colors), int(labels.max(initial=0)) + 1), 3), dtype=np.uint8)
    palette[:len(colors)] = colors
    return palette[labels.astype(np.int64)]


def overlay_segmentation(rgb: np.ndarray, labels: np.ndarray,
                         colors: Sequence[Sequence[int]], alpha: float) -> np.ndarray:
    """Class colours over the image with weight ``alpha`` (1: colours only), as the ROS node
    publishes ``~/segmentation/color``."""
    colored = colorize_segmentation(labels, colors)
    if alpha >= 1.0:
        return colored
    return cv2.addWeighted(colored, alpha, np.ascontiguousarray(rgb), 1.0 - alpha, 0.0)


def colorize_depth(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Metric depth -> colour on a logarithmic scale, near warm and far cool.

    A log scale keeps contrast both in a 1 m room and down a 50 m street. Invalid pixels (NaN,
    zero or negative) are black.
    """
    valid = np.isfinite(depth) & (depth > 0)
    log_depth = np.zeros_like(depth, dtype=np.float64)
    log_depth[valid] = np.log(np.clip(depth[valid], min_depth, max_depth))
    lo, hi = np.log(min_depth), np.log(max_depth)
    return apply_colormap(1.0 - (log_depth - lo) / (hi - lo), valid)


def colorize_normals(normals: np.ndarray) -> np.ndarray:
    """Unit normals (HxWx3, optical frame) -> RGB with the usual (n + 1) / 2 mapping.

    Zero vectors (invalid) are black.
    """
    normals = np.asarray(normals, dtype=np.float32)
    valid = np.einsum("...k,...k->...", normals, normals) > 0.25  # length above 0.5
    # round(255 * (n + 1) / 2), saturated to uint8, in one OpenCV pass.
    rgb = cv2.convertScaleAbs(np.clip(normals, -1.0, 1.0), alpha=127.5, beta=127.5)
    rgb[~valid] = 0
    return rgb


def colorize_edges(probability: np.ndarray) -> np.ndarray:
    """Edge probability in [0, 1] -> white edges on black."""
    gray = (np.clip(probability, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def blend(base: np.ndarray, overlay: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha`` of the overlay over the base image (both HxWx3 uint8)."""
    mixed = (1.0 - alpha) * base.astype(np.float32) + alpha * overlay.astype(np.float32)
    return mixed.round().astype(np.uint8)
