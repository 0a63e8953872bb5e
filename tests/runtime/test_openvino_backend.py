import sys

import numpy as np
import pytest
import torch

from densemtl_core.checkpoint import load_checkpoint
from densemtl_core.data.synthetic import render_scene
from densemtl_core.export.accuracy import output_differences
from densemtl_core.export.onnx import export_onnx
from densemtl_core.runtime import BACKENDS, ModelFileError, PredictorError, load_predictor
from densemtl_core.runtime.processing import prepare_batch
from densemtl_core.tasks import TASKS
from densemtl_ros.node.parameters import check_parameters

pytest.importorskip("openvino")

FIELDS = ("segmentation", "probabilities", "depth", "normals", "edges")


@pytest.fixture(scope="module")
def predictors(four_task_onnx):
    return {backend: load_predictor(four_task_onnx, backend=backend, device="cpu", threads=1)
            for backend in ("onnxruntime", "openvino")}


@pytest.fixture(scope="module")
def scenes():
    return [render_scene(seed, (96, 120))["image"] for seed in (1, 2, 3)]


@pytest.mark.parametrize("scene", range(3))
def test_network_outputs_match_onnxruntime_within_export_tolerances(predictors, scenes, scene):
    batch = prepare_batch(scenes[scene:scene + 1], predictors["onnxruntime"].input_size)
    expected = {task: value.clone() for task, value in
                predictors["onnxruntime"].backend.run(batch).items()}
    actual = predictors["openvino"].backend.run(batch)
    for task, difference in output_differences(expected, actual).items():
        assert difference.within_tolerance, (task, difference)
        assert actual[task].dtype == torch.float32


def test_predictions_follow_the_predictor_contract(predictors, scenes):
    expected = predictors["onnxruntime"].predict_batch(scenes, probabilities=True)
    actual = predictors["openvino"].predict_batch(scenes, probabilities=True)
    timings = predictors["openvino"].last_timings
    assert timings is not None and timings.network > 0
    for reference, candidate in zip(expected, actual):
        for field in FIELDS:
            want, got = getattr(reference, field), getattr(candidate, field)
            assert got.shape == want.shape and got.dtype == want.dtype, field
        assert (candidate.segmentation == reference.segmentation).mean() >= 0.995
        np.testing.assert_allclose(candidate.depth, reference.depth, rtol=1e-3, atol=1e-3)
    assert predictors["openvino"].metadata == predictors["onnxruntime"].metadata


def test_end_to_end_graph_takes_uint8_frames_and_matches_onnxruntime(four_task_checkpoint,
                                                                      tmp_path):
    camera = (96, 120)
    path = export_onnx(*load_checkpoint(four_task_checkpoint), tmp_path / "camera.onnx",
                       dynamic_batch=True, camera_size=camera)
    frames = [render_scene(seed, camera)["image"] for seed in (4, 5)]
    expected = load_predictor(path, backend="onnxruntime", threads=1).predict_batch(frames)
    predictor = load_predictor(path, backend="openvino", threads=1)
    assert predictor.camera_size == camera
    for reference, candidate in zip(expected, predictor.predict_batch(frames)):
        assert (candidate.segmentation == reference.segmentation).mean() >= 0.995
        for field in ("depth", "normals", "edges"):
            want, got = getattr(reference, field), getattr(candidate, field)
            assert got.shape == want.shape and got.dtype == want.dtype, field
            rtol, atol = TASKS[field].tolerance
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=field)


def test_checkpoint_is_exported_in_memory(four_task_checkpoint, predictors, scenes):
    predictor = load_predictor(four_task_checkpoint, backend="openvino", device="cpu", threads=2)
    assert predictor.backend.name == "openvino"
    assert predictor.backend.max_batch is None  # exported with a dynamic batch
    prediction = predictor.predict(scenes[0])
    reference = predictors["onnxruntime"].predict(scenes[0])
    assert (prediction.segmentation == reference.segmentation).mean() >= 0.995


def test_auto_never_chooses_openvino(four_task_onnx):
    assert "openvino" in BACKENDS
    assert load_predictor(four_task_onnx, device="cpu").backend.name == "onnxruntime"


@pytest.mark.parametrize("device, message", [
    ("cuda", "not an OpenVINO device"),
    ("GPU", "not an OpenVINO device"),
    ("npu", r"not available here \(available: CPU\)"),
])
def test_devices_it_cannot_use(four_task_onnx, device, message, monkeypatch):
    import openvino

    monkeypatch.setattr(openvino.Core, "available_devices", property(lambda core: ["CPU"]))
    with pytest.raises(PredictorError, match=message):
        load_predictor(four_task_onnx, backend="openvino", device=device)


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="corrupt.onnx is not a readable ONNX model"):
        load_predictor(path, backend="openvino")


def test_missing_package_is_one_line(four_task_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(PredictorError, match=r"pip install openvino") as raised:
        load_predictor(four_task_onnx, backend="openvino")
    assert "\n" not in str(raised.value)


def test_node_accepts_the_openvino_backend():
    assert check_parameters({"model.backend": "openvino", "model.device": "cpu"}) is None
