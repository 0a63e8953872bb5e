import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from densemtl_core.config import ModelConfig, PhotometricConfig
from densemtl_core.data.synthetic import render_trajectory
from densemtl_core.geometry import scale_intrinsics
from densemtl_core.models.network import MultiTaskNet
from densemtl_core.models.pose import transformation_from_parameters
from densemtl_core.objectives.photometric import PhotometricObjective
from densemtl_core.photometric import (backproject, combine_sources, edge_aware_smoothness,
                                       photometric_loss, project, reprojection_error,
                                       ssim_dissimilarity, warp)

SIZE = (32, 64)
DEPTH_RANGE = (0.1, 100.0)


def image_tensor(frame: dict[str, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(frame["image"]).permute(2, 0, 1)[None].float() / 255


def relative_pose(target: dict[str, np.ndarray], source: dict[str, np.ndarray]) -> torch.Tensor:
    """1 x 4 x 4 map from the target camera's frame to the source's (poses: camera-to-world)."""
    world_from_target = torch.from_numpy(target["pose"]).double()
    world_from_source = torch.from_numpy(source["pose"]).double()
    return (torch.linalg.inv(world_from_source) @ world_from_target).float()[None]


def disparity_of(depth: torch.Tensor, depth_range: tuple[float, float] = DEPTH_RANGE
                 ) -> torch.Tensor:
    """The sigmoid disparity whose depth is ``depth`` (inverse of ``disparity_to_depth``)."""
    low, high = 1 / depth_range[1], 1 / depth_range[0]
    return (depth.reciprocal() - low) / (high - low)


@pytest.fixture(scope="module")
def walk() -> list[dict[str, np.ndarray]]:
    """Three noise-free frames of a camera walking 10 cm per frame, exact depth and poses."""
    return list(render_trajectory(3, 3, (64, 80), speed=0.1, noise=False))


# --- warping --------------------------------------------------------------------------------


def textured_plane_view(world_from_camera: torch.Tensor, intrinsics: torch.Tensor,
                        size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (1 x 3 x H x W) and depth (1 x 1 x H x W) of the plane z = 2 + 0.3 x + 0.2 y (world
    frame) painted with smooth sinusoids, seen by a pinhole camera; traced independently of the
    code under test."""
    height, width = size
    rows, columns = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                                   torch.arange(width, dtype=torch.float64), indexing="ij")
    pixels = torch.stack([columns, rows, torch.ones_like(rows)], dim=-1)
    rays = pixels @ torch.linalg.inv(intrinsics).T @ world_from_camera[:3, :3].T
    origin = world_from_camera[:3, 3]
    normal, offset = torch.tensor([-0.3, -0.2, 1.0], dtype=torch.float64), 2.0
    depth = (offset - normal @ origin) / (rays @ normal)
    point = origin + depth[..., None] * rays
    x, y = point[..., 0], point[..., 1]
    image = torch.stack([0.5 + 0.3 * torch.sin(4.5 * x + 1) * torch.cos(3.5 * y),
                         0.5 + 0.3 * torch.cos(5.5 * x - 4 * y),
                         0.5 + 0.2 * torch.sin(3 * y + 2) + 0.1 * torch.sin(6.5 * x)])
    return image[None].float(), depth[None, None].float()


def plane_cameras(angle: float, shift: tuple[float, float, float]) -> torch.Tensor:
    """Camera-to-world pose rotated by ``angle`` about the y axis and moved by ``shift``."""
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0],
                                 [-math.sin(angle), 0, math.cos(angle)]])
    pose[:3, 3] = torch.tensor(shift)
    return pose


def test_warping_a_textured_plane_with_the_true_pose_reproduces_the_target():
    size = (48, 64)
    intrinsics = torch.tensor([[50.0, 0, 31.2], [0, 50.0, 24.1], [0, 0, 1]], dtype=torch.float64)
    target_pose = torch.eye(4, dtype=torch.float64)
    source_pose = plane_cameras(0.08, (0.15, -0.05, 0.1))
    target, depth = textured_plane_view(target_pose, intrinsics, size)
    source, _ = textured_plane_view(source_pose, intrinsics, size)
    pose = (torch.linalg.inv(source_pose) @ target_pose).float()[None]
    K = intrinsics.float()[None]

    grid = project(backproject(depth, K), K, pose, size)
    in_view = (grid.abs() < 1 - 2 / size[1]).all(dim=-1)[:, None]
    assert in_view.float().mean() > 0.7
    error = (warp(source, depth, K, pose) - target).abs()
    # Bilinear interpolation only (it shrinks with the texture's frequency squared); half a
    # pixel off would cost about 0.02 on average.
    assert error.masked_select(in_view).max() < 5e-3

    wrong = pose.clone()
    wrong[0, 0, 3] += 0.02  # 2 cm off
    wrong_error = (warp(source, depth, K, wrong) - target).abs().masked_select(in_view).mean()
    assert wrong_error > 15 * error.masked_select(in_view).mean()
    # Without motion the views differ clearly: the warp, not the scene, explains the match.
    assert (source - target).abs().masked_select(in_view).mean() > \
        50 * error.masked_select(in_view).mean()


def test_warping_a_rendered_room_with_the_true_pose_matches_where_visible(walk):
    """The renderer's exact depth and camera poses: visible pixels match up to the texture's
    aliasing, which only hard edges of the hard-edged textures show."""
    target, source = walk[0], walk[2]
    image, depth = image_tensor(target), torch.from_numpy(target["depth"])[None, None]
    source_depth = torch.from_numpy(source["depth"])[None, None]
    K = torch.from_numpy(target["intrinsics"])[None]
    pose = relative_pose(target, source)

    points = backproject(depth, K)
    grid = project(points, K, pose, depth.shape[-2:])
    depth_in_source = (pose[:, :3, :3] @ points + pose[:, :3, 3:])[:, 2].view_as(depth)
    seen_depth = F.grid_sample(source_depth, grid, align_corners=False)
    visible = ((seen_depth - depth_in_source).abs() < 0.01 * depth_in_source) & \
        (grid.abs() < 0.95).all(dim=-1)[:, None]
    assert visible.float().mean() > 0.6

    def errors(pose: torch.Tensor) -> torch.Tensor:
        warped = warp(image_tensor(source), depth, K, pose)
        return (warped - image).abs().mean(1, keepdim=True).masked_select(visible)

    exact = errors(pose)
    assert exact.median() < 3e-3
    turned = transformation_from_parameters(torch.tensor([[0.0, math.radians(1), 0.0]]),
                                            torch.zeros(1, 3)) @ pose
    assert errors(turned).median() > 10 * exact.median()
    shifted = pose.clone()
    shifted[0, :3, 3] += 0.03  # 3 cm off on every axis
    assert errors(shifted).mean() > 1.5 * exact.mean()


# --- per-pixel error ------------------------------------------------------------------------


def test_ssim_of_constant_patches_has_its_closed_form():
    x = torch.full((1, 1, 3, 3), 0.2, dtype=torch.float64)
    y = torch.full((1, 1, 3, 3), 0.6, dtype=torch.float64)
    c1 = 0.01 ** 2
    ssim = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)  # no variance: the C2 factors cancel
    torch.testing.assert_close(ssim_dissimilarity(x, y), torch.full_like(x, (1 - ssim) / 2))
    expected = 0.85 * (1 - ssim) / 2 + 0.15 * 0.4
    torch.testing.assert_close(reprojection_error(x, y), torch.full_like(x, expected))
    torch.testing.assert_close(reprojection_error(x, y, ssim_weight=0.0), torch.full_like(x, 0.4))


def test_ssim_uses_population_statistics_of_reflection_padded_windows():
    x = np.array([[0.1, 0.5, 0.9, 0.3], [0.3, 0.2, 0.8, 0.6], [0.4, 0.7, 0.6, 0.1]])
    y = np.array([[0.2, 0.4, 0.7, 0.2], [0.1, 0.3, 0.9, 0.5], [0.5, 0.5, 0.6, 0.3]])
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    padded_x, padded_y = np.pad(x, 1, mode="reflect"), np.pad(y, 1, mode="reflect")
    expected = np.empty_like(x)
    for row, column in np.ndindex(*x.shape):
        a = padded_x[row:row + 3, column:column + 3].ravel()
        b = padded_y[row:row + 3, column:column + 3].ravel()
        covariance = np.mean((a - a.mean()) * (b - b.mean()))
        ssim = ((2 * a.mean() * b.mean() + c1) * (2 * covariance + c2)
                / ((a.mean() ** 2 + b.mean() ** 2 + c1) * (a.var() + b.var() + c2)))
        expected[row, column] = (1 - ssim) / 2
    actual = ssim_dissimilarity(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])
    np.testing.assert_allclose(actual[0, 0].numpy(), expected, rtol=1e-9)


def test_identical_images_have_no_error():
    image = torch.rand(2, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    assert reprojection_error(image, image).abs().max() < 1e-6
    assert reprojection_error(image, 1 - image).min() > 0


# --- combining sources and auto-masking -----------------------------------------------------


def test_minimum_and_mean_reprojection_differ_as_expected():
    errors = torch.tensor([0.1, 0.5, 0.4, 0.2]).view(1, 2, 1, 2)  # two sources, two pixels
    identity = torch.tensor([0.2, 0.2, 0.2, 0.2]).view(1, 2, 1, 2)
    minimum, _ = combine_sources(errors, None, "min")
    mean, _ = combine_sources(errors, None, "mean")
    torch.testing.assert_close(minimum.flatten(), torch.tensor([0.1, 0.2]))
    torch.testing.assert_close(mean.flatten(), torch.tensor([0.25, 0.35]))
    # The identity errors join the minimum (pixel 0: the warp wins, 0.1 < 0.2) ...
    masked_min, mask = combine_sources(errors, identity, "min")
    torch.testing.assert_close(masked_min.flatten(), torch.tensor([0.1, 0.2]))
    assert mask.flatten().tolist() == [False, False]
    # ... and under ``mean`` the mean identity error competes with the mean warped error.
    masked_mean, mask = combine_sources(errors, identity, "mean")
    torch.testing.assert_close(masked_mean.flatten(), torch.tensor([0.2, 0.2]))
    assert mask.flatten().tolist() == [True, True]


def test_minimum_reprojection_ignores_a_source_that_does_not_see_the_scene(walk):
    """One source reproduced exactly, the other a different picture: the minimum keeps the good
    one (as for a pixel occluded in one source), the mean pays for the bad one."""
    image = image_tensor(walk[1])
    depth = torch.from_numpy(walk[1]["depth"])[None, None]
    K = torch.from_numpy(walk[1]["intrinsics"])[None]
    sources, poses = {-1: image, 1: image.flip(-1)}, {-1: torch.eye(4)[None], 1: torch.eye(4)[None]}
    terms = {how: photometric_loss({0: disparity_of(depth)}, image, sources, K, poses,
                                   PhotometricConfig(reprojection=how, automask=False,
                                                     smoothness_weight=0.0), DEPTH_RANGE)
             for how in ("min", "mean")}
    bad = reprojection_error(image.flip(-1), image).mean()
    assert terms["min"].photometric < 1e-5
    torch.testing.assert_close(terms["mean"].photometric, bad / 2, rtol=1e-4, atol=1e-6)


def test_automask_removes_a_static_frame_pair():
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, *SIZE, generator=generator)
    disparity = {0: torch.rand(2, 1, *SIZE, generator=generator)}
    K = torch.tensor([[40.0, 0, 31.5], [0, 40.0, 15.5], [0, 0, 1]]).expand(2, 3, 3)
    moving = transformation_from_parameters(torch.tensor([[0.0, 0.05, 0.0]] * 2),
                                            torch.tensor([[0.1, 0.0, 0.05]] * 2))
    sources, poses = {-1: image, 1: image}, {-1: moving, 1: moving.inverse()}
    masked = photometric_loss(disparity, image, sources, K, poses,
                              PhotometricConfig(smoothness_weight=0.0), DEPTH_RANGE)
    assert masked.automasked == 1.0
    assert masked.photometric < 1e-6 and masked.loss < 1e-6
    unmasked = photometric_loss(disparity, image, sources, K, poses,
                                PhotometricConfig(automask=False, smoothness_weight=0.0),
                                DEPTH_RANGE)
    assert unmasked.automasked == 0.0 and unmasked.photometric > 0.05


def test_automask_keeps_the_pixels_of_a_moving_camera(walk):
    image = image_tensor(walk[1])
    depth = torch.from_numpy(walk[1]["depth"])[None, None]
    K = torch.from_numpy(walk[1]["intrinsics"])[None]
    sources = {-1: image_tensor(walk[0]), 1: image_tensor(walk[2])}
    poses = {-1: relative_pose(walk[1], walk[0]), 1: relative_pose(walk[1], walk[2])}
    terms = photometric_loss({0: disparity_of(depth)}, image, sources, K, poses,
                             PhotometricConfig(), DEPTH_RANGE)
    assert terms.automasked < 0.15  # what stays masked: pixels the aliased textures blur


def test_tie_break_noise_is_drawn_only_when_asked():
    errors, identity = torch.full((1, 2, 4, 4), 0.3), torch.full((1, 2, 4, 4), 0.3)
    loss, mask = combine_sources(errors, identity)
    assert not mask.any() and torch.equal(loss, torch.full((1, 1, 4, 4), 0.3))
    torch.manual_seed(0)
    noisy, mask = combine_sources(errors, identity, identity_noise=1e-5)
    assert 0 < mask.float().mean() < 1 and (noisy - 0.3).abs().max() < 1e-4


# --- smoothness -----------------------------------------------------------------------------


def test_constant_disparity_is_smooth():
    image = torch.rand(2, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    assert edge_aware_smoothness(torch.full((2, 1, *SIZE), 0.3), image) == 0


def test_smoothness_of_a_step_is_discounted_at_an_image_edge():
    disparity = torch.tensor([[1.0, 1.0, 3.0, 3.0]] * 2).view(1, 1, 2, 4)  # normalised: 0.5, 1.5
    flat = torch.zeros(1, 3, 2, 4)
    edge = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2).expand(1, 3, 2, 4)
    assert edge_aware_smoothness(disparity, flat).item() == pytest.approx(1 / 3)
    assert edge_aware_smoothness(disparity, edge).item() == pytest.approx(math.exp(-1) / 3)
    assert edge_aware_smoothness(2 * disparity, flat).item() == pytest.approx(1 / 3)


@pytest.mark.parametrize("scale", [0, 1, 2, 3])
def test_smoothness_weight_halves_per_scale(scale):
    generator = torch.Generator().manual_seed(3)
    image = torch.full((1, 3, *SIZE), 0.5)  # flat: photometric error 0, smoothness unweighted
    disparity = torch.rand(1, 1, SIZE[0] // 2 ** scale, SIZE[1] // 2 ** scale,
                           generator=generator, dtype=torch.float64).float()
    K = torch.tensor([[[40.0, 0, 31.5], [0, 40.0, 15.5], [0, 0, 1]]])
    poses = {-1: torch.eye(4)[None], 1: torch.eye(4)[None]}
    terms = photometric_loss({scale: disparity}, image, {-1: image, 1: image}, K, poses,
                             PhotometricConfig(), DEPTH_RANGE)
    normalised = disparity[0, 0].double().numpy() / disparity.double().mean().item()
    smoothness = (np.abs(np.diff(normalised, axis=1)).mean()
                  + np.abs(np.diff(normalised, axis=0)).mean())
    assert terms.smoothness.item() == pytest.approx(smoothness, rel=1e-5)
    assert terms.loss.item() == pytest.approx(1e-3 / 2 ** scale * smoothness, rel=1e-5)


def test_smoothness_of_a_coarse_scale_sees_the_image_averaged_to_it(walk):
    image = image_tensor(walk[1])
    disparity = torch.rand(1, 1, 16, 20, generator=torch.Generator().manual_seed(5))
    K = torch.from_numpy(walk[1]["intrinsics"])[None]
    poses = {-1: torch.eye(4)[None], 1: torch.eye(4)[None]}
    terms = photometric_loss({2: disparity}, image, {-1: image, 1: image}, K, poses,
                             PhotometricConfig(), DEPTH_RANGE)
    expected = edge_aware_smoothness(disparity, F.avg_pool2d(image, 4))
    torch.testing.assert_close(terms.smoothness, expected)


def test_scales_are_averaged(walk):
    image = image_tensor(walk[1])
    K = torch.from_numpy(walk[1]["intrinsics"])[None]
    sources = {-1: image_tensor(walk[0]), 1: image_tensor(walk[2])}
    poses = {-1: relative_pose(walk[1], walk[0]), 1: relative_pose(walk[1], walk[2])}
    generator = torch.Generator().manual_seed(4)
    disparities = {s: torch.rand(1, 1, 64 // 2 ** s, 80 // 2 ** s, generator=generator)
                   for s in (0, 1)}
    both = photometric_loss(disparities, image, sources, K, poses, PhotometricConfig(),
                            DEPTH_RANGE)
    each = [photometric_loss({s: d}, image, sources, K, poses, PhotometricConfig(), DEPTH_RANGE)
            for s, d in disparities.items()]
    for name in ("loss", "photometric", "smoothness", "automasked"):
        torch.testing.assert_close(getattr(both, name),
                                   (getattr(each[0], name) + getattr(each[1], name)) / 2)


def test_the_pyramid_compares_a_scale_at_its_own_resolution(walk):
    """With the pyramid, scale 2 is the full-resolution loss of frames, camera and disparity
    all brought to a quarter of the size; without, its disparity is up-sampled instead."""
    image, K = image_tensor(walk[1]), torch.from_numpy(walk[1]["intrinsics"])[None]
    sources = {-1: image_tensor(walk[0]), 1: image_tensor(walk[2])}
    poses = {-1: relative_pose(walk[1], walk[0]), 1: relative_pose(walk[1], walk[2])}
    depth = torch.from_numpy(walk[1]["depth"])[None, None].clamp(0.5, 20.0)
    quarter = disparity_of(F.avg_pool2d(depth, 4))
    pyramid = PhotometricConfig(pyramid=True)
    terms = photometric_loss({2: quarter}, image, sources, K, poses, pyramid, DEPTH_RANGE)
    small_K = torch.from_numpy(scale_intrinsics(walk[1]["intrinsics"], (64, 80), (16, 20)))
    expected = photometric_loss({0: quarter}, F.avg_pool2d(image, 4),
                                {k: F.avg_pool2d(v, 4) for k, v in sources.items()},
                                small_K[None], poses, pyramid, DEPTH_RANGE)
    torch.testing.assert_close(terms.photometric, expected.photometric)
    up_sampled = photometric_loss({2: quarter}, image, sources, K, poses, PhotometricConfig(),
                                  DEPTH_RANGE)
    assert not torch.isclose(up_sampled.photometric, terms.photometric)


def test_the_pyramid_widens_the_basin_of_the_true_depth(walk):
    """Compared at a quarter of the size, the loss ranks depths by how far they are from the
    truth (40 % short lies between the truth and 75 % short), so a network starting far off
    can descend towards the truth."""
    image, K = image_tensor(walk[1]), torch.from_numpy(walk[1]["intrinsics"])[None]
    sources = {-1: image_tensor(walk[0]), 1: image_tensor(walk[2])}
    poses = {-1: relative_pose(walk[1], walk[0]), 1: relative_pose(walk[1], walk[2])}
    depth = torch.from_numpy(walk[1]["depth"])[None, None].clamp(0.5, 20.0)
    config = PhotometricConfig(pyramid=True, automask=False)

    def loss(factor: float) -> float:
        disparity = disparity_of(F.avg_pool2d(depth * factor, 4))
        return photometric_loss({2: disparity}, image, sources, K, poses, config,
                                DEPTH_RANGE).photometric.item()
    assert loss(1.0) < loss(0.6) < loss(0.25)


# --- the objective --------------------------------------------------------------------------


def triplet_batch(seeds: tuple[int, ...], size: tuple[int, int] = SIZE
                  ) -> dict[str, torch.Tensor]:
    """A temporal batch of rendered triplets (frames t-1, t, t+1) in the sample contract."""
    samples = []
    for seed in seeds:
        prev, current, nxt = render_trajectory(seed, 3, size, speed=0.1, noise=False)
        travel = [np.linalg.norm(current["pose"][:3, 3] - other["pose"][:3, 3])
                  for other in (prev, nxt)]
        samples.append({"image": image_tensor(current)[0], "image_prev": image_tensor(prev)[0],
                        "image_next": image_tensor(nxt)[0],
                        "intrinsics": torch.from_numpy(current["intrinsics"]),
                        "travel": torch.tensor(travel, dtype=torch.float32)})
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def tiny_disparity_model(scales: tuple[int, ...] = (0, 1)) -> tuple[ModelConfig, MultiTaskNet]:
    cfg = ModelConfig(arch="stl", tasks=("depth",), width=0.25, output_scales=scales,
                      depth_output="disparity", depth_units="relative", max_depth=20.0)
    return cfg, MultiTaskNet(cfg)


def test_objective_groups_and_learning_rate():
    model_cfg, _ = tiny_disparity_model()
    objective = PhotometricObjective(PhotometricConfig(pose_width=0.25), model_cfg)
    assert set(objective.param_groups()) == {"pose"}
    assert {id(p) for p in objective.param_groups()["pose"]} == \
        {id(p) for p in objective.pose_net.parameters()}
    assert objective.learning_rates() == {}
    with_rate = PhotometricObjective(PhotometricConfig(pose_width=0.25, pose_lr=1e-6), model_cfg)
    assert with_rate.learning_rates() == {"pose": 1e-6}


def test_objective_refuses_single_frames():
    model_cfg, model = tiny_disparity_model()
    objective = PhotometricObjective(PhotometricConfig(scales=(0, 1), pose_width=0.25), model_cfg)
    batch = triplet_batch((0, 1))
    del batch["image_next"]
    with pytest.raises(KeyError, match="image_next"):
        objective(model(batch["image"]), batch)


def test_odometry_supervises_the_translation_length_over_known_travel():
    torch.manual_seed(0)
    model_cfg, model = tiny_disparity_model()
    cfg = PhotometricConfig(scales=(0, 1), pose_width=0.25, metric_scale="odometry",
                            odometry_weight=2.0)
    objective = PhotometricObjective(cfg, model_cfg).eval()
    model.eval()
    batch = triplet_batch((0, 1))
    batch["travel"][0, 1] = float("nan")
    with torch.no_grad():
        outputs = model(batch["image"])
        loss, logs = objective(outputs, batch)
        poses = objective.predicted_poses(batch)
        plain = PhotometricObjective(PhotometricConfig(scales=(0, 1), pose_width=0.25), model_cfg)
        plain.load_state_dict(objective.state_dict())
        plain_loss, plain_logs = plain.eval()(outputs, batch)
    lengths = torch.stack([poses[k][:, :3, 3].norm(dim=1) for k in (-1, 1)], dim=1)
    known = torch.isfinite(batch["travel"])
    expected = (lengths[known] - batch["travel"][known]).abs().mean().item()
    assert logs["odometry"] == pytest.approx(expected, rel=1e-5)
    assert "odometry" not in plain_logs
    assert loss.item() == pytest.approx(plain_loss.item() + 2.0 * expected, rel=1e-5)
    batch["travel"][:] = float("nan")
    with torch.no_grad():
        unknown_loss, unknown_logs = objective(outputs, batch)
    assert "odometry" not in unknown_logs and unknown_loss.item() == plain_loss.item()


def test_training_steps_reduce_the_loss_through_depth_and_pose():
    torch.manual_seed(0)
    model_cfg, model = tiny_disparity_model(scales=(0, 1, 2, 3))
    objective = PhotometricObjective(
        PhotometricConfig(scales=(0, 1, 2, 3), pose_width=0.25, metric_scale="odometry"),
        model_cfg)
    batch = triplet_batch((0, 1))
    optimiser = torch.optim.Adam([*model.parameters(), *objective.parameters()], lr=1e-3)
    losses = []
    for step in range(5):
        optimiser.zero_grad()
        loss, logs = objective(model(batch["image"]), batch)
        loss.backward()
        if step == 0:
            assert set(logs) == {"photometric", "smoothness", "automasked", "odometry"}
            for module in (model.heads["depth"], objective.pose_net.decoder,
                           objective.pose_net.encoder):
                assert any(p.grad is not None and p.grad.abs().sum() > 0
                           for p in module.parameters())
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
