"""Which frames of recorded video make training and validation samples: pure functions on stamps.

Self-supervised depth compares a frame with its neighbours, so a sample is a triplet of frames
(t - s, t, t + s) in stamp order, s = ``data.frame_stride``. The rules, and why:

* never across a gap: frames further apart than ``data.max_gap`` seconds (default 3 x the
  recording's median interval) may show another scene, so a gap ends a stretch of video;
* never on a camera standing still: a static pair teaches nothing about depth and, worse,
  rewards any depth at all. Within a stretch a frame is kept only once the camera has moved
  ``data.min_motion`` metres (odometry) since the last kept frame, or, without odometry, once
  the image has changed by ``data.min_image_change`` (mean absolute grey change, summed over
  consecutive frames since the last kept one, so a slow pan still counts); triplets are taken
  among the kept frames, frames where odometry is unknown end a stretch;
* train and validation never share a scene: neighbouring frames are near copies, so a random
  frame split would leak. Each recording is cut into blocks of ``data.split_block`` seconds from
  its first frame; ``data.val_fraction`` of all blocks (of every recording, in order) go to
  validation, spread evenly, the others to training, and a triplet only takes frames of its
  own split's blocks. Blocks never span two recordings.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..config import DataConfig

NS_PER_S = 1_000_000_000
GAP_MEDIAN_FACTOR = 3.0
"""Without ``data.max_gap``, an interval longer than this many median intervals is a gap."""
SPLITS = ("train", "val", "test")
"""``test`` reads the validation blocks: a recording has no third, unseen part."""

FrameRef = tuple[int, int]
"""(recording, frame): a frame by its recording's position and its index in that recording."""


@dataclass(frozen=True)
class Timeline:
    """One recording's frames in stamp order and what tells whether the camera moved.

    ``positions``: (N, 3) metres from odometry, NaN where unknown, None without odometry;
    ``image_change``: (N,) mean absolute grey change (0..1) from frame i - 1 to frame i
    (element 0 unused), None when not measured.
    """

    stamps_ns: np.ndarray
    positions: np.ndarray | None = None
    image_change: np.ndarray | None = None

    def __post_init__(self) -> None:
        stamps = np.asarray(self.stamps_ns, dtype=np.int64)
        if stamps.ndim != 1 or (np.diff(stamps) < 0).any():
            raise ValueError("a timeline's stamps must be a sorted 1-D sequence")
        object.__setattr__(self, "stamps_ns", stamps)
        for name, shape in (("positions", (len(stamps), 3)), ("image_change", (len(stamps),))):
            values = getattr(self, name)
            if values is not None and np.shape(values) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {np.shape(values)}")

    def __len__(self) -> int:
        return len(self.stamps_ns)


@dataclass(frozen=True)
class SplitPlan:
    """The samples of one split: every frame of its blocks (single-frame samples), and the
    triplets (previous, centre, next) for temporal samples."""

    frames: list[FrameRef]
    triplets: list[tuple[FrameRef, FrameRef, FrameRef]]


def gap_limit_ns(stamps_ns: Sequence[int], max_gap_s: float | None) -> float:
    """The longest interval (ns) that is not a gap: ``max_gap_s``, or 3 x the median of the
    positive intervals (infinite for fewer than two distinct stamps)."""
    if max_gap_s is not None:
        return max_gap_s * NS_PER_S
    intervals = np.diff(np.asarray(stamps_ns, dtype=np.int64))
    intervals = intervals[intervals > 0]
    return GAP_MEDIAN_FACTOR * float(np.median(intervals)) if len(intervals) else math.inf


def block_ids(stamps_ns: Sequence[int], block_s: float) -> np.ndarray:
    """The time block of each frame: whole ``block_s`` seconds since the first frame."""
    stamps = np.asarray(stamps_ns, dtype=np.int64)
    if not len(stamps):
        return np.zeros(0, dtype=np.int64)
    return ((stamps - stamps[0]) // (block_s * NS_PER_S)).astype(np.int64)


def held_out_blocks(count: int, fraction: float) -> frozenset[int]:
    """Which of ``count`` blocks are held out for validation: ``round(fraction * count)`` of
    them, at least one and never all when ``fraction`` > 0 and there are two blocks or more,
    spread evenly (block ``floor((k + 0.5) count / n)`` for k < n)."""
    if fraction <= 0 or count < 2:
        return frozenset()
    held = min(count - 1, max(1, round(fraction * count)))
    return frozenset(int((k + 0.5) * count / held) for k in range(held))


def stretches(in_split: np.ndarray, stamps_ns: np.ndarray, gap_ns: float) -> list[np.ndarray]:
    """Runs of consecutive frames that are all ``in_split`` with no interval above ``gap_ns``
    between neighbours, as arrays of frame indices."""
    breaks = np.flatnonzero(np.diff(stamps_ns) > gap_ns) + 1
    runs = []
    for part in np.split(np.arange(len(stamps_ns)), breaks):
        kept = part[in_split[part]]
        if len(kept):
            cuts = np.flatnonzero(np.diff(kept) > 1) + 1  # a frame of the other split between
            runs.extend(np.split(kept, cuts))
    return runs


def moving_frames(frames: np.ndarray, timeline: Timeline, min_motion: float,
                  min_image_change: float) -> list[np.ndarray]:
    """The frames of one stretch where the camera has moved since the previous one kept (see
    the module docstring), as runs: frames without a known position split the stretch."""
    if timeline.positions is not None:
        positions = timeline.positions
        known = np.isfinite(positions[frames]).all(axis=1)
        edges = np.flatnonzero(np.diff(known.astype(np.int8))) + 1
        pieces = [piece for piece, ok in zip(np.split(frames, edges), np.split(known, edges))
                  if ok[0]]
        return [_keep_moving(piece, lambda last, j: float(np.linalg.norm(
            positions[j] - positions[last])), min_motion) for piece in pieces]
    if min_image_change > 0:
        if timeline.image_change is None:
            raise ValueError("min_image_change needs the timeline's image_change")
        summed = np.concatenate([[0.0], np.cumsum(timeline.image_change[1:])])
        return [_keep_moving(frames, lambda last, j: float(summed[j] - summed[last]),
                             min_image_change)]
    return [frames]


def _keep_moving(frames: np.ndarray, moved: Callable[[int, int], float], threshold: float
                 ) -> np.ndarray:
    """The first frame, then each frame ``moved(last kept, frame) >= threshold`` from the last
    one kept."""
    kept: list[int] = []
    for frame in frames.tolist():
        if not kept or moved(kept[-1], frame) >= threshold:
            kept.append(frame)
    return np.asarray(kept, dtype=np.int64)


def triplets(frames: Sequence[int], stride: int) -> list[tuple[int, int, int]]:
    """(frames[i - stride], frames[i], frames[i + stride]) for every i that has both."""
    frames = list(frames)
    return [(frames[i - stride], frames[i], frames[i + stride])
            for i in range(stride, len(frames) - stride)]


def plan_split(timelines: Sequence[Timeline], split: str, cfg: DataConfig) -> SplitPlan:
    """The frames and triplets of ``split`` across ``timelines`` (one per recording, combined in
    order), by the rules of the module docstring with the settings of ``cfg``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    blocks = [block_ids(timeline.stamps_ns, cfg.split_block) for timeline in timelines]
    numbered = [(recording, block) for recording, ids in enumerate(blocks)
                for block in np.unique(ids).tolist()]
    held = held_out_blocks(len(numbered), cfg.val_fraction)
    validation = {numbered[index] for index in held}
    frames: list[FrameRef] = []
    chosen: list[tuple[FrameRef, FrameRef, FrameRef]] = []
    for recording, (timeline, ids) in enumerate(zip(timelines, blocks)):
        in_split = np.array([((recording, block) in validation) == (split != "train")
                             for block in ids.tolist()], dtype=bool)
        frames.extend((recording, int(frame)) for frame in np.flatnonzero(in_split))
        gap = gap_limit_ns(timeline.stamps_ns, cfg.max_gap)
        for stretch in stretches(in_split, timeline.stamps_ns, gap):
            for run in moving_frames(stretch, timeline, cfg.min_motion, cfg.min_image_change):
                chosen.extend(tuple((recording, int(frame)) for frame in triplet)
                              for triplet in triplets(run, cfg.frame_stride))
    return SplitPlan(frames, chosen)
