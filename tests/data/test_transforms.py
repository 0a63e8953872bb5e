from __future__ import annotations

import numpy as np
import pytest
import torch

from densemtl_core.config import DataConfig
from densemtl_core.data.synthetic import render_scene, sample_to_tensors
from densemtl_core.data.transforms import (
    ColorJitter, Compose, RandomHorizontalFlip, RandomScaleCrop, Resize, build_transforms)
from densemtl_core.labels import IGNORE_INDEX


def rendered(size: tuple[int, int] = (48, 64), seed: int = 1) -> dict[str, torch.Tensor]:
    return sample_to_tensors(render_scene(seed, size))


def small_sample() -> dict[str, torch.Tensor]:
    """A 2x3 sample whose every value is distinct, to follow where pixels go."""
    normals = torch.nn.functional.normalize(torch.arange(1.0, 19.0).view(3, 2, 3), dim=0)
    return {
        "image": torch.arange(18.0).view(3, 2, 3) / 18,
        "semseg": torch.tensor([[0, 1, 2], [3, 4, 5]]),
        "depth": torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]),
        "normals": normals,
        "edges": torch.tensor([[1, 0, 0], [0, 0, 1]]),
        "intrinsics": torch.tensor([[10.0, 0.0, 0.7], [0.0, 10.0, 0.4], [0.0, 0.0, 1.0]]),
    }


def assert_samples_equal(one: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> None:
    """Maps exactly equal; intrinsics up to float32 rounding."""
    assert one.keys() == other.keys()
    for key in one:
        tolerance = 1e-5 if key == "intrinsics" else 0.0
        torch.testing.assert_close(one[key], other[key], rtol=0, atol=tolerance)


def test_flip_mirrors_maps_negates_normal_x_and_mirrors_the_principal_point():
    sample = small_sample()
    flipped = RandomHorizontalFlip(p=1.0)(sample)
    assert flipped["semseg"].tolist() == [[2, 1, 0], [5, 4, 3]]
    assert flipped["edges"].tolist() == [[0, 0, 1], [1, 0, 0]]
    assert flipped["depth"][0, 0].tolist() == [3.0, 2.0, 1.0]
    torch.testing.assert_close(flipped["normals"][0], -sample["normals"][0].flip(-1))
    torch.testing.assert_close(flipped["normals"][1:], sample["normals"][1:].flip(-1))
    assert flipped["intrinsics"][0, 2].item() == pytest.approx(3 - 1 - 0.7)
    assert flipped["intrinsics"][1, 2].item() == pytest.approx(0.4)
    assert sample["intrinsics"][0, 2].item() == pytest.approx(0.7)  # input left untouched


def test_flipping_twice_is_the_identity_and_p_zero_never_flips():
    sample = rendered()
    assert_samples_equal(RandomHorizontalFlip(1.0)(RandomHorizontalFlip(1.0)(sample)), sample)
    assert_samples_equal(RandomHorizontalFlip(0.0)(sample), sample)


def test_flipped_normals_agree_with_normals_derived_from_the_flipped_depth(geometry):
    flipped = RandomHorizontalFlip(1.0)(rendered())
    depth, intrinsics = flipped["depth"][0].numpy(), flipped["intrinsics"].numpy()
    normals = flipped["normals"].permute(1, 2, 0).numpy()
    derived = geometry.normals_from_depth(depth, intrinsics)
    interior = ~geometry.dilate(flipped["edges"].numpy(), 2)
    interior[[0, -1], :] = interior[:, [0, -1]] = False
    assert np.median(geometry.angle_deg(derived[interior], normals[interior])) < 2.0
    # Without the x negation the flipped normals would disagree on every slanted surface.
    unflipped = normals * np.array([-1.0, 1.0, 1.0])
    assert np.median(geometry.angle_deg(derived[interior], unflipped[interior])) > 10.0


def test_flip_is_random_with_probability_p():
    torch.manual_seed(0)
    flip = RandomHorizontalFlip(0.3)
    sample = small_sample()
    flips = [flip(sample)["semseg"][0, 0].item() == 2 for _ in range(2000)]
    assert 0.25 < np.mean(flips) < 0.35


def test_color_jitter_changes_only_the_image_and_is_seeded():
    sample = rendered()
    jitter = ColorJitter(0.4)
    torch.manual_seed(3)
    first = jitter(sample)
    torch.manual_seed(3)
    again = jitter(sample)
    assert_samples_equal(first, again)
    assert not torch.equal(first["image"], sample["image"])
    assert 0.0 <= first["image"].min() and first["image"].max() <= 1.0
    for key in sample.keys() - {"image"}:
        assert first[key] is sample[key]
    torch.testing.assert_close(ColorJitter(0.0)(sample)["image"], sample["image"])


def test_color_jitter_brightness_contrast_saturation_by_hand(monkeypatch):
    # Factors 1 + 0.5 (2u - 1) for u = (0.6, 1, 0): brightness 1.1, contrast 1.5, saturation 0.5.
    monkeypatch.setattr(torch, "rand", lambda *shape: torch.tensor([0.6, 1.0, 0.0]))
    image = torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1).expand(3, 1, 2).clone()
    image[:, 0, 1] = 0.4
    out = ColorJitter(0.5)({"image": image})["image"]
    bright = image * 1.1
    contrasted = (bright - bright.mean()) * 1.5 + bright.mean()
    grey = 0.299 * contrasted[0] + 0.587 * contrasted[1] + 0.114 * contrasted[2]
    torch.testing.assert_close(out, ((contrasted - grey) * 0.5 + grey).clamp(0, 1))


def test_resizing_a_three_times_larger_render_reproduces_the_small_render():
    small, large = rendered((32, 40), seed=7), rendered((96, 120), seed=7)
    resized = Resize((32, 40))(large)
    torch.testing.assert_close(resized["intrinsics"], small["intrinsics"], rtol=1e-5, atol=1e-4)
    for key in ("semseg", "edges", "depth", "normals"):
        assert resized[key].shape == small[key].shape and resized[key].dtype == small[key].dtype
    agree = torch.isclose(resized["depth"], small["depth"], rtol=1e-4)
    assert agree.float().mean() > 0.99
    assert (resized["semseg"] == small["semseg"]).float().mean() > 0.99
    assert Resize((96, 120))(large) is large


def test_scale_crop_upscale_updates_focal_length_and_principal_point():
    sample = small_sample()
    # Factor 1 is the smallest zoom that covers the output: here exactly twice the size, no
    # crop, so nearest labels copy each pixel into a 2x2 block.
    out = RandomScaleCrop((1.0, 1.0), (4, 6))(sample)
    expected = sample["semseg"].repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(out["semseg"], expected)
    expected_depth = sample["depth"].repeat_interleave(2, 1).repeat_interleave(2, 2)
    assert torch.equal(out["depth"], expected_depth)
    k = out["intrinsics"]
    assert k[0, 0].item() == pytest.approx(20.0) and k[1, 1].item() == pytest.approx(20.0)
    assert k[0, 2].item() == pytest.approx(2 * (0.7 + 0.5) - 0.5)
    assert k[1, 2].item() == pytest.approx(2 * (0.4 + 0.5) - 0.5)
    zoomed = RandomScaleCrop((3.0, 3.0), (2, 3))(sample)
    assert zoomed["semseg"].shape == (2, 3)
    assert zoomed["intrinsics"][0, 0].item() == pytest.approx(30.0)


def test_scale_crop_window_moves_the_principal_point_with_the_content():
    sample = rendered((48, 64))
    torch.manual_seed(0)
    tops = set()
    for _ in range(10):
        out = RandomScaleCrop((1.0, 1.0), (32, 64))(sample)
        top = int(round(sample["intrinsics"][1, 2].item() - out["intrinsics"][1, 2].item()))
        tops.add(top)
        for key in ("image", "semseg", "depth", "normals", "edges"):
            assert torch.equal(out[key], sample[key][..., top:top + 32, :])
        assert out["intrinsics"][0, 2] == sample["intrinsics"][0, 2]
    assert len(tops) > 1


def test_scale_crop_downscale_pads_with_unlabelled_invalid_pixels():
    sample = rendered((32, 32))
    out = RandomScaleCrop((0.5, 0.5), (32, 32))(sample)
    assert out["image"].shape == (3, 32, 32)
    assert (out["semseg"] != IGNORE_INDEX).sum() == 16 * 16
    assert (out["depth"] > 0).sum() == 16 * 16
    assert ((out["depth"][0] > 0) == (out["semseg"] != IGNORE_INDEX)).all()
    assert (out["normals"].norm(dim=0) > 0.5).sum() == 16 * 16
    assert out["intrinsics"][0, 0].item() == pytest.approx(sample["intrinsics"][0, 0].item() / 2)


def test_build_transforms_follows_the_data_config():
    sample = rendered((48, 64))
    evaluation = build_transforms(DataConfig(image_size=(32, 48)), train=False)
    assert evaluation(sample)["image"].shape == (3, 32, 48)
    torch.manual_seed(0)
    training = build_transforms(DataConfig(image_size=(32, 48), hflip=True, color_jitter=0.2,
                                           scale_range=(1.0, 1.5)), train=True)
    kinds = [type(t) for t in training.transforms]
    assert kinds == [RandomScaleCrop, RandomHorizontalFlip, ColorJitter]
    out = training(sample)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "image": (3, 32, 48), "semseg": (32, 48), "depth": (1, 32, 48), "normals": (3, 32, 48),
        "edges": (32, 48), "intrinsics": (3, 3)}
    plain = build_transforms(DataConfig(image_size=(48, 64), hflip=False), train=True)
    assert_samples_equal(plain(sample), sample)


def test_compose_applies_in_order():
    trace = []
    composed = Compose([lambda s: trace.append("a") or s, lambda s: trace.append("b") or s])
    composed({})
    assert trace == ["a", "b"]


# ----------------------------------------------------------------------------------------------
# Temporal samples
# ----------------------------------------------------------------------------------------------

def rigid(yaw: float, shift: tuple[float, float, float]) -> torch.Tensor:
    """A 4x4 rigid transform: rotation about the optical y axis, then a translation."""
    c, s = np.cos(yaw), np.sin(yaw)
    return torch.tensor([[c, 0.0, s, shift[0]], [0.0, 1.0, 0.0, shift[1]],
                         [-s, 0.0, c, shift[2]], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float32)


def temporal_sample() -> dict[str, torch.Tensor]:
    """``small_sample`` with two neighbouring frames unlike it and the non-map values of a
    temporal, partly labelled sample."""
    sample = small_sample()
    return {**sample,
            "image_prev": sample["image"].flip(-2) * 0.5,
            "image_next": 1.0 - sample["image"],
            "travel": torch.tensor([0.1, 0.2]),
            "pose_prev": rigid(0.1, (0.3, -0.1, 0.2)),
            "pose_next": rigid(-0.2, (-0.1, 0.0, 0.4)),
            "has_semseg": torch.tensor(True)}


NON_MAPS = ("travel", "pose_prev", "pose_next", "has_semseg")


def test_flip_mirrors_every_frame_and_leaves_travel_and_flags_alone():
    sample = temporal_sample()
    flipped = RandomHorizontalFlip(1.0)(sample)
    for key in ("image", "image_prev", "image_next"):
        assert torch.equal(flipped[key], sample[key].flip(-1))
    assert flipped["travel"].tolist() == pytest.approx([0.1, 0.2])  # never reversed
    assert flipped["has_semseg"].item() is True
    again = RandomHorizontalFlip(1.0)(flipped)
    for key in NON_MAPS:
        torch.testing.assert_close(again[key], sample[key])


def test_flipped_poses_move_the_mirrored_points_to_the_mirrored_source_points():
    sample = temporal_sample()
    flipped = RandomHorizontalFlip(1.0)(sample)
    points = torch.tensor([[0.5, -0.2, 3.0, 1.0], [-1.0, 0.4, 2.0, 1.0]]).T
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
    for key in ("pose_prev", "pose_next"):
        torch.testing.assert_close(flipped[key] @ (mirror @ points),
                                   mirror @ (sample[key] @ points))
        assert not torch.allclose(flipped[key], sample[key])


def test_color_jitter_maps_every_frame_through_the_same_colour_function():
    sample = temporal_sample()
    # The previous frame shows the same pixels in another order and the next one other colours;
    # a colour must come out the same in every frame.
    sample["image_prev"] = sample["image"].flip(-1)
    sample["image_next"] = sample["image"][:, :, :1].expand(3, 2, 3).clone()
    torch.manual_seed(5)
    out = ColorJitter(0.5)(sample)
    assert not torch.equal(out["image"], sample["image"])
    torch.testing.assert_close(out["image_prev"], out["image"].flip(-1))
    torch.testing.assert_close(out["image_next"], out["image"][:, :, :1].expand(3, 2, 3))
    for key in NON_MAPS + ("semseg", "depth"):
        assert out[key] is sample[key]


def test_resize_treats_the_neighbouring_frames_like_the_image_and_keeps_non_maps():
    sample = rendered((48, 64))
    sample.update(image_prev=sample["image"].flip(-1), image_next=sample["image"] * 0.5,
                  travel=torch.tensor([0.3, 0.4]), has_depth=torch.tensor(False),
                  pose_prev=rigid(0.1, (0.1, 0.0, 0.0)))
    out = Resize((24, 32))(sample)
    expected = torch.nn.functional.interpolate(sample["image"][None], size=(24, 32),
                                               mode="bilinear", antialias=True)[0]
    torch.testing.assert_close(out["image"], expected)
    torch.testing.assert_close(out["image_prev"], expected.flip(-1))
    torch.testing.assert_close(out["image_next"], expected * 0.5)
    for key in ("travel", "has_depth", "pose_prev"):
        assert out[key] is sample[key]
    assert Resize((48, 64))(sample) is sample  # non-maps do not count as maps of another size


def test_scale_crop_pads_the_neighbouring_frames_like_the_image():
    sample = rendered((32, 32))
    sample.update(image_prev=sample["image"].clone(), image_next=sample["image"].clone(),
                  travel=torch.tensor([0.3, 0.4]), has_semseg=torch.tensor(True))
    torch.manual_seed(1)
    out = RandomScaleCrop((0.5, 0.5), (32, 32))(sample)
    for key in ("image_prev", "image_next"):
        assert out[key].shape == (3, 32, 32)
        assert torch.equal(out[key], out["image"])
    assert (out["image"].sum(0) == 0).sum() == 32 * 32 - 16 * 16
    assert out["travel"].tolist() == pytest.approx([0.3, 0.4])
    assert out["has_semseg"].item() is True


def test_training_transforms_keep_a_temporal_sample_consistent():
    sample = rendered((48, 64))
    sample.update(image_prev=sample["image"].clone(), image_next=sample["image"].clone(),
                  travel=torch.tensor([0.3, 0.4]), pose_prev=torch.eye(4),
                  pose_next=torch.eye(4), has_semseg=torch.tensor(True))
    training = build_transforms(DataConfig(image_size=(32, 48), color_jitter=0.3,
                                           scale_range=(1.0, 1.5)), train=True)
    for seed in range(4):
        torch.manual_seed(seed)
        out = training(sample)
        assert torch.equal(out["image_prev"], out["image"])
        assert torch.equal(out["image_next"], out["image"])
        assert out["travel"].shape == (2,) and out["has_semseg"].shape == ()
        assert torch.equal(out["pose_prev"], torch.eye(4))
