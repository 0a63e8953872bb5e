"""``python -m densemtl_ros.node``: the node, as the ``densemtl-node`` console script."""
from .densemtl_node import console_main

console_main()
