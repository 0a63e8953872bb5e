"""The pose network of self-supervised depth: the camera motion between two frames.

After Monodepth2 (METHOD.md section 7.1): a ResNet on the two frames stacked as six channels, a
small convolutional decoder averaged over space, and an output scaled by 0.01 so that a fresh
network predicts motions near the identity.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from densemtl_core.models.backbone import ResNetEncoder

POSE_SCALE = 0.01
"""Scale of the decoder's raw output: small initial rotations and translations."""
INPUT_MEAN = 0.45
INPUT_STD = 0.225
"""The input normalisation of the method's networks (METHOD.md section 9, item 18)."""


class PoseNetwork(nn.Module):
    """Axis-angle rotation and translation (each B x 3) of the motion between two frames.

    ``forward(frame_a, frame_b)`` takes two B x 3 x H x W images in [0, 1]; what the motion means
    (which frame it maps into which) is set by how :func:`relative_poses` orders the pair.
    """

    def __init__(self, backbone: str = "resnet18", width: float = 1.0) -> None:
        super().__init__()
        self.encoder = ResNetEncoder(backbone, width, dilation=(False, False, False),
                                     in_channels=6)
        hidden = 256
        self.decoder = nn.Sequential(
            nn.Conv2d(self.encoder.channels[-1], hidden, kernel_size=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 6, kernel_size=1))

    def forward(self, frame_a: Tensor, frame_b: Tensor) -> tuple[Tensor, Tensor]:
        pair = (torch.cat([frame_a, frame_b], dim=1) - INPUT_MEAN) / INPUT_STD
        motion = POSE_SCALE * self.decoder(self.encoder(pair)[-1]).mean(dim=(2, 3))
        return motion[:, :3], motion[:, 3:]


def rotation_from_axisangle(axisangle: Tensor) -> Tensor:
    """B x 3 x 3 rotations of B x 3 axis-angle vectors (Rodrigues' formula).

    The angle is kept away from zero so the gradient at the identity stays finite.
    """
    angle = axisangle.norm(dim=1, keepdim=True).clamp_min(1e-7)
    axis = axisangle / angle
    x, y, z = axis.unbind(dim=1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=1).view(-1, 3, 3)
    sin, cos = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    identity = torch.eye(3, dtype=axisangle.dtype, device=axisangle.device).expand_as(cross)
    return identity + sin * cross + (1 - cos) * cross @ cross


def transformation_from_parameters(axisangle: Tensor, translation: Tensor,
                                   invert: bool = False) -> Tensor:
    """B x 4 x 4 rigid transform [R | t], or with ``invert`` its inverse [R^T | -R^T t]."""
    rotation = rotation_from_axisangle(axisangle)
    translation = translation.unsqueeze(2)
    if invert:
        rotation = rotation.transpose(1, 2)
        translation = -rotation @ translation
    bottom = torch.zeros_like(rotation[:, :1, :])
    bottom = torch.cat([bottom, torch.ones_like(bottom[..., :1])], dim=2)
    return torch.cat([torch.cat([rotation, translation], dim=2), bottom], dim=1)


def relative_poses(pose_net: PoseNetwork, image_prev: Tensor, image: Tensor,
                   image_next: Tensor) -> dict[int, Tensor]:
    """B x 4 x 4 transforms mapping points of the current camera's frame into the source
    camera's frame, keyed by the source's offset (-1, +1).

    The pair is always fed in time order (Monodepth2): (prev, current), whose motion is inverted,
    and (current, next), taken as is. Both pairs run as one batch.
    """
    axisangle, translation = pose_net(torch.cat([image_prev, image]),
                                      torch.cat([image, image_next]))
    batch = image.shape[0]
    return {-1: transformation_from_parameters(axisangle[:batch], translation[:batch], invert=True),
            1: transformation_from_parameters(axisangle[batch:], translation[batch:])}
