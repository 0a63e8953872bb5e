import numpy as np
import pytest

from densemtl_core.checkpoint import read_metadata
from densemtl_core.data.synthetic import render_scene
from densemtl_core.export.accuracy import agreement, compare_backends, main_metrics
from densemtl_core.runtime import Prediction, load_predictor


@pytest.fixture
def prediction(four_task_checkpoint):
    metadata = read_metadata(four_task_checkpoint)
    normals = np.zeros((2, 2, 3), np.float32)
    normals[..., 2] = -1.0
    return Prediction(metadata=metadata, segmentation=np.array([[0, 1], [2, 3]], np.uint8),
                      depth=np.full((2, 2), 2.0, np.float32), normals=normals,
                      edges=np.full((2, 2), 0.5, np.float32))


def test_agreement_with_hand_computed_values(prediction):
    tilted = prediction.normals.copy()
    tilted[0, 0] = [np.sin(np.radians(10)), 0.0, -np.cos(np.radians(10))]
    other = Prediction(
        metadata=prediction.metadata, segmentation=np.array([[0, 1], [2, 0]], np.uint8),
        depth=np.array([[2.0, 2.0], [2.0, 2.2]], np.float32), normals=tilted,
        edges=np.array([[0.5, 0.5], [0.5, 0.9]], np.float32))
    assert agreement([prediction], [prediction]) == {
        "semseg": {"label_agreement": 1.0}, "depth": {"mean_abs_rel": 0.0, "max_abs_m": 0.0},
        "normals": {"mean_angle_deg": 0.0, "max_angle_deg": 0.0},
        "edges": {"mean_abs": 0.0, "max_abs": 0.0}}
    values = agreement([prediction, prediction], [prediction, other])
    assert values["semseg"]["label_agreement"] == pytest.approx(7 / 8)
    assert values["depth"]["mean_abs_rel"] == pytest.approx(0.1 / 8, rel=1e-5)  # one pixel off by 10 %
    assert values["depth"]["max_abs_m"] == pytest.approx(0.2, rel=1e-5)
    assert values["normals"]["max_angle_deg"] == pytest.approx(10.0, rel=1e-3)
    assert values["edges"]["max_abs"] == pytest.approx(0.4, rel=1e-5)


def test_compare_backends_reports_metrics_of_both(four_task_checkpoint, four_task_onnx):
    frames = [render_scene(seed, (64, 80)) for seed in (4, 5)]
    torch_predictor = load_predictor(four_task_checkpoint, backend="torch", device="cpu")
    onnx_predictor = load_predictor(four_task_onnx)
    report = compare_backends(torch_predictor, onnx_predictor, frames)
    assert set(report.reference_metrics) == {"semseg", "depth", "normals", "edges"}
    for task, value in report.reference_metrics.items():
        assert report.candidate_metrics[task] == pytest.approx(value, rel=1e-3, abs=1e-4)
    assert report.agreement["semseg"]["label_agreement"] > 0.999
    lines = report.lines("torch", "onnxruntime")
    assert lines[0].split()[:4] == ["task", "metric", "torch", "onnxruntime"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["semseg", "miou"], ["depth", "rmse"], ["normals", "mean"], ["edges", "f1"]]


def test_main_metrics_score_a_perfect_prediction(four_task_checkpoint):
    frame = render_scene(6, (64, 80))
    metadata = read_metadata(four_task_checkpoint)
    one_hot = np.eye(8, dtype=np.float32)[frame["semseg"]].transpose(2, 0, 1)
    perfect = Prediction(metadata=metadata, segmentation=frame["semseg"], probabilities=one_hot,
                         depth=frame["depth"], normals=frame["normals"],
                         edges=frame["edges"].astype(np.float32))
    metrics = main_metrics([perfect], [frame])
    assert metrics["semseg"] == pytest.approx(1.0)
    assert metrics["depth"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["normals"] == pytest.approx(0.0, abs=0.05)
    assert metrics["edges"] == pytest.approx(1.0)
