"""PAD-Net (Xu et al. 2018): intermediate predictions, multi-modal distillation, final heads.

Built as the method's reference code builds its PAD-Net baseline, from this package's parts:
every task gets, on the encoder's last feature f4, an initial block of two ResNet bottlenecks
and a 1x1 convolution giving its intermediate prediction; the distillation block adds to each
task's feature the messages of all the other tasks, each a PAD-Net spatial gate
(``SelfAttentionGate``, conv(x) * sigmoid(conv'(x)) at full width); a final block of two
bottlenecks and a 1x1 convolution predicts at f4's resolution and is bilinearly up-sampled to
the input size, as the DeepLab head is.

How the intermediate predictions are supervised: they are one more output scale. A head emits
``{0: final, s: intermediate}`` with s the scale of f4 (4 with the default dilation), so
``model.output_scales`` must be ``[0, s]`` and the supervised objective, which averages every
output scale of a task against the label (``loss.scales`` may restrict it), supervises both
with the same weight, as the reference does. Nothing downstream changes: the runtime and the
exports read scale 0.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from densemtl_core.models.backbone import Bottleneck
from densemtl_core.models.xtam import SelfAttentionGate
from densemtl_core.tasks import TASKS

PADNET_CHANNELS = 256
"""Width of every task feature in the reference, before ``model.width``."""


def bottleneck_pair(in_channels: int, channels: int) -> nn.Sequential:
    """Two ResNet bottlenecks from ``in_channels`` to ``channels`` (planes ``channels // 4``)."""
    downsample = None
    if in_channels != channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False),
                                   nn.BatchNorm2d(channels))
    planes = channels // Bottleneck.expansion
    return nn.Sequential(Bottleneck(in_channels, planes, downsample=downsample),
                         Bottleneck(channels, planes))


def intermediate_scale(encoder_strides: Sequence[int]) -> int:
    """The output scale of f4, where the intermediate predictions are made."""
    return int(math.log2(encoder_strides[4]))


class PadNetHead(nn.Module):
    """One task's initial and final blocks, run in two sections around the distillation.

    As ``UNetDecoder.run``, ``run(features, layers, x)`` takes the layers to run, named by the
    scale they emit: layer s (the initial block, from f4) and layer 0 (the final block, from
    the distilled feature ``x``).
    """

    def __init__(self, encoder_channels: Sequence[int], encoder_strides: Sequence[int],
                 out_channels: int, channels: int) -> None:
        super().__init__()
        self.scale = intermediate_scale(encoder_strides)
        self.layer_ids = (self.scale, 0)
        self.upsample = float(encoder_strides[4])
        self.initial = bottleneck_pair(encoder_channels[4], channels)
        self.final = bottleneck_pair(channels, channels)
        self.side_heads = nn.ModuleDict({str(s): nn.Conv2d(channels, out_channels, 1)
                                         for s in self.layer_ids})

    def output_convs(self) -> list[nn.Conv2d]:
        """The convolutions that emit the task output: intermediate, then final."""
        return list(self.side_heads.values())

    def run(self, features: Sequence[Tensor], layers: Sequence[int], x: Tensor | None = None
            ) -> tuple[Tensor, dict[int, Tensor]]:
        """Run ``layers`` (a sub-sequence of ``layer_ids``) from ``x`` (default: f4).

        Returns the last feature and the outputs of the layers run."""
        x = features[4] if x is None else x
        outputs = {}
        for i in layers:
            if i == 0:
                x = self.final(x)
                outputs[0] = F.interpolate(self.side_heads["0"](x), scale_factor=self.upsample,
                                           mode="bilinear", align_corners=False)
            else:
                x = self.initial(x)
                outputs[i] = self.side_heads[str(i)](x)
        return x, outputs

    def forward(self, features: Sequence[Tensor]) -> dict[int, Tensor]:
        return self.run(features, self.layer_ids)[1]


class Distillation(nn.Module):
    """Multi-modal distillation: F_t + sum over s != t of gate_{s->t}(F_s).

    The sources of a target are taken in the canonical task order (that of ``TASKS``), as in
    the exchange block, so weights do not depend on configuration order.
    """

    def __init__(self, tasks: Sequence[str], channels: int) -> None:
        super().__init__()
        if len(tasks) < 2:
            raise ValueError("distillation needs at least two tasks")
        self.tasks = tuple(t for t in TASKS if t in tasks)
        self.gates = nn.ModuleDict({
            f"{source}_to_{target}": SelfAttentionGate(channels, channels)
            for target in self.tasks for source in self.tasks if source != target})

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        refined = {}
        for target in self.tasks:
            messages = [self.gates[f"{source}_to_{target}"](features[source])
                        for source in self.tasks if source != target]
            refined[target] = sum(messages, features[target])  # Adds: no ReduceSum in the graph
        return refined
