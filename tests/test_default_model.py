"""The shipped default model loads, describes itself, and still reaches its recorded metrics."""
from __future__ import annotations

import copy

import pytest

from densemtl_core.data.synthetic import SYNTHETIC_CLASSES
from densemtl_core.pretrained import DEFAULT_MODEL, load_default_model
from densemtl_core.pretrained_check import (REGRESSION_TOLERANCE, measure, recorded_metrics,
                                            regression_drift)


@pytest.fixture(scope="module")
def default_model():
    return load_default_model()


def test_default_model_is_a_small_half_precision_sdne_file(default_model):
    _, metadata = default_model
    assert DEFAULT_MODEL.stat().st_size < 8e6
    assert metadata.tasks == ("semseg", "depth", "normals", "edges")
    assert metadata.config.model.arch == "densemtl"
    assert metadata.class_names == SYNTHETIC_CLASSES
    assert set(recorded_metrics(metadata, "test")["metrics"]) == set(metadata.tasks)


def test_default_model_still_reaches_its_recorded_metrics(default_model):
    model, metadata = default_model
    record = recorded_metrics(metadata, "regression")
    measured = measure(model, metadata, record["scenes"])
    assert regression_drift(measured, record["metrics"]) == []


def test_drift_beyond_the_tolerance_is_reported(default_model):
    _, metadata = default_model
    recorded = recorded_metrics(metadata, "regression")["metrics"]
    measured = copy.deepcopy(recorded)
    assert regression_drift(measured, recorded) == []
    (task, name), (tolerance, kind) = next(iter(REGRESSION_TOLERANCE.items()))
    step = tolerance * (abs(recorded[task][name]) if kind == "rel" else 1.0)
    measured[task][name] = recorded[task][name] + 0.5 * step
    assert regression_drift(measured, recorded) == []
    measured[task][name] = recorded[task][name] + 2.0 * step
    assert [line.split(":")[0] for line in regression_drift(measured, recorded)] == [f"{task}.{name}"]


def test_missing_record_names_the_key(default_model):
    _, metadata = default_model
    with pytest.raises(KeyError, match="no 'calibration' metrics record"):
        recorded_metrics(metadata, "calibration")
