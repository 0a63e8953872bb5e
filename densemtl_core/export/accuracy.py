"""How far an exported model strays from its reference, output by output and metric by metric."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.synthetic import sample_to_tensors
from ..models.network import MultiTaskNet
from ..runtime.end_to_end import EndToEndGraph
from ..runtime.graph import InferenceGraph
from ..runtime.onnxruntime_backend import OnnxRuntimeBackend
from ..runtime.prediction import Prediction
from ..runtime.predictor import Predictor
from ..runtime.processing import as_rgb, camera_batch, prepare_batch
from ..tasks import TASKS


@dataclass(frozen=True)
class OutputDifference:
    max_abs: float
    worst_excess: float
    """Largest ``|diff| - (atol + rtol * |reference|)``: positive means out of tolerance."""

    @property
    def within_tolerance(self) -> bool:
        return self.worst_excess <= 0.0


def output_differences(reference: dict[str, Tensor], candidate: dict[str, Tensor]
                       ) -> dict[str, OutputDifference]:
    """Per task, how far ``candidate``'s decoded network outputs are from ``reference``'s."""
    if reference.keys() != candidate.keys():
        raise ValueError(f"outputs differ: {sorted(reference)} vs {sorted(candidate)}")
    differences = {}
    for task, expected in reference.items():
        actual = candidate[task]
        if actual.shape != expected.shape:
            raise ValueError(f"{task}: shape {tuple(actual.shape)} != {tuple(expected.shape)}")
        rtol, atol = TASKS[task].tolerance
        gap = (actual.double() - expected.double()).abs()
        excess = gap - (atol + rtol * expected.double().abs())
        differences[task] = OutputDifference(float(gap.max()), float(excess.max()))
    return differences


def onnx_parity(model: MultiTaskNet, onnx_path: str | Path, images: Sequence[np.ndarray]
                ) -> dict[str, OutputDifference]:
    """Decoded outputs of ONNX Runtime on ``onnx_path`` against PyTorch on ``model``, for the
    same pre-processed ``images`` at the graph's input size."""
    backend = OnnxRuntimeBackend(str(onnx_path), source=str(onnx_path))
    batch = prepare_batch([as_rgb(image) for image in images], backend.input_size)
    graph = InferenceGraph(model).eval()
    step = backend.max_batch or len(batch)
    with torch.inference_mode():
        expected = dict(zip(graph.tasks, graph(batch)))
        chunks = [backend.run(batch[start:start + step]) for start in range(0, len(batch), step)]
    actual = {task: torch.cat([chunk[task] for chunk in chunks]) for task in graph.tasks}
    return output_differences(expected, actual)


END_TO_END_ALLOWANCES = {"semseg": 1e-3, "edges": 1.0}
"""What an end-to-end graph's uint8 outputs may differ by between two runtimes, which round
differently near ties: the share of pixels with another class id (the arg-max of nearly equal
interpolated probabilities), and edges by one 1/255 step (a value near a rounding boundary).
Float outputs keep each task's ``tolerance``."""


def end_to_end_parity(model: MultiTaskNet, onnx_path: str | Path, images: Sequence[np.ndarray]
                      ) -> dict[str, OutputDifference]:
    """ONNX Runtime on the end-to-end graph at ``onnx_path`` against PyTorch's
    :class:`EndToEndGraph` of ``model``, on the same uint8 camera frames. For ``semseg``
    ``max_abs`` is the share of differing class ids, for ``edges`` the largest difference in
    1/255 steps, each judged against :data:`END_TO_END_ALLOWANCES`."""
    backend = OnnxRuntimeBackend(str(onnx_path), source=str(onnx_path))
    frames = camera_batch([as_rgb(image) for image in images], backend.info.camera_size)
    graph = EndToEndGraph(model, backend.input_size, backend.info.camera_size).eval()
    step = backend.max_batch or len(frames)
    with torch.inference_mode():
        expected = dict(zip(graph.tasks, graph(frames)))
        chunks = [backend.run(frames[start:start + step]) for start in range(0, len(frames), step)]
    actual = {task: torch.cat([chunk[task] for chunk in chunks]) for task in graph.tasks}
    measured = {task: float((actual[task] != expected[task]).double().mean()) if task == "semseg"
                else float((actual[task].int() - expected[task].int()).abs().max())
                for task in END_TO_END_ALLOWANCES if task in actual}
    differences = output_differences(
        {task: value for task, value in expected.items() if task not in measured},
        {task: value for task, value in actual.items() if task not in measured})
    differences.update({task: OutputDifference(value, value - END_TO_END_ALLOWANCES[task])
                        for task, value in measured.items()})
    return {task: differences[task] for task in graph.tasks}


def _pixels(predictions: Sequence[Prediction], field: str) -> np.ndarray:
    """One field of all predictions, pixels first (frames may differ in size)."""
    arrays = [getattr(p, field) for p in predictions]
    return np.concatenate([a.reshape(-1, *a.shape[2:]) for a in arrays])


def agreement(reference: Sequence[Prediction], candidate: Sequence[Prediction]
              ) -> dict[str, dict[str, float]]:
    """Per task of the model, the agreement of ``candidate`` with ``reference`` (same frames)."""
    values = {}
    for task in reference[0].metadata.tasks:
        spec = TASKS[task]
        values[task] = spec.agreement(_pixels(reference, spec.field),
                                      _pixels(candidate, spec.field))
    return values


def main_metrics(predictions: Sequence[Prediction], frames: Sequence[dict]) -> dict[str, float]:
    """Each task's main metric of ``predictions`` against rendered ``frames`` (semseg needs the
    predictions made with ``probabilities=True``)."""
    config = predictions[0].metadata.config.model
    values = {}
    for task in config.tasks:
        meter = TASKS[task].make_meter(config)
        for prediction, frame in zip(predictions, frames, strict=True):
            target = sample_to_tensors(frame)[task][None]
            TASKS[task].update_meter(meter, TASKS[task].as_decoded(prediction), target)
        values[task] = meter.compute()[TASKS[task].main_metric]
    return values


@dataclass(frozen=True)
class AccuracyReport:
    """Agreement of a candidate backend with a reference one on the same frames, and both
    backends' main metric per task against the frames' ground truth."""

    agreement: dict[str, dict[str, float]]
    reference_metrics: dict[str, float]
    candidate_metrics: dict[str, float]

    def lines(self, reference_name: str, candidate_name: str) -> list[str]:
        rows = [f"{'task':8s} {'metric':8s} {reference_name:>12s} {candidate_name:>12s} "
                f"{'difference':>11s}  agreement"]
        for task, reference in self.reference_metrics.items():
            candidate = self.candidate_metrics[task]
            agreeing = ", ".join(f"{k}={v:.4g}" for k, v in self.agreement[task].items())
            rows.append(f"{task:8s} {TASKS[task].main_metric:8s} {reference:12.5f} "
                        f"{candidate:12.5f} {candidate - reference:+11.2e}  {agreeing}")
        return rows


def compare_backends(reference: Predictor, candidate: Predictor, frames: Sequence[dict]
                     ) -> AccuracyReport:
    """Run two predictors on ``frames`` (``render_scene`` dicts) and compare them; with class
    probabilities unless either runs an end-to-end graph, which gives class ids only."""
    images = [frame["image"] for frame in frames]
    probabilities = reference.camera_size is None and candidate.camera_size is None
    expected = reference.predict_batch(images, probabilities=probabilities)
    actual = candidate.predict_batch(images, probabilities=probabilities)
    return AccuracyReport(
        agreement=agreement(expected, actual),
        reference_metrics=main_metrics(expected, frames),
        candidate_metrics=main_metrics(actual, frames))
