"""FP16 and INT8 graphs: written by densemtl-export, run in ONNX Runtime, close to FP32, described.

Tolerances on rendered scenes of the tiny random-weight model (its outputs span far more than a
trained model's, so these bound the arithmetic, not the accuracy; the shipped model's accuracy
is in the README's table): FP16 within 1e-2 of the float32 graph (probabilities, unit normals)
and 1 % of depth; INT8 labels agree on >= 90 % of pixels, mean depth difference <= 5 %.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper
from PIL import Image

from densemtl_core.export.calibration import CalibrationSource
from densemtl_core.export.cli import main
from densemtl_core.export.onnx import (TENSORRT_OPERATORS, graph_operators, load_onnx,
                                       read_onnx_info)
from densemtl_core.export.samples import synthetic_frames
from densemtl_core.recordings.bags import BagWriter, image_message
from densemtl_core.runtime.loading import load_predictor
from tests.runtime.tiny_models import TINY_SIZE

FRAMES = 4
INT8 = 3
"""onnx.TensorProto.INT8."""
"""Calibration frames: a few are enough to exercise each source."""


def _export(checkpoint, path, *extra: str) -> int:
    return main(["--checkpoint", str(checkpoint), "--onnx", str(path), "--validate-frames", "0",
                 *extra])


def _predictions(path, scenes):
    predictor = load_predictor(path, backend="onnxruntime", device="cpu", threads=1)
    return predictor.predict_batch([scene["image"] for scene in scenes])


@pytest.fixture(scope="module")
def reference(four_task_onnx):
    scenes = synthetic_frames(3, TINY_SIZE)
    return scenes, _predictions(four_task_onnx, scenes)


def test_fp16_graph_matches_fp32_and_is_described(four_task_checkpoint, reference, tmp_path):
    path = tmp_path / "fp16.onnx"
    assert _export(four_task_checkpoint, path, "--precision", "fp16") == 0
    info = read_onnx_info(path)
    assert (info.precision, info.calibration) == ("fp16", None)
    proto = load_onnx(path)
    assert proto.graph.input[0].type.tensor_type.elem_type == 1  # float32 in and out
    assert all(output.type.tensor_type.elem_type == 1 for output in proto.graph.output)
    assert any(init.data_type == 10 for init in proto.graph.initializer)  # float16 weights
    assert graph_operators(proto) <= TENSORRT_OPERATORS
    scenes, expected = reference
    for want, got in zip(expected, _predictions(path, scenes)):
        assert np.abs(got.depth / want.depth - 1).max() < 1e-2
        assert np.abs(got.normals - want.normals).max() < 1e-2
        assert np.abs(got.edges - want.edges).max() < 1e-2
        assert np.mean(got.segmentation == want.segmentation) > 0.99


def _check_int8(path, reference, calibration):
    info = read_onnx_info(path)
    assert info.precision == "int8"
    assert info.calibration == calibration
    operators = graph_operators(load_onnx(path))
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators <= TENSORRT_OPERATORS
    scenes, expected = reference
    for want, got in zip(expected, _predictions(path, scenes)):
        assert np.mean(got.segmentation == want.segmentation) >= 0.9
        assert np.mean(np.abs(got.depth / want.depth - 1)) <= 0.05


def test_int8_on_synthetic_scenes_by_default(four_task_checkpoint, reference, tmp_path):
    path = tmp_path / "int8.onnx"
    assert _export(four_task_checkpoint, path, "--precision", "int8",
                   "--calib-frames", str(FRAMES)) == 0
    _check_int8(path, reference, {"source": "synthetic", "path": None, "topic": None,
                                  "frames": FRAMES, "method": "minmax",
                                  "activations": "int8"})
    zero_points = [init for init in load_onnx(path).graph.initializer
                   if init.name.endswith("_zero_point")]
    assert zero_points and all(not numpy_helper.to_array(z).any() and z.data_type == INT8
                               for z in zero_points)  # TensorRT's form: signed, symmetric


def test_int8_on_an_image_folder(four_task_checkpoint, reference, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, scene in enumerate(synthetic_frames(FRAMES + 2, (48, 72), "train")):
        Image.fromarray(scene["image"]).save(folder / f"{index:02d}.png")
    path = tmp_path / "int8.onnx"
    assert _export(four_task_checkpoint, path, "--precision", "int8", "--calib-images",
                   str(folder), "--calib-frames", str(FRAMES), "--calib-method", "entropy",
                   "--int8-activations", "uint8") == 0
    _check_int8(path, reference, {"source": "images", "path": str(folder), "topic": None,
                                  "frames": FRAMES, "method": "entropy",
                                  "activations": "uint8"})


def _write_bag(path, frames: int):
    with BagWriter(path) as writer:
        writer.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        for index, scene in enumerate(synthetic_frames(frames, (48, 64), "train")):
            stamp = (index + 1) * 100_000_000
            writer.write("/camera/image_raw", image_message(
                writer.typestore, scene["image"], "rgb8", stamp, "camera"), stamp)
    return path


def test_int8_on_a_recording(four_task_checkpoint, reference, tmp_path):
    bag = _write_bag(tmp_path / "drive", FRAMES - 1)
    path = tmp_path / "int8.onnx"
    assert _export(four_task_checkpoint, path, "--precision", "int8", "--calib-bag", str(bag),
                   "--calib-topic", "/camera/image_raw", "--calib-frames", str(FRAMES)) == 0
    _check_int8(path, reference, {"source": "recording", "path": str(bag),
                                  "topic": "/camera/image_raw", "frames": FRAMES - 1,
                                  "method": "minmax", "activations": "int8"})


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_end_to_end_graph_in_reduced_precision(precision, four_task_checkpoint, tmp_path):
    path = tmp_path / f"camera-{precision}.onnx"
    assert _export(four_task_checkpoint, path, "--camera-size", "48", "96", "--precision",
                   precision, "--calib-frames", "2") == 0
    info = read_onnx_info(path)
    assert (info.precision, info.camera_size) == (precision, (48, 96))
    assert graph_operators(load_onnx(path)) <= TENSORRT_OPERATORS
    scene = synthetic_frames(1, (48, 96))[0]
    reference = load_predictor(four_task_checkpoint, backend="torch").predict(scene["image"])
    prediction = load_predictor(path, backend="onnxruntime", device="cpu").predict(scene["image"])
    assert np.mean(prediction.segmentation == reference.segmentation) >= 0.9


@pytest.mark.parametrize("case", ["empty folder", "corrupt image", "missing topic",
                                  "bag without topic"])
def test_bad_calibration_input_is_one_line_and_exit_2(case, four_task_checkpoint, tmp_path,
                                                      capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    if case == "corrupt image":
        (folder / "00.png").write_bytes(b"not a png")
    options = {"empty folder": ["--calib-images", str(folder)],
               "corrupt image": ["--calib-images", str(folder)],
               "missing topic": ["--calib-bag", str(tmp_path / "drive")],
               "bag without topic": ["--calib-bag", str(_write_bag(tmp_path / "drive", 1)),
                                     "--calib-topic", "/camera/other"]}[case]
    path = tmp_path / "int8.onnx"
    assert _export(four_task_checkpoint, path, "--precision", "int8", *options) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("densemtl-export: ") and "\n" not in error
    named = {"empty folder": str(folder), "corrupt image": "00.png",
             "missing topic": "--calib-topic", "bag without topic": "/camera/other"}[case]
    assert named in error


def test_calibration_source_refuses_contradictions(tmp_path):
    with pytest.raises(ValueError, match="topic"):
        CalibrationSource("images", tmp_path, topic="/camera")
    with pytest.raises(ValueError, match="method"):
        CalibrationSource(method="mse")
