from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from densemtl_core.data import synthetic
from densemtl_core.data.synthetic import (
    EDGE_DEPTH_JUMP, EDGE_NORMAL_ANGLE_DEG, SPLITS, SYNTHETIC_CLASSES, SYNTHETIC_COLORS,
    SyntheticScenes, edges_from_maps, render_scene, render_trajectory, scene_seed)

SIZE = (48, 64)


@pytest.fixture(scope="module")
def frames() -> list[dict[str, np.ndarray]]:
    return [render_scene(seed, SIZE) for seed in range(6)]


def test_same_seed_renders_identical_arrays_and_other_seeds_differ():
    first, again, other = render_scene(11, SIZE), render_scene(11, SIZE), render_scene(12, SIZE)
    assert first.keys() == again.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["depth"], other["depth"])


def test_one_seed_shows_the_same_view_at_every_resolution():
    small, large = render_scene(5, (32, 40)), render_scene(5, (96, 120))
    np.testing.assert_allclose(small["pose"], large["pose"])
    # Three times the pixels: focal x3 and, with pixel centres at integers, c' = 3 (c + 0.5) - 0.5.
    expected = small["intrinsics"].copy()
    expected[:2, :2] *= 3
    expected[:2, 2] = 3 * (expected[:2, 2] + 0.5) - 0.5
    np.testing.assert_allclose(large["intrinsics"], expected, rtol=1e-5)
    # Every third pixel of the large render (offset 1) looks along the small render's rays.
    agree = np.isclose(large["depth"][1::3, 1::3], small["depth"], rtol=1e-4)
    assert agree.mean() > 0.99


def test_arrays_follow_the_documented_shapes_types_and_ranges(frames):
    height, width = SIZE
    for frame in frames:
        assert frame["image"].shape == (height, width, 3) and frame["image"].dtype == np.uint8
        assert frame["semseg"].shape == SIZE and frame["semseg"].dtype == np.uint8
        assert frame["semseg"].max() < len(SYNTHETIC_CLASSES)
        assert frame["depth"].dtype == np.float32 and np.all(frame["depth"] > 0)
        assert frame["normals"].shape == (height, width, 3) and frame["normals"].dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(frame["normals"], axis=-1), 1.0, atol=1e-5)
        assert set(np.unique(frame["edges"])) <= {0, 1} and frame["edges"].dtype == np.uint8
        assert frame["intrinsics"].shape == (3, 3) and frame["pose"].shape == (4, 4)
        rotation = frame["pose"][:3, :3].astype(np.float64)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
    assert len(SYNTHETIC_COLORS) == len(SYNTHETIC_CLASSES) == len(set(SYNTHETIC_COLORS))


def test_normals_face_the_camera_and_match_normals_derived_from_depth(frames, geometry):
    for frame in frames:
        rays = geometry.back_project(np.ones(SIZE), frame["intrinsics"])
        assert np.all(np.sum(frame["normals"] * rays, axis=-1) < 0)
        derived = geometry.normals_from_depth(frame["depth"], frame["intrinsics"])
        interior = ~geometry.dilate(frame["edges"], 2)
        interior[[0, -1], :] = interior[:, [0, -1]] = False
        errors = geometry.angle_deg(derived[interior], frame["normals"][interior])
        assert np.median(errors) < 2.0
        assert np.mean(errors < 10.0) > 0.95


def test_depth_is_the_optical_z_so_floor_points_lie_on_the_world_floor(frames, geometry):
    for frame in frames:
        floor = frame["semseg"] == synthetic.FLOOR
        points = geometry.back_project(frame["depth"], frame["intrinsics"])[floor]
        world = points @ frame["pose"][:3, :3].T.astype(np.float64) + frame["pose"][:3, 3]
        np.testing.assert_allclose(world[:, 2], 0.0, atol=2e-3)
        floor_normals = frame["normals"][floor] @ frame["pose"][:3, :3].T
        np.testing.assert_allclose(floor_normals, np.broadcast_to([0, 0, 1], floor_normals.shape),
                                   atol=1e-5)


def test_every_label_change_is_an_edge_and_every_edge_is_a_discontinuity(frames, geometry):
    cos_limit = np.cos(np.radians(EDGE_NORMAL_ANGLE_DEG))
    for frame in frames:
        semseg, depth, normals, edges = (frame[k] for k in ("semseg", "depth", "normals", "edges"))
        discontinuous = np.zeros(SIZE, dtype=bool)
        for a, b in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                     ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
            label_change = semseg[a] != semseg[b]
            assert np.all(edges[a].astype(bool)[label_change] | edges[b].astype(bool)[label_change])
            jump = np.abs(depth[a] - depth[b]) > EDGE_DEPTH_JUMP * np.minimum(depth[a], depth[b])
            crease = np.sum(normals[a] * normals[b], axis=-1) < cos_limit
            broken = label_change | jump | crease
            discontinuous[a] |= broken
            discontinuous[b] |= broken
        assert edges.any()
        assert np.all(geometry.dilate(discontinuous, 1)[edges.astype(bool)])


def test_edges_mark_the_nearer_pixel_of_each_discontinuity():
    semseg = np.array([[0, 0, 3, 3],
                       [0, 0, 3, 3],
                       [0, 0, 0, 0]], dtype=np.uint8)
    depth = np.array([[4.0, 4.0, 2.0, 2.0],
                      [4.0, 4.0, 2.0, 2.0],
                      [4.0, 4.0, 4.0, 4.1]], dtype=np.float32)
    normals = np.zeros((3, 4, 3), dtype=np.float32)
    normals[..., 2] = -1.0
    normals[2, 0] = [0.0, -1.0, 0.0]  # a 90 degree crease against its neighbours
    expected = np.array([[0, 0, 1, 0],
                         [1, 0, 1, 1],
                         [1, 0, 0, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(edges_from_maps(semseg, depth, normals), expected)


def test_depth_jumps_on_one_primitive_are_not_edges():
    semseg = np.zeros((1, 3), dtype=np.uint8)
    depth = np.array([[1.0, 2.0, 4.0]], dtype=np.float32)
    normals = np.broadcast_to(np.array([0.0, 0.0, -1.0], np.float32), (1, 3, 3))
    np.testing.assert_array_equal(edges_from_maps(semseg, depth, normals), [[1, 1, 0]])
    np.testing.assert_array_equal(
        edges_from_maps(semseg, depth, normals, primitive=np.array([[0, 0, 1]])), [[0, 1, 0]])


def test_max_depth_invalidates_far_pixels_only():
    full, clipped = render_scene(3, SIZE), render_scene(3, SIZE, max_depth=3.0)
    far = full["depth"] > 3.0
    assert far.any() and (~far).any()
    assert np.all(clipped["depth"][far] == 0) and np.all(clipped["normals"][far] == 0)
    np.testing.assert_array_equal(clipped["depth"][~far], full["depth"][~far])
    for key in ("image", "semseg", "edges"):
        np.testing.assert_array_equal(clipped[key], full[key])


def test_noise_and_supersampling_change_only_the_image():
    plain = render_scene(4, SIZE, noise=False)
    for variant in (render_scene(4, SIZE), render_scene(4, SIZE, supersample=2)):
        assert not np.array_equal(variant["image"], plain["image"])
        for key in ("semseg", "depth", "normals", "edges", "intrinsics", "pose"):
            np.testing.assert_array_equal(variant[key], plain[key])
    assert np.abs(variant["image"].astype(int) - plain["image"]).mean() < 20


def test_every_class_appears_across_fifty_scenes():
    seen = set()
    for seed in range(50):
        seen.update(np.unique(render_scene(seed, SIZE, noise=False)["semseg"]).tolist())
    assert seen == set(range(len(SYNTHETIC_CLASSES)))


def test_trajectory_frames_move_smoothly_through_one_static_scene(geometry):
    frames = list(render_trajectory(21, 4, SIZE, noise=False))
    assert len(frames) == 4
    for before, after in zip(frames, frames[1:]):
        np.testing.assert_array_equal(before["intrinsics"], after["intrinsics"])
        step = np.linalg.norm(after["pose"][:3, 3] - before["pose"][:3, 3])
        assert 0.02 < step < 0.08
        # Warp the first frame's points into the second: the second sees the same depth there.
        k = before["intrinsics"].astype(np.float64)
        points = geometry.back_project(before["depth"], k).reshape(-1, 3)
        world = points @ before["pose"][:3, :3].T + before["pose"][:3, 3]
        seen = (world - after["pose"][:3, 3]) @ after["pose"][:3, :3]
        cols = np.round(k[0, 0] * seen[:, 0] / seen[:, 2] + k[0, 2]).astype(int)
        rows = np.round(k[1, 1] * seen[:, 1] / seen[:, 2] + k[1, 2]).astype(int)
        inside = (rows >= 0) & (rows < SIZE[0]) & (cols >= 0) & (cols < SIZE[1])
        inside &= ~geometry.dilate(before["edges"], 1).reshape(-1)
        assert inside.mean() > 0.6
        rows, cols, seen = rows[inside], cols[inside], seen[inside]
        assert np.median(np.abs(after["depth"][rows, cols] - seen[:, 2]) / seen[:, 2]) < 0.01
        same_class = after["semseg"][rows, cols] == before["semseg"].reshape(-1)[inside]
        assert same_class.mean() > 0.95


def test_split_seeds_are_disjoint():
    seeds = {split: {scene_seed(dataset_seed, split, index)
                     for dataset_seed in (0, 1) for index in range(3000)} for split in SPLITS}
    assert all(len(s) == 6000 for s in seeds.values())
    assert not (seeds["train"] & seeds["val"] or seeds["train"] & seeds["test"]
                or seeds["val"] & seeds["test"])
    with pytest.raises(ValueError):
        scene_seed(0, "training", 0)
    with pytest.raises(ValueError):
        scene_seed(0, "train", 2 ** 32)


def test_dataset_sample_follows_the_library_conventions():
    dataset = SyntheticScenes("val", 3, size=SIZE, seed=2)
    sample = dataset[1]
    frame = render_scene(scene_seed(2, "val", 1), SIZE)
    assert len(dataset) == 3 and dataset.num_classes == 8
    assert dataset.class_names == SYNTHETIC_CLASSES and dataset.class_colors == SYNTHETIC_COLORS
    expected = {"image": ((3, *SIZE), torch.float32), "semseg": (SIZE, torch.int64),
                "depth": ((1, *SIZE), torch.float32), "normals": ((3, *SIZE), torch.float32),
                "edges": (SIZE, torch.int64), "intrinsics": ((3, 3), torch.float32)}
    assert {k: (tuple(v.shape), v.dtype) for k, v in sample.items()} == expected
    channels_first = {k: torch.from_numpy(frame[k]).permute(2, 0, 1) for k in ("image", "normals")}
    torch.testing.assert_close(sample["image"], channels_first["image"] / 255.0)
    torch.testing.assert_close(sample["normals"], channels_first["normals"])
    assert torch.equal(sample["semseg"], torch.from_numpy(frame["semseg"]).long())
    with pytest.raises(IndexError):
        dataset[3]


def test_cache_renders_each_scene_once_and_transforms_cannot_corrupt_it(monkeypatch):
    calls = []

    def counting_render(seed, size, **options):
        calls.append(seed)
        return render_scene(seed, size, **options)

    def vandal(sample):
        for value in sample.values():
            value.mul_(0)
        return sample

    monkeypatch.setattr(synthetic, "render_scene", counting_render)
    dataset = SyntheticScenes("train", 2, size=SIZE, transform=vandal)
    for index in (0, 0, 1):
        dataset[index]
    assert len(calls) == 2
    dataset.transform = None
    assert dataset[0]["depth"].min() > 0 and len(calls) == 2
    uncached = SyntheticScenes("train", 2, size=SIZE, cache=False)
    for index in (0, 0):
        uncached[index]
    assert len(calls) == 4


def test_dataloader_gives_the_same_batches_with_and_without_workers():
    dataset = SyntheticScenes("test", 4, size=(32, 48))
    serial = list(DataLoader(dataset, batch_size=2, num_workers=0))
    parallel = list(DataLoader(dataset, batch_size=2, num_workers=2))
    assert len(serial) == len(parallel) == 2
    for one, other in zip(serial, parallel):
        assert one.keys() == other.keys()
        for key in one:
            assert torch.equal(one[key], other[key])
    assert serial[0]["image"].shape == (2, 3, 32, 48)
