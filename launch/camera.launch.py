"""Start the densemtl node on a camera stream, or on several cameras with one network.

    ros2 launch densemtl_ros camera.launch.py
    ros2 launch densemtl_ros camera.launch.py camera:=/front_camera backend:=tensorrt \
        params_file:=/path/to/densemtl.yaml namespace:=perception use_sim_time:=true
    ros2 launch densemtl_ros camera.launch.py cameras:="[front, rear, left, right]"
    ros2 launch densemtl_ros camera.launch.py lifecycle:=true [activate:=false]

``camera`` is the camera driver's namespace: the node reads ``<camera>/image_raw`` (or
``<image_topic>`` when given) and ``<camera>/camera_info``, and publishes under
``<namespace>/densemtl/``. ``cameras`` (a YAML list) serves several cameras with one network
instead: camera C reads ``C/image_raw`` and ``C/camera_info`` (relative to ``namespace``) and
publishes under ``<namespace>/densemtl/C/``. The parameters come from ``params_file`` (keyed
``/**/densemtl``, so it applies in any namespace); ``backend``, ``cameras`` and
``use_sim_time`` override it only when they are given. ``lifecycle:=true`` starts the managed
node (``densemtl-lifecycle-node``) and, unless ``activate:=false``, configures and activates
it; a lifecycle manager (e.g. nav2's) can take over from there. Without ros2 launch, the same
node and parameters start with
``densemtl-node --ros-args --params-file config/densemtl.yaml -r image:=/camera/image_raw``
(with ``FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_images.xml`` for the same transport).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, OpaqueFunction,
                            RegisterEventHandler, SetEnvironmentVariable)
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

PACKAGE = "densemtl_ros"
EXECUTABLE = "densemtl-node"
LIFECYCLE_EXECUTABLE = "densemtl-lifecycle-node"
NODE_NAME = "densemtl"
SHARE = get_package_share_directory(PACKAGE)
PARAMS_FILE = os.path.join(SHARE, "config", "densemtl.yaml")
DDS_PROFILE = os.path.join(SHARE, "config", "fastdds_large_images.xml")
NOT_GIVEN = ""
OVERRIDES = {"backend": "model.backend", "cameras": "cameras", "use_sim_time": "use_sim_time"}
"""Launch argument -> the node parameter it sets when given (non-empty)."""


def given_overrides(context: LaunchContext) -> dict:
    """The parameters of the arguments given on the command line; the others keep the value
    from the params file. The values stay substitutions: launch_ros reads them as YAML, so
    ``use_sim_time:=true`` is a bool."""
    return {parameter: LaunchConfiguration(argument)
            for argument, parameter in OVERRIDES.items()
            if LaunchConfiguration(argument).perform(context) != NOT_GIVEN}


def densemtl_node(context: LaunchContext) -> list:
    """The node, with the params file first and the given overrides after it (the later
    parameters file wins); the managed node with ``lifecycle:=true``, driven to active unless
    ``activate:=false``."""
    overrides = given_overrides(context)
    managed = LaunchConfiguration("lifecycle").perform(context).lower() == "true"
    action, executable = (LifecycleNode, LIFECYCLE_EXECUTABLE) if managed else (Node, EXECUTABLE)
    node = action(
        package=PACKAGE,
        executable=executable,
        name=NODE_NAME,
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"), *([overrides] if overrides else [])],
        remappings=[
            ("image", LaunchConfiguration("image_topic")),
            ("camera_info", [LaunchConfiguration("camera"), "/camera_info"]),
        ],
    )
    if not managed or LaunchConfiguration("activate").perform(context).lower() != "true":
        return [node]
    return [node, *activation(node)]


def activation(node: LifecycleNode) -> list:
    """Configure the managed node once it runs, and activate it once configured (a configure
    that fails, e.g. a model that does not load, leaves it unconfigured, logged)."""
    def transition(transition_id: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                           transition_id=transition_id))
    return [RegisterEventHandler(OnStateTransition(
                target_lifecycle_node=node, goal_state="inactive",
                entities=[transition(Transition.TRANSITION_ACTIVATE)])),
            transition(Transition.TRANSITION_CONFIGURE)]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("camera", default_value="/camera",
                              description="Namespace of the camera driver's topics"),
        DeclareLaunchArgument("image_topic",
                              default_value=[LaunchConfiguration("camera"), "/image_raw"],
                              description="Image topic (default <camera>/image_raw)"),
        DeclareLaunchArgument("params_file", default_value=PARAMS_FILE,
                              description="Node parameters (see config/densemtl.yaml)"),
        DeclareLaunchArgument("backend", default_value=NOT_GIVEN,
                              description="auto | torch | onnxruntime | tensorrt; overrides "
                                          "model.backend of params_file when given"),
        DeclareLaunchArgument("cameras", default_value=NOT_GIVEN,
                              description="Several cameras for one network, a YAML list such "
                                          "as \"[front, rear]\"; overrides params_file's "
                                          "cameras when given"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="true: start the managed (lifecycle) node"),
        DeclareLaunchArgument("activate", default_value="true",
                              description="With lifecycle:=true: configure and activate it "
                                          "at start; false: leave it to a lifecycle manager"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node and its outputs"),
        DeclareLaunchArgument("use_sim_time", default_value=NOT_GIVEN,
                              description="true: use /clock (rosbag replay) instead of wall "
                                          "time; overrides params_file when given"),
        DeclareLaunchArgument("dds_profile", default_value=DDS_PROFILE,
                              description="Fast DDS profile for the node's process (large "
                                          "shared-memory segments for image outputs)"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               LaunchConfiguration("dds_profile")),
        OpaqueFunction(function=densemtl_node),
    ])
