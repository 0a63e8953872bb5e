"""Cross-task attention (xTAM) and the multi-task exchange block (mTEB), METHOD.md 1.5-1.6.

For an ordered pair source s -> target t, an xTAM turns the source's decoder feature into a
directional feature f_{s->t}: a task-transfer extractor, a gated self-attention branch (SA) and a
spatial cross-task attention branch (SxTAM) whose queries come from the target, all projected
back to C channels. The exchange block gives every target the directional features of all the
other tasks and fuses them into a refined feature of the same shape.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densemtl_core.tasks import TASKS
from densemtl_core.models.heads import conv_bn_relu

ATTENTION_DOWNSAMPLE: dict[int, int] = {4: 1, 3: 1, 2: 2, 1: 4, 0: 8}
"""SxTAM down-sampling factor r per exchange scale (attention grid at stride 8, 16 at scale 4)."""

BRANCHES = ("sa", "sxtam")
FUSIONS = ("add", "prod", "concat")


class Extractor(nn.Sequential):
    """Task-transfer features of the source: 3x3 convolution (with bias) and ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))


class SelfAttentionGate(nn.Module):
    """PAD-Net's spatial gate: conv(x) * sigmoid(conv'(x)), C -> C/2 channels in the SA branch
    (``out_channels``: PAD-Net's own distillation keeps C).

    Not dot-product self-attention (METHOD.md section 9.12): each output pixel is a 3x3 feature
    weighted by a learned, per-pixel sigmoid mask.
    """

    def __init__(self, channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.out_channels = channels // 2 if out_channels is None else out_channels
        self.features = nn.Conv2d(channels, self.out_channels, 3, padding=1, bias=False)
        self.gate = nn.Conv2d(channels, self.out_channels, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x) * torch.sigmoid(self.gate(x))


class SxTAM(nn.Module):
    """Spatial correlation-guided cross-task attention on an r-times coarser token grid.

    Queries: nearest sub-sampling of the target (pixel (r*i, r*j)); keys and values: r x r
    max-pooling of the extracted source. Each goes through its own 1x1 conv + BN + ReLU. Every
    target token attends over all source tokens (softmax of dot products / sqrt(C)); the result is
    nearest-up-sampled by r and scaled by a per-channel ``alpha`` that starts at 0, so a fresh
    module outputs zeros and the branch is blended in as training moves ``alpha``.
    The spatial size of the inputs must be divisible by r.
    """

    def __init__(self, channels: int, downsample: int, alpha_init: float = 0.0) -> None:
        super().__init__()
        self.channels = channels
        self.downsample = downsample
        self.query = conv_bn_relu(channels, channels)
        self.key = conv_bn_relu(channels, channels)
        self.value = conv_bn_relu(channels, channels)
        self.alpha = nn.Parameter(torch.full((1, channels, 1, 1), float(alpha_init)))

    def attend(self, target: Tensor, source: Tensor) -> tuple[Tensor, Tensor]:
        """The module's output and the attention matrix B x N_target x N_source (rows sum to 1)."""
        r = self.downsample
        query_map = self.query(target[:, :, ::r, ::r])
        pooled = F.max_pool2d(source, r) if r > 1 else source
        query = query_map.flatten(2).transpose(1, 2)
        key = self.key(pooled).flatten(2)
        value = self.value(pooled).flatten(2)
        attention = torch.softmax(query @ key * self.channels ** -0.5, dim=-1)
        attended = (value @ attention.transpose(1, 2)).reshape_as(query_map)
        if r > 1:
            attended = F.interpolate(attended, scale_factor=float(r), mode="nearest")
        return attended * self.alpha, attention

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        return self.attend(target, source)[0]


class XTAM(nn.Module):
    """The directional feature f_{s->t} for one ordered task pair.

    ``branches`` is a non-empty subset of ``("sa", "sxtam")``; the projection (1x1 conv + BN +
    ReLU back to C channels) takes the concatenation of the present branches, SA first.
    With ``sxtam`` alone and ``alpha == 0`` the projection sees only zeros, and the ReLU after it
    passes no gradient at 0, so that configuration cannot leave its initial state in training;
    ``alpha_init`` > 0 lets it train.
    """

    def __init__(self, channels: int, branches: Sequence[str] = BRANCHES,
                 downsample: int = 4, alpha_init: float = 0.0) -> None:
        super().__init__()
        unknown = set(branches) - set(BRANCHES)
        if not branches or unknown:
            raise ValueError(f"branches must be a non-empty subset of {BRANCHES}, got {branches}")
        self.extractor = Extractor(channels)
        self.self_attention = SelfAttentionGate(channels) if "sa" in branches else None
        self.cross_attention = SxTAM(channels, downsample, alpha_init) if "sxtam" in branches else None
        projected = (channels // 2 if self.self_attention is not None else 0) + \
            (channels if self.cross_attention is not None else 0)
        self.project = conv_bn_relu(projected, channels)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        extracted = self.extractor(source)
        parts = []
        if self.self_attention is not None:
            parts.append(self.self_attention(extracted))
        if self.cross_attention is not None:
            parts.append(self.cross_attention(target, extracted))
        return self.project(torch.cat(parts, dim=1))


class ExchangeBlock(nn.Module):
    """mTEB: one xTAM per ordered task pair, then a per-target fusion.

    ``fusion``: ``add`` (F_t + P_t([f_{s->t}])), ``prod`` (F_t * P_t([f_{s->t}])) or ``concat``
    (P_t([F_t; f_{s->t}])), where P_t is 1x1 conv + BN + ReLU to C channels. The sources of a
    target are concatenated in the canonical task order (that of ``TASKS``), whatever order the
    tasks were given in, so weights do not depend on configuration order.
    """

    def __init__(self, tasks: Sequence[str], channels: int, branches: Sequence[str] = BRANCHES,
                 fusion: str = "add", downsample: int = 4, alpha_init: float = 0.0) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if len(tasks) < 2:
            raise ValueError("the exchange block needs at least two tasks")
        self.tasks = tuple(t for t in TASKS if t in tasks)
        self.fusion = fusion
        self.xtams = nn.ModuleDict({
            f"{source}_to_{target}": XTAM(channels, branches, downsample, alpha_init)
            for target in self.tasks for source in self.sources(target)})
        fused_inputs = len(self.tasks) if fusion == "concat" else len(self.tasks) - 1
        self.fusions = nn.ModuleDict(
            {target: conv_bn_relu(fused_inputs * channels, channels) for target in self.tasks})

    def sources(self, target: str) -> tuple[str, ...]:
        """The tasks that send features to ``target``, in concatenation order."""
        return tuple(t for t in self.tasks if t != target)

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        refined = {}
        for target in self.tasks:
            base = features[target]
            directional = [self.xtams[f"{source}_to_{target}"](base, features[source])
                           for source in self.sources(target)]
            if self.fusion == "concat":
                refined[target] = self.fusions[target](torch.cat([base, *directional], dim=1))
            elif self.fusion == "add":
                refined[target] = base + self.fusions[target](torch.cat(directional, dim=1))
            else:
                refined[target] = base * self.fusions[target](torch.cat(directional, dim=1))
        return refined
