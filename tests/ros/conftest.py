"""Real rclpy over Fast DDS, isolated from other ROS 2 processes on the machine.

Each test session gets its own DDS domain (derived from the process id) and discovery stays
on this host, so parallel CI jobs and a developer's running robot stack never cross-talk.
"""
import os

os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

import pytest  # noqa: E402
import rclpy  # noqa: E402


@pytest.fixture(scope="session")
def ros():
    """rclpy initialised once for the session (the default context)."""
    rclpy.init()
    yield
    rclpy.try_shutdown()
