"""Where the camera was when each image was taken, from a recording's odometry, without ROS.

Monocular self-supervision learns depth only up to scale; the distance the robot travelled
between two frames fixes it, and shows when the robot stood still. Positions come from a
``nav_msgs/Odometry`` topic (``pose.pose.position``) or from ``/tf`` (the translation of the
transform whose child is the given moving frame, e.g. ``odom -> base_link``), stamped by their
headers, and are interpolated linearly at the image stamps. Only distances are used, so the
fixed offset between the odometry's frame and the camera is ignored (exact for translation,
off by the lever arm while the robot turns on the spot).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
TF_TYPE = "tf2_msgs/msg/TFMessage"
ODOMETRY_TYPES = (ODOMETRY_TYPE, TF_TYPE)

MAX_INTERPOLATION_GAP_NS = 1_000_000_000
"""Longest silence of the odometry (ns) across which a position is interpolated: odometry is
published at 10 Hz or more, so a longer silence means it stopped, and the position is unknown."""


def stamped_positions(message, msgtype: str, moving_frame: str | None
                      ) -> list[tuple[int, tuple[float, float, float]]]:
    """(header stamp ns, position x, y, z) of each pose in an Odometry or TFMessage message; a
    TFMessage gives only the transforms whose child is ``moving_frame`` (leading "/" ignored,
    as tf1 frame names may carry one)."""
    if msgtype == ODOMETRY_TYPE:
        position = message.pose.pose.position
        return [(_stamp_ns(message.header), (position.x, position.y, position.z))]
    if msgtype != TF_TYPE:
        raise ValueError(f"odometry must be {' or '.join(ODOMETRY_TYPES)}, got {msgtype}")
    wanted = (moving_frame or "").lstrip("/")
    return [(_stamp_ns(transform.header),
             (transform.transform.translation.x, transform.transform.translation.y,
              transform.transform.translation.z))
            for transform in message.transforms if transform.child_frame_id.lstrip("/") == wanted]


def _stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def positions_at(stamps_ns: Sequence[int],
                 poses: Iterable[tuple[int, tuple[float, float, float]]],
                 max_gap_ns: int = MAX_INTERPOLATION_GAP_NS) -> np.ndarray:
    """(N, 3) float64 positions at ``stamps_ns``, linearly interpolated between the two poses
    around each stamp; NaN where no pose lies on both sides within ``max_gap_ns`` of each other
    (before the first pose, after the last, or across a silence). A pose stamped exactly at an
    image stamp is taken as it is."""
    times = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
    ordered = sorted(poses, key=lambda pose: pose[0])
    result = np.full((len(times), 3), np.nan)
    if not ordered:
        return result
    pose_times = np.array([stamp for stamp, _ in ordered], dtype=np.int64)
    positions = np.array([position for _, position in ordered], dtype=np.float64)
    after = np.searchsorted(pose_times, times, side="left")
    exact = (after < len(pose_times)) & (pose_times[after.clip(max=len(pose_times) - 1)] == times)
    result[exact] = positions[after[exact]]
    inside = ~exact & (after > 0) & (after < len(pose_times))
    right = after[inside]
    left = right - 1
    span = pose_times[right] - pose_times[left]
    close = span <= max_gap_ns
    weight = ((times[inside] - pose_times[left]) / np.maximum(span, 1))[:, None]
    blended = positions[left] + weight * (positions[right] - positions[left])
    indices = np.flatnonzero(inside)
    result[indices[close]] = blended[close]
    return result
