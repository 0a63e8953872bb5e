"""Task heads: the method's U-Net decoder with ASPP ("padnet+") and the DeepLab-v3 baseline head.

Decoder layer ``i`` produces the feature at scale ``i`` (1/2^i of the input). The decoder can be
run in sections (layers 4..k, then k-1..0 from a replaced feature) so that the exchange block
can refine the scale-k features between the two (METHOD.md section 1.4).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEEPLAB_ASPP_RATES: tuple[int, int, int] = (12, 24, 36)
"""ASPP rates of the method's single-task DeepLab-v3 baseline (METHOD.md section 1.11)."""


class ConvBlock(nn.Sequential):
    """Reflection pad 1, 3x3 convolution with bias, ELU (the decoder's basic block, no BN)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.ReflectionPad2d(1), nn.Conv2d(in_channels, out_channels, 3), nn.ELU())


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1,
                  dilation: int = 1) -> nn.Sequential:
    """Convolution without bias (BN supplies it), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2),
                  dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, dilated 3x3 per rate and image pooling, fused by 1x1.

    The image-pooling branch normalises one value per image and channel, so in training mode
    it needs a batch of at least 2 (METHOD.md section 9.19).
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int],
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [conv_bn_relu(in_channels, out_channels)]
            + [conv_bn_relu(in_channels, out_channels, 3, rate) for rate in rates])
        self.pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                     conv_bn_relu(in_channels, out_channels))
        branches = len(rates) + 2
        self.project = nn.Sequential(*conv_bn_relu(branches * out_channels, out_channels),
                                     nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        branches = [conv(x) for conv in self.convs]
        # Bilinear up-sampling of a 1x1 map is a broadcast; expand exports to ONNX more simply.
        branches.append(self.pooling(x).expand_as(branches[0]))
        return self.project(torch.cat(branches, dim=1))


class DecoderLayer(nn.Module):
    """One U-Net step: reduce channels, up-sample x2 if needed, concatenate the skip, merge."""

    def __init__(self, reduce: nn.Module, reduced_channels: int, skip_channels: int,
                 out_channels: int, upsample: bool) -> None:
        super().__init__()
        self.reduce = reduce
        self.merge = ConvBlock(reduced_channels + skip_channels, out_channels)
        self.upsample = upsample

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        x = self.reduce(x)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.merge(x)


class UNetDecoder(nn.Module):
    """The method's per-task decoder ("padnet+", METHOD.md section 1.3).

    Layer 4 runs an ASPP on f4; layer i < 4 reduces the previous decoder feature with a
    ConvBlock. Every layer i > 0 concatenates the encoder skip f_{i-1}; layer 0 has no skip and
    always up-samples. Whether a layer up-samples is decided once, from the encoder's output
    strides (x is up-sampled when it is coarser than the skip), so the forward pass has no
    shape-dependent branches. Layers below the finest output scale are not built, since nothing
    would consume them. A 1x1 side head emits the task output at each scale in ``output_scales``.
    """

    def __init__(self, encoder_channels: Sequence[int], encoder_strides: Sequence[int],
                 out_channels: int, decoder_channels: Sequence[int], aspp_channels: int,
                 aspp_rates: Sequence[int], aspp_dropout: float,
                 output_scales: Sequence[int]) -> None:
        super().__init__()
        self.layer_ids = tuple(range(4, min(output_scales) - 1, -1))
        self.layers = nn.ModuleDict()
        self.feature_strides: dict[int, int] = {}
        x_channels, x_stride = encoder_channels[4], encoder_strides[4]
        for i in self.layer_ids:
            if i == 4:
                reduce: nn.Module = ASPP(x_channels, aspp_channels, aspp_rates, aspp_dropout)
                reduced = aspp_channels
            else:
                reduce, reduced = ConvBlock(x_channels, decoder_channels[i]), decoder_channels[i]
            skip_channels = encoder_channels[i - 1] if i > 0 else 0
            target_stride = encoder_strides[i - 1] if i > 0 else x_stride // 2
            self.layers[str(i)] = DecoderLayer(reduce, reduced, skip_channels,
                                               decoder_channels[i], x_stride > target_stride)
            x_channels, x_stride = decoder_channels[i], target_stride
            self.feature_strides[i] = target_stride
        misplaced = [s for s in output_scales if self.feature_strides[s] != 2 ** s]
        if misplaced:
            strides = [self.feature_strides[s] for s in misplaced]
            raise ValueError(f"output scale(s) {misplaced} would have stride(s) {strides} with "
                             f"this encoder dilation instead of 2^scale")
        self.output_scales = tuple(output_scales)
        self.side_heads = nn.ModuleDict(
            {str(s): nn.Conv2d(decoder_channels[s], out_channels, 1) for s in self.output_scales})

    def output_convs(self) -> list[nn.Conv2d]:
        """The convolutions that emit the task output, one per output scale."""
        return list(self.side_heads.values())

    def run(self, features: Sequence[Tensor], layers: Sequence[int], x: Tensor | None = None
            ) -> tuple[Tensor, dict[int, Tensor]]:
        """Run ``layers`` (descending, consecutive) starting from ``x`` (default: f4).

        Returns the last layer's feature and the side outputs of the layers run.
        """
        x = features[4] if x is None else x
        outputs = {}
        for i in layers:
            x = self.layers[str(i)](x, features[i - 1] if i > 0 else None)
            if i in self.output_scales:
                outputs[i] = self.side_heads[str(i)](x)
        return x, outputs

    def forward(self, features: Sequence[Tensor]) -> dict[int, Tensor]:
        _, outputs = self.run(features, self.layer_ids)
        return {s: outputs[s] for s in self.output_scales}


class DeepLabHead(nn.Module):
    """DeepLab-v3 head on f4, bilinearly up-sampled to the input size (output at scale 0 only)."""

    output_scales = (0,)

    def __init__(self, in_channels: int, out_channels: int, aspp_channels: int,
                 aspp_dropout: float, output_stride: int) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, aspp_channels, DEEPLAB_ASPP_RATES, aspp_dropout)
        self.refine = conv_bn_relu(aspp_channels, aspp_channels, kernel_size=3)
        self.classifier = nn.Conv2d(aspp_channels, out_channels, 1)
        self.output_stride = output_stride

    def output_convs(self) -> list[nn.Conv2d]:
        """The convolution that emits the task output."""
        return [self.classifier]

    def forward(self, features: Sequence[Tensor]) -> dict[int, Tensor]:
        logits = self.classifier(self.refine(self.aspp(features[4])))
        return {0: F.interpolate(logits, scale_factor=float(self.output_stride), mode="bilinear",
                                 align_corners=False)}
