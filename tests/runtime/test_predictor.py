import importlib.util
import logging

import numpy as np
import pytest

from densemtl_core.checkpoint import read_metadata
from densemtl_core.data.synthetic import render_scene
from densemtl_core.export.tensorrt import write_sidecar
from densemtl_core.runtime import (InvalidImageError, ModelFileError, PredictorError,
                                   load_predictor)
from densemtl_core.runtime.sidecar import (BuildEnvironment, BuildSettings, EngineSidecar,
                                           sha256_file)
from tests.runtime.tiny_models import make_checkpoint

FIELDS = ("segmentation", "probabilities", "depth", "normals", "edges")


@pytest.fixture(scope="module")
def predictors(four_task_checkpoint, four_task_onnx):
    return {"torch": load_predictor(four_task_checkpoint, backend="torch", device="cpu"),
            "onnxruntime": load_predictor(four_task_onnx, device="cpu")}


@pytest.fixture(scope="module")
def exported_in_memory(four_task_checkpoint):
    return load_predictor(four_task_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def frames():
    return [render_scene(seed, (96, 120))["image"] for seed in (1, 2)]


def test_onnxruntime_matches_pytorch_on_every_output(predictors, frames):
    reference = predictors["torch"].predict_batch(frames, probabilities=True)
    candidate = predictors["onnxruntime"].predict_batch(frames, probabilities=True)
    for expected, actual in zip(reference, candidate):
        assert np.mean(expected.segmentation == actual.segmentation) > 0.999
        np.testing.assert_allclose(actual.probabilities, expected.probabilities, atol=1e-4)
        np.testing.assert_allclose(actual.depth, expected.depth, rtol=1e-4)
        np.testing.assert_allclose(actual.normals, expected.normals, atol=1e-4)
        np.testing.assert_allclose(actual.edges, expected.edges, atol=1e-4)
        assert 1.0 < float(expected.depth.min()) and float(expected.depth.max()) < 20.0


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("shape", [(37, 53, 3), (480, 640, 3), (64, 80), (50, 70, 1), (40, 60, 4)])
def test_any_size_and_channel_layout_gives_outputs_at_input_size(predictors, backend, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    prediction = predictors[backend].predict(image)
    height, width = shape[:2]
    assert prediction.segmentation.shape == (height, width)
    assert prediction.segmentation.dtype == np.uint8 and prediction.segmentation.max() < 8
    assert prediction.probabilities is None
    assert prediction.depth.shape == (height, width) and prediction.depth.dtype == np.float32
    assert prediction.normals.shape == (height, width, 3)
    np.testing.assert_allclose(np.linalg.norm(prediction.normals, axis=-1), 1.0, atol=1e-4)
    assert prediction.edges.shape == (height, width)


def test_grayscale_is_predicted_as_its_rgb_replica(predictors):
    grey = np.random.default_rng(3).integers(0, 256, (48, 64), dtype=np.uint8)
    predictor = predictors["onnxruntime"]
    np.testing.assert_array_equal(predictor.predict(grey).depth,
                                  predictor.predict(np.dstack([grey] * 3)).depth)


@pytest.mark.parametrize("image", [np.zeros((48, 64, 3), np.float32),
                                   np.zeros((48, 64, 3), np.uint16),
                                   np.zeros((0, 64, 3), np.uint8),
                                   np.zeros((48, 64, 3, 1), np.uint8)])
def test_bad_inputs_are_rejected_before_running_the_model(predictors, image):
    with pytest.raises(InvalidImageError):
        predictors["onnxruntime"].predict(image)


def test_batch_of_mixed_sizes_matches_single_predictions(exported_in_memory, frames):
    predictor = exported_in_memory
    assert predictor.backend.max_batch is None  # the in-memory export has a dynamic batch
    images = [frames[0], frames[1][:50, :70]]
    batched = predictor.predict_batch(images)
    for image, together in zip(images, batched):
        alone = predictor.predict(image)
        assert together.depth.shape == image.shape[:2]
        np.testing.assert_allclose(together.depth, alone.depth, rtol=1e-5)
        assert np.mean(together.segmentation == alone.segmentation) > 0.999
    timings = predictor.last_timings
    assert timings.network > 0 and timings.preprocess > 0 and timings.postprocess > 0
    assert 0 < timings.processing_share < 1


def test_output_size_and_task_subset(predictors, frames):
    predictor = predictors["onnxruntime"]
    full = predictor.predict(frames[0])
    subset = predictor.predict(frames[0], tasks=("depth", "semseg"), output_size=(64, 80))
    assert subset.normals is None and subset.edges is None
    assert subset.depth.shape == (64, 80) and subset.segmentation.shape == (64, 80)
    assert not np.allclose(subset.depth, full.depth[:64, :80])  # a resize, not a crop
    same_size = predictor.predict(frames[0], tasks=("depth",), output_size=frames[0].shape[:2])
    np.testing.assert_array_equal(same_size.depth, full.depth)
    with pytest.raises(ValueError, match="no task"):
        predictor.predict(frames[0], tasks=("flow",))
    with pytest.raises(ValueError, match="output_size"):
        predictor.predict(frames[0], output_size=(0, 80))


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_network_then_finish_equals_predict(predictors, frames, backend):
    predictor = predictors[backend]
    first = predictor.run_network(frames[0])
    predictor.run_network(frames[1])  # must not overwrite the first frame's outputs
    split = predictor.finish(first, tasks=("depth", "edges"))
    whole = predictor.predict(frames[0])
    np.testing.assert_array_equal(split.depth, whole.depth)
    np.testing.assert_array_equal(split.edges, whole.edges)
    assert split.segmentation is None and split.normals is None
    assert predictor.finish(first, output_size=(10, 12)).depth.shape == (10, 12)


def test_paper_compat_never_changes_what_the_runtime_returns(tmp_path, frames):
    """``paper_compat`` is a way of scoring: depth stays metres (REP 118) in every output."""
    plain, compat = (make_checkpoint(tmp_path / name, tasks=("semseg", "depth"), arch="mtl",
                                     overrides=overrides)
                     for name, overrides in (("plain.safetensors", ()),
                                             ("compat.safetensors", ("model.paper_compat=true",))))
    expected = load_predictor(plain, backend="torch", device="cpu").predict(frames[0])
    actual = load_predictor(compat, backend="torch", device="cpu").predict(frames[0])
    np.testing.assert_array_equal(actual.depth, expected.depth)
    np.testing.assert_array_equal(actual.segmentation, expected.segmentation)


def test_tasks_the_model_lacks_are_absent(two_task_checkpoint):
    predictor = load_predictor(two_task_checkpoint, backend="torch", device="cpu")
    assert predictor.tasks == ("semseg", "depth")
    prediction = predictor.predict(np.zeros((30, 40, 3), np.uint8), probabilities=True)
    assert prediction.segmentation.shape == (30, 40) and prediction.depth.shape == (30, 40)
    assert prediction.probabilities.shape == (8, 30, 40)
    assert prediction.normals is None and prediction.edges is None


def test_metadata_travels_from_checkpoint_through_onnx(four_task_checkpoint, predictors):
    expected = read_metadata(four_task_checkpoint)
    for predictor in predictors.values():
        metadata = predictor.metadata
        assert metadata.config == expected.config
        assert metadata.class_names == expected.class_names
        assert metadata.class_colors == expected.class_colors
        assert metadata.input_size == predictor.input_size == (64, 80)
        assert metadata.step == 3
    prediction = predictors["onnxruntime"].predict(np.zeros((8, 8, 3), np.uint8))
    assert prediction.metadata.class_names == expected.class_names


def test_auto_backend_choice_on_cpu(four_task_onnx, exported_in_memory):
    assert load_predictor(four_task_onnx).backend.name == "onnxruntime"
    assert exported_in_memory.backend.name == "onnxruntime"  # auto on a checkpoint, CPU


@pytest.mark.parametrize(("backend", "message"), [
    ("torch", "ONNX file: run it with backend onnxruntime"),
    ("tensorrt", "build an engine first with densemtl-export --onnx .*sdne.onnx --engine"),
    ("tflite", "unknown backend 'tflite'"),
])
def test_backends_that_cannot_run_an_onnx_file(four_task_onnx, backend, message):
    with pytest.raises(PredictorError, match=message):
        load_predictor(four_task_onnx, backend=backend)


def test_unusable_paths_and_options(tmp_path, four_task_checkpoint):
    with pytest.raises(ModelFileError, match="missing.onnx does not exist"):
        load_predictor(tmp_path / "missing.onnx")
    with pytest.raises(PredictorError, match="unknown model file type '.pt'"):
        load_predictor(tmp_path / "model.pt")
    with pytest.raises(PredictorError, match="densemtl-export --checkpoint"):
        load_predictor(four_task_checkpoint, backend="tensorrt")
    with pytest.raises(PredictorError, match="need a CUDA device"):
        load_predictor(four_task_checkpoint, device="cpu", half=True)


def test_corrupt_onnx_file_names_the_file(tmp_path, four_task_onnx):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(four_task_onnx.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="truncated.onnx is not a readable ONNX model"):
        load_predictor(truncated)


def test_onnx_file_without_model_description(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["image"], ["out"])
    graph = helper.make_graph([node], "foreign",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ModelFileError, match="foreign.onnx carries no densemtl model description"):
        load_predictor(path)


def _fake_engine(tmp_path, onnx_path):
    """An engine file (not a real one) with a consistent sidecar naming ``onnx_path``."""
    from densemtl_core.export.onnx import read_onnx_info

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not a serialized engine")
    write_sidecar(engine, EngineSidecar(
        engine_sha256=sha256_file(engine), onnx_sha256=sha256_file(onnx_path),
        onnx_path=str(onnx_path), environment=BuildEnvironment("10.3.0", "Orin", "8.7"),
        settings=BuildSettings(), input_shape=(1, 3, 64, 80), model=read_onnx_info(onnx_path)))
    return engine


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed: the engine would be loaded, not replaced")
def test_auto_runs_an_engines_onnx_file_where_tensorrt_is_missing(tmp_path, four_task_onnx, caplog):
    engine = _fake_engine(tmp_path, four_task_onnx)
    with caplog.at_level(logging.WARNING):
        predictor = load_predictor(engine)
    assert predictor.backend.name == "onnxruntime"
    assert "tensorrt package is not installed" in caplog.text and str(four_task_onnx) in caplog.text
    with pytest.raises(PredictorError, match="cannot run TensorRT engine .*model.engine"):
        load_predictor(engine, backend="tensorrt")
    with pytest.raises(PredictorError, match="use backend tensorrt"):
        load_predictor(engine, backend="onnxruntime")


def test_default_model_is_the_shipped_one():
    pretrained = pytest.importorskip("densemtl_core.pretrained",
                                     reason="no default model module in this installation")
    if not pretrained.DEFAULT_MODEL.is_file():
        pytest.skip(f"the default model {pretrained.DEFAULT_MODEL} is not present")
    predictor = load_predictor(None, device="cpu")
    assert predictor.metadata.config == read_metadata(pretrained.DEFAULT_MODEL).config
