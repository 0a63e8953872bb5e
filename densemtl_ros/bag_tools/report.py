"""A bag evaluation's report: the JSON summary, the per-frame CSV, the worst and best frames
and their mosaics, all from a :class:`~densemtl_ros.bag_tools.scoring.FrameScorer`."""
from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from densemtl_core.checkpoint import ModelMetadata
from densemtl_core.strict_json import finite_json, write_json
from densemtl_core.tasks import TASKS
from densemtl_core.viz import mosaic

from ..published import PublishedMaps
from .report_folder import FRAMES_FILE, REPORT_FILE
from .scoring import FrameScore, FrameScorer, GroundTruth, SkippedFrame

REPORT_FORMAT = "densemtl-bag-eval"
REPORT_FORMAT_VERSION = 2
"""2: the ``depth`` section (the model's depth units and how its depth was scored)."""
SKIP_EXAMPLES = 3
"""How many skipped frames of each reason the report lists with their stamps."""


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
