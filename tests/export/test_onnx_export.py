import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch

from densemtl_core.checkpoint import load_checkpoint, read_metadata
from densemtl_core.data.synthetic import render_scene
from densemtl_core.export.accuracy import onnx_parity, output_differences
from densemtl_core.export.onnx import (TENSORRT_OPERATORS, export_onnx, graph_operators,
                                       read_onnx_info)
from densemtl_core.runtime import ModelFileError, load_predictor
from densemtl_core.runtime.metadata import (FORMAT_NAME, FORMAT_VERSION, ONNX_METADATA_KEY,
                                            DeployedModelInfo)
from densemtl_core.tasks import TASKS
from densemtl_core.tasks.depth import disparity_to_depth
from tests.runtime.tiny_models import RELATIVE_DISPARITY, make_checkpoint


def _dims(value_info):
    return [d.dim_value or d.dim_param for d in value_info.type.tensor_type.shape.dim]


def test_graph_interface_and_embedded_metadata(four_task_onnx, four_task_checkpoint):
    proto = onnx.load(four_task_onnx)
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [(i.name, _dims(i)) for i in proto.graph.input] == [("image", [1, 3, 64, 80])]
    assert [o.name for o in proto.graph.output] == ["semseg", "depth", "normals", "edges"]
    properties = {p.key: p.value for p in proto.metadata_props}
    description = json.loads(properties[ONNX_METADATA_KEY])
    assert description["format"] == FORMAT_NAME
    assert description["format_version"] == FORMAT_VERSION
    assert description["input_size"] == [64, 80] and description["dynamic_batch"] is False
    info = read_onnx_info(four_task_onnx)
    assert info.metadata.config == read_metadata(four_task_checkpoint).config


def test_descriptions_of_the_first_format_still_read_and_new_fields_round_trip(
        four_task_onnx):
    info = read_onnx_info(four_task_onnx)
    assert (info.precision, info.calibration, info.camera_size) == ("fp32", None, None)
    first = info.to_dict()
    for key in ("precision", "calibration", "camera_size"):
        del first[key]
    first["format_version"] = 1
    assert DeployedModelInfo.from_dict(first, "old.onnx") == info
    int8 = dataclasses.replace(info, precision="int8", calibration={"source": "synthetic"},
                               camera_size=(480, 640))
    assert DeployedModelInfo.from_dict(json.loads(int8.to_json()), "new.onnx") == int8
    with pytest.raises(ModelFileError, match="new.onnx: invalid model description"):
        DeployedModelInfo.from_dict({**int8.to_dict(), "precision": "int4"}, "new.onnx")


def test_onnx_runtime_matches_pytorch_on_rendered_scenes(four_task_onnx, four_task_checkpoint):
    model, _ = load_checkpoint(four_task_checkpoint)
    images = [render_scene(seed, (64, 80))["image"] for seed in range(3)]
    differences = onnx_parity(model, four_task_onnx, images)
    assert set(differences) == set(TASKS)
    for task, difference in differences.items():
        assert difference.within_tolerance, (task, difference)


def test_output_differences_flag_what_exceeds_the_tolerance():
    reference = {"depth": torch.full((1, 1, 2, 2), 10.0), "edges": torch.zeros(1, 1, 2, 2)}
    close = {"depth": reference["depth"] + 1e-3, "edges": reference["edges"] + 5e-5}
    far = {"depth": reference["depth"] + 2e-3, "edges": reference["edges"] + 2e-4}
    assert all(d.within_tolerance for d in output_differences(reference, close).values())
    flagged = output_differences(reference, far)
    assert not flagged["depth"].within_tolerance and not flagged["edges"].within_tolerance
    assert flagged["edges"].max_abs == pytest.approx(2e-4)
    with pytest.raises(ValueError, match="shape"):
        output_differences(reference, {**close, "edges": torch.zeros(1, 1, 2, 3)})


def test_densemtl_operators_stay_inside_the_tensorrt_allow_list(four_task_onnx):
    operators = graph_operators(onnx.load(four_task_onnx))
    assert {"MatMul", "Softmax", "Pad", "Resize"} <= operators  # attention and decoder present
    assert operators <= TENSORRT_OPERATORS, sorted(operators - TENSORRT_OPERATORS)


def test_deeplab_heads_stay_inside_the_tensorrt_allow_list(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "model.safetensors", tasks=("depth", "normals"),
                                 arch="mtl", overrides=("model.head=deeplab",))
    model, metadata = load_checkpoint(checkpoint)
    operators = graph_operators(onnx.load(export_onnx(model, metadata, tmp_path / "m.onnx")))
    assert operators <= TENSORRT_OPERATORS, sorted(operators - TENSORRT_OPERATORS)


def test_graph_operators_name_foreign_domains():
    node = onnx.helper.make_node("NonMaxSuppression", ["a"], ["b"])
    custom = onnx.helper.make_node("Fused", ["b"], ["c"], domain="com.microsoft")
    graph = onnx.helper.make_graph([node, custom], "g", [], [])
    operators = graph_operators(onnx.helper.make_model(graph))
    assert operators == {"NonMaxSuppression", "com.microsoft::Fused"}
    assert operators - TENSORRT_OPERATORS == operators


def test_unreadable_onnx_names_the_file(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ModelFileError, match="garbage.onnx is not a readable ONNX model"):
        read_onnx_info(garbage)
    with pytest.raises(ModelFileError, match="absent.onnx does not exist"):
        read_onnx_info(tmp_path / "absent.onnx")


def test_a_relative_disparity_model_exports_with_its_decoding_and_its_units(tmp_path):
    """The self-supervised head's sigmoid-disparity decoding is in the graph (ONNX Runtime
    returns depth, equal to the head's raw output decoded by hand), and the model's relative
    depth units travel in the file's metadata to its Predictor."""
    checkpoint = make_checkpoint(tmp_path / "relative.safetensors", overrides=RELATIVE_DISPARITY)
    model, metadata = load_checkpoint(checkpoint)
    path = export_onnx(model, metadata, tmp_path / "relative.onnx")
    images = [render_scene(seed, (64, 80))["image"] for seed in range(2)]
    for task, difference in onnx_parity(model, path, images).items():
        assert difference.within_tolerance, (task, difference)
    assert graph_operators(onnx.load(path)) <= TENSORRT_OPERATORS

    predictor = load_predictor(path)
    assert predictor.depth_units == "relative"
    assert load_predictor(checkpoint, backend="torch", device="cpu").depth_units == "relative"
    depth = predictor.predict(images[0]).depth  # at the network size: the graph's output as is
    cfg = metadata.config.model
    with torch.no_grad():
        raw = model(torch.from_numpy(images[0]).permute(2, 0, 1)[None].float() / 255)["depth"][0]
    by_hand = disparity_to_depth(torch.sigmoid(raw), cfg.min_depth, cfg.max_depth)[0, 0].numpy()
    np.testing.assert_allclose(depth, by_hand, rtol=1e-4)
    assert 1.0 < depth.min() and depth.max() < 3.0  # depth around 2, not a disparity in [0, 1]


def test_a_metric_models_predictor_reports_metres(four_task_onnx):
    assert load_predictor(four_task_onnx).depth_units == "metres"
