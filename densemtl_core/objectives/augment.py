"""Photometric image augmentations of the self-training objective's strong view.

Pure functions of B x 3 x H x W images in [0, 1], drawing their randomness per image from the
global random generator (the trainer seeds it). They change colours only and never move a pixel,
so labels made for the unaugmented image stay aligned with the augmented one.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma of RGB, the grey that contrast and saturation blend towards."""


def grayscale(images: Tensor) -> Tensor:
    """B x 1 x H x W luma of B x 3 x H x W RGB images."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device)
    return (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def _factors(images: Tensor, strength: float) -> Tensor:
    """One factor per image, uniform in [1 - strength, 1 + strength] (never negative)."""
    factors = torch.empty(images.shape[0], 1, 1, 1, dtype=images.dtype, device=images.device)
    return factors.uniform_(1.0 - strength, 1.0 + strength).clamp_min(0.0)


def color_jitter(images: Tensor, strength: float) -> Tensor:
    """Brightness, contrast and saturation each scaled by a random factor in [1 - strength,
    1 + strength] per image, clipped to [0, 1] after each. Contrast and saturation blend with
    ``torch.lerp``, which returns the image exactly at factor 1, so strength 0 is the identity."""
    images = (images * _factors(images, strength)).clamp(0.0, 1.0)
    mean_luma = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    images = torch.lerp(mean_luma.expand_as(images), images,
                        _factors(images, strength)).clamp(0.0, 1.0)
    luma = grayscale(images)
    return torch.lerp(luma.expand_as(images), images, _factors(images, strength)).clamp(0.0, 1.0)


def gaussian_blur(images: Tensor, max_sigma: float) -> Tensor:
    """A separable Gaussian blur per image with sigma uniform in [0, ``max_sigma``] pixels
    (sigma 0 leaves the image as it is); borders replicate the edge pixels. 0: no blur."""
    if max_sigma == 0:
        return images
    batch, channels, height, width = images.shape
    sigma = torch.rand(batch, 1, dtype=images.dtype, device=images.device) * max_sigma
    radius = math.ceil(3 * max_sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-offsets.square() / (2 * sigma.square()).clamp_min(1e-12))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    groups = batch * channels
    flat = F.pad(images.reshape(1, groups, height, width), (radius,) * 4, mode="replicate")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=groups)
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=groups)
    return flat.view(batch, channels, height, width).clamp(0.0, 1.0)


def strong_view(images: Tensor, jitter: float, max_sigma: float) -> Tensor:
    """The self-training student's view: :func:`color_jitter` then :func:`gaussian_blur`."""
    return gaussian_blur(color_jitter(images, jitter), max_sigma)
