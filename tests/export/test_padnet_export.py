"""PAD-Net exports to ONNX like the other networks: the same graph interface, ONNX Runtime
equal to PyTorch, and only operators TensorRT parses."""
from __future__ import annotations

import onnx

from densemtl_core.checkpoint import load_checkpoint
from densemtl_core.data.synthetic import render_scene
from densemtl_core.export.accuracy import onnx_parity
from densemtl_core.export.onnx import TENSORRT_OPERATORS, export_onnx, graph_operators
from densemtl_core.runtime import load_predictor
from densemtl_core.tasks import TASKS
from tests.runtime.tiny_models import TINY_SIZE, make_checkpoint


def test_padnet_onnx_runtime_matches_pytorch_within_the_tensorrt_operators(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "padnet.safetensors", arch="padnet",
                                 overrides=("model.output_scales=[0, 4]",))
    model, metadata = load_checkpoint(checkpoint)
    path = export_onnx(model, metadata, tmp_path / "padnet.onnx")
    proto = onnx.load(path)
    assert [o.name for o in proto.graph.output] == list(TASKS)
    assert graph_operators(proto) <= TENSORRT_OPERATORS, \
        sorted(graph_operators(proto) - TENSORRT_OPERATORS)
    images = [render_scene(seed, TINY_SIZE)["image"] for seed in range(3)]
    differences = onnx_parity(model, path, images)
    assert set(differences) == set(TASKS)
    for task, difference in differences.items():
        assert difference.within_tolerance, (task, difference)
    prediction = load_predictor(path).predict(images[0])
    assert prediction.depth.shape == TINY_SIZE
