"""Output-space discriminators of the method's domain adaptation (METHOD.md section 7.2, after
ADVENT): they tell a map the network made of a source image from one of a target image."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

WIDTHS = (64, 128, 256, 512, 1)
"""Output channels of the five 4x4 stride-2 convolutions: each halves the map's size."""


def scaled_widths(width: float) -> tuple[int, ...]:
    """The convolutions' output channels at channel multiplier ``width`` (the last stays one
    logit)."""
    return (*(max(1, round(channels * width)) for channels in WIDTHS[:-1]), 1)


class OutputDiscriminator(nn.Module):
    """A fully convolutional discriminator: B x ``in_channels`` x H x W maps in, one logit per
    1/32 of the map out (B x 1 x H/32 x W/32). ``width`` scales its channels (1: the method's).

    Spectral normalisation keeps it Lipschitz, so the network's adversarial gradient stays
    bounded. In training mode the whole batch is mirrored left-right with probability 1/2, so
    the discriminator cannot tell the domains apart by a left-right asymmetry of the scenes.
    """

    def __init__(self, in_channels: int, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index, channels in enumerate(scaled_widths(width)):
            if index:
                layers.append(nn.LeakyReLU(0.2))
            layers.append(spectral_norm(nn.Conv2d(in_channels, channels, 4, stride=2, padding=1)))
            in_channels = channels
        self.layers = nn.Sequential(*layers)

    def forward(self, maps: Tensor) -> Tensor:
        if self.training and torch.rand(()) < 0.5:
            maps = maps.flip(-1)
        return self.layers(maps)


def discriminator_key(task: str, scale: int) -> str:
    """The name of the discriminator of ``task`` at output ``scale``."""
    return f"{task}/{scale}"


class TaskDiscriminators(nn.Module):
    """One :class:`OutputDiscriminator` per (task, scale), its input channels those of the
    task's discriminator input (``channels_per_task``), its width multiplier ``width``."""

    def __init__(self, tasks: Iterable[str], scales: Iterable[int],
                 channels_per_task: Mapping[str, int], width: float = 1.0) -> None:
        super().__init__()
        scales = tuple(scales)
        self.discriminators = nn.ModuleDict({
            discriminator_key(task, scale): OutputDiscriminator(channels_per_task[task], width)
            for task in tasks for scale in scales})

    def keys(self) -> list[tuple[str, int]]:
        """The (task, scale) pairs, in construction order."""
        return [(task, int(scale)) for task, scale in
                (key.split("/") for key in self.discriminators)]

    def forward(self, maps: Mapping[tuple[str, int], Tensor]) -> dict[tuple[str, int], Tensor]:
        """Logits of each (task, scale) map, by its own discriminator."""
        return {key: self.discriminators[discriminator_key(*key)](value)
                for key, value in maps.items()}
