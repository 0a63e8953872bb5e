"""A torchvision ResNet state-dict layout written out independently of the encoder under test."""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

_BLOCKS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
           "resnet50": ("bottleneck", (3, 4, 6, 3)), "resnet101": ("bottleneck", (3, 4, 23, 3))}


def _batch_norm(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,),
            f"{prefix}.running_mean": (channels,), f"{prefix}.running_var": (channels,),
            f"{prefix}.num_batches_tracked": ()}


def torchvision_resnet_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Every tensor of ``torchvision.models.<name>().state_dict()`` with its shape."""
    kind, depths = _BLOCKS[name]
    expansion = 1 if kind == "basic" else 4
    shapes = {"conv1.weight": (64, 3, 7, 7), **_batch_norm("bn1", 64)}
    in_channels = 64
    for stage, depth in enumerate(depths, start=1):
        planes = 64 * 2 ** (stage - 1)
        out_channels = planes * expansion
        for block in range(depth):
            prefix = f"layer{stage}.{block}"
            block_in = in_channels if block == 0 else out_channels
            if kind == "basic":
                convs = [(planes, block_in, 3, 3), (planes, planes, 3, 3)]
            else:
                convs = [(planes, block_in, 1, 1), (planes, planes, 3, 3),
                         (out_channels, planes, 1, 1)]
            for index, shape in enumerate(convs, start=1):
                shapes[f"{prefix}.conv{index}.weight"] = shape
                shapes.update(_batch_norm(f"{prefix}.bn{index}", shape[0]))
            if block == 0 and (stage > 1 or in_channels != out_channels):
                shapes[f"{prefix}.downsample.0.weight"] = (out_channels, in_channels, 1, 1)
                shapes.update(_batch_norm(f"{prefix}.downsample.1", out_channels))
        in_channels = out_channels
    shapes["fc.weight"] = (1000, in_channels)
    shapes["fc.bias"] = (1000,)
    return shapes


@pytest.fixture
def torchvision_state_dict() -> Callable[[str], dict[str, torch.Tensor]]:
    """Factory of random tensors named and shaped like a torchvision ResNet checkpoint."""
    def make(name: str) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        def tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
            if key.endswith("num_batches_tracked"):
                return torch.randint(0, 1000, shape, generator=generator)
            return torch.randn(shape, generator=generator)
        return {key: tensor(key, shape) for key, shape in torchvision_resnet_shapes(name).items()}
    return make
