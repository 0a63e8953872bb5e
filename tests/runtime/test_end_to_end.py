"""The end-to-end graph (uint8 camera frames in, finished maps out) against the host path, piece
by piece and as a whole, on rendered scenes at 480x640 with a tiny model."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from densemtl_core.checkpoint import load_checkpoint
from densemtl_core.data.synthetic import render_scene
from densemtl_core.export.accuracy import compare_backends
from densemtl_core.export.onnx import (TENSORRT_OPERATORS, export_onnx, graph_operators,
                                       read_onnx_info)
from densemtl_core.export.samples import synthetic_frames
from densemtl_core.runtime import InvalidImageError, load_predictor
from densemtl_core.runtime.end_to_end import EndToEndGraph, resize_matrix
from densemtl_core.runtime.graph import InferenceGraph
from densemtl_core.runtime.processing import finish_outputs, prepare_batch
from densemtl_core.tasks import TASKS
from densemtl_core.tasks.spec import probability_to_mono8

CAMERA = (480, 640)
LABEL_AGREEMENT = 0.995


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [render_scene(seed, CAMERA)["image"] for seed in range(3)]


@pytest.fixture(scope="module")
def tiny(four_task_checkpoint):
    return load_checkpoint(four_task_checkpoint)


@pytest.fixture(scope="module")
def end_to_end_onnx(tiny, tmp_path_factory):
    model, metadata = tiny
    return export_onnx(model, metadata, tmp_path_factory.mktemp("e2e") / "camera.onnx",
                       dynamic_batch=True, camera_size=CAMERA)


def _within(task: str, actual: np.ndarray, expected: np.ndarray) -> bool:
    rtol, atol = TASKS[task].tolerance
    return bool(np.all(np.abs(actual - expected) <= atol + rtol * np.abs(expected)))


def test_resize_matrices_are_torch_antialiased_filter():
    image = torch.rand(2, 3, 30, 52)
    rows, columns = resize_matrix(30, 8), resize_matrix(52, 16)
    expected = F.interpolate(image, size=(8, 16), mode="bilinear", align_corners=False,
                             antialias=True)
    torch.testing.assert_close(rows @ image @ columns.T, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(resize_matrix(7, 7), torch.eye(7))


def test_graph_network_input_is_the_host_one_within_a_grey_level(tiny, frames):
    graph = EndToEndGraph(tiny[0], tiny[1].input_size, CAMERA)
    batch = torch.from_numpy(np.stack(frames))
    with torch.inference_mode():
        inside = graph.preprocess(batch)
    host = prepare_batch(frames, tiny[1].input_size)
    assert inside.shape == host.shape
    assert float((inside - host).abs().max()) <= 1.0 / 255 + 1e-6


def test_graph_post_processing_matches_the_host_on_the_same_network_outputs(tiny, frames):
    """Given the same decoded maps, the graph finishes them as the host does, within the export
    tolerances (labels: the arg-max of the same interpolated probabilities; edges: the uint8 the
    node publishes)."""
    model, metadata = tiny
    graph = EndToEndGraph(model, metadata.input_size, CAMERA).eval()
    with torch.inference_mode():
        decoded = dict(zip(graph.tasks, InferenceGraph(model).eval()(
            prepare_batch(frames, metadata.input_size))))
        finished = dict(zip(graph.tasks, graph.finish(decoded)))
        for index in range(len(frames)):
            host = finish_outputs({task: value[index] for task, value in decoded.items()}, CAMERA)
            assert np.mean(finished["semseg"][index].numpy() == host["segmentation"]) > 0.9999
            assert _within("depth", finished["depth"][index].numpy(), host["depth"])
            assert _within("normals", finished["normals"][index].numpy(), host["normals"])
            edges = finished["edges"][index].numpy().astype(int)
            published = probability_to_mono8(host["edges"]).astype(int)
            assert np.abs(edges - published).max() <= 1  # a rounding tie at most
            assert np.mean(edges == published) > 0.999


def test_onnx_file_describes_an_end_to_end_graph_tensorrt_parses(end_to_end_onnx):
    proto = onnx.load(end_to_end_onnx)
    assert graph_operators(proto) <= TENSORRT_OPERATORS, sorted(
        graph_operators(proto) - TENSORRT_OPERATORS)
    assert read_onnx_info(end_to_end_onnx).camera_size == CAMERA
    uint8, float32 = onnx.TensorProto.UINT8, onnx.TensorProto.FLOAT
    (image,) = proto.graph.input
    assert image.type.tensor_type.elem_type == uint8
    assert [d.dim_value for d in image.type.tensor_type.shape.dim][1:] == [*CAMERA, 3]
    types = {output.name: output.type.tensor_type.elem_type for output in proto.graph.output}
    assert types == {"semseg": uint8, "depth": float32, "normals": float32, "edges": uint8}


def test_onnx_runtime_matches_torch_end_to_end_graph(tiny, end_to_end_onnx, frames):
    from densemtl_core.runtime.onnxruntime_backend import OnnxRuntimeBackend

    batch = torch.from_numpy(np.stack(frames))
    with torch.inference_mode():
        graph = EndToEndGraph(tiny[0], tiny[1].input_size, CAMERA).eval()
        expected = dict(zip(graph.tasks, graph(batch)))
    actual = OnnxRuntimeBackend(str(end_to_end_onnx), source="test").run(batch)
    assert np.mean(actual["semseg"].numpy() == expected["semseg"].numpy()) > 0.9999
    assert _within("depth", actual["depth"].numpy(), expected["depth"].numpy())
    assert _within("normals", actual["normals"].numpy(), expected["normals"].numpy())
    assert (actual["edges"].int() - expected["edges"].int()).abs().max() <= 1


def test_predictor_on_end_to_end_graph_agrees_with_host_path(end_to_end_onnx, four_task_onnx,
                                                             frames):
    """The whole path: labels agree on >= 99.5 % of the pixels; the other maps differ only by
    what the host's uint8 resize of the frame (within a grey level of the graph's) changes."""
    graph, host = load_predictor(end_to_end_onnx), load_predictor(four_task_onnx)
    assert graph.camera_size == CAMERA and host.camera_size is None
    for inside, outside in zip(graph.predict_batch(frames), host.predict_batch(frames)):
        assert inside.segmentation.dtype == outside.segmentation.dtype == np.uint8
        assert np.mean(inside.segmentation == outside.segmentation) >= LABEL_AGREEMENT
        for field in ("depth", "normals", "edges"):
            assert getattr(inside, field).shape == getattr(outside, field).shape
            assert getattr(inside, field).dtype == np.float32
        assert np.mean(np.abs(inside.depth - outside.depth) / outside.depth) < 1e-3
        cosine = np.clip((inside.normals * outside.normals).sum(-1), -1, 1)
        assert np.degrees(np.arccos(cosine)).mean() < 0.5
        assert np.array_equal(probability_to_mono8(inside.edges),
                              np.rint(inside.edges * 255).astype(np.uint8))
        assert np.abs(inside.edges - outside.edges).mean() < 2 / 255


def test_two_halves_and_task_subsets_give_what_predict_gives(end_to_end_onnx, frames):
    predictor = load_predictor(end_to_end_onnx)
    whole = predictor.predict(frames[0])
    halves = predictor.finish(predictor.run_network(frames[0]), tasks=("depth",))
    assert halves.segmentation is None and halves.normals is None
    np.testing.assert_array_equal(halves.depth, whole.depth)
    assert predictor.last_timings.processing_share < 0.5


def test_end_to_end_predictor_refuses_what_its_graph_cannot_give(end_to_end_onnx, frames):
    predictor = load_predictor(end_to_end_onnx)
    with pytest.raises(InvalidImageError, match="480x640 camera frames, got a 240x320 frame"):
        predictor.predict(frames[0][::2, ::2].copy())
    with pytest.raises(ValueError, match="class ids, not class probabilities"):
        predictor.predict(frames[0], probabilities=True)
    with pytest.raises(ValueError, match="camera size 480x640"):
        predictor.predict(frames[0], output_size=(64, 80))


def test_export_command_writes_and_checks_an_end_to_end_graph(four_task_checkpoint, tmp_path,
                                                              capsys):
    from densemtl_core.export.cli import main

    path = tmp_path / "camera.onnx"
    assert main(["--checkpoint", str(four_task_checkpoint), "--onnx", str(path),
                 "--camera-size", "48", "64", "--validate-frames", "2"]) == 0
    printed = capsys.readouterr().out
    assert "input 1x48x64x3 uint8, network 64x80" in printed
    assert "semseg   pixels differing 0" in printed and "OUT OF TOLERANCE" not in printed
    prediction = load_predictor(path).predict(render_scene(5, (48, 64))["image"])
    assert prediction.segmentation.shape == prediction.depth.shape == (48, 64)
    assert prediction.normals.shape == (48, 64, 3)


def test_backends_running_end_to_end_graphs_are_compared_on_class_ids(end_to_end_onnx):
    """The engine check's comparison: an end-to-end graph gives no probabilities, so the
    segmentation is scored from its class ids (here OpenVINO against ONNX Runtime)."""
    pytest.importorskip("openvino")
    reference = load_predictor(end_to_end_onnx, backend="onnxruntime", device="cpu")
    candidate = load_predictor(end_to_end_onnx, backend="openvino", device="cpu")
    report = compare_backends(reference, candidate,
                              synthetic_frames(2, reference.camera_size))
    assert report.agreement["semseg"]["label_agreement"] >= LABEL_AGREEMENT
    assert report.candidate_metrics["semseg"] == pytest.approx(
        report.reference_metrics["semseg"], abs=0.01)
    assert set(report.reference_metrics) == set(reference.metadata.tasks)
