import importlib.util
import subprocess
import sys

import numpy as np
import onnx
import pytest

from densemtl_core.export.cli import main
from densemtl_core.runtime import load_predictor


def _dims(value_info):
    return [d.dim_value or d.dim_param for d in value_info.type.tensor_type.shape.dim]


def test_export_end_to_end(tmp_path, two_task_checkpoint, capsys):
    onnx_path = tmp_path / "out" / "model.onnx"
    assert main(["--checkpoint", str(two_task_checkpoint), "--onnx", str(onnx_path),
                 "--input-size", "48", "64", "--dynamic-batch", "--validate-frames", "2"]) == 0
    output = capsys.readouterr().out
    assert f"wrote {onnx_path}" in output and "input Bx3x48x64" in output
    assert "ONNX Runtime vs PyTorch on 2 rendered scenes" in output
    assert "  semseg" in output and "  depth" in output and "normals" not in output
    assert output.count(" ok") == 2 and "OUT OF TOLERANCE" not in output
    assert not list(onnx_path.parent.glob("*.partial"))

    proto = onnx.load(onnx_path)
    assert _dims(proto.graph.input[0]) == ["batch", 3, 48, 64]
    assert [o.name for o in proto.graph.output] == ["semseg", "depth"]
    predictor = load_predictor(onnx_path)
    assert predictor.input_size == (48, 64) and predictor.backend.max_batch is None
    assert predictor.metadata.input_size == (64, 80)  # the training size stays in the metadata
    images = [np.full((40, 50, 3), value, np.uint8) for value in (0, 128, 255)]
    predictions = predictor.predict_batch(images)
    assert [p.depth.shape for p in predictions] == [(40, 50)] * 3
    assert all(p.normals is None and p.edges is None for p in predictions)


@pytest.mark.parametrize(("argv", "message"), [
    (["--onnx", "x.onnx"], "nothing to do"),
    (["--checkpoint", "c.safetensors", "--onnx", "x.onnx", "--register"], "--register needs"),
    (["--checkpoint", "absent.safetensors", "--onnx", "x.onnx"], "absent.safetensors does not exist"),
    (["--onnx", "absent.onnx", "--engine", "x.engine", "--dla-core", "0"], "absent.onnx"),
])
def test_unusable_requests_exit_with_status_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_input_size_exits_with_status_2(tmp_path, four_task_checkpoint, capsys):
    argv = ["--checkpoint", str(four_task_checkpoint), "--onnx", str(tmp_path / "m.onnx"),
            "--input-size", "50", "64"]
    assert main(argv) == 2
    assert "multiples of 16" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed: the engine would be built")
def test_engine_without_tensorrt_says_what_is_missing(tmp_path, four_task_onnx, capsys):
    argv = ["--onnx", str(four_task_onnx), "--engine", str(tmp_path / "m.engine")]
    assert main(argv) == 2
    assert "need the tensorrt Python package" in capsys.readouterr().err
    assert not (tmp_path / "m.engine").exists()


def test_module_runs_as_a_command():
    result = subprocess.run([sys.executable, "-m", "densemtl_core.export.cli", "--help"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0
    assert "--engine" in result.stdout and "--dla-core" in result.stdout
