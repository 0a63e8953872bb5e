import math

import pytest
import torch

from densemtl_core.models.backbone import ResNetEncoder
from densemtl_core.models.pose import (PoseNetwork, relative_poses, rotation_from_axisangle,
                                       transformation_from_parameters)


def test_encoder_takes_stacked_frames_and_keeps_its_layout_otherwise():
    rgb, pair = ResNetEncoder("resnet18", 0.25), ResNetEncoder("resnet18", 0.25, in_channels=6)
    assert pair.conv1.weight.shape[1] == 6 and rgb.conv1.weight.shape[1] == 3
    shapes = {k: v.shape for k, v in rgb.state_dict().items() if k != "conv1.weight"}
    assert shapes == {k: v.shape for k, v in pair.state_dict().items() if k != "conv1.weight"}
    features = pair.eval()(torch.rand(1, 6, 32, 64))
    assert [f.shape[1] for f in features] == list(pair.channels)


def test_pose_network_is_the_decoder_mean_scaled_by_a_hundredth():
    """Frames normalised as the method's networks, stacked (a, b); axis-angle first."""
    torch.manual_seed(0)
    net = PoseNetwork("resnet18", width=0.25).eval()
    frame_a, frame_b = torch.rand(3, 3, 32, 64), torch.rand(3, 3, 32, 64)
    with torch.no_grad():
        axisangle, translation = net(frame_a, frame_b)
        pair = (torch.cat([frame_a, frame_b], dim=1) - 0.45) / 0.225
        raw = net.decoder(net.encoder(pair)[-1]).mean(dim=(2, 3))
    assert axisangle.shape == translation.shape == (3, 3)
    torch.testing.assert_close(axisangle, 0.01 * raw[:, :3])
    torch.testing.assert_close(translation, 0.01 * raw[:, 3:])
    assert [m.kernel_size for m in net.decoder if isinstance(m, torch.nn.Conv2d)] == \
        [(1, 1), (3, 3), (3, 3), (1, 1)]


@pytest.mark.parametrize(("axisangle", "expected"), [
    ((0.0, 0.0, math.pi / 2), [[0, -1, 0], [1, 0, 0], [0, 0, 1]]),
    # 120 degrees about (1, 1, 1) cycles the axes: x -> y -> z -> x.
    (tuple(2 * math.pi / 3 / math.sqrt(3) for _ in range(3)), [[0, 0, 1], [1, 0, 0], [0, 1, 0]]),
    ((0.0, 0.0, 0.0), [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
])
def test_axisangle_of_known_rotations(axisangle, expected):
    rotation = rotation_from_axisangle(torch.tensor([axisangle], dtype=torch.float64))
    torch.testing.assert_close(rotation[0], torch.tensor(expected, dtype=torch.float64),
                               atol=1e-12, rtol=0)


def test_transform_and_its_inverse_compose_to_identity():
    generator = torch.Generator().manual_seed(0)
    axisangle = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    translation = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    forward = transformation_from_parameters(axisangle, translation)
    inverse = transformation_from_parameters(axisangle, translation, invert=True)
    identity = torch.eye(4, dtype=torch.float64).expand(4, 4, 4)
    torch.testing.assert_close(inverse @ forward, identity)
    torch.testing.assert_close(forward @ inverse, identity)
    torch.testing.assert_close(forward[:, :3, 3], translation)  # [R | t], translation applied last
    torch.testing.assert_close(torch.linalg.inv(forward), inverse)


def test_negative_offset_is_the_inverted_motion_of_the_pair_in_time_order():
    torch.manual_seed(0)
    net = PoseNetwork("resnet18", width=0.25).eval()
    prev, current, nxt = (torch.rand(2, 3, 32, 64) for _ in range(3))
    with torch.no_grad():
        poses = relative_poses(net, prev, current, nxt)
        back = net(prev, current)
        ahead = net(current, nxt)
    torch.testing.assert_close(poses[-1], transformation_from_parameters(*back, invert=True))
    torch.testing.assert_close(poses[1], transformation_from_parameters(*ahead, invert=False))
    # Not the pair's raw motion: inverting changes the translation measurably.
    assert (poses[-1] - transformation_from_parameters(*back)).abs().max() > 1e-4
    assert set(poses) == {-1, 1} and poses[1].shape == (2, 4, 4)
