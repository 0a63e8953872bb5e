"""Camera recordings without ROS: rosbag2 and ROS 1 bags read and written with rosbags
(:mod:`.bags`), image messages decoded to arrays and arrays laid out as messages
(:mod:`.encodings`), and a CameraInfo's calibration read, checked and rescaled
(:mod:`.calibration`).

The library may not import ROS, yet training and the bag tools both read recordings, so the
reading lives here; the node's rclpy message builders stay in ``densemtl_ros``.
"""
