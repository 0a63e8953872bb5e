"""The network: ResNet encoder, task heads, cross-task exchange block and their assembly."""
from densemtl_core.models.backbone import ResNetEncoder, load_torchvision_weights
from densemtl_core.models.network import MultiTaskNet, build_model

__all__ = ["MultiTaskNet", "ResNetEncoder", "build_model", "load_torchvision_weights"]
