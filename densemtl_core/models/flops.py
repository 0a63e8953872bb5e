"""Forward FLOPs of a network, as the study report measures its rows' cost."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def forward_flops(model: nn.Module, image_size: Sequence[int]) -> int:
    """FLOPs of one forward pass of ``model`` (in eval mode: a batch of one cannot train batch
    norm) on one ``image_size`` (H, W) RGB image, counted by torch's ``FlopCounterMode`` (2 per
    multiply-accumulate of convolutions and matrix products; element-wise operations are not
    counted)."""
    image = torch.rand(1, 3, *image_size)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(image)
    return counter.get_total_flops()
