"""Start the densemtl node on a camera stream.

    ros2 launch densemtl_ros camera.launch.py
    ros2 launch densemtl_ros camera.launch.py camera:=/front_camera backend:=tensorrt \
        params_file:=/path/to/densemtl.yaml namespace:=perception use_sim_time:=true

``camera`` is the camera driver's namespace: the node reads ``<camera>/image_raw`` (or
``<image_topic>`` when given) and ``<camera>/camera_info``, and publishes under
``<namespace>/densemtl/``. Without ros2 launch, the same node and parameters start with
``densemtl-node --ros-args --params-file config/densemtl.yaml -r image:=/camera/image_raw``
(with ``FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_images.xml`` for the same transport).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "densemtl_ros"
EXECUTABLE = "densemtl-node"
SHARE = get_package_share_directory(PACKAGE)
PARAMS_FILE = os.path.join(SHARE, "config", "densemtl.yaml")
DDS_PROFILE = os.path.join(SHARE, "config", "fastdds_large_images.xml")


def generate_launch_description() -> LaunchDescription:
    camera = LaunchConfiguration("camera")
    image_topic = LaunchConfiguration("image_topic")
    return LaunchDescription([
        DeclareLaunchArgument("camera", default_value="/camera",
                              description="Namespace of the camera driver's topics"),
        DeclareLaunchArgument("image_topic", default_value=[camera, "/image_raw"],
                              description="Image topic (default <camera>/image_raw)"),
        DeclareLaunchArgument("params_file", default_value=PARAMS_FILE,
                              description="Node parameters (see config/densemtl.yaml)"),
        DeclareLaunchArgument("backend", default_value="auto",
                              description="auto | torch | onnxruntime | tensorrt"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node and its outputs"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (rosbag replay) instead of wall time"),
        DeclareLaunchArgument("dds_profile", default_value=DDS_PROFILE,
                              description="Fast DDS profile for the node's process (large "
                                          "shared-memory segments for image outputs)"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               LaunchConfiguration("dds_profile")),
        Node(
            package=PACKAGE,
            executable=EXECUTABLE,
            name="densemtl",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[
                LaunchConfiguration("params_file"),
                # launch_ros reads substituted values as YAML: "false" is a bool.
                {"model.backend": LaunchConfiguration("backend"),
                 "use_sim_time": LaunchConfiguration("use_sim_time")},
            ],
            remappings=[
                ("image", image_topic),
                ("camera_info", [camera, "/camera_info"]),
            ],
        ),
    ])
