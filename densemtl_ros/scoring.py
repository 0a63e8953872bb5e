"""Scoring the node's published maps against ground truth recorded in a bag.

``densemtl-bag-eval`` scores frames two ways: by running the model on the bag's images, and by
replaying the bag through the running node. Both must give the same numbers, so everything here
works on the maps *as the node publishes them* (labels uint8/uint16, depth float32 metres with
NaN where invalid, unit normals HxWx3, edges uint8 0..255) and never on raw network outputs.
The metrics themselves are ``densemtl_core.metrics`` meters, built exactly as ``densemtl-eval``
builds them, so dataset metrics are comparable with a checkpoint's recorded metrics.

No ROS imports: this module is numpy, torch and densemtl_core only, and is tested on its own.
"""
from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from densemtl_core.checkpoint import ModelMetadata
from densemtl_core.labels import IGNORE_INDEX
from densemtl_core.metrics import Meter
from densemtl_core.strict_json import finite_json, write_json
from densemtl_core.tasks import TASKS, TaskMaps
from densemtl_core.viz import mosaic

from .published import PublishedMaps
from .report_folder import FRAMES_FILE, REPORT_FILE

REPORT_FORMAT = "densemtl-bag-eval"
REPORT_FORMAT_VERSION = 1
SKIP_EXAMPLES = 3
"""How many skipped frames of each reason the report lists with their stamps."""
NOTHING_TO_SCORE = "no task has both a prediction and ground truth"
NO_VALID_TRUTH = "no valid ground-truth pixel (segmentation: no label among the model's classes)"
"""The skip reasons :meth:`FrameScorer.score` records by itself."""

_MAX_DATASET_ID = np.iinfo(np.uint16).max
_MAPPING_FILE_SUFFIXES = (".yaml", ".yml", ".json")


class GroundTruth(TaskMaps):
    """One frame's ground truth at the resolution of the published maps, a field per task of
    the table (its ``field``); each map optional.

    ``segmentation``: HxW model class ids (see :class:`LabelMapping`), ``IGNORE_INDEX`` where
    unknown; ``depth``: float32 HxW metres, NaN or <= 0 where invalid; ``normals``: float32
    HxWx3, zero vectors where invalid; ``edges``: uint8 HxW in {0, 1} (bags have no edge topic,
    so only a caller that derives edges fills it).
    """



# -- Label mapping -------------------------------------------------------------------------------

class LabelMapping:
    """Dataset class ids -> model class ids, every unmapped id -> ``IGNORE_INDEX``.

    A bag's labels come from a dataset whose ids rarely equal the model's; a 65536-entry look-up
    table maps a whole uint16 label image in one indexing operation.
    """

    def __init__(self, pairs: Mapping[int, int], num_classes: int) -> None:
        for dataset_id, model_id in pairs.items():
            if not 0 <= dataset_id <= _MAX_DATASET_ID:
                raise ValueError(f"dataset id {dataset_id} is outside [0, {_MAX_DATASET_ID}]")
            if not 0 <= model_id < num_classes:
                raise ValueError(f"model id {model_id} (for dataset id {dataset_id}) is outside "
                                 f"[0, {num_classes}) for a model with {num_classes} classes")
        self.pairs = dict(sorted(pairs.items()))
        self.num_classes = num_classes
        dtype = np.min_scalar_type(max(num_classes - 1, IGNORE_INDEX))
        self._table = np.full(_MAX_DATASET_ID + 1, IGNORE_INDEX, dtype=dtype)
        self._table[list(self.pairs)] = list(self.pairs.values())

    @classmethod
    def identity(cls, num_classes: int) -> LabelMapping:
        """For ground truth already in the model's ids: ids outside [0, num_classes) are ignored."""
        return cls({i: i for i in range(num_classes)}, num_classes)

    @classmethod
    def parse(cls, spec: str | Path, num_classes: int, class_names: Sequence[str] = ()
              ) -> LabelMapping:
        """A mapping from a command-line value.

        ``spec`` is a YAML/JSON file (a ``Path``, or text ending in .yaml, .yml or .json) holding
        ``{dataset_id: model_id_or_class_name}``, or inline text such as ``"3:1,4:2,7:floor"``.
        Class names are looked up in ``class_names`` (the model's, in id order).
        """
        if isinstance(spec, Path) or spec.lower().endswith(_MAPPING_FILE_SUFFIXES):
            raw = _read_mapping_file(Path(spec))
        else:
            raw = _parse_inline_mapping(spec)
        names = {name: index for index, name in enumerate(class_names)}
        return cls({_dataset_id(key): _model_id(value, names) for key, value in raw.items()},
                   num_classes)

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """Map an integer label image (uint16 up to 65535); the result has the same shape."""
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, not {labels.dtype}")
        if labels.dtype not in (np.uint8, np.uint16) and labels.size and (
                labels.min() < 0 or labels.max() > _MAX_DATASET_ID):
            raise ValueError(f"labels must lie in [0, {_MAX_DATASET_ID}]")
        return self._table[labels]


def _read_mapping_file(path: Path) -> dict[Any, Any]:
    if not path.is_file():
        raise ValueError(f"label mapping file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is valid YAML
    except yaml.YAMLError as error:
        raise ValueError(f"label mapping file {path} is not valid YAML/JSON: {error}") from error
    if not isinstance(values, dict) or not values:
        raise ValueError(f"label mapping file {path} must hold a non-empty "
                         "{dataset_id: model_id_or_class_name} mapping")
    return values


def _parse_inline_mapping(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, colon, value = (part.strip() for part in item.partition(":"))
        if not (colon and key and value):
            raise ValueError(f"bad label mapping entry {item.strip()!r} in {text!r}: expected "
                             "DATASET_ID:MODEL_ID_OR_NAME, e.g. '3:1,4:2,7:floor'")
        if key in pairs:
            raise ValueError(f"dataset id {key} is mapped twice in {text!r}")
        pairs[key] = value
    return pairs


def _dataset_id(key: Any) -> int:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and re.fullmatch(r"\d+", key.strip()):
        return int(key)
    raise ValueError(f"dataset id {key!r} is not a non-negative integer")


def _model_id(value: Any, names: Mapping[str, int]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if re.fullmatch(r"\d+", value.strip()):
            return int(value)
        if value in names:
            return names[value]
        known = ", ".join(names) or "none: the model has no class names"
        raise ValueError(f"unknown class name {value!r} (model classes: {known})")
    raise ValueError(f"model class {value!r} is neither an id nor a class name")


# -- Time stamps ---------------------------------------------------------------------------------

def match_by_stamp(image_stamps_ns: Sequence[int], other_stamps_ns: Sequence[int],
                   tolerance_ns: int) -> list[int | None]:
    """For each image, the index (into ``other_stamps_ns``) of the message nearest in time, or
    ``None`` when none lies within ``tolerance_ns`` (inclusive).

    Neither sequence needs to be sorted. When two messages are equally near (one before, one
    after, or both with the same stamp), the earlier one wins, and among equal stamps the one
    listed first. Matching is not one-to-one: keep the tolerance below half the ground truth's
    period so that an image whose ground truth is missing does not take its neighbour's.
    """
    if tolerance_ns < 0:
        raise ValueError("tolerance_ns must be >= 0")
    images = np.asarray(image_stamps_ns, dtype=np.int64).reshape(-1)
    others = np.asarray(other_stamps_ns, dtype=np.int64).reshape(-1)
    if len(others) == 0:
        return [None] * len(images)
    order = np.argsort(others, kind="stable")
    stamps = others[order]
    after = np.searchsorted(stamps, images, side="left").clip(max=len(stamps) - 1)
    # The first of any run of equal stamps before the image, so equal stamps go to the first.
    before = np.searchsorted(stamps, stamps[(after - 1).clip(min=0)], side="left")
    gap_before = np.abs(images - stamps[before])
    gap_after = np.abs(stamps[after] - images)
    nearest = np.where(gap_before <= gap_after, before, after)
    gap = np.minimum(gap_before, gap_after)
    return [int(order[i]) if g <= tolerance_ns else None for i, g in zip(nearest, gap)]


STAMP_RULE = ("nearest header stamp within the tolerance; where several images or several "
              "ground-truth messages share a stamp, message order pairs them when the image and "
              "the ground-truth stamp are shared by as many messages, and otherwise the "
              "ground truth is ambiguous and not scored")
"""How images are paired with ground truth (:func:`pair_by_stamp`), for reports."""


@dataclass(frozen=True)
class StampPairs:
    """The ground-truth message (index) of each image, or None; ``by_order``: images paired by
    message order among equal stamps; ``ambiguous``: images left without ground truth because
    equal stamps could not be told apart."""

    indices: list[int | None]
    by_order: frozenset[int]
    ambiguous: frozenset[int]


def _positions(stamps: Sequence[int | None]) -> tuple[dict[int, int], dict[int, int]]:
    """Per index, how many messages share its stamp and its rank among them (in order)."""
    counts = Counter(stamps)
    seen: Counter = Counter()
    ranks = {}
    for index, stamp in enumerate(stamps):
        ranks[index] = seen[stamp]
        seen[stamp] += 1
    return {index: counts[stamp] for index, stamp in enumerate(stamps)}, ranks


def pair_by_stamp(image_stamps_ns: Sequence[int | None], other_stamps_ns: Sequence[int | None],
                  tolerance_ns: int) -> StampPairs:
    """Pair each image with the message of ``other_stamps_ns`` nearest in time
    (:func:`match_by_stamp`), unless equal stamps make that ambiguous. ``None`` is a stamp
    that could not be read: it pairs with nothing.

    Stamps alone cannot tell apart images that share one (a driver that stamps 0, or twice
    alike), nor ground-truth messages that do. When the image's stamp is shared by n images and
    the nearest ground-truth stamp by n messages, the k-th such image (in message order) gets
    the k-th such message; with other numbers the image is left without ground truth and
    listed in ``ambiguous`` (never given a neighbour's).
    """
    readable = [index for index, stamp in enumerate(other_stamps_ns) if stamp is not None]
    images = [index for index, stamp in enumerate(image_stamps_ns) if stamp is not None]
    nearest = match_by_stamp([image_stamps_ns[i] for i in images],
                             [other_stamps_ns[j] for j in readable], tolerance_ns)
    image_count, image_rank = _positions(image_stamps_ns)
    other_count, other_rank = _positions(other_stamps_ns)
    other_at = {(other_stamps_ns[j], other_rank[j]): j for j in readable}
    indices: list[int | None] = [None] * len(image_stamps_ns)
    by_order, ambiguous = set(), set()
    for image, match in zip(images, nearest):
        if match is None:
            continue
        other = readable[match]
        if image_count[image] != other_count[other]:
            ambiguous.add(image)
            continue
        indices[image] = other_at[(other_stamps_ns[other], image_rank[image])]
        if image_count[image] > 1:
            by_order.add(image)
    return StampPairs(indices, frozenset(by_order), frozenset(ambiguous))


# -- Scoring -------------------------------------------------------------------------------------

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

    def __init__(self, metadata: ModelMetadata) -> None:
        self._model = metadata.config.model
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


# -- Reports -------------------------------------------------------------------------------------

def _timing(latencies_ms: Sequence[float]) -> dict[str, float] | None:
    """Latency percentiles and the frame rate latencies allow when frames run back to back."""
    if len(latencies_ms) == 0:
        return None
    latencies = np.asarray(latencies_ms, dtype=np.float64)
    p50, p95 = np.percentile(latencies, [50, 95])
    return {"frames": len(latencies), "latency_ms_mean": float(latencies.mean()),
            "latency_ms_p50": float(p50), "latency_ms_p95": float(p95),
            "fps": float(1000.0 / latencies.mean())}


def _skipped(skipped: Sequence[SkippedFrame]) -> dict[str, Any]:
    counts = Counter(frame.reason for frame in skipped)
    examples, shown = [], Counter()
    for frame in skipped:
        if shown[frame.reason] < SKIP_EXAMPLES:
            shown[frame.reason] += 1
            examples.append({"index": frame.index, "stamp_ns": frame.stamp_ns,
                             "reason": frame.reason})
    return {"total": len(skipped), "counts": dict(counts), "examples": examples}


def summary(scorer: FrameScorer, *, latencies_ms: Sequence[float] = (),
            source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The whole evaluation as a JSON-able dict (``report.json``).

    ``latencies_ms``: per-frame inference latencies (``timing`` is null without them);
    ``source``: whatever identifies the model and the bag (checkpoint, bag path, topics, mode).
    """
    return {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "source": dict(source or {}),
        "metrics": finite_json(scorer.metrics()),
        "frames_scored": scorer.frames_scored(),
        "skipped": _skipped(scorer.skipped),
        "timing": _timing(latencies_ms),
        "frames": [{"index": frame.index, "stamp_ns": frame.stamp_ns,
                    "metrics": finite_json(frame.metrics)} for frame in scorer.frames],
    }


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``frames.csv`` (one row per frame, a ``task_metric`` column per
    metric, empty where a task was not scored or had no pixels); their paths. Neither holds a
    NaN (see :func:`finite_json`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = finite_json(report)
    json_path = write_json(out_dir / REPORT_FILE, report)
    rows = [{"index": frame["index"], "stamp_ns": frame["stamp_ns"],
             **{f"{task}_{key}": value for task, values in frame["metrics"].items()
                for key, value in values.items()}} for frame in report["frames"]]
    columns = list(dict.fromkeys(column for row in rows for column in row)) or ["index", "stamp_ns"]
    csv_path = out_dir / FRAMES_FILE
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return json_path, csv_path


def worst_and_best(frames: Sequence[FrameScore], task: str, k: int
                   ) -> tuple[list[int], list[int]]:
    """Frame indices of the ``k`` worst and ``k`` best frames by the task's main metric
    (its ``main_metric``), worst first and best first; frames without the metric are left out.
    The two lists overlap when fewer than 2k frames were scored."""
    key, higher_is_better = TASKS[task].main_metric, TASKS[task].higher_is_better
    scored = [(frame.metrics[task][key], frame.index) for frame in frames
              if task in frame.metrics and math.isfinite(frame.metrics[task][key])]
    sign = -1.0 if higher_is_better else 1.0  # ascending sign * value: best first
    # Stable sorts: equal values keep frame order in both lists.
    best = [index for _, index in sorted(scored, key=lambda item: sign * item[0])[:k]]
    worst = [index for _, index in sorted(scored, key=lambda item: -sign * item[0])[:k]]
    return worst, best


# -- Pictures ------------------------------------------------------------------------------------

def _tile(task: str, label: str, array: np.ndarray, info: dict[str, Any]
          ) -> tuple[str, np.ndarray]:
    spec = TASKS[task]
    if label == "pred":  # the renderer wants the display layout (edges: a probability)
        array = spec.published_display(array)
    return f"{spec.title} {label}", spec.render(array, info)


def frame_mosaic(rgb: np.ndarray, maps: PublishedMaps, truth: GroundTruth,
                 metadata: ModelMetadata) -> np.ndarray:
    """HxWx3 uint8 picture of one frame: the input on the first row, then per task its
    prediction and ground truth side by side, coloured as ``densemtl-eval`` colours them
    (invalid depth is black), to look at the worst and best frames."""
    info = metadata.display_info()
    rows = [[("input", rgb)]]
    for task in metadata.tasks:
        field = TASKS[task].field
        tiles = [_tile(task, label, array, info)
                 for label, array in (("pred", getattr(maps, field)), ("gt", getattr(truth, field)))
                 if array is not None]
        if tiles:
            rows.append(tiles)
    return mosaic(rows)
