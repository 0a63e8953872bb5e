"""A relative-depth model (self-supervised disparity head, ``model.depth_units=relative``) on
the robot's side: the node never publishes its depth as metres without ``relative_depth_scale``,
publishes it times the scale with one, and refuses a scale for a metric model; the bag
evaluation scores it median-scaled offline, as metres with ``--relative-depth-scale``, and says
why it cannot score it live without one. Tiny random-weight models on the torch backend."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rclpy.parameter import Parameter

from densemtl_core.metrics import DepthMeter
from densemtl_core.recordings.bags import open_bag
from densemtl_core.recordings.encodings import message_to_array
from densemtl_core.runtime import load_predictor
from densemtl_core.tasks import TASKS
from densemtl_ros.bag_tools.bag_eval import main
from densemtl_ros.depth_units import DepthPublishing, DepthUnitsError, depth_publishing
from densemtl_ros.bag_tools.make_bag import (CAMERA_INFO_TOPIC, DEPTH_TOPIC, IMAGE_TOPIC,
                                             SEGMENTATION_TOPIC)
from densemtl_ros.node.densemtl_node import DenseMTLNode, StartupError
from densemtl_ros.node.pointcloud import read_points
from densemtl_ros.published import published_maps
from tests.ros.bag_fixtures import Recording, Truth, frame_stamps, render_frames
from tests.ros.harness import (Spinner, TestCamera, camera_info, exchange, image_message,
                               wait_for)
from tests.runtime.tiny_models import RELATIVE_DISPARITY, TINY_SIZE, make_checkpoint

FRAMES = 4
SCALE = 3.0
"""Metres per model unit the tests give; the ground truth is about this times the model's depth."""
BACKEND = [Parameter("model.backend", value="torch"), Parameter("model.device", value="cpu")]


@pytest.fixture(scope="module")
def relative_model(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("relative") / "relative.safetensors",
                           overrides=RELATIVE_DISPARITY)


@pytest.fixture(scope="module")
def metric_model(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("metric") / "metric.safetensors",
                           tasks=("semseg", "depth"), arch="mtl")


def _node(model: Path, prefix: str, scale: float | None = None) -> DenseMTLNode:
    overrides = [Parameter("model.path", value=str(model)), *BACKEND]
    if scale is not None:
        overrides.append(Parameter("relative_depth_scale", value=scale))
    return DenseMTLNode(cli_args=["--ros-args", "-r", f"image:={prefix}/image_raw",
                                  "-r", f"camera_info:={prefix}/camera_info"],
                        namespace=prefix, parameter_overrides=overrides)


def _scene() -> np.ndarray:
    return render_frames(1, (48, 64), seed=3)[0]["image"]


def test_the_depth_publishing_of_each_case():
    assert depth_publishing("metres") == DepthPublishing("metres", 1.0, True)
    assert depth_publishing("relative") == DepthPublishing("relative", 1.0, False)
    assert depth_publishing("relative").withheld_tasks == {"depth"}
    scaled = depth_publishing("relative", 2.5)
    assert scaled == DepthPublishing("relative", 2.5, True) and scaled.scaled
    assert not scaled.withheld_tasks and not depth_publishing("metres").scaled
    with pytest.raises(DepthUnitsError, match="relative_depth_scale is 2.5 but the model's "
                                              "depth is already metres"):
        depth_publishing("metres", 2.5)
    for value in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="relative_depth_scale must be a finite number"):
            depth_publishing("relative", value)


# ---------------------------------------------------------------------------------------------
# The node


def test_the_node_publishes_no_relative_depth_without_a_scale(ros, relative_model, capfd):
    node = _node(relative_model, "/unscaled")
    warned = capfd.readouterr().err
    camera = TestCamera("unscaled_camera", "/unscaled", node_namespace="/unscaled/densemtl",
                        outputs=("segmentation", "normals"))
    spinner = Spinner(node, camera)
    try:
        assert node.predictor.depth_units == "relative"
        assert "relative_depth_scale" in warned and "~/depth" in warned
        assert {"depth", "points"}.isdisjoint(node.cameras[0].outputs.publishers)
        assert node.count_publishers("/unscaled/densemtl/depth") == 0
        assert node.count_publishers("/unscaled/densemtl/points") == 0
        rgb = _scene()
        outputs = exchange(camera, lambda header: image_message(rgb, "rgb8", header),
                           ("segmentation", "normals"),
                           info=lambda header: camera_info(header, *rgb.shape[:2]))
        assert outputs["segmentation"].height == rgb.shape[0]  # the other outputs go on

        def depth_value():
            for array in reversed(camera.diagnostics):
                for status in array.status:
                    values = {item.key: item.value for item in status.values}
                    if status.name.startswith("/unscaled/densemtl:") and "depth" in values:
                        return values["depth"]
            return None
        assert "relative, unpublished" in wait_for(depth_value, 10, "a diagnostics report")
    finally:
        spinner.close()
        node.destroy_node()
        camera.destroy_node()


def test_the_node_publishes_relative_depth_times_the_scale(ros, relative_model):
    node = _node(relative_model, "/scaled", scale=SCALE)
    camera = TestCamera("scaled_camera", "/scaled", node_namespace="/scaled/densemtl",
                        outputs=("depth", "points", "camera_info"))
    spinner = Spinner(node, camera)
    try:
        rgb = _scene()
        outputs = exchange(camera, lambda header: image_message(rgb, "rgb8", header),
                           ("depth", "points", "camera_info"),
                           info=lambda header: camera_info(header, *rgb.shape[:2]))
        depth = message_to_array(outputs["depth"])
        model_depth = published_maps(node.predictor.predict(rgb), node.predictor.metadata).depth
        assert np.isfinite(model_depth).all()
        np.testing.assert_allclose(depth, SCALE * model_depth, rtol=1e-5)
        points = read_points(outputs["points"])
        stride = node.settings.points_stride
        np.testing.assert_allclose(np.sort(points["z"]),
                                   np.sort(depth[::stride, ::stride].ravel()), rtol=1e-6)
        values = wait_for(lambda: camera.recorder.node_diagnostics(), 10, "diagnostics")
        assert values["depth"] == "relative, published as metres x 3 (relative_depth_scale)"
    finally:
        spinner.close()
        node.destroy_node()
        camera.destroy_node()


def test_a_scale_for_a_metric_model_is_refused_at_start(ros, metric_model):
    with pytest.raises(StartupError, match=r"relative_depth_scale is 2 but the model's depth "
                                           r"is already metres"):
        _node(metric_model, "/metric", scale=2.0)


# ---------------------------------------------------------------------------------------------
# The bag evaluation


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, relative_model):
    """A bag whose depth ground truth is about SCALE times the model's depth, off by a smooth
    pattern and by a factor that differs per frame; its segmentation ground truth is the
    model's. Returns the bag and (model depth, ground truth) per frame."""
    predictor = load_predictor(relative_model, backend="torch", device="cpu")
    frames = render_frames(FRAMES, TINY_SIZE)
    rows, columns = np.mgrid[0:TINY_SIZE[0], 0:TINY_SIZE[1]]
    pairs, labels = [], []
    for index, frame in enumerate(frames):
        maps = published_maps(predictor.predict(frame["image"]), predictor.metadata)
        assert np.isfinite(maps.depth).all()
        pattern = 1.0 + 0.2 * np.sin(rows / 5.0 + index) * np.cos(columns / 7.0)
        truth = (SCALE * (1.0 + 0.1 * index) * maps.depth * pattern).astype(np.float32)
        pairs.append((maps.depth, truth))
        labels.append(maps.segmentation)
    bag = Recording([frame["image"] for frame in frames], frame_stamps(FRAMES, 10_000_000),
                    frames[0]["intrinsics"],
                    {SEGMENTATION_TOPIC: Truth("mono8", labels),
                     DEPTH_TOPIC: Truth("32FC1", [truth for _, truth in pairs])}
                    ).write(tmp_path_factory.mktemp("recorded") / "bag")
    return bag, pairs


def _evaluate(bag: Path, out: Path, model: Path, *extra: str) -> tuple[int, dict | None]:
    code = main(["--bag", str(bag), "--image-topic", IMAGE_TOPIC, "--camera-info-topic",
                 CAMERA_INFO_TOPIC, "--gt-segmentation-topic", SEGMENTATION_TOPIC,
                 "--gt-depth-topic", DEPTH_TOPIC, "--out", str(out), "--model", str(model),
                 "--backend", "torch", "--device", "cpu", "--no-progress", *extra])
    path = out / "report.json"
    return code, (json.loads(path.read_text()) if path.is_file() else None)


def _expected(pairs, scale: float, median_scaling: bool, max_depth: float) -> dict[str, float]:
    meter = DepthMeter(max_depth=max_depth, median_scaling=median_scaling)
    for depth, truth in pairs:
        meter.update(*TASKS["depth"].meter_inputs(scale * depth, truth))
    return meter.compute()


def _assert_depth_metrics(report: dict, expected: dict[str, float]) -> None:
    for name, value in expected.items():
        assert report["metrics"]["depth"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name


def test_offline_a_relative_depth_is_scored_median_scaled(recorded, relative_model, tmp_path,
                                                          capsys):
    bag, pairs = recorded
    code, report = _evaluate(bag, tmp_path / "out", relative_model, "--output-bag",
                             str(tmp_path / "predictions"))
    assert code == 0
    assert report["format_version"] == 2
    assert report["depth"]["units"] == "relative"
    assert report["depth"]["scoring"] == "median-scaled"
    assert report["depth"]["relative_depth_scale"] is None
    assert report["frames_scored"]["depth"] == FRAMES
    metrics = _expected(pairs, 1.0, True, 20.0)
    _assert_depth_metrics(report, metrics)
    assert metrics["abs_rel"] < 0.1 < _expected(pairs, 1.0, False, 20.0)["abs_rel"]
    assert "depth: median-scaled" in capsys.readouterr().out
    with open_bag(tmp_path / "predictions") as written:  # as the node: no depth, no points
        assert "/densemtl/segmentation" in written.topics
        assert "/densemtl/depth" not in written.topics


def test_offline_with_a_scale_the_depth_is_scored_as_metres(recorded, relative_model, tmp_path):
    bag, pairs = recorded
    code, report = _evaluate(bag, tmp_path / "out", relative_model, "--relative-depth-scale",
                             str(SCALE), "--output-bag", str(tmp_path / "predictions"))
    assert code == 0
    assert report["depth"]["scoring"] == "metric"
    assert report["depth"]["relative_depth_scale"] == SCALE
    _assert_depth_metrics(report, _expected(pairs, SCALE, False, 20.0))
    with open_bag(tmp_path / "predictions") as written:
        depths = [message_to_array(item.message) for item in written.messages(["/densemtl/depth"])]
    np.testing.assert_allclose(depths, [SCALE * depth for depth, _ in pairs], rtol=1e-6)


def test_bag_eval_refuses_a_scale_for_a_metric_model(recorded, metric_model, tmp_path, capsys):
    bag, _ = recorded
    code, report = _evaluate(bag, tmp_path / "out", metric_model, "--relative-depth-scale", "2")
    assert code == 2 and report is None
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "relative_depth_scale is 2" in error


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_bag_eval_refuses_a_scale_that_is_no_scale(recorded, relative_model, tmp_path, capsys,
                                                   value):
    with pytest.raises(SystemExit) as exit_info:
        _evaluate(recorded[0], tmp_path / "out", relative_model, "--relative-depth-scale", value)
    assert exit_info.value.code == 2
    assert "--relative-depth-scale: must be a finite number >= 0" in capsys.readouterr().err


def test_live_without_a_scale_depth_is_not_scored_and_the_report_says_why(
        recorded, relative_model, tmp_path, capsys):
    bag, _ = recorded
    code, report = _evaluate(bag, tmp_path / "out", relative_model, "--live", "--start-node",
                             "--rate", "0")
    assert code == 0
    assert report["live"]["frames_answered"] == FRAMES
    assert report["frames_scored"]["semseg"] == FRAMES and report["frames_scored"]["depth"] == 0
    assert "depth" not in report["metrics"]
    assert report["depth"]["scoring"] == "not scored"
    assert "--relative-depth-scale" in report["depth"]["detail"]
    assert report["live"]["node_diagnostics"]["depth"].startswith("relative, unpublished")
    assert "depth not scored: the node publishes no depth" in capsys.readouterr().err


def test_live_with_a_scale_the_node_gets_it_and_agrees_with_offline(recorded, relative_model,
                                                                     tmp_path):
    bag, pairs = recorded
    code, report = _evaluate(bag, tmp_path / "out", relative_model, "--live", "--start-node",
                             "--rate", "0", "--relative-depth-scale", str(SCALE))
    assert code == 0
    assert report["frames_scored"]["depth"] == FRAMES
    assert report["depth"]["scoring"] == "metric"
    assert report["live"]["agreement"]["agree"] is True
    assert report["live"]["offline_same_frames"]["depth"]["rmse"] == pytest.approx(
        _expected(pairs, SCALE, False, 20.0)["rmse"], rel=1e-5)
    assert report["metrics"]["depth"]["rmse"] == pytest.approx(
        _expected(pairs, SCALE, False, 20.0)["rmse"], abs=1e-3)
