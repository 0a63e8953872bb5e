"""The ``densemtl`` ROS 2 node (:mod:`.densemtl_node`) and its parts: parameters, outputs,
message conversions, point clouds, the keep-latest slot, the two-stage pipeline, telemetry and
/diagnostics."""
