"""The managed node through the real lifecycle services: configure loads the model, activate
subscribes and publishes, deactivate stops both and keeps the model, cleanup frees it, a
model that does not load fails configure, shutdown works from any state; and
``densemtl-lifecycle-node`` waits for a manager."""
import os
import subprocess
import sys
import time

import pytest
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.node import Node

from densemtl_core.data.synthetic import render_scene
from densemtl_ros.node.densemtl_node import DenseMTLNode
from tests.ros.harness import (Spinner, TestCamera, exchange, image_message, running,
                               wait_for)

NAMESPACE = "/managed"
NODE = f"{NAMESPACE}/densemtl"


class Manager(Node):
    """What a lifecycle manager does: calls a node's change_state and get_state services."""

    def __init__(self, node: str) -> None:
        super().__init__("test_lifecycle_manager")
        self._change = self.create_client(ChangeState, f"{node}/change_state")
        self._get = self.create_client(GetState, f"{node}/get_state")
        assert self._change.wait_for_service(timeout_sec=20.0)
        assert self._get.wait_for_service(timeout_sec=20.0)

    def _call(self, client, request):
        future = client.call_async(request)
        wait_for(future.done, 60, f"{client.srv_name} to answer")
        return future.result()

    def transition(self, transition_id: int) -> bool:
        return self._call(self._change, ChangeState.Request(
            transition=Transition(id=transition_id))).success

    def state(self) -> int:
        return self._call(self._get, GetState.Request()).current_state.id


def _managed_node(*arguments: str) -> DenseMTLNode:
    return DenseMTLNode(autostart=False, cli_args=[
        "--ros-args", "-r", f"__ns:={NAMESPACE}", *arguments,
        "-r", f"image:={NAMESPACE}/camera/image_raw",
        "-r", f"camera_info:={NAMESPACE}/camera/camera_info"])


@pytest.fixture
def managed(ros):
    node = _managed_node()
    camera = TestCamera("managed_camera", f"{NAMESPACE}/camera", node_namespace=NODE,
                        outputs=("depth",))
    with running(node, camera, Manager(NODE)) as nodes:
        yield nodes


def _frame(header):
    return image_message(render_scene(3, (64, 80))["image"], "rgb8", header)


def _outputs_flow(camera: TestCamera) -> bool:
    return bool(exchange(camera, _frame, ("depth",), timeout=20))


def test_every_transition_through_the_lifecycle_services(managed):
    node, camera, manager = managed
    assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node.predictor is None and not camera.camera.subscribed()

    assert manager.transition(Transition.TRANSITION_CONFIGURE)
    assert manager.state() == State.PRIMARY_STATE_INACTIVE
    assert node.predictor is not None  # the model is loaded...
    wait_for(camera.recorder.publishing, 20, "the publishers, created on configure")
    time.sleep(0.5)
    assert not camera.camera.subscribed()  # ...but nothing is received while inactive

    assert manager.transition(Transition.TRANSITION_ACTIVATE)
    assert manager.state() == State.PRIMARY_STATE_ACTIVE
    wait_for(camera.camera.subscribed, 20, "the image subscription, created on activate")
    assert _outputs_flow(camera)

    predictor = node.predictor
    assert manager.transition(Transition.TRANSITION_DEACTIVATE)
    assert manager.state() == State.PRIMARY_STATE_INACTIVE
    wait_for(lambda: not camera.camera.subscribed(), 20, "the subscription to go")
    assert node.predictor is predictor and node.pipeline is None  # stopped, still loaded

    assert manager.transition(Transition.TRANSITION_ACTIVATE)  # again, without reloading
    assert node.predictor is predictor
    wait_for(camera.camera.subscribed, 20, "the subscription to come back")
    assert _outputs_flow(camera)

    assert manager.transition(Transition.TRANSITION_DEACTIVATE)
    assert manager.transition(Transition.TRANSITION_CLEANUP)
    assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node.predictor is None and node.cameras == []
    wait_for(lambda: not camera.recorder.publishing(), 20, "the publishers to go")

    assert manager.transition(Transition.TRANSITION_CONFIGURE)  # reloads
    assert manager.transition(Transition.TRANSITION_ACTIVATE)
    assert _outputs_flow(camera)

    assert manager.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert manager.state() == State.PRIMARY_STATE_FINALIZED
    assert node.predictor is None and node.pipeline is None


def test_a_model_that_does_not_load_fails_configure_and_the_node_lives_on(ros):
    node = _managed_node("-p", "model.path:=/no/such/model.safetensors")
    with running(node, Manager(NODE)) as (_, manager):
        assert not manager.transition(Transition.TRANSITION_CONFIGURE)
        assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert node.predictor is None and node.cameras == []
        assert manager.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)


@pytest.mark.parametrize("shutdown, steps", [
    (Transition.TRANSITION_UNCONFIGURED_SHUTDOWN, ()),
    (Transition.TRANSITION_INACTIVE_SHUTDOWN, (Transition.TRANSITION_CONFIGURE,))])
def test_shutdown_from_any_state(managed, shutdown, steps):
    node, _, manager = managed
    for step in steps:
        assert manager.transition(step)
    assert manager.transition(shutdown)
    assert manager.state() == State.PRIMARY_STATE_FINALIZED
    assert node.predictor is None


def test_the_lifecycle_console_script_waits_for_a_manager(ros, tmp_path):
    """``densemtl-lifecycle-node`` in its own process: unconfigured until told, then active."""
    executable = os.path.join(os.path.dirname(sys.executable), "densemtl-lifecycle-node")
    process = subprocess.Popen(
        [executable, "--ros-args", "-r", "__node:=console_managed", "-r", "__ns:=/console"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    manager = Manager("/console/console_managed")
    spinner = Spinner(manager)
    try:
        assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert manager.transition(Transition.TRANSITION_CONFIGURE)
        assert manager.transition(Transition.TRANSITION_ACTIVATE)
        assert manager.state() == State.PRIMARY_STATE_ACTIVE
    finally:
        spinner.close()
        manager.destroy_node()
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "ready:" in output
