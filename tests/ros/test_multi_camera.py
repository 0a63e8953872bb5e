"""One node, several cameras, one network: every camera's outputs with its own headers, no
camera starving or stalling another, batched results equal to one frame at a time, and a
/diagnostics status per camera plus one for the shared network."""
import os
import threading
import time

import numpy as np
import pytest
from rclpy.parameter import Parameter

from densemtl_core.data.synthetic import render_scene
from densemtl_ros.node.conversions import message_to_array
from densemtl_ros.node.densemtl_node import DenseMTLNode, StartupError, network_threads
from densemtl_ros.node.diagnostics import status_name
from densemtl_ros.published import published_maps
from tests.ros.harness import (TestCamera, exchange, fresh_header, image_message,
                               running, stamp_key, wait_for)

NAMESPACE = "/multi"
CAMERAS = ("front", "rear", "left")
OUTPUTS = ("segmentation", "depth", "normals", "edges")
NODE = f"{NAMESPACE}/densemtl"


@pytest.fixture(scope="module")
def rig(ros):
    node = DenseMTLNode(cli_args=["--ros-args", "-r", f"__ns:={NAMESPACE}",
                                  "-p", f"cameras:=[{', '.join(CAMERAS)}]",
                                  *[item for name in ("segmentation_color", "normals_color",
                                                      "camera_info", "points")
                                    for item in ("-p", f"publish.{name}:=false")]])
    cameras = {name: TestCamera(f"multi_{name}", f"{NAMESPACE}/{name}",
                                node_namespace=f"{NODE}/{name}", outputs=OUTPUTS)
               for name in CAMERAS}
    with running(node, *cameras.values()):
        wait_for(lambda: all(camera.camera.subscribed() and camera.recorder.publishing()
                             for camera in cameras.values()), 30, "discovery of three cameras")
        yield node, cameras


def _scene(seed: int) -> np.ndarray:
    return render_scene(seed, (64, 80))["image"]


def _publish_at(camera: TestCamera, seed: int, rate: float, seconds: float, frame_id: str,
                sent: dict) -> threading.Thread:
    """Publish from another thread at ``rate`` Hz for ``seconds``; ``sent``: stamp -> seed."""
    image = _scene(seed)

    def publish():
        began, index = time.monotonic(), 0
        while time.monotonic() - began < seconds:
            header = fresh_header(frame_id)
            sent[stamp_key(header)] = seed
            camera.send(image_message(image, "rgb8", header))
            index += 1
            time.sleep(max(0.0, began + index / rate - time.monotonic()))
    thread = threading.Thread(target=publish)
    thread.start()
    return thread


def test_topics_and_parameters(rig):
    node, _ = rig
    assert [camera.image_topic for camera in node.cameras] == [
        f"{NAMESPACE}/{name}/image_raw" for name in CAMERAS]
    published = {name for name, _ in node.get_publisher_names_and_types_by_node(
        "densemtl", NAMESPACE)}
    for name in CAMERAS:
        assert {f"{NODE}/{name}/{output}" for output in OUTPUTS} <= published
    assert f"{NODE}/segmentation" not in published  # no single-camera topics


def test_cameras_at_different_rates_get_every_output_with_their_own_headers(rig):
    node, cameras = rig
    sent = {name: {} for name in CAMERAS}
    threads = [_publish_at(cameras[name], seed, rate, 3.0, f"{name}_optical", sent[name])
               for seed, (name, rate) in enumerate(zip(CAMERAS, (20.0, 7.0, 3.0)))]
    for thread in threads:
        thread.join()
    for name in CAMERAS:
        camera = cameras[name]
        wait_for(lambda: all(camera.received[output] for output in OUTPUTS), 20,
                 f"outputs of {name}")
        for output in OUTPUTS:
            messages = camera.received[output]
            assert set(messages) <= set(sent[name]), f"{name}/{output} got another's stamps"
            assert {message.header.frame_id for message in messages.values()} == {
                f"{name}_optical"}
    # Every camera was served; the slowest lost few of its frames to the others.
    slow = node.cameras[CAMERAS.index("left")].telemetry.snapshot()
    assert slow.processed >= 0.6 * slow.received > 0


def test_a_camera_that_stops_does_not_stall_the_others(rig):
    node, cameras = rig
    node.set_parameters([Parameter("sync.window_ms", value=50.0)])  # waits for the others
    try:
        for _ in range(3):  # front alone, with rear and left silent
            outputs = exchange(cameras["front"],
                               lambda header: image_message(_scene(4), "rgb8", header),
                               OUTPUTS, timeout=10)
            assert set(outputs) == set(OUTPUTS)
    finally:
        node.set_parameters([Parameter("sync.window_ms", value=0.0)])


def test_a_batch_gives_what_one_frame_at_a_time_gives(rig):
    """The same stamp on all three cameras at once: one batch of three; each camera's maps
    equal the Predictor's for that image alone."""
    node, cameras = rig
    images = {name: _scene(10 + index) for index, name in enumerate(CAMERAS)}
    header = fresh_header()
    key = stamp_key(header)
    before = node.batches.snapshot().frames
    node.set_parameters([Parameter("sync.window_ms", value=500.0)])  # all three in one batch
    try:
        for name in CAMERAS:
            cameras[name].send(image_message(images[name], "rgb8", header))
        outputs = {name: wait_for(lambda: cameras[name].outputs_for(key, OUTPUTS), 20,
                                  f"{name}'s outputs") for name in CAMERAS}
    finally:
        node.set_parameters([Parameter("sync.window_ms", value=0.0)])
    assert node.batches.snapshot().frames - before == 3
    for name in CAMERAS:
        alone = published_maps(node.predictor.predict(images[name]), node.predictor.metadata)
        published = outputs[name]
        segmentation = message_to_array(published["segmentation"])
        assert (segmentation == alone.segmentation).mean() > 0.999
        np.testing.assert_allclose(message_to_array(published["depth"]), alone.depth,
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(message_to_array(published["normals"]), alone.normals,
                                   atol=1e-4)


def test_diagnostics_per_camera_and_for_the_network(rig):
    node, cameras = rig
    for name in CAMERAS:
        exchange(cameras[name], lambda header: image_message(_scene(1), "rgb8", header),
                 ("depth",), timeout=10)
    names = {status_name(NODE, name) for name in CAMERAS} | {f"{NODE}: network"}

    def reported():
        for array in reversed(cameras["front"].diagnostics):
            statuses = {status.name: {item.key: item.value for item in status.values}
                        for status in array.status}
            if names <= set(statuses) and all(
                    int(statuses[status_name(NODE, name)]["frames processed"]) > 0
                    for name in CAMERAS):
                return statuses
        return None
    statuses = wait_for(reported, 10, "a report with every camera and the network")
    for name in CAMERAS:
        assert statuses[status_name(NODE, name)]["image topic"] == \
            f"{NAMESPACE}/{name}/image_raw"
    network = statuses[f"{NODE}: network"]
    assert int(network["frames"]) >= int(network["batches"]) > 0
    assert float(network["frames per batch (mean)"]) >= 1.0


@pytest.mark.parametrize("cameras, reason", [
    ("[front, front]", "twice"), ("[1st]", "not a relative ROS name")])
def test_bad_camera_lists_are_refused_at_start(ros, cameras, reason):
    with pytest.raises(StartupError, match=reason):
        DenseMTLNode(cli_args=["--ros-args", "-r", "__node:=bad_cameras",
                               "-p", f"cameras:={cameras}"])


def test_several_cameras_give_the_network_every_core():
    cores = os.cpu_count() or 1
    assert network_threads(1) == max(1, cores - 1)
    assert network_threads(4) == cores
