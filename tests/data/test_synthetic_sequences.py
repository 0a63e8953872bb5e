from __future__ import annotations

import numpy as np
import pytest
import torch

from densemtl_core.config import DataConfig
from densemtl_core.data import build_dataset, synthetic
from densemtl_core.data.synthetic import (
    SEQUENCE_SPEED, SYNTHETIC_CLASSES, SyntheticScenes, SyntheticSequences, render_trajectory,
    scene_seed)

SIZE = (48, 64)


def warp_error(sample: dict[str, torch.Tensor], source: str, pose: torch.Tensor) -> float:
    """Median absolute difference (mean over channels) between the centre image and the
    ``source`` frame sampled (nearest pixel) where the centre's depth and ``pose`` project each
    pixel, over the pixels that land inside the source image."""
    k = sample["intrinsics"].double()
    depth = sample["depth"][0].double()
    rows, cols = torch.meshgrid(torch.arange(SIZE[0], dtype=torch.float64),
                                torch.arange(SIZE[1], dtype=torch.float64), indexing="ij")
    points = torch.stack([(cols - k[0, 2]) / k[0, 0] * depth, (rows - k[1, 2]) / k[1, 1] * depth,
                          depth, torch.ones_like(depth)]).reshape(4, -1)
    seen = pose.double() @ points
    u = torch.round(k[0, 0] * seen[0] / seen[2] + k[0, 2]).long()
    v = torch.round(k[1, 1] * seen[1] / seen[2] + k[1, 2]).long()
    inside = (seen[2] > 0) & (u >= 0) & (u < SIZE[1]) & (v >= 0) & (v < SIZE[0])
    assert inside.float().mean() > 0.7
    target = sample["image"].reshape(3, -1)[:, inside]
    warped = sample[source][:, v[inside], u[inside]]
    return float((target - warped).abs().mean(0).median())


def test_sample_is_the_centre_frame_of_a_walk_with_its_neighbours():
    dataset = SyntheticSequences("val", 2, size=SIZE, seed=3, stride=2)
    sample = dataset[1]
    walk = list(render_trajectory(scene_seed(3, "val", 1), 5, SIZE, speed=SEQUENCE_SPEED))
    # stride 2 renders frames 0, 2 and 4 of the same walk; the noise draws differ, the views not.
    exact = list(render_trajectory(scene_seed(3, "val", 1), 3, SIZE, speed=SEQUENCE_SPEED,
                                   stride=2))
    for strided, full in zip(exact, walk[::2]):
        np.testing.assert_array_equal(strided["depth"], full["depth"])
        np.testing.assert_array_equal(strided["pose"], full["pose"])
    expected = synthetic.sample_to_tensors(exact[1])
    for key, value in expected.items():
        assert torch.equal(sample[key], value), key
    assert torch.equal(sample["image_prev"], synthetic.image_to_tensor(exact[0]["image"]))
    assert torch.equal(sample["image_next"], synthetic.image_to_tensor(exact[2]["image"]))
    shapes = {key: (tuple(value.shape), value.dtype) for key, value in sample.items()}
    assert shapes == {
        "image": ((3, *SIZE), torch.float32), "image_prev": ((3, *SIZE), torch.float32),
        "image_next": ((3, *SIZE), torch.float32), "semseg": (SIZE, torch.int64),
        "depth": ((1, *SIZE), torch.float32), "normals": ((3, *SIZE), torch.float32),
        "edges": (SIZE, torch.int64), "intrinsics": ((3, 3), torch.float32),
        "travel": ((2,), torch.float32), "pose_prev": ((4, 4), torch.float32),
        "pose_next": ((4, 4), torch.float32)}
    assert dataset.has_odometry and dataset.class_names == SYNTHETIC_CLASSES
    assert len(dataset) == 2 and dataset.scene_seed(1) == scene_seed(3, "val", 1)
    with pytest.raises(IndexError):
        dataset[2]


def test_travel_is_the_camera_motion_and_grows_with_the_stride():
    near = SyntheticSequences("train", 1, size=SIZE, stride=1, noise=False)[0]
    far = SyntheticSequences("train", 1, size=SIZE, stride=3, noise=False)[0]
    for sample in (near, far):
        moved = [sample[key][:3, 3].norm() for key in ("pose_prev", "pose_next")]
        torch.testing.assert_close(sample["travel"], torch.stack(moved))
    # About ``speed`` metres per frame along the walk (plus a small bob).
    assert near["travel"].tolist() == pytest.approx([SEQUENCE_SPEED] * 2, rel=0.1)
    assert far["travel"].tolist() == pytest.approx([3 * SEQUENCE_SPEED] * 2, rel=0.1)


def test_poses_warp_the_neighbours_onto_the_centre_frame():
    sample = SyntheticSequences("test", 1, size=SIZE, seed=0, stride=2, noise=False)[0]
    for source, pose in (("image_prev", "pose_prev"), ("image_next", "pose_next")):
        error = warp_error(sample, source, sample[pose])
        unmoved = warp_error(sample, source, torch.eye(4))
        inverted = warp_error(sample, source, torch.linalg.inv(sample[pose]))
        assert error < 0.01  # a few grey levels: rounding and nearest sampling
        assert error < 0.25 * unmoved and error < 0.25 * inverted


def test_frames_are_rendered_once_when_cached(monkeypatch):
    calls = []
    original = synthetic.render_trajectory

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_trajectory", counting)
    cached = SyntheticSequences("train", 2, size=SIZE)
    first = cached[0]
    again = cached[0]
    assert len(calls) == 1 and all(torch.equal(first[k], again[k]) for k in first)
    uncached = SyntheticSequences("train", 2, size=SIZE, cache=False)
    uncached[0], uncached[0]
    assert len(calls) == 3


def test_build_dataset_gives_sequences_only_when_asked():
    cfg = DataConfig(image_size=(32, 48), train_length=3, val_length=2, frame_stride=2,
                     color_jitter=0.2)
    train = build_dataset(cfg, "train", train=True, sequence=True)
    assert isinstance(train, SyntheticSequences) and len(train) == 3 and train.stride == 2
    torch.manual_seed(0)
    sample = train[0]
    for key in ("image", "image_prev", "image_next"):
        assert sample[key].shape == (3, 32, 48)
    assert sample["travel"].shape == (2,)
    assert isinstance(build_dataset(cfg, "val"), SyntheticScenes)
    with pytest.raises(ValueError, match="stride"):
        SyntheticSequences("train", 1, stride=0)
