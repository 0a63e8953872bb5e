"""Cityscapes loader: disparity to metric depth, both class sets, intrinsics, derived targets,
frame triplets from the video snippets."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from densemtl_core.config import ConfigError, DataConfig
from densemtl_core.data import build_dataset
from densemtl_core.data.cityscapes import Cityscapes
from densemtl_core.data.common import DatasetLayoutError, label_boundaries, normals_from_depth
from densemtl_core.data.transforms import RandomHorizontalFlip, Resize
from densemtl_core.labels import IGNORE_INDEX
from tests.data.fixtures import CITYSCAPES_CAMERA, SIZE, make_cityscapes

OFFICIAL_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                      24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
"""labelId -> trainId of the official cityscapesScripts label table."""


@pytest.fixture
def cityscapes(tmp_path):
    return make_cityscapes(tmp_path / "cityscapes")


def test_disparity_and_camera_file_give_metric_depth(cityscapes):
    depth = Cityscapes(cityscapes.root, "train", SIZE)[0]["depth"][0].numpy()
    disparity = cityscapes.raw["disparity"].astype(np.float64)
    baseline, fx = CITYSCAPES_CAMERA["baseline"], CITYSCAPES_CAMERA["fx"]
    valid = disparity > 1
    np.testing.assert_allclose(depth[valid], baseline * fx / ((disparity[valid] - 1) / 256),
                               rtol=1e-6)
    assert depth[0, 0] == 0.0 and depth[0, 1] == 0.0  # p = 0 and p = 1: no disparity
    np.testing.assert_allclose(depth[5, 16], 5.0 + 16 / 16.0, rtol=1e-3)


def test_labels_default_to_the_official_19_train_ids(cityscapes):
    dataset = Cityscapes(cityscapes.root, "train", SIZE)
    raw = cityscapes.raw["semseg"]
    expected = np.vectorize(lambda i: OFFICIAL_TRAIN_IDS.get(int(i), IGNORE_INDEX))(raw)
    assert np.array_equal(dataset[0]["semseg"].numpy(), expected)
    assert dataset.num_classes == 19 and dataset.class_names[9] == "terrain"
    assert dataset.class_colors[0] == (128, 64, 128)


def test_method16_drops_terrain_truck_and_train(cityscapes):
    dataset = Cityscapes(cityscapes.root, "train", SIZE, label_set="method16")
    raw = cityscapes.raw["semseg"]
    semseg = dataset[0]["semseg"].numpy()
    for label_id in (22, 27, 31, 0, 255):  # terrain, truck, train, unlabeled, license plate
        assert np.all(semseg[raw == label_id] == IGNORE_INDEX)
    for label_id, expected in ((7, 0), (23, 9), (26, 12), (28, 13), (32, 14), (33, 15)):
        assert np.all(semseg[raw == label_id] == expected)
    assert dataset.num_classes == 16 and "truck" not in dataset.class_names
    with pytest.raises(ConfigError, match="available: \\['trainid19', 'method16', 'vkcs8'\\]"):
        Cityscapes(cityscapes.root, "train", SIZE, label_set="16")


def test_vkcs8_keeps_the_eight_classes_shared_with_virtual_kitti_2(cityscapes):
    dataset = Cityscapes(cityscapes.root, "train", SIZE, label_set="vkcs8")
    raw = cityscapes.raw["semseg"]
    semseg = dataset[0]["semseg"].numpy()
    expected = {7: 0, 11: 1, 17: 2, 19: 3, 20: 4, 21: 5, 23: 6, 26: 7, 28: 7}  # car, bus: vehicle
    for label_id in range(256):
        if (raw == label_id).any():
            assert np.all(semseg[raw == label_id] == expected.get(label_id, IGNORE_INDEX))
    assert dataset.class_names == ("road", "building", "pole", "traffic light", "traffic sign",
                                   "vegetation", "sky", "vehicle")
    assert dataset.class_colors[1] == (70, 70, 70) and dataset.class_colors[7] == (0, 0, 142)

def test_intrinsics_are_the_camera_files_scaled_to_the_image(tmp_path):
    written = make_cityscapes(tmp_path / "small", images="leftImg8bit_small")
    intrinsics = Cityscapes(written.root, "val", SIZE)[0]["intrinsics"]
    scale = SIZE[1] / 2048
    camera = CITYSCAPES_CAMERA
    torch.testing.assert_close(intrinsics, torch.tensor([
        [camera["fx"] * scale, 0.0, (camera["u0"] + 0.5) * scale - 0.5],
        [0.0, camera["fy"] * scale, (camera["v0"] + 0.5) * scale - 0.5],
        [0.0, 0.0, 1.0]]))


def test_normals_come_from_metric_depth_and_edges_from_labels(cityscapes):
    sample = Cityscapes(cityscapes.root, "train", SIZE)[0]
    torch.testing.assert_close(sample["normals"],
                               normals_from_depth(sample["depth"], sample["intrinsics"]))
    assert sample["normals"][:, sample["depth"][0] == 0].eq(0).all()
    assert torch.equal(sample["edges"], label_boundaries(sample["semseg"]))


def test_flipped_sample_keeps_normals_consistent_with_its_depth(cityscapes, geometry):
    flipped = Cityscapes(cityscapes.root, "train", SIZE, transform=RandomHorizontalFlip(1.0))[0]
    again = normals_from_depth(flipped["depth"], flipped["intrinsics"])
    valid = (again.norm(dim=0) > 0) & (flipped["normals"].norm(dim=0) > 0)
    angles = geometry.angle_deg(flipped["normals"].permute(1, 2, 0)[valid].numpy(),
                                again.permute(1, 2, 0)[valid].numpy())
    assert valid.sum() > 1000 and angles.max() < 0.01


def test_splits_are_the_official_ones_and_test_reads_val(cityscapes):
    train = Cityscapes(cityscapes.root, "train", SIZE)
    names = [r["image"].name.removesuffix("_leftImg8bit.png") for r in train.records]
    assert names == cityscapes.splits["train"]
    assert Cityscapes(cityscapes.root, "test", SIZE).records == Cityscapes(
        cityscapes.root, "val", SIZE).records


def test_missing_files_and_bad_camera_files_name_the_path(cityscapes, tmp_path):
    stem = cityscapes.splits["val"][0]
    camera = cityscapes.root / "camera" / "val" / "frankfurt" / f"{stem}_camera.json"
    camera.write_text(json.dumps({"intrinsic": {"fx": 1.0}}))
    with pytest.raises(DatasetLayoutError, match="lacks extrinsic.baseline") as error:
        Cityscapes(cityscapes.root, "val", SIZE)[0]
    assert str(camera) in str(error.value)
    camera.unlink()
    with pytest.raises(DatasetLayoutError, match=f"{stem}_camera.json is missing") as error:
        Cityscapes(cityscapes.root, "val", SIZE)
    assert "disparity/{train,val}/<city>/<stem>_disparity.png" in str(error.value)
    with pytest.raises(DatasetLayoutError, match=r"leftImg8bit/train is missing"):
        Cityscapes(tmp_path, "train", SIZE)


# ----------------------------------------------------------------------------------------------
# Temporal samples (the method's self-supervised depth)
# ----------------------------------------------------------------------------------------------

def as_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0


@pytest.fixture
def snippets(tmp_path):
    return make_cityscapes(tmp_path / "cityscapes", sequence="leftImg8bit_sequence")


def test_sequence_samples_add_the_neighbouring_snippet_frames(snippets):
    dataset = Cityscapes(snippets.root, "train", SIZE, sequence=True)
    sample = dataset[0]
    assert dataset.has_odometry is False
    torch.testing.assert_close(sample["image"], as_tensor(snippets.raw["frame_19"]))
    torch.testing.assert_close(sample["image_prev"], as_tensor(snippets.raw["frame_18"]))
    torch.testing.assert_close(sample["image_next"], as_tensor(snippets.raw["frame_20"]))
    assert sample["travel"].shape == (2,) and sample["travel"].isnan().all()
    single = Cityscapes(snippets.root, "train", SIZE)[0]
    assert single.keys() == sample.keys() - {"image_prev", "image_next", "travel"}
    for key in single:
        assert torch.equal(single[key], sample[key]), key
    assert len(dataset) == len(snippets.splits["train"])


def test_build_dataset_reads_the_stride_and_the_small_snippet_folder(tmp_path):
    written = make_cityscapes(tmp_path / "small", images="leftImg8bit_small",
                              sequence="leftImg8bit_sequence_small")
    cfg = DataConfig(dataset="cityscapes", root=str(written.root), image_size=(16, 32),
                     frame_stride=2)
    dataset = build_dataset(cfg, "train", sequence=True)
    assert isinstance(dataset, Cityscapes) and dataset.frame_stride == 2
    sample = dataset[0]
    for key in ("image", "image_prev", "image_next"):
        assert sample[key].shape == (3, 16, 32)
    expected = Resize((16, 32))({"image": as_tensor(written.raw["frame_17"])})["image"]
    torch.testing.assert_close(sample["image_prev"], expected)
    assert "image_prev" not in build_dataset(cfg, "val")[0]


def test_a_missing_snippet_frame_or_folder_names_the_path(snippets):
    with pytest.raises(DatasetLayoutError, match="aachen_000000_000016_leftImg8bit.png is missing"):
        Cityscapes(snippets.root, "train", SIZE, sequence=True, frame_stride=3)
    shutil.rmtree(snippets.root / "leftImg8bit_sequence")
    with pytest.raises(DatasetLayoutError, match="leftImg8bit_sequence/train is missing"):
        Cityscapes(snippets.root, "train", SIZE, sequence=True)
    Cityscapes(snippets.root, "train", SIZE)  # single frames need no snippets


def test_datasets_without_video_refuse_sequences(tmp_path):
    cfg = DataConfig(dataset="nyudv2", root=str(tmp_path))
    with pytest.raises(ConfigError, match="nyudv2 has no video sequences"):
        build_dataset(cfg, "train", sequence=True)
