"""densemtl_ros: the ROS 2 side of densemtl (node, conversions, bag tools); no model code here."""
