"""Engine sidecars, compatibility checks and what the builder sets from a graph's description
run here; building and running engines needs TensorRT and a GPU."""
import dataclasses
import importlib.util
import json
import shlex

import numpy as np
import pytest

from densemtl_core.export.cli import build_parser, main
from densemtl_core.export.onnx import read_onnx_info
from densemtl_core.export.tensorrt import graph_input_shape, plan_build, write_sidecar
from densemtl_core.runtime import EngineMismatchError, ModelFileError
from densemtl_core.runtime.sidecar import (BuildEnvironment, BuildSettings, EngineSidecar,
                                           environment_mismatches, read_sidecar, rebuild_command,
                                           sha256_file, sidecar_path, verify_engine)

ORIN = BuildEnvironment("10.3.0", "Orin", "8.7")


@pytest.fixture
def engine(tmp_path, four_task_onnx):
    """A stand-in engine file next to a copy of the ONNX file, with a matching sidecar."""
    folder = tmp_path / "trt_engines"
    folder.mkdir()
    onnx_path = folder / "model.onnx"
    onnx_path.write_bytes(four_task_onnx.read_bytes())
    path = folder / "model.engine"
    path.write_bytes(b"serialized engine bytes")
    write_sidecar(path, EngineSidecar(
        engine_sha256=sha256_file(path), onnx_sha256=sha256_file(onnx_path),
        onnx_path="model.onnx", environment=ORIN, settings=BuildSettings(workspace_mib=512),
        input_shape=(1, 3, 64, 80), model=read_onnx_info(onnx_path), created="now"))
    return path


def test_sidecar_round_trip(engine):
    assert sidecar_path(engine).name == "model.engine.json"
    sidecar = read_sidecar(engine)
    values = json.loads(sidecar_path(engine).read_text())
    assert values["format"] == "densemtl-engine" and values["format_version"] == 2
    assert values["tensorrt_version"] == "10.3.0" and values["compute_capability"] == "8.7"
    assert values["precision"] == values["model"]["precision"] == "fp32"  # the graph's
    assert values["settings"] == {"workspace_mib": 512, "dla_core": None, "max_batch": 1}
    assert values["input_shape"] == [1, 3, 64, 80]
    assert len(values["onnx_sha256"]) == 64
    assert sidecar.environment == ORIN and sidecar.settings.workspace_mib == 512
    assert sidecar.model.tasks == ("semseg", "depth", "normals", "edges")


def test_sha256_of_a_known_file(tmp_path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert sha256_file(path) == ("ba7816bf8f01cfea414140de5dae2223"
                                 "b00361a396177a9cb410ff61f20015ad")


def test_environment_mismatches_list_each_difference():
    assert environment_mismatches(ORIN, ORIN) == []
    desktop = BuildEnvironment("10.7.0", "NVIDIA GeForce RTX 4090", "8.9")
    problems = environment_mismatches(ORIN, desktop)
    assert problems == ["TensorRT version 10.3.0 != 10.7.0",
                        "GPU compute capability 8.7 != 8.9",
                        "GPU 'Orin' != 'NVIDIA GeForce RTX 4090'"]
    same_arch = BuildEnvironment("10.3.0", "Jetson AGX Orin", "8.7")
    assert environment_mismatches(ORIN, same_arch) == ["GPU 'Orin' != 'Jetson AGX Orin'"]


def test_matching_engine_passes(engine):
    verify_engine(engine, read_sidecar(engine), ORIN)


def test_engine_for_another_machine_is_refused_with_the_rebuild_command(engine):
    sidecar = read_sidecar(engine)
    with pytest.raises(EngineMismatchError) as caught:
        verify_engine(engine, sidecar, BuildEnvironment("10.7.0", "Orin", "8.7"))
    message = str(caught.value)
    assert "TensorRT version 10.3.0 != 10.7.0" in message
    assert rebuild_command(engine, sidecar) in message and "rebuild=True" in message


def test_rebuild_command_is_a_valid_export_call_with_the_recorded_settings(engine):
    sidecar = read_sidecar(engine)
    settings = BuildSettings(workspace_mib=256, dla_core=1, max_batch=4)
    sidecar = dataclasses.replace(sidecar, settings=settings)
    words = shlex.split(rebuild_command(engine, sidecar))
    assert words[0] == "densemtl-export"
    args = build_parser().parse_args(words[1:])
    assert (args.onnx, args.engine) == (str(engine.parent / "model.onnx"), str(engine))
    assert (args.workspace_mib, args.dla_core, args.max_batch) == (256, 1, 4)


def test_corrupt_engine_is_reported_as_such(engine):
    sidecar = read_sidecar(engine)
    engine.write_bytes(b"serialized engine by")  # truncated copy
    with pytest.raises(ModelFileError, match="model.engine is corrupt or was replaced") as caught:
        verify_engine(engine, sidecar, ORIN)
    assert not isinstance(caught.value, EngineMismatchError)


def test_engine_older_than_its_onnx_file_needs_a_rebuild(engine):
    sidecar = read_sidecar(engine)
    (engine.parent / "model.onnx").write_bytes(b"re-exported")
    with pytest.raises(EngineMismatchError, match="model.onnx changed since the engine was built"):
        verify_engine(engine, sidecar, ORIN)


def test_missing_or_unreadable_sidecar(engine, tmp_path):
    text = sidecar_path(engine).read_text()
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(ModelFileError, match="model.engine.json is not a readable JSON"):
        read_sidecar(engine)
    newer = json.loads(text)
    newer["format_version"] = 99
    sidecar_path(engine).write_text(json.dumps(newer))
    with pytest.raises(ModelFileError, match="format version 99 is newer"):
        read_sidecar(engine)
    sidecar_path(engine).unlink()
    with pytest.raises(ModelFileError, match="has no sidecar .*rebuild it with densemtl-export"):
        read_sidecar(engine)
    with pytest.raises(ModelFileError, match="absent.engine does not exist"):
        read_sidecar(tmp_path / "absent.engine")


def test_format_1_sidecar_is_refused_with_a_one_line_rebuild_command(engine):
    values = json.loads(sidecar_path(engine).read_text())
    values["format_version"] = 1  # the weakly typed builder's record
    del values["precision"]
    values["settings"] = {"precision": "fp16", "workspace_mib": 512, "dla_core": None,
                          "max_batch": 1, "calibration_cache": None}
    sidecar_path(engine).write_text(json.dumps(values))
    with pytest.raises(ModelFileError, match="built with TensorRT precision flags") as caught:
        read_sidecar(engine)
    message = str(caught.value)
    assert "\n" not in message and "densemtl-export --precision" in message
    command = message.split("Rebuild it with: ")[1]
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.onnx, args.engine, args.workspace_mib) == (
        str(engine.parent / "model.onnx"), str(engine), 512)


def test_sidecar_precision_must_agree_with_the_model_description(engine):
    values = json.loads(sidecar_path(engine).read_text())
    values["precision"] = "int8"
    sidecar_path(engine).write_text(json.dumps(values))
    with pytest.raises(ModelFileError, match="precision 'int8' contradicts"):
        read_sidecar(engine)


def test_build_settings_are_validated():
    with pytest.raises(ValueError, match="positive"):
        BuildSettings(workspace_mib=0)
    with pytest.raises(ValueError, match="positive"):
        BuildSettings(max_batch=0)
    with pytest.raises(ValueError, match="DLA core must be 0 or more"):
        BuildSettings(dla_core=-1)


def test_build_plan_follows_the_graph_description(four_task_onnx):
    info = read_onnx_info(four_task_onnx)  # fp32 network graph, static batch
    plan = plan_build(info, BuildSettings(workspace_mib=256), four_task_onnx)
    assert plan.input_shape == (1, 3, 64, 80) and plan.min_input_shape is None
    assert plan.workspace_bytes == 256 * 2**20 and plan.dla_core is None
    assert plan.precision == "fp32"

    dynamic = dataclasses.replace(info, dynamic_batch=True, precision="int8")
    plan = plan_build(dynamic, BuildSettings(max_batch=4, dla_core=0), "m.onnx")
    assert plan.input_shape == (4, 3, 64, 80) and plan.min_input_shape == (1, 3, 64, 80)
    assert (plan.dla_core, plan.precision) == (0, "int8")

    end_to_end = dataclasses.replace(info, camera_size=(480, 640), precision="fp16")
    assert graph_input_shape(end_to_end, 2) == (2, 480, 640, 3)
    assert plan_build(end_to_end, BuildSettings(dla_core=1), "e.onnx").input_shape == (1, 480, 640, 3)


def test_build_plan_refuses_what_the_graph_cannot_do(four_task_onnx):
    info = read_onnx_info(four_task_onnx)
    with pytest.raises(ValueError, match="--max-batch 4 needs an ONNX file exported with "
                                         "--dynamic-batch"):
        plan_build(info, BuildSettings(max_batch=4), four_task_onnx)
    with pytest.raises(ValueError, match="DLA cores run fp16 or int8 graphs; .* is fp32: export "
                                         "it with densemtl-export --precision fp16"):
        plan_build(info, BuildSettings(dla_core=0), four_task_onnx)


def test_dla_request_for_an_fp32_graph_fails_before_tensorrt(tmp_path, four_task_onnx, capsys):
    argv = ["--onnx", str(four_task_onnx), "--engine", str(tmp_path / "m.engine"),
            "--dla-core", "0"]
    assert main(argv) == 2
    assert "DLA cores run fp16 or int8 graphs" in capsys.readouterr().err
    assert not (tmp_path / "m.engine").exists()


def _tensorrt_with_gpu() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    from densemtl_core.runtime.loading import tensorrt_unavailable_reason
    return tensorrt_unavailable_reason() is None


needs_tensorrt = pytest.mark.skipif(not _tensorrt_with_gpu(), reason="needs tensorrt and a CUDA GPU")


@needs_tensorrt
def test_built_engine_matches_onnx_runtime(tmp_path, four_task_onnx):
    from densemtl_core.export.accuracy import compare_backends
    from densemtl_core.export.samples import synthetic_frames
    from densemtl_core.export.tensorrt import build_engine
    from densemtl_core.runtime import load_predictor

    path = tmp_path / "model.engine"
    sidecar = build_engine(four_task_onnx, path, BuildSettings())  # strongly typed, fp32 graph
    assert read_sidecar(path) == sidecar and sidecar.model.precision == "fp32"
    engine = load_predictor(path, backend="tensorrt")
    reference = load_predictor(four_task_onnx, backend="onnxruntime", device="cpu")
    report = compare_backends(reference, engine, synthetic_frames(2, (64, 80)))
    assert report.agreement["semseg"]["label_agreement"] > 0.999
    prediction = engine.predict(np.zeros((37, 53, 3), np.uint8))
    assert prediction.depth.shape == (37, 53)


@needs_tensorrt
def test_corrupt_engine_file_fails_to_load_with_its_name(engine):
    from densemtl_core.runtime import load_predictor

    engine.write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="model.engine"):
        load_predictor(engine, backend="tensorrt")
