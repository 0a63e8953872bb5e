"""Run a trained model on camera images: one Predictor API over PyTorch, ONNX Runtime and TensorRT.

    from densemtl_core.runtime import load_predictor
    predictor = load_predictor("model.onnx")          # or a checkpoint, an engine, None (default)
    prediction = predictor.predict(rgb)               # rgb: HxWx3 uint8
    prediction.segmentation, prediction.depth, prediction.normals, prediction.edges
"""
from .errors import EngineMismatchError, ModelFileError, PredictorError
from .loading import BACKENDS, load_predictor
from .prediction import Prediction
from .predictor import NetworkOutputs, Predictor, StageTimings
from .processing import InvalidImageError

__all__ = ["BACKENDS", "EngineMismatchError", "InvalidImageError", "ModelFileError",
           "NetworkOutputs", "Prediction", "Predictor", "PredictorError", "StageTimings",
           "load_predictor"]
