"""The check that the shipped default model (:mod:`densemtl_core.pretrained`) still performs as
recorded.

Its metadata records the metrics measured when it was shipped, on the whole synthetic test split
and on a fixed subset small enough for CI: re-measuring that subset with the current code and
comparing it to the record catches a regression anywhere between the scene renderer and the
metrics (data, network, decoding, evaluation).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.utils.data import DataLoader

from .checkpoint import ModelMetadata
from .data import build_dataset
from .evaluate import evaluate

REGRESSION_SCENES = 64
"""The fixed subset: the first scenes of the synthetic test split."""

REGRESSION_TOLERANCE: dict[tuple[str, str], tuple[float, str]] = {
    ("semseg", "miou"): (0.005, "abs"),
    ("semseg", "pixel_acc"): (0.005, "abs"),
    ("depth", "rmse"): (0.01, "rel"),
    ("depth", "abs_rel"): (0.01, "rel"),
    ("normals", "mean"): (0.25, "abs"),
    ("edges", "f1"): (0.005, "abs"),
}
"""How far a re-measurement may drift from the record: float reductions differ between machines
and thread counts, nothing else may change the numbers."""


def measure(model: torch.nn.Module, metadata: ModelMetadata, scenes: int | None = None,
            batch_size: int = 16) -> dict[str, dict[str, float]]:
    """Metrics of a synthetic-scene model on the first ``scenes`` test scenes (all when None)."""
    data_cfg = metadata.config.data
    if scenes is not None:
        data_cfg = dataclasses.replace(data_cfg, test_length=scenes)
    loader = DataLoader(build_dataset(data_cfg, "test"), batch_size=batch_size)
    with torch.inference_mode():
        return evaluate(model, loader, metadata.config.model, device=torch.device("cpu"),
                        progress=False)


def regression_drift(measured: dict[str, dict[str, float]], recorded: dict[str, dict[str, float]]
                     ) -> list[str]:
    """A line per metric of ``REGRESSION_TOLERANCE`` that moved further than allowed."""
    problems = []
    for (task, name), (tolerance, kind) in REGRESSION_TOLERANCE.items():
        if task not in recorded:
            continue
        expected, got = recorded[task][name], measured[task][name]
        allowed = tolerance * abs(expected) if kind == "rel" else tolerance
        if abs(got - expected) > allowed:
            problems.append(f"{task}.{name}: measured {got:.5f}, recorded {expected:.5f} "
                            f"(allowed ±{allowed:.5f})")
    return problems


def recorded_metrics(metadata: ModelMetadata, key: str) -> dict[str, Any]:
    """The record written when the model was shipped: ``test`` or ``regression``."""
    try:
        return metadata.metrics[key]
    except KeyError:
        raise KeyError(f"the model's metadata has no {key!r} metrics record") from None
