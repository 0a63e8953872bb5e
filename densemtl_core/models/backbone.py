"""ResNet encoders in plain PyTorch, state-dict compatible with torchvision.

The module and parameter names follow torchvision's ``resnet*`` layout (``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer1.0.downsample.0``, ...) so that ImageNet weights saved by
torchvision load tensor by tensor; the classifier (``avgpool``, ``fc``) is left out because the
dense heads never use it. Nothing is ever downloaded: weights come from a local file.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

STEM_CHANNELS = 64
"""torchvision's stem width; every stage's planes are a power-of-two multiple of it."""


def scaled_width(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 8, never below 8.

    Multiples of 8 keep convolutions efficient on accelerators and keep every channel count
    even (the self-attention gate halves it). ``width == 1`` returns ``channels`` unchanged
    for the multiples of 8 used throughout the network.
    """
    return max(8, int(round(channels * width / 8.0)) * 8)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=dilation,
                     dilation=dilation, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34).

    torchvision refuses dilation here; we apply the block's dilation to both 3x3 convolutions,
    which leaves the parameters (and therefore weight loading) unchanged.
    """

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided/dilated), 1x1 expand, with a residual connection (ResNet-50/101).

    Stride sits on the 3x3 convolution, as in torchvision (ResNet "V1.5").
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


RESNET_SPECS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


def _make_stage(block: type[BasicBlock] | type[Bottleneck], in_channels: int, planes: int,
                depth: int, stride: int, first_dilation: int, dilation: int) -> nn.Sequential:
    """One ResNet stage as torchvision builds it.

    With ``replace_stride_with_dilation`` the stage keeps stride 1; its first block still uses the
    previous dilation and the following blocks use the new one.
    """
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(_conv1x1(in_channels, out_channels, stride),
                                   nn.BatchNorm2d(out_channels))
    blocks = [block(in_channels, planes, stride, downsample, first_dilation)]
    blocks += [block(out_channels, planes, dilation=dilation) for _ in range(1, depth)]
    return nn.Sequential(*blocks)


class ResNetEncoder(nn.Module):
    """A torchvision ResNet without its classifier, returning five feature maps.

    ``forward`` expects an already normalised image and returns ``[f0, f1, f2, f3, f4]``:
    the stem after ReLU (before max-pooling) and the outputs of ``layer1`` .. ``layer4``.
    ``channels`` and ``strides`` give their channel counts and output strides (input pixels per
    feature pixel); with the default dilation the strides are (2, 4, 8, 16, 16).
    ``in_channels`` other than 3 takes stacked frames (a pose network sees two: 6 channels).
    """

    def __init__(self, name: str = "resnet101", width: float = 1.0,
                 dilation: tuple[bool, bool, bool] = (False, False, True),
                 in_channels: int = 3) -> None:
        super().__init__()
        if name not in RESNET_SPECS:
            raise ValueError(f"unknown backbone {name!r}; known: {sorted(RESNET_SPECS)}")
        block, depths = RESNET_SPECS[name]
        self.name = name
        base = scaled_width(STEM_CHANNELS, width)
        self.conv1 = nn.Conv2d(in_channels, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        stages = []
        in_channels, current_dilation = base, 1
        for index, (depth, dilate) in enumerate(zip(depths, (False, *dilation))):
            stride = 1 if index == 0 else 2
            stage_dilation = current_dilation * stride if dilate else current_dilation
            planes = base * 2 ** index
            stages.append(_make_stage(block, in_channels, planes, depth, 1 if dilate else stride,
                                      current_dilation, stage_dilation))
            in_channels, current_dilation = planes * block.expansion, stage_dilation
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        strides = [2, 4]
        for dilate in dilation:
            strides.append(strides[-1] if dilate else 2 * strides[-1])
        stage_channels = (base * 2 ** i * block.expansion for i in range(4))
        self.channels: tuple[int, ...] = (base, *stage_channels)
        self.strides: tuple[int, ...] = tuple(strides)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation, used when no ImageNet weights are loaded.

        Skipped on the meta device (a layout of shapes, as checkpoint loading builds first):
        there is nothing to draw, and torch's ``normal_`` there imports torch._dynamo (3 s).
        """
        if self.conv1.weight.is_meta:
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(str(path), device="cpu")
    if path.suffix in (".pth", ".pt"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
        return state
    raise ValueError(f"{path}: expected a .pth, .pt or .safetensors file")


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


def load_torchvision_weights(encoder: ResNetEncoder, path: str | Path) -> None:
    """Load a torchvision ResNet state dict from a local file into ``encoder``.

    ``fc.*`` is ignored; ``num_batches_tracked`` may be absent (old torchvision files). Any
    other missing, unexpected or differently shaped tensor (another depth, a width other than
    1) raises ``ValueError`` naming the offending keys, and the encoder is left untouched.
    """
    path = Path(path)
    given = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("fc.")}
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in expected]
    mismatched = [f"{k} (file {tuple(v.shape)}, model {tuple(expected[k].shape)})"
                  for k, v in given.items() if k in expected and v.shape != expected[k].shape]
    problems = [f"{len(keys)} {kind} key(s): {_listing(keys)}"
                for kind, keys in (("missing", missing), ("unexpected", unexpected),
                                   ("shape-mismatched", mismatched)) if keys]
    if problems:
        raise ValueError(f"{path} does not fit a {encoder.name} encoder with channels "
                         f"{encoder.channels}: " + "; ".join(problems))
    encoder.load_state_dict(given, strict=False)
