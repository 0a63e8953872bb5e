"""Assembly of the single-task, naive multi-task, DenseMTL and PAD-Net networks (ModelConfig)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densemtl_core.config import ModelConfig, validate_model
from densemtl_core.models.backbone import ResNetEncoder, load_torchvision_weights, scaled_width
from densemtl_core.models.heads import DeepLabHead, UNetDecoder
from densemtl_core.models.padnet import PADNET_CHANNELS, Distillation, PadNetHead
from densemtl_core.models.xtam import ATTENTION_DOWNSAMPLE, ExchangeBlock
from densemtl_core.tasks import TASKS, decode_outputs


class MultiTaskNet(nn.Module):
    """Shared ResNet encoder, one head per task, optionally a cross-task exchange block
    (``densemtl``: xTAMs; ``padnet``: PAD-Net's distillation, ``densemtl_core.models.padnet``).

    ``forward`` maps an RGB batch in [0, 1] to raw outputs ``outputs[task][scale]`` (see
    ``decode`` for metric values). Input normalisation is part of the network so that every
    runtime (eager, ONNX, TensorRT) feeds the same [0, 1] image.

    For ``densemtl`` each head runs its layers down to ``exchange_scale``; the side outputs of
    those layers come from the un-exchanged features. The exchange block refines the
    ``exchange_scale`` features of all tasks together and the heads finish from the refined ones.
    PAD-Net runs the same way, its heads' sections being the initial and the final blocks.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tasks = tuple(cfg.tasks)
        self.register_buffer("input_mean", torch.tensor(cfg.input_mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("input_std", torch.tensor(cfg.input_std).view(1, 3, 1, 1),
                             persistent=False)
        self.encoder = ResNetEncoder(cfg.backbone, cfg.width, cfg.dilation)
        self.heads = nn.ModuleDict({task: self._build_head(task) for task in self.tasks})
        self.output_scales: tuple[int, ...] = (0,) if cfg.head == "deeplab" else cfg.output_scales
        if cfg.initial_depth is not None:
            self._start_depth_at(cfg.initial_depth)
        self.exchange: ExchangeBlock | Distillation | None = None
        if cfg.arch == "densemtl":
            self.exchange = self._build_exchange()
            scale = cfg.exchange_scale
            self._sections = (tuple(range(4, scale - 1, -1)),
                              tuple(range(scale - 1, min(cfg.output_scales) - 1, -1)))
        elif cfg.arch == "padnet":
            self.exchange = Distillation(self.tasks, self._head_channels(PADNET_CHANNELS))
            intermediate = next(iter(self.heads.values())).scale
            if set(cfg.output_scales) != {0, intermediate}:
                raise ValueError(f"model.arch=padnet predicts at scales 0 and {intermediate} (the "
                                 f"encoder's last feature): model.output_scales must be "
                                 f"[0, {intermediate}], got {list(cfg.output_scales)}")
            self._sections = ((intermediate,), (0,))

    def _head_channels(self, channels: int) -> int:
        """``channels`` of a task head scaled by ``width`` and ``decoder_width``."""
        return scaled_width(channels, self.cfg.width * self.cfg.decoder_width)

    def _build_head(self, task: str) -> nn.Module:
        cfg, encoder = self.cfg, self.encoder
        out_channels = TASKS[task].channels(cfg)
        if cfg.arch == "padnet":
            return PadNetHead(encoder.channels, encoder.strides, out_channels,
                              self._head_channels(PADNET_CHANNELS))
        aspp_channels = self._head_channels(cfg.aspp_channels)
        if cfg.head == "deeplab":
            return DeepLabHead(encoder.channels[4], out_channels, aspp_channels, cfg.aspp_dropout,
                               encoder.strides[4])
        return UNetDecoder(encoder.channels, encoder.strides, out_channels,
                           [self._head_channels(c) for c in cfg.decoder_channels],
                           aspp_channels, cfg.aspp_rates, cfg.aspp_dropout, cfg.output_scales)

    def _start_depth_at(self, depth: float) -> None:
        """Bias every output of the disparity head to the disparity of ``depth``."""
        low, high = 1.0 / self.cfg.max_depth, 1.0 / self.cfg.min_depth
        disparity = (1.0 / depth - low) / (high - low)
        with torch.no_grad():
            for conv in self.heads["depth"].output_convs():
                conv.bias.fill_(math.log(disparity / (1.0 - disparity)))

    def _build_exchange(self) -> ExchangeBlock:
        cfg, scale = self.cfg, self.cfg.exchange_scale
        if scale <= min(cfg.output_scales):
            raise ValueError(f"exchange_scale {scale} must be coarser than the finest output scale "
                             f"{min(cfg.output_scales)}, or no output would use the exchange")
        stride = next(iter(self.heads.values())).feature_strides[scale]
        if stride != 2 ** scale:
            raise ValueError(f"the decoder feature at exchange_scale {scale} has stride {stride} "
                             f"with dilation {cfg.dilation}, not {2 ** scale}")
        channels = self._head_channels(cfg.decoder_channels[scale])
        return ExchangeBlock(self.tasks, channels, cfg.exchange_branches, cfg.fusion,
                             self._attention_downsample(), cfg.sxtam_alpha_init)

    def _attention_downsample(self) -> int:
        return self.cfg.attention_downsample or ATTENTION_DOWNSAMPLE[self.cfg.exchange_scale]

    def attention_tokens(self, image_size: Sequence[int]) -> int:
        """Tokens of each cross-task attention (SxTAM) for an ``image_size`` input, 0 without
        one; its attention matrix holds their square per image and task pair."""
        if self.cfg.arch != "densemtl" or "sxtam" not in self.cfg.exchange_branches:
            return 0
        stride = 2 ** self.cfg.exchange_scale * self._attention_downsample()
        return (image_size[0] // stride) * (image_size[1] // stride)

    def normalize_input(self, image: Tensor) -> Tensor:
        return (image - self.input_mean) / self.input_std

    def forward(self, image: Tensor) -> dict[str, dict[int, Tensor]]:
        features = self.encoder(self.normalize_input(image))
        if self.exchange is None:
            return {task: self.heads[task](features) for task in self.tasks}
        first, second = self._sections
        pre_exchange, outputs = {}, {}
        for task in self.tasks:
            pre_exchange[task], outputs[task] = self.heads[task].run(features, first)
        refined = self.exchange(pre_exchange)
        for task in self.tasks:
            outputs[task].update(self.heads[task].run(features, second, refined[task])[1])
        return {task: {s: outputs[task][s] for s in self.output_scales} for task in self.tasks}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``backbone``: the encoder; ``heads``: the task heads and the exchange block."""
        backbone = list(self.encoder.parameters())
        backbone_ids = {id(p) for p in backbone}
        return {"backbone": backbone,
                "heads": [p for p in self.parameters() if id(p) not in backbone_ids]}

    def decode(self, outputs: Mapping[str, Mapping[int, Tensor]],
               size: Sequence[int] | None = None) -> dict[str, Tensor]:
        """Scale-0 raw outputs to usable values, optionally bilinearly resized to ``size`` (H, W).

        Each task decodes as ``TASKS[task].decode`` defines: ``semseg`` class probabilities,
        ``depth`` metres clamped to [min_depth, max_depth], ``normals`` unit vectors, ``edges``
        edge probability (B x 1 x H x W). Raw outputs are resized before decoding (so class
        probabilities and inverse depth are interpolated, not labels or metres), with
        ``align_corners=False`` as image resizing does; the losses and metrics instead follow
        the method's ``align_corners=True`` at label resolution.
        """
        raw = {task: by_scale[0] for task, by_scale in outputs.items()}
        if size is not None:
            raw = {task: F.interpolate(value, size=tuple(size), mode="bilinear",
                                       align_corners=False) for task, value in raw.items()}
        return decode_outputs(raw, self.cfg)


def build_model(cfg: ModelConfig) -> MultiTaskNet:
    """The network described by ``cfg``, with ImageNet weights in the encoder if configured."""
    validate_model(cfg)
    model = MultiTaskNet(cfg)
    if cfg.pretrained:
        load_torchvision_weights(model.encoder, cfg.pretrained)
    return model

