"""A robot user's path from a recording to published depth, with the real command lines:
``densemtl-make-bag`` records a camera walk with its odometry, ``densemtl-train`` learns depth
from that video without depth labels (the photometric objective, made metric by the odometry),
``densemtl-export`` writes the ONNX model, and the node publishes the model's depth as metres.
The relative-depth side of the node (no odometry) is covered by test_relative_depth.py."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
from rclpy.parameter import Parameter

from densemtl_core.checkpoint import read_metadata
from densemtl_core.export.cli import main as export_main
from densemtl_core.recordings.encodings import message_to_array
from densemtl_core.train import main as train_main
from densemtl_ros.bag_tools.make_bag import IMAGE_TOPIC
from densemtl_ros.bag_tools.make_bag import main as make_bag_main
from densemtl_ros.node.densemtl_node import DenseMTLNode
from densemtl_ros.published import published_maps
from tests.ros.bag_fixtures import render_frames
from tests.ros.harness import Spinner, TestCamera, camera_info, exchange, image_message

REPO = Path(__file__).resolve().parents[2]
SET_UP = REPO / "config" / "train" / "bag_sde_depth_odometry.yaml"
STEPS = 12


def _train_on(bag: Path, run: Path) -> list[dict]:
    code = train_main([
        "--config", str(SET_UP), f"data.bag={bag}", f"data.image_topic={IMAGE_TOPIC}",
        "data.odometry_topic=/odom", "data.truth_topics={depth: /camera/ground_truth/depth}",
        "data.split_block=1.0", "data.image_size=[32, 48]", f"train.steps={STEPS}",
        "train.batch_size=4", "train.val_every=0", "train.log_every=1", "train.device=cpu",
        "optim.warmup_steps=0", f"train.output_dir={run}"])
    assert code == 0
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_a_recording_trains_metric_depth_that_the_node_publishes(ros, tmp_path):
    bag = tmp_path / "walk"
    assert make_bag_main(["--out", str(bag), "--frames", "40", "--size", "64x80"]) == 0

    log = _train_on(bag, tmp_path / "run")
    steps = [record["train"] for record in log if "train" in record]
    assert len(steps) == STEPS and all("depth" not in step for step in steps)  # no depth labels
    totals = [step["total"] for step in steps]
    assert statistics.fmean(totals[-4:]) < statistics.fmean(totals[:4])  # the loss falls
    odometry = [step["odometry"] for step in steps]
    assert odometry[-1] < odometry[0]  # the pose network learns the odometry's scale
    assert np.isfinite(log[-1]["val"]["depth"]["rmse"])  # scored on the recorded depth
    checkpoint = tmp_path / "run" / "last.safetensors"
    assert read_metadata(checkpoint).config.model.depth_units == "metres"

    model = tmp_path / "depth.onnx"
    assert export_main(["--checkpoint", str(checkpoint), "--onnx", str(model)]) == 0

    node = DenseMTLNode(
        cli_args=["--ros-args", "-r", "image:=/walk/image_raw",
                  "-r", "camera_info:=/walk/camera_info"],
        namespace="/walk", parameter_overrides=[
            Parameter("model.path", value=str(model)),
            Parameter("model.backend", value="onnxruntime")])
    camera = TestCamera("walk_camera", "/walk", node_namespace="/walk/densemtl",
                        outputs=("depth", "points"))
    spinner = Spinner(node, camera)
    try:
        assert node.predictor.depth_units == "metres"
        rgb = render_frames(1, (64, 80), seed=5)[0]["image"]
        outputs = exchange(camera, lambda header: image_message(rgb, "rgb8", header),
                           ("depth", "points"),
                           info=lambda header: camera_info(header, *rgb.shape[:2]))
        depth = message_to_array(outputs["depth"])
        assert outputs["depth"].encoding == "32FC1" and depth.shape == rgb.shape[:2]
        expected = published_maps(node.predictor.predict(rgb), node.predictor.metadata).depth
        np.testing.assert_allclose(depth, expected, rtol=1e-6)  # metres, unscaled
    finally:
        spinner.close()
        node.destroy_node()
        camera.destroy_node()
