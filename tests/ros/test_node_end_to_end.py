"""The node on an end-to-end graph (pre- and post-processing inside the ONNX file): the same
topics, encodings and headers as with the network graph, its maps as published."""
import numpy as np
import pytest
from rclpy.parameter import Parameter

from densemtl_core.checkpoint import load_checkpoint
from densemtl_core.data.synthetic import render_scene
from densemtl_core.export.onnx import export_onnx
from densemtl_core.tasks.spec import probability_to_mono8
from densemtl_ros.node.conversions import message_to_array
from densemtl_ros.node.densemtl_node import DenseMTLNode
from densemtl_ros.published import published_maps
from tests.ros.harness import (TestCamera, camera_info, exchange, fresh_header, running,
                               image_message, stamp_key, wait_for)
from tests.runtime.tiny_models import make_checkpoint

CAMERA = (96, 128)
MAPS = ("segmentation", "depth", "normals", "edges")


@pytest.fixture(scope="module")
def system(ros, tmp_path_factory):
    folder = tmp_path_factory.mktemp("end_to_end_node")
    model, metadata = load_checkpoint(make_checkpoint(folder / "tiny.safetensors"))
    onnx = export_onnx(model, metadata, folder / "camera.onnx", camera_size=CAMERA)
    node = DenseMTLNode(
        cli_args=["--ros-args", "-r", "image:=/e2e_test/image_raw",
                  "-r", "camera_info:=/e2e_test/camera_info"],
        namespace="/e2e", parameter_overrides=[Parameter("model.path", value=str(onnx)),
                                               Parameter("model.backend", value="onnxruntime")])
    camera = TestCamera("e2e_test_camera", "/e2e_test", node_namespace="/e2e/densemtl",
                        outputs=MAPS)
    with running(node, camera):
        wait_for(lambda: camera.image_publisher.get_subscription_count() > 0, 30, "discovery")
        yield node, camera


def test_node_publishes_the_end_to_end_graph_maps(system):
    node, camera = system
    assert node.predictor.camera_size == CAMERA
    rgb = render_scene(5, CAMERA)["image"]
    outputs = exchange(camera, lambda header: image_message(rgb[..., ::-1].copy(), "bgr8", header),
                       MAPS, info=lambda header: camera_info(header, *CAMERA))
    key = stamp_key(outputs["depth"].header)
    assert all(stamp_key(message.header) == key for message in outputs.values())
    expected = published_maps(node.predictor.predict(rgb), node.predictor.metadata)
    encodings = {name: message.encoding for name, message in outputs.items()}
    assert encodings == {"segmentation": "mono8", "depth": "32FC1", "normals": "32FC3",
                         "edges": "mono8"}
    np.testing.assert_array_equal(message_to_array(outputs["segmentation"]),
                                  expected.segmentation)
    np.testing.assert_array_equal(message_to_array(outputs["depth"]), expected.depth)
    np.testing.assert_array_equal(message_to_array(outputs["normals"]), expected.normals)
    edges = message_to_array(outputs["edges"])
    np.testing.assert_array_equal(edges, expected.edges)
    np.testing.assert_array_equal(probability_to_mono8(edges / np.float32(255)), edges)


def test_a_frame_of_another_size_fails_with_one_line_and_the_node_goes_on(system):
    node, camera = system
    before = node.cameras[0].telemetry.snapshot().failed
    small = render_scene(6, (48, 64))["image"]
    wait_for(lambda: camera.send(image_message(small, "rgb8", fresh_header()), None)
             or node.cameras[0].telemetry.snapshot().failed > before, 20, "the frame to fail")
    rgb = render_scene(7, CAMERA)["image"]
    outputs = exchange(camera, lambda header: image_message(rgb, "rgb8", header), MAPS)
    assert message_to_array(outputs["segmentation"]).shape == CAMERA
