"""The fifth task of tests/fifth_task.py, added to the task table after everything was imported,
goes through the ROS side too: the node declares its switch and publishes its map, and the bag
evaluation reads its ground truth from a recording and scores it."""
from __future__ import annotations

import numpy as np
import pytest

from densemtl_core.recordings.bags import open_bag
from densemtl_core.recordings.encodings import message_to_array
from densemtl_core.runtime import load_predictor
from densemtl_core.tasks import extended
from densemtl_core.tasks.spec import probability_to_mono8
from densemtl_ros.bag_tools.bag_evaluation import evaluate
from densemtl_ros.bag_tools.settings import EvaluationSettings
from densemtl_ros.bag_tools.bag_topics import BagTopics
from densemtl_ros.bag_tools.make_bag import CAMERA_INFO_TOPIC, IMAGE_TOPIC
from densemtl_ros.node.densemtl_node import DenseMTLNode
from densemtl_ros.published import published_maps
from tests.fifth_task import SALIENCY, export_untrained_model, saliency_of
from tests.ros.bag_fixtures import Recording, Truth, frame_stamps, render_frames
from tests.ros.harness import Spinner, TestCamera, exchange, image_message, stamp_key, wait_for

SALIENCY_TOPIC = "/camera/saliency"


@pytest.fixture(scope="module")
def saliency_model(tmp_path_factory):
    """An ONNX model with the fifth task, which stays in the table for the module's tests."""
    with extended(SALIENCY):
        yield export_untrained_model(tmp_path_factory.mktemp("saliency") / "saliency.onnx")


def test_the_node_publishes_a_fifth_task_with_the_input_header(ros, saliency_model):
    node = DenseMTLNode(cli_args=[
        "--ros-args", "-r", "image:=/fifth_task/image_raw",
        "-r", "camera_info:=/fifth_task/camera_info", "-p", f"model.path:={saliency_model}",
        "-p", "model.backend:=onnxruntime", "-p", "model.device:=cpu"])
    camera = TestCamera("fifth_task_camera", "/fifth_task", outputs=("saliency",))
    spinner = Spinner(node, camera)
    try:
        assert node.get_parameter("publish.saliency").value is True
        publisher = node.cameras[0].outputs.publishers["saliency"]
        wait_for(lambda: publisher.get_subscription_count() > 0
                 and camera.image_publisher.get_subscription_count() > 0, 30, "discovery")
        rgb = render_frames(1, (72, 96))[0]["image"]
        sent = {}

        def message(header):
            sent["header"] = header
            return image_message(rgb, "rgb8", header)
        output = exchange(camera, message, ["saliency"])["saliency"]
        assert stamp_key(output.header) == stamp_key(sent["header"])
        assert output.header.frame_id == sent["header"].frame_id
        assert output.encoding == "mono8"
        expected = published_maps(node.predictor.predict(rgb), node.predictor.metadata)
        np.testing.assert_array_equal(message_to_array(output), expected.saliency)
    finally:
        spinner.close()
        node.destroy_node()
        camera.destroy_node()


def test_a_fifth_task_is_scored_from_a_recording(saliency_model, tmp_path):
    frames = render_frames(3, (48, 64))
    rgbs = [frame["image"] for frame in frames]
    truths = [saliency_of(rgb) for rgb in rgbs]
    bag = Recording(rgbs, frame_stamps(len(rgbs)), frames[0]["intrinsics"],
                    {SALIENCY_TOPIC: Truth("32FC1", truths)}).write(tmp_path / "bag")
    topics = BagTopics(IMAGE_TOPIC, CAMERA_INFO_TOPIC, {"saliency": SALIENCY_TOPIC})
    settings = EvaluationSettings(str(saliency_model), "onnxruntime", "cpu", progress=False)
    with open_bag(bag) as reader:
        report = evaluate(reader, topics, settings).report(tmp_path / "out")

    predictor = load_predictor(saliency_model, backend="onnxruntime", device="cpu")
    published = [probability_to_mono8(predictor.predict(rgb).saliency) for rgb in rgbs]
    expected = np.mean([np.abs(pixels / np.float32(255.0) - truth)
                        for pixels, truth in zip(published, truths)])
    assert report["frames_scored"]["saliency"] == len(rgbs)
    assert report["metrics"]["saliency"]["mae"] == pytest.approx(expected, rel=1e-5)
    assert report["source"]["topics"]["saliency"] == SALIENCY_TOPIC
