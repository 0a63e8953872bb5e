"""Errors of the runtime; each message names the file or setting at fault and the way out."""
from __future__ import annotations


class PredictorError(RuntimeError):
    """A model cannot be loaded or run with the requested backend or device."""


class ModelFileError(PredictorError):
    """An ONNX file, TensorRT engine or engine sidecar is missing, corrupt or foreign."""


class EngineMismatchError(ModelFileError):
    """A TensorRT engine was built for another TensorRT version or GPU, or from another ONNX
    file; the message holds the command that rebuilds it."""
