"""Image folders: frames in file-name order with optional labels by name, intrinsics from a ROS
camera_info YAML, the temporal rules of recordings."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from densemtl_core.config import ConfigError, DataConfig
from densemtl_core.data import build_dataset
from densemtl_core.data.common import DatasetLayoutError
from densemtl_core.data.folder import ImageFolder
from densemtl_core.geometry import scale_intrinsics
from densemtl_core.labels import IGNORE_INDEX
from tests.data.fixtures import write_image

FRAMES, SIZE, OUT = 12, (32, 64), (16, 32)
K = np.array([[100.0, 0.0, 63.5], [0.0, 100.0, 31.5], [0.0, 0.0, 1.0]])
"""Intrinsics of the 64x128 calibration: the frames are that camera at half size."""
CAMERA_INFO = """\
image_width: 128
image_height: 64
camera_name: test
camera_matrix: {rows: 3, cols: 3, data: [100, 0, 63.5, 0, 100, 31.5, 0, 0, 1]}
distortion_model: plumb_bob
distortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}
"""


def grey(value: int) -> np.ndarray:
    """A frame of one grey level: it survives resizing exactly, so samples show their frame."""
    return np.full((*SIZE, 3), value, dtype=np.uint8)


def frame_of(image: torch.Tensor) -> int:
    return round(float(image[0, 0, 0]) * 255) // 10


@pytest.fixture
def folder(tmp_path):
    """12 frames of grey level 10 i (frame 7 a JPEG); semseg for frames 2 and 5, depth in
    millimetres for 2, in metres for 5, normals for 5; the calibration in the folder."""
    root = tmp_path / "frames"
    for index in range(FRAMES):
        suffix = "jpg" if index == 7 else "png"
        write_image(root / "images" / f"frame_{index:04d}.{suffix}", grey(10 * index))
    labels = np.zeros(SIZE, dtype=np.uint8)
    labels[:, 32:] = 3
    labels[0, 0] = 9
    write_image(root / "semseg" / "frame_0002.png", labels)
    write_image(root / "semseg" / "frame_0005.png", labels)
    write_image(root / "depth" / "frame_0002.png", np.full(SIZE, 2500, dtype=np.uint16))
    metres = np.full(SIZE, 1.5, dtype=np.float32)
    metres[:2, :6] = np.repeat([np.nan, np.inf, -1.0], 2)  # 2x2 blocks: they survive halving
    np.save(root / "depth" / "frame_0005.npy", metres)
    normals = np.zeros((*SIZE, 3), dtype=np.float32)
    normals[..., 2] = -1.0
    (root / "normals").mkdir()
    np.save(root / "normals" / "frame_0005.npy", normals)
    (root / "camera_info.yaml").write_text(CAMERA_INFO)
    return root


def config(root, **overrides) -> DataConfig:
    values = {"dataset": "folder", "root": str(root), "image_size": OUT, "frame_rate": 10.0,
              "split_block": 0.4, "val_fraction": 0.25, "hflip": False}
    return DataConfig(**{**values, **overrides})


def test_single_frames_are_the_labelled_ones_with_their_labels_and_flags(folder):
    dataset = ImageFolder(config(folder, val_fraction=0.0), "train")
    assert [frame_of(sample["image"]) for sample in dataset] == [2, 5]
    first, second = dataset[0], dataset[1]
    assert first.keys() == second.keys() == {"image", "intrinsics", "semseg", "depth", "normals",
                                             "has_semseg", "has_depth", "has_normals"}
    assert first["has_semseg"].item() and first["has_depth"].item()
    assert not first["has_normals"].item() and second["has_normals"].item()
    # Ids the model has stay, others are ignored; 2500 mm is 2.5 m; a missing label is filler.
    assert first["semseg"].shape == OUT and first["semseg"][:, 16:].eq(3).all()
    assert first["semseg"][:, :16].eq(0).all()
    torch.testing.assert_close(first["depth"], torch.full((1, *OUT), 2.5))
    assert first["normals"].shape == (3, *OUT) and first["normals"].eq(0).all()
    # Metres from .npy, non-finite and negative values invalid.
    assert second["depth"][0, 0, :3].eq(0.0).all() and second["depth"][0, 0, 3:].eq(1.5).all()
    assert second["depth"][0, 1:].eq(1.5).all()
    assert second["normals"][2].eq(-1.0).all()
    expected = scale_intrinsics(K, (64, 128), OUT)
    np.testing.assert_allclose(first["intrinsics"].numpy(), expected, rtol=1e-6)
    assert dataset.has_odometry is False and dataset.num_classes == len(dataset.class_names)


def test_label_map_maps_recorded_ids_to_the_models(folder):
    dataset = ImageFolder(config(folder, val_fraction=0.0, label_map="3:1,9:wall"), "train")
    semseg = ImageFolder(config(folder, val_fraction=0.0), "train")[0]["semseg"]
    mapped = dataset[0]["semseg"]
    assert mapped[:, 16:].eq(1).all() and mapped[:, :16].eq(IGNORE_INDEX).all()
    assert semseg[:, 16:].eq(3).all()


def test_sequences_follow_file_order_with_the_stride_and_time_blocks(folder):
    train = ImageFolder(config(folder, frame_stride=1), "train", sequence=True)
    val = ImageFolder(config(folder, frame_stride=1), "val", sequence=True)
    # 12 frames at 10 Hz in 0.4 s blocks: 3 blocks of 4 frames, the middle one held out.
    assert [frame_of(s["image"]) for s in train] == [1, 2, 9, 10]
    assert [frame_of(s["image"]) for s in val] == [5, 6]
    sample = train[1]
    assert (frame_of(sample["image_prev"]), frame_of(sample["image_next"])) == (1, 3)
    assert sample["travel"].shape == (2,) and sample["travel"].isnan().all()
    assert sample["has_semseg"].item() and sample["semseg"][:, 16:].eq(3).all()
    wide = ImageFolder(config(folder, frame_stride=2, val_fraction=0.0), "train", sequence=True)
    first = wide[0]
    assert [frame_of(first[k]) for k in ("image_prev", "image", "image_next")] == [0, 2, 4]


def test_static_frames_are_skipped_by_image_change(folder):
    for index in range(1, 4):  # frames 0..3 look the same
        write_image(folder / "images" / f"frame_{index:04d}.png", grey(0))
    cfg = config(folder, val_fraction=0.0, min_image_change=0.01)
    centres = [frame_of(s["image"]) for s in ImageFolder(cfg, "train", sequence=True)]
    assert centres == list(range(4, 11))
    assert len(ImageFolder(cfg, "train", sequence=False)) == 2


def test_intrinsics_are_required_and_data_intrinsics_overrides(folder, tmp_path):
    (folder / "camera_info.yaml").unlink()
    with pytest.raises(ConfigError, match="set data.intrinsics to a camera_info YAML file"):
        ImageFolder(config(folder), "train")
    other = tmp_path / "camera.yaml"
    other.write_text(CAMERA_INFO.replace("100, 0, 63.5", "200, 0, 63.5"))
    sample = ImageFolder(config(folder, intrinsics=str(other), val_fraction=0.0), "train")[0]
    assert sample["intrinsics"][0, 0].item() == pytest.approx(200 * OUT[1] / 128)
    other.write_text(CAMERA_INFO.replace("image_height: 64", "image_height: 100"))
    with pytest.raises(ConfigError, match="another aspect ratio.*data.intrinsics"):
        ImageFolder(config(folder, intrinsics=str(other), val_fraction=0.0), "train")[0]


def test_a_broken_layout_or_label_file_is_one_clear_error(folder, tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"images is missing; expected this layout"):
        ImageFolder(config(tmp_path / "nowhere"), "train")
    np.save(folder / "normals" / "frame_0005.npy", np.zeros(SIZE, dtype=np.float32))
    dataset = ImageFolder(config(folder, val_fraction=0.0), "train")
    with pytest.raises(DatasetLayoutError, match="expected an HxWx3 array, got shape"):
        dataset[1]
    np.save(folder / "normals" / "frame_0005.npy", np.array([{"a": 1}], dtype=object),
            allow_pickle=True)
    with pytest.raises(DatasetLayoutError, match="not a plain numpy array"):
        dataset[1]


def test_an_image_that_does_not_decode_skips_one_sample(folder):
    (folder / "images" / "frame_0002.png").write_bytes(b"not a picture")
    dataset = ImageFolder(config(folder, val_fraction=0.0), "train")
    assert frame_of(dataset[0]["image"]) == 5  # the next sample stands in
    assert frame_of(dataset[1]["image"]) == 5 and dataset.skipped == 1


def test_build_dataset_reads_folders_with_training_transforms(folder):
    cfg = config(folder, val_fraction=0.0, hflip=True, color_jitter=0.2)
    dataset = build_dataset(cfg, "train", train=True, sequence=True)
    assert isinstance(dataset, ImageFolder) and dataset.sequence
    torch.manual_seed(0)
    sample = dataset[0]
    assert sample["image_prev"].shape == sample["image"].shape == (3, *OUT)
    assert sample["travel"].shape == (2,)
