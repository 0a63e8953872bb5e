"""The maths of depth learnt from video (METHOD.md section 7.1, after Monodepth2): warping a
neighbouring frame into the current one through depth and motion, and scoring the result.

Conventions: pixel centres sit at integer coordinates (as ``geometry.scale_intrinsics``), so a
pixel x maps to the normalised coordinate (2x + 1) / W - 1 of ``grid_sample`` with
``align_corners=False``. A pose ``T`` (B x 4 x 4) maps points of the current camera's optical
frame into the source camera's. Intrinsics are those of the image at its current size, as every
dataset provides them (METHOD.md section 9, item 6: the method's code warps with the full-size
K instead); ``model.paper_compat`` has no say here, since only a dataset knows its native K and
so only a dataset could reproduce that quirk.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import PhotometricConfig
from .tasks.depth import disparity_to_depth

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
IDENTITY_TIE_BREAK = 1e-5
"""Scale of the noise Monodepth2 adds to the identity errors so that exact ties between a
static source and its warp are decided at random rather than always against the mask."""


def backproject(depth: Tensor, intrinsics: Tensor) -> Tensor:
    """B x 3 x (H W) camera points of the pixels of a B x 1 x H x W depth map: z K^-1 (x, y, 1)."""
    batch, _, height, width = depth.shape
    rows, columns = torch.meshgrid(torch.arange(height, dtype=depth.dtype, device=depth.device),
                                   torch.arange(width, dtype=depth.dtype, device=depth.device),
                                   indexing="ij")
    pixels = torch.stack([columns, rows, torch.ones_like(rows)]).view(1, 3, -1)
    rays = torch.linalg.inv(intrinsics.to(depth.dtype)) @ pixels
    return rays * depth.view(batch, 1, -1)


def project(points: Tensor, intrinsics: Tensor, pose: Tensor, size: Sequence[int]) -> Tensor:
    """``grid_sample`` grid (B x H x W x 2, align_corners=False) of where B x 3 x (H W) points of
    the current camera land in the source camera: K (R p + t), divided by its depth.

    Points at or behind the source camera are pushed far out of view (``border`` padding then
    samples the edge), not divided by a vanishing depth's sign.
    """
    height, width = size
    camera = pose[:, :3, :3] @ points + pose[:, :3, 3:]
    pixels = intrinsics.to(points.dtype) @ camera
    pixels = pixels[:, :2] / pixels[:, 2:].clamp_min(1e-6)
    extent = torch.tensor([width, height], dtype=points.dtype, device=points.device).view(1, 2, 1)
    grid = (2 * pixels + 1) / extent - 1
    return grid.view(-1, 2, height, width).permute(0, 2, 3, 1)


def warp(source: Tensor, depth: Tensor, intrinsics: Tensor, pose: Tensor) -> Tensor:
    """The source frame resampled onto the current one: each current pixel takes the source's
    colour where its depth and ``pose`` (current -> source) project it (bilinear, edge padded)."""
    grid = project(backproject(depth, intrinsics), intrinsics, pose, depth.shape[-2:])
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def ssim_dissimilarity(x: Tensor, y: Tensor) -> Tensor:
    """Per pixel and channel (1 - SSIM) / 2 in [0, 1], over 3 x 3 reflection-padded windows."""
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, stride=1), F.avg_pool2d(y, 3, stride=1)
    sigma_x = F.avg_pool2d(x * x, 3, stride=1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y * y, 3, stride=1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, stride=1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    denominator = (mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return ((1 - numerator / denominator) / 2).clamp(0, 1)


def reprojection_error(prediction: Tensor, target: Tensor, ssim_weight: float = 0.85) -> Tensor:
    """B x 1 x H x W error w (1 - SSIM) / 2 + (1 - w) |prediction - target|, channel mean."""
    l1 = (prediction - target).abs().mean(1, keepdim=True)
    ssim = ssim_dissimilarity(prediction, target).mean(1, keepdim=True)
    return ssim_weight * ssim + (1 - ssim_weight) * l1


def _reduce_sources(errors: Tensor, reduce: str) -> Tensor:
    return errors.min(1, keepdim=True)[0] if reduce == "min" else errors.mean(1, keepdim=True)


def combine_sources(errors: Tensor, identity: Tensor | None, reduce: str = "min",
                    identity_noise: float = 0.0) -> tuple[Tensor, Tensor]:
    """Per-pixel loss (B x 1 x H x W) of the B x S x H x W warped-source errors, and where the
    auto-mask dropped the pixel (bool, same shape).

    ``reduce`` combines the sources (``min``: the source that sees the pixel best, robust to
    occlusion; ``mean``). With ``identity`` (the errors of the unwarped sources, reduced the same
    way) the pixel takes the smaller of both: a pixel a static source explains better (a static
    camera, an object moving with it) is masked, its loss being the identity error, which no
    parameter changes. ``identity_noise`` scales a random tie-break added to the identity errors
    (Monodepth2 trains with 1e-5); 0 keeps the result deterministic.
    """
    if reduce not in ("min", "mean"):
        raise ValueError(f"reduce must be min or mean, got {reduce!r}")
    loss = _reduce_sources(errors, reduce)
    if identity is None:
        return loss, torch.zeros_like(loss, dtype=torch.bool)
    identity = _reduce_sources(identity, reduce)
    if identity_noise:
        identity = identity + identity_noise * torch.randn_like(identity)
    masked = identity < loss
    return torch.where(masked, identity, loss), masked


def edge_aware_smoothness(disparity: Tensor, image: Tensor) -> Tensor:
    """Mean |d_x d*| e^{-|d_x I|} + mean |d_y d*| e^{-|d_y I|} of the mean-normalised
    disparity d* = d / mean(d) (per image), image gradients averaged over channels: disparity may
    jump where the image has an edge. Normalising keeps the term from shrinking depth's scale."""
    disparity = disparity / (disparity.mean((2, 3), keepdim=True) + 1e-7)
    disp_dx = (disparity[..., :, 1:] - disparity[..., :, :-1]).abs()
    disp_dy = (disparity[..., 1:, :] - disparity[..., :-1, :]).abs()
    image_dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    image_dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (disp_dx * torch.exp(-image_dx)).mean() + (disp_dy * torch.exp(-image_dy)).mean()


@dataclass(frozen=True)
class PhotometricTerms:
    """The photometric objective of a batch, every term averaged over the scales."""

    loss: Tensor
    """photometric + smoothness_weight / 2^s * smoothness, the value to minimise."""
    photometric: Tensor
    """The per-pixel reprojection loss (after source combination and masking)."""
    smoothness: Tensor
    """The edge-aware smoothness, unweighted."""
    automasked: Tensor
    """Fraction of pixels the auto-mask removed."""


def scale_camera(intrinsics: Tensor, from_size: Sequence[int], to_size: Sequence[int]
                 ) -> Tensor:
    """B x 3 x 3 intrinsics of images resized from ``from_size`` to ``to_size`` (H, W), pixel
    centres at integer coordinates, as ``geometry.scale_intrinsics``."""
    scale = intrinsics.new_tensor([to_size[1] / from_size[1], to_size[0] / from_size[0]])
    scaled = intrinsics.clone()
    scaled[:, :2, :2] = intrinsics[:, :2, :2] * scale.view(1, 2, 1)
    scaled[:, :2, 2] = (intrinsics[:, :2, 2] + 0.5) * scale - 0.5
    return scaled


def _area(image: Tensor, size: Sequence[int]) -> Tensor:
    """``image`` at ``size`` by area averaging (the image pyramid), or itself."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=tuple(size), mode="area")


def photometric_loss(disparities: Mapping[int, Tensor], image: Tensor,
                     sources: Mapping[int, Tensor], intrinsics: Tensor,
                     poses: Mapping[int, Tensor], cfg: PhotometricConfig,
                     depth_range: tuple[float, float], identity_noise: float = 0.0
                     ) -> PhotometricTerms:
    """The method's self-supervised depth loss (METHOD.md section 7.1) for sigmoid disparities
    ``disparities[s]`` (B x 1 at 1/2^s of the input size) of ``image``.

    Every scale's disparity is up-sampled to the input size, turned into depth over
    ``depth_range`` and warps each source frame ``sources[k]`` with ``poses[k]`` (current ->
    source); the smoothness of scale s compares the disparity with the image down-sampled to
    it (as Monodepth2). With ``cfg.pyramid`` each scale is instead compared at its own
    resolution, frames area-averaged and intrinsics scaled to it (as the first Monodepth):
    coarse scales see the low frequencies only, which widens the range of depths from which
    the loss leads to the right one. ``identity_noise``: see :func:`combine_sources`.
    """
    size = tuple(image.shape[-2:])
    offsets = sorted(sources)
    identities: dict[tuple[int, ...], Tensor] = {}  # by frame size: once without the pyramid
    photometric, smoothness, total, automasked = [], [], [], []
    for scale, disparity in sorted(disparities.items()):
        frame_size = tuple(disparity.shape[-2:]) if cfg.pyramid else size
        target = _area(image, frame_size)
        frames = {k: _area(sources[k], frame_size) for k in offsets}
        camera = scale_camera(intrinsics, size, frame_size) if frame_size != size else intrinsics
        resized = disparity if disparity.shape[-2:] == frame_size else F.interpolate(
            disparity, size=frame_size, mode="bilinear", align_corners=False)
        depth = disparity_to_depth(resized, *depth_range)
        errors = torch.cat([reprojection_error(warp(frames[k], depth, camera, poses[k]),
                                               target, cfg.ssim_weight) for k in offsets], dim=1)
        if cfg.automask and frame_size not in identities:
            identities[frame_size] = torch.cat(
                [reprojection_error(frames[k], target, cfg.ssim_weight) for k in offsets], dim=1)
        per_pixel, masked = combine_sources(errors, identities.get(frame_size), cfg.reprojection,
                                            identity_noise)
        photometric.append(per_pixel.mean())
        smoothness.append(edge_aware_smoothness(disparity, _area(target, disparity.shape[-2:])))
        total.append(photometric[-1] + cfg.smoothness_weight / 2 ** scale * smoothness[-1])
        automasked.append(masked.float().mean())
    return PhotometricTerms(*(torch.stack(values).mean()
                              for values in (total, photometric, smoothness, automasked)))
