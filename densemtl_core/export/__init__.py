"""Deployment formats: ONNX export of a checkpoint and TensorRT engines built from it
(``densemtl-export``)."""
