"""Tools for recordings: scoring a model on a bag offline or live through the node
(``densemtl-bag-eval``), the rig that plays a camera to a node and records its outputs, and
sample recordings (``densemtl-make-bag``)."""
