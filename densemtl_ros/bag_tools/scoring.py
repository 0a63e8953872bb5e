"""Scoring the node's published maps against ground truth recorded in a bag.

``densemtl-bag-eval`` scores frames two ways: by running the model on the bag's images, and by
replaying the bag through the running node. Both must give the same numbers, so everything here
works on the maps *as the node publishes them* (labels uint8/uint16, depth float32 metres with
NaN where invalid, unit normals HxWx3, edges uint8 0..255) and never on raw network outputs.
The metrics themselves are ``densemtl_core.metrics`` meters, built exactly as ``densemtl-eval``
builds them, so dataset metrics are comparable with a checkpoint's recorded metrics.

No ROS imports: this module is numpy, torch and densemtl_core only, and is tested on its own.
Beside it: the label mapping (:mod:`densemtl_core.recordings.label_map`), the pairing by stamp
(:mod:`densemtl_core.recordings.stamp_matching`) and the report written from a scorer
(:mod:`.report`).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from densemtl_core.checkpoint import ModelMetadata
from densemtl_core.metrics import Meter
from densemtl_core.tasks import TASKS, TaskMaps

from ..published import PublishedMaps

NOTHING_TO_SCORE = "no task has both a prediction and ground truth"
NO_VALID_TRUTH = "no valid ground-truth pixel (segmentation: no label among the model's classes)"
"""The skip reasons :meth:`FrameScorer.score` records by itself."""


class GroundTruth(TaskMaps):
    """One frame's ground truth at the resolution of the published maps, a field per task of
    the table (its ``field``); each map optional.

    ``segmentation``: HxW model class ids (see
    :class:`~densemtl_core.recordings.label_map.LabelMapping`),
    ``IGNORE_INDEX`` where unknown; ``depth``: float32 HxW metres, NaN or <= 0 where invalid;
    ``normals``: float32 HxWx3, zero vectors where invalid; ``edges``: uint8 HxW in {0, 1} (bags
    have no edge topic, so only a caller that derives edges fills it).
    """


@dataclass(frozen=True)
class FrameScore:
    """One scored frame: the caller's frame index, its stamp, and metrics per scored task."""

    index: int
    stamp_ns: int
    metrics: dict[str, dict[str, float]]


@dataclass(frozen=True)
class SkippedFrame:
    """A frame left out of the scores, and why (counted per reason in the report)."""

    index: int
    stamp_ns: int
    reason: str


def _add_states(total: Meter, increment: Meter) -> None:
    """Meter states are additive, so folding in one frame's meter equals feeding its data."""
    extra = increment.state()
    total.load_state({name: value + extra[name] for name, value in total.state().items()})


class FrameScorer:
    """Scores frames one at a time and accumulates dataset metrics over all of them.

    Each frame is scored by fresh meters (its own metrics), whose states are then added to the
    dataset meters, so dataset metrics are those of ``densemtl_core.metrics`` fed every frame
    (confusion-matrix mIoU, per-image depth means averaged over images), not means of per-frame
    metrics. Meters are built as ``densemtl-eval`` builds them (``TASKS[task].make_meter``).

    Depth adds ``coverage``: the fraction of valid ground-truth pixels (inside the meter's
    depth range) that have a prediction (not NaN); the other depth metrics use only those.
    """

    def __init__(self, metadata: ModelMetadata, depth_units: str | None = None) -> None:
        """``depth_units``: those of the depth maps it is given, by default the model's; a
        relative depth is scored with per-image median scaling (the depth meter's)."""
        model = metadata.config.model
        self._model = replace(model, depth_units=depth_units) if depth_units else model
        self.tasks: tuple[str, ...] = self._model.tasks
        self._meters = {task: TASKS[task].make_meter(self._model) for task in self.tasks}
        self._depth_pixels = np.zeros(2, dtype=np.int64)  # (predicted, valid) ground truth
        self.frames: list[FrameScore] = []
        self.skipped: list[SkippedFrame] = []

    def score(self, index: int, stamp_ns: int, maps: PublishedMaps, truth: GroundTruth
              ) -> dict[str, dict[str, float]]:
        """Score the model's tasks that have both a map and ground truth; the frame's metrics.

        Maps and ground truth must have the same shape (resizing is the caller's job). A task
        counts as scored only where its ground truth has a valid pixel (one of its metrics is
        a number: an all-ignored label image gives none); a frame with no task scored is
        recorded as skipped. Nothing is accumulated if any task fails.
        """
        pairs = self._scorable_pairs(maps, truth)
        if not pairs:
            self.skip(index, stamp_ns, NOTHING_TO_SCORE)
            return {}
        frame_meters = {task: TASKS[task].make_meter(self._model) for task in pairs}
        for task, (pred, target) in pairs.items():
            frame_meters[task].update(*TASKS[task].meter_inputs(pred, target))
        metrics = {task: meter.compute() for task, meter in frame_meters.items()}
        depth_pixels = (self._depth_coverage_pixels(*pairs["depth"]) if "depth" in pairs
                        else np.zeros(2, dtype=np.int64))
        if "depth" in pairs:
            metrics["depth"]["coverage"] = _fraction(*depth_pixels)
        metrics = {task: values for task, values in metrics.items()
                   if any(math.isfinite(value) for value in values.values())}
        if not metrics:
            self.skip(index, stamp_ns, NO_VALID_TRUTH)
            return {}
        for task in metrics:
            _add_states(self._meters[task], frame_meters[task])
        self._depth_pixels += depth_pixels
        self.frames.append(FrameScore(int(index), int(stamp_ns), metrics))
        return metrics

    def skip(self, index: int, stamp_ns: int, reason: str) -> None:
        """Record a frame that could not be scored (no ground truth in tolerance, bad message)."""
        self.skipped.append(SkippedFrame(int(index), int(stamp_ns), reason))

    def metrics(self) -> dict[str, dict[str, float]]:
        """Dataset metrics of every task scored in at least one frame."""
        scored = self.frames_scored()
        metrics = {task: meter.compute() for task, meter in self._meters.items() if scored[task]}
        if "depth" in metrics:
            metrics["depth"]["coverage"] = _fraction(*self._depth_pixels)
        return metrics

    def frames_scored(self) -> dict[str, int]:
        """Per model task, the number of frames it was scored in."""
        counts = Counter(task for frame in self.frames for task in frame.metrics)
        return {task: counts[task] for task in self.tasks}

    def _scorable_pairs(self, maps: PublishedMaps, truth: GroundTruth
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(prediction, ground truth) of each model task that has both, shapes checked."""
        pairs = {}
        for task in self.tasks:
            field = TASKS[task].field
            pred, target = getattr(maps, field), getattr(truth, field)
            if pred is None or target is None:
                continue
            if pred.shape != target.shape:
                raise ValueError(f"{task}: prediction shape {tuple(pred.shape)} differs from "
                                 f"ground truth shape {tuple(target.shape)}")
            pairs[task] = (pred, target)
        return pairs

    def _depth_coverage_pixels(self, depth: np.ndarray, target: np.ndarray) -> np.ndarray:
        meter = self._meters["depth"]
        valid = (target > 0) & (target > meter.min_depth) & (target < meter.max_depth)
        return np.array([(valid & ~np.isnan(depth)).sum(), valid.sum()], dtype=np.int64)


def _fraction(part: int, whole: int) -> float:
    return float(part / whole) if whole else math.nan
