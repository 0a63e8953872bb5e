"""The code every public-dataset loader shares, and the sample contract they all keep."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from densemtl_core.config import ConfigError, DataConfig
from densemtl_core.data import PUBLIC_DATASETS, build_dataset
from densemtl_core.data.common import (
    DatasetLayoutError, LabelMap, label_boundaries, labelled_split, normals_from_depth, read_png,
    resize_sample, seeded_split)
from densemtl_core.data.transforms import scale_intrinsics
from densemtl_core.labels import IGNORE_INDEX
from tests.data.fixtures import BUILDERS, SIZE, write_image, write_png16_rgb

K = torch.tensor([[40.0, 0.0, 31.5], [0.0, 42.0, 15.5], [0.0, 0.0, 1.0]])


def plane_depth(normal: np.ndarray, offset: float, intrinsics: np.ndarray,
                size: tuple[int, int] = SIZE) -> np.ndarray:
    """Depth of the plane n . P = offset seen through ``intrinsics`` (z of each pixel's ray hit)."""
    rows, cols = np.mgrid[: size[0], : size[1]]
    rays = np.stack([(cols - intrinsics[0, 2]) / intrinsics[0, 0],
                     (rows - intrinsics[1, 2]) / intrinsics[1, 1], np.ones(size)], axis=-1)
    return offset / (rays @ normal)


# ----------------------------------------------------------------------------------------------
# Normals from depth
# ----------------------------------------------------------------------------------------------

def test_fronto_parallel_plane_faces_the_camera():
    normals = normals_from_depth(torch.full((1, *SIZE), 3.0), K)
    inside = normals[:, 2:-2, 2:-2]
    facing = torch.tensor([0.0, 0.0, -1.0]).view(3, 1, 1).expand_as(inside)
    torch.testing.assert_close(inside, facing)


def test_tilted_plane_gives_its_normal_wherever_valid(geometry):
    normal = np.array([0.2, -0.6, -0.75])
    normal /= np.linalg.norm(normal)
    depth = plane_depth(normal, -4.0, K.numpy())  # the camera sees the side facing it
    assert depth.min() > 0
    normals = normals_from_depth(torch.from_numpy(depth).float()[None], K).numpy()
    inside = normals[:, 2:-2, 2:-2].transpose(1, 2, 0)
    assert geometry.angle_deg(inside, normal).max() < 0.05
    expected = geometry.normals_from_depth(depth, K.numpy())[2:-2, 2:-2]
    assert geometry.angle_deg(inside, expected).max() < 0.05


def test_invalid_depth_and_a_two_pixel_border_have_no_normal():
    depth = torch.full((1, *SIZE), 3.0)
    depth[0, 10, 20] = 0.0
    normals = normals_from_depth(depth, K)
    valid = normals.norm(dim=0) > 0
    expected = torch.zeros(SIZE, dtype=torch.bool)
    expected[2:-2, 2:-2] = True
    expected[9:12, 19:22] = False  # the hole and its 3x3 neighbourhood
    assert torch.equal(valid, expected)
    torch.testing.assert_close(normals.norm(dim=0)[valid], torch.ones(int(valid.sum())))


# ----------------------------------------------------------------------------------------------
# Edges, labels, readers
# ----------------------------------------------------------------------------------------------

def test_label_boundaries_mark_both_sides_and_commute_with_flips():
    semseg = torch.tensor([[0, 0, 1, 1],
                           [0, 0, 1, 1],
                           [2, 2, 2, IGNORE_INDEX]])
    assert label_boundaries(semseg).tolist() == [[0, 1, 1, 0],
                                                 [1, 1, 1, 1],
                                                 [1, 1, 1, 1]]
    labels = torch.randint(0, 3, (12, 20))
    assert torch.equal(label_boundaries(labels.flip(-1)), label_boundaries(labels).flip(-1))


def test_label_map_sends_unlisted_ids_to_the_ignore_label():
    mapping = LabelMap({7: 0, 300: 1})
    raw = np.array([[7, 300], [0, 65535]], dtype=np.uint16)
    assert mapping(raw).tolist() == [[0, 1], [IGNORE_INDEX, IGNORE_INDEX]]
    with pytest.raises(ValueError, match="label ids"):
        mapping(np.array([[0.5]]))
    with pytest.raises(ValueError, match="label ids"):
        mapping(np.array([[-1]]))


def test_read_png_keeps_16_bit_values_and_file_channel_order(tmp_path):
    pytest.importorskip("cv2", reason="16-bit multi-channel PNGs are decoded with OpenCV")
    rgb = np.array([[[1, 2, 3], [300, 40000, 65535]]], dtype=np.uint16)
    write_png16_rgb(tmp_path / "rgb16.png", rgb)
    decoded = read_png(tmp_path / "rgb16.png")
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, rgb)
    grey = np.array([[0, 1, 65535]], dtype=np.uint16)
    write_image(tmp_path / "grey16.png", grey)
    assert np.array_equal(read_png(tmp_path / "grey16.png"), grey)
    (tmp_path / "fake.png").write_bytes(b"not an image")
    with pytest.raises(DatasetLayoutError, match="fake.png is not a PNG"):
        read_png(tmp_path / "fake.png")


# ----------------------------------------------------------------------------------------------
# Resizing and splits
# ----------------------------------------------------------------------------------------------

def test_resize_keeps_every_edge_and_resizes_maps_of_other_sizes():
    edges = torch.zeros(SIZE, dtype=torch.long)
    edges[:, 7] = 1  # one pixel wide: nearest down-sampling by two would drop it
    edges[5, :] = 1
    sample = {"image": torch.rand(3, *SIZE), "depth": torch.rand(1, 64, 128) + 1,
              "edges": edges, "intrinsics": K.clone()}
    resized = resize_sample(sample, (16, 32))
    assert resized["depth"].shape == (1, 16, 32) and resized["edges"].shape == (16, 32)
    rows, cols = torch.nonzero(edges, as_tuple=True)
    assert resized["edges"][rows // 2, cols // 2].all()
    torch.testing.assert_close(resized["intrinsics"], scale_intrinsics(K, SIZE, (16, 32)))


def test_seeded_split_is_disjoint_complete_and_reproducible():
    train, val = seeded_split(50, "train", 42, 0.8), seeded_split(50, "val", 42, 0.8)
    assert len(train) == 40 and len(val) == 10
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(50))
    assert train == sorted(train) and seeded_split(50, "train", 42, 0.8) == train
    assert seeded_split(50, "train", 7, 0.8) != train
    assert seeded_split(50, "test", 42, 0.8) == val


def test_test_split_reads_val_and_unknown_splits_fail():
    assert [labelled_split(s) for s in ("train", "val", "test")] == ["train", "val", "val"]
    with pytest.raises(ValueError, match="unknown split"):
        labelled_split("trainval")


# ----------------------------------------------------------------------------------------------
# The contract of every public dataset
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset_roots(tmp_path_factory):
    roots = {}
    for name, build in BUILDERS.items():
        roots[name] = tmp_path_factory.mktemp("datasets") / name
        build(roots[name])
    return roots


@pytest.mark.parametrize("name", sorted(PUBLIC_DATASETS))
def test_every_dataset_returns_the_sample_conventions_at_the_network_size(name, dataset_roots):
    torch.manual_seed(0)
    dataset = build_dataset(DataConfig(dataset=name, root=str(dataset_roots[name]),
                                       image_size=(16, 32), scale_range=(1.0, 1.5),
                                       color_jitter=0.2), "train", train=True)
    assert len(dataset.class_names) == len(dataset.class_colors) == dataset.num_classes
    for index in range(len(dataset)):
        sample = dataset[index]
        assert set(sample) == {"image", "semseg", "depth", "normals", "edges", "intrinsics"}
        assert sample["image"].shape == (3, 16, 32) and sample["image"].dtype == torch.float32
        assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
        assert sample["semseg"].shape == (16, 32) and sample["semseg"].dtype == torch.int64
        labels = sample["semseg"][sample["semseg"] != IGNORE_INDEX]
        assert labels.numel() == 0 or 0 <= int(labels.min()) <= int(labels.max()) < len(
            dataset.class_names)
        assert sample["depth"].shape == (1, 16, 32) and float(sample["depth"].min()) >= 0.0
        length = sample["normals"].norm(dim=0)
        assert sample["normals"].shape == (3, 16, 32)
        assert torch.all((length < 1e-6) | ((length - 1).abs() < 1e-4))
        assert set(sample["edges"].unique().tolist()) <= {0, 1}
        assert sample["intrinsics"].shape == (3, 3) and sample["intrinsics"][2, 2] == 1.0


def test_public_dataset_needs_a_root_and_a_known_label_set(dataset_roots):
    with pytest.raises(ConfigError, match="data.root must name the synthia root"):
        build_dataset(DataConfig(dataset="synthia", image_size=SIZE), "train")
    with pytest.raises(ConfigError, match=r"no label set 'trainid19'; available: \['method16'\]"):
        build_dataset(DataConfig(dataset="synthia", root=str(dataset_roots["synthia"]),
                                 label_set="trainid19"), "train")
