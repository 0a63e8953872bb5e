"""The recording dataset on real bags: formats, intrinsics, ground truth, odometry, corrupt
messages and the frame index."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from densemtl_core.config import ConfigError, DataConfig
from densemtl_core.data import build_dataset
from densemtl_core.data import recording_index
from densemtl_core.data.recording import RecordingDataset
from densemtl_core.data.recording_index import (INDEX_FORMAT_VERSION, default_camera_info_topic,
                                                index_path)
from densemtl_core.geometry import scale_intrinsics
from densemtl_core.labels import IGNORE_INDEX
from densemtl_core.recordings.bags import BagError
from densemtl_core.data.synthetic import render_trajectory, scene_seed
from densemtl_ros.bag_tools import make_bag as sample_bag
from tests.data.recording_bags import (COMPRESSED_TOPIC, IMAGE_TOPIC, MOVING_FRAME,
                                       ODOMETRY_TOPIC, TF_TOPIC, TRUTH_TOPICS, intrinsics, shots,
                                       write_bag)


def config(bags, tmp_path, **overrides) -> DataConfig:
    values = {"dataset": "rosbag", "bag": tuple(str(bag) for bag in bags),
              "image_topic": IMAGE_TOPIC, "image_size": (32, 64), "val_fraction": 0.0,
              "index_dir": str(tmp_path / "index"), "hflip": False}
    return DataConfig(**{**values, **overrides})


def pixels(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "compressed"])
@pytest.mark.parametrize("storage", ["mcap", "sqlite3", "ros1"])
def test_every_bag_format_is_read_raw_and_compressed(tmp_path, storage, compressed):
    frames = shots(4)
    bag = write_bag(tmp_path / ("run.bag" if storage == "ros1" else "run"), frames, storage,
                    compressed=compressed)
    topic = COMPRESSED_TOPIC if compressed else IMAGE_TOPIC
    dataset = RecordingDataset.from_config(config([bag], tmp_path, image_topic=topic), "train")
    assert len(dataset) == 4
    for index, shot in enumerate(frames):
        sample = dataset[index]
        assert torch.equal(sample["image"], pixels(shot.rgb))  # PNG is lossless
        assert torch.allclose(sample["intrinsics"], torch.from_numpy(intrinsics(32, 64)).float())
    assert default_camera_info_topic(COMPRESSED_TOPIC) == "/cam/camera_info"


def test_images_logged_at_the_same_instant_are_told_apart(tmp_path):
    frames = shots(4)
    frames[1].log_time_ns = frames[2].log_time_ns = frames[3].stamp_ns  # a recorder's burst
    bag = write_bag(tmp_path / "run", frames)
    dataset = RecordingDataset.from_config(config([bag], tmp_path), "train")
    for index, shot in enumerate(frames):  # in stamp order, each its own pixels
        assert torch.equal(dataset[index]["image"], pixels(shot.rgb))


def test_intrinsics_are_scaled_to_the_training_size(tmp_path):
    bag = write_bag(tmp_path / "run", shots(3, size=(64, 80)))
    sample = RecordingDataset.from_config(config([bag], tmp_path, image_size=(32, 40)),
                                          "train")[0]
    k = intrinsics(64, 80)
    expected = np.array([[k[0, 0] / 2, 0, (k[0, 2] + 0.5) / 2 - 0.5],
                         [0, k[1, 1] / 2, (k[1, 2] + 0.5) / 2 - 0.5], [0, 0, 1]])
    assert sample["image"].shape == (3, 32, 40)
    assert np.allclose(sample["intrinsics"].numpy(), expected, atol=1e-5)


def test_a_bag_without_camera_info_names_the_topic_and_the_override_works(tmp_path):
    bag = write_bag(tmp_path / "run", shots(3), camera_info=False)
    with pytest.raises(BagError, match="no camera_info on /cam/camera_info.*data.intrinsics"):
        RecordingDataset.from_config(config([bag], tmp_path), "train")
    calibration = tmp_path / "camera.yaml"
    calibration.write_text("image_width: 128\nimage_height: 64\ncamera_matrix:\n  rows: 3\n"
                           "  cols: 3\n  data: [100, 0, 63.5, 0, 100, 31.5, 0, 0, 1]\n")
    dataset = RecordingDataset.from_config(config([bag], tmp_path, intrinsics=str(calibration)),
                                           "train")
    expected = scale_intrinsics(np.array([[100, 0, 63.5], [0, 100, 31.5], [0, 0, 1.0]]),
                                (64, 128), (32, 64))
    assert np.allclose(dataset[0]["intrinsics"].numpy(), expected)
    assert expected[0, 0] == 50 and expected[0, 2] == pytest.approx(31.5)


def test_ground_truth_is_read_and_flagged_per_frame(tmp_path):
    frames = shots(4)
    labels = np.full((32, 64), 3, np.uint8)
    labels[:, :10] = 9  # an id the label map does not list: ignored
    millimetres = np.full((32, 64), 1500, np.uint16)
    millimetres[0, 0] = 0  # invalid
    normals = np.zeros((32, 64, 3), np.float32)
    normals[..., 2] = -1.0
    frames[0].truth = {"semseg": (labels, "mono8"), "depth": (millimetres, "16UC1")}
    frames[2].truth = {"normals": (normals, "32FC3")}
    bag = write_bag(tmp_path / "run", frames)
    cfg = config([bag], tmp_path, truth_topics=TRUTH_TOPICS, label_map="3:wall")
    dataset = RecordingDataset.from_config(cfg, "train")
    assert len(dataset) == 2  # only the labelled frames, as some are
    first, third = dataset[0], dataset[1]
    assert first["has_semseg"].item() and first["has_depth"].item()
    assert not first["has_normals"].item() and third["has_normals"].item()
    assert first["semseg"].dtype == torch.int64
    assert (first["semseg"][:, 10:] == 1).all() and (first["semseg"][:, :10] == IGNORE_INDEX).all()
    assert first["depth"].shape == (1, 32, 64) and first["depth"][0, 0, 0] == 0
    assert torch.allclose(first["depth"][0, 1:], torch.tensor(1.5))
    assert (third["semseg"] == IGNORE_INDEX).all() and (third["depth"] == 0).all()
    assert torch.equal(third["normals"], torch.from_numpy(normals).permute(2, 0, 1))
    assert (first["normals"] == 0).all()
    # Temporal samples carry the same keys and flags, for the centre frame.
    triplets = RecordingDataset.from_config(cfg, "train", sequence=True)
    sample = triplets[0]
    assert set(sample) >= {"image", "image_prev", "image_next", "travel", "has_semseg"}
    assert torch.equal(sample["image_prev"], pixels(frames[0].rgb))
    assert torch.equal(sample["image"], pixels(frames[1].rgb))
    assert not sample["has_semseg"].item() and triplets[1]["has_normals"].item()
    assert torch.isnan(sample["travel"]).all() and not triplets.has_odometry


def test_a_sample_bag_is_read_with_its_ground_truth_and_odometry(tmp_path):
    bag = sample_bag.write_sample_bag(tmp_path / "sample", frames=3, size=(32, 64))
    cfg = config([bag], tmp_path, image_topic=sample_bag.IMAGE_TOPIC, truth_topics={
        "semseg": sample_bag.SEGMENTATION_TOPIC, "depth": sample_bag.DEPTH_TOPIC,
        "normals": sample_bag.NORMALS_TOPIC})
    assert default_camera_info_topic(sample_bag.IMAGE_TOPIC) == sample_bag.CAMERA_INFO_TOPIC
    dataset = RecordingDataset.from_config(cfg, "train")
    sample = dataset[1]
    assert all(sample[f"has_{task}"].item() for task in ("semseg", "depth", "normals"))
    assert sample["semseg"].max() < dataset.num_classes and (sample["depth"] > 0).any()
    # Its odometry, on /odom or /tf, is the rendered camera's walk.
    poses = [frame["pose"][:3, 3].astype(np.float64) for frame in render_trajectory(
        scene_seed(0, "test", 0), 3, (32, 64))]
    walked = [np.linalg.norm(poses[0] - poses[1]), np.linalg.norm(poses[2] - poses[1])]
    for topic, frame in ((sample_bag.ODOMETRY_TOPIC, None),
                         (sample_bag.TF_TOPIC, sample_bag.FRAME_ID)):
        moving = RecordingDataset.from_config(
            replace(cfg, odometry_topic=topic, odometry_frame=frame), "train", sequence=True)
        assert len(moving) == 1 and min(walked) > 0.01
        assert np.allclose(moving[0]["travel"].numpy(), walked, rtol=1e-4)


@pytest.mark.parametrize("odometry", ["odometry", "tf"])
def test_odometry_gives_the_travel_in_metres_and_skips_standing_still(tmp_path, odometry):
    frames = shots(10, step=0.25)
    for shot in frames[4:7]:  # the robot stops for three frames
        shot.position = frames[4].position
    for later in frames[7:]:
        later.position = (later.position[0] - 0.5, 0.0, 0.0)
    topic = ODOMETRY_TOPIC if odometry == "odometry" else TF_TOPIC
    bag = write_bag(tmp_path / "run", frames, odometry=odometry)
    cfg = config([bag], tmp_path, odometry_topic=topic, odometry_frame=MOVING_FRAME)
    moving = RecordingDataset.from_config(cfg, "train", sequence=True)
    assert moving.has_odometry and len(moving) == 8
    assert torch.allclose(moving[0]["travel"], torch.tensor([0.25, 0.25]))
    still = RecordingDataset.from_config(
        config([bag], tmp_path, odometry_topic=topic, odometry_frame=MOVING_FRAME,
               min_motion=0.1), "train", sequence=True)
    centres = [frames[1] for frames in still.samples]
    assert (0, 5) not in centres and (0, 6) not in centres and len(still) == 6
    for index in range(len(still)):
        assert torch.allclose(still[index]["travel"], torch.tensor([0.25, 0.25]))


def test_odometry_is_interpolated_at_the_image_stamps(tmp_path):
    frames = shots(7, step=0.3)
    frames[0].position = None  # before the first odometry message: unknown
    frames[3].position = frames[4].position = None  # between messages: interpolated
    bag = write_bag(tmp_path / "run", frames, odometry="odometry")
    dataset = RecordingDataset.from_config(config([bag], tmp_path, odometry_topic=ODOMETRY_TOPIC),
                                           "train", sequence=True)
    assert [centre for _, (_, centre), _ in dataset.samples] == [2, 3, 4, 5]
    for index in range(len(dataset)):
        assert torch.allclose(dataset[index]["travel"], torch.tensor([0.3, 0.3]))


def test_near_static_images_are_skipped_without_odometry(tmp_path):
    frames = shots(9)
    for shot in frames[3:6]:
        shot.rgb = frames[3].rgb.copy()  # the camera stands still
    bag = write_bag(tmp_path / "run", frames)
    dataset = RecordingDataset.from_config(config([bag], tmp_path, min_image_change=0.05),
                                           "train", sequence=True)
    used = {frame for sample in dataset.samples for _, frame in sample}
    assert 4 not in used and 5 not in used and len(dataset) == 5
    assert len(RecordingDataset.from_config(config([bag], tmp_path), "train",
                                            sequence=True)) == 7


def test_recordings_combine_and_triplets_never_cross_a_gap(tmp_path):
    first = shots(6) + shots(6, start=6, start_ns=shots(1)[0].stamp_ns + 10 ** 10)
    bags = [write_bag(tmp_path / "a", first), write_bag(tmp_path / "b", shots(5, start=20))]
    dataset = RecordingDataset.from_config(config(bags, tmp_path), "train", sequence=True)
    assert len(dataset) == 4 + 4 + 3
    for sample in dataset.samples:
        assert len({recording for recording, _ in sample}) == 1
        assert len({frame < 6 for recording, frame in sample if recording == 0}) <= 1
    split = config(bags, tmp_path, val_fraction=0.5, split_block=100.0)
    train, val = (RecordingDataset.from_config(split, name) for name in ("train", "val"))
    assert {r for (r, _), in train.samples} == {0} and {r for (r, _), in val.samples} == {1}


def test_a_corrupt_image_skips_one_sample_not_the_epoch(tmp_path):
    frames = shots(6)
    frames[2].broken = "truncated"
    frames[4].broken = "garbage"
    bag = write_bag(tmp_path / "run", frames)
    dataset = RecordingDataset.from_config(config([bag], tmp_path), "train")
    assert len(dataset) == 5  # the message that does not deserialize is not indexed
    served = [dataset[index]["image"] for index in range(len(dataset))]
    assert dataset.skipped == 1
    expected = [frames[i].rgb for i in (0, 1, 3, 3, 5)]  # frame 2's sample falls back to 3
    assert all(torch.equal(image, pixels(rgb)) for image, rgb in zip(served, expected))
    batches = list(DataLoader(dataset, batch_size=5))
    assert batches[0]["image"].shape == (5, 3, 32, 64)


def test_the_index_is_written_once_reused_and_rebuilt_when_the_bag_changes(tmp_path,
                                                                           monkeypatch):
    bag = write_bag(tmp_path / "run", shots(4))
    cfg = config([bag], tmp_path)
    RecordingDataset.from_config(cfg, "train")
    path = index_path(bag, recording_index.RecordingTopics.from_config(cfg), cfg.index_dir)
    stored = json.loads(path.read_text())
    assert stored["format_version"] == INDEX_FORMAT_VERSION and len(stored["stamp_ns"]) == 4
    written = path.stat().st_mtime_ns
    scans = []
    original = recording_index.scan_recording
    monkeypatch.setattr(recording_index, "scan_recording",
                        lambda *args: scans.append(args) or original(*args))
    assert len(RecordingDataset.from_config(cfg, "train")) == 4
    assert scans == [] and path.stat().st_mtime_ns == written
    # Another recording at the same path: another size and time, so the index is rebuilt.
    shutil.rmtree(bag)
    write_bag(bag, shots(7))
    assert len(RecordingDataset.from_config(cfg, "train")) == 7
    assert len(scans) == 1 and len(json.loads(path.read_text())["stamp_ns"]) == 7
    # A file of another format version is not trusted either.
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 999}))
    RecordingDataset.from_config(cfg, "train")
    assert len(scans) == 2 and json.loads(path.read_text())["format_version"] == \
        INDEX_FORMAT_VERSION
    # Without data.index_dir the index lies next to the bag.
    beside = config([bag], tmp_path, index_dir=None)
    RecordingDataset.from_config(beside, "train")
    assert index_path(bag, recording_index.RecordingTopics.from_config(beside),
                      None).parent == tmp_path


def test_build_dataset_gives_augmented_temporal_samples_to_dataloader_workers(tmp_path):
    bag = write_bag(tmp_path / "run", shots(6, size=(64, 80), step=0.1), odometry="odometry")
    cfg = config([bag], tmp_path, image_size=(32, 48), hflip=True, scale_range=(1.0, 1.2),
                 odometry_topic=ODOMETRY_TOPIC)
    dataset = build_dataset(cfg, "train", train=True, sequence=True)
    assert isinstance(dataset, RecordingDataset) and len(dataset) == 4
    batch = next(iter(DataLoader(dataset, batch_size=4, num_workers=1)))
    assert batch["image"].shape == batch["image_next"].shape == (4, 3, 32, 48)
    assert torch.allclose(batch["travel"], torch.full((4, 2), 0.1))


def test_no_samples_is_a_clear_error(tmp_path):
    bag = write_bag(tmp_path / "run", shots(3))
    with pytest.raises(ConfigError, match="no val frames.*data.split_block"):
        RecordingDataset.from_config(config([bag], tmp_path, val_fraction=0.5), "val")
    with pytest.raises(ConfigError, match="no train frame triplets.*data.frame_stride"):
        RecordingDataset.from_config(config([bag], tmp_path, frame_stride=2), "train",
                                     sequence=True)


def test_wrong_topics_and_calibration_files_are_clear_errors(tmp_path):
    bag = write_bag(tmp_path / "run", shots(3, step=0.1), odometry="tf")
    with pytest.raises(BagError, match="topic /cam/other is not in run.*it has: /cam/camera_info"):
        RecordingDataset.from_config(config([bag], tmp_path, image_topic="/cam/other"), "train")
    with pytest.raises(ConfigError, match="data.odometry_frame"):
        RecordingDataset.from_config(config([bag], tmp_path, odometry_topic=TF_TOPIC), "train")
    with pytest.raises(BagError, match="no transform with child frame base_footprint"):
        RecordingDataset.from_config(config([bag], tmp_path, odometry_topic=TF_TOPIC,
                                            odometry_frame="base_footprint"), "train")
    calibration = tmp_path / "camera.yaml"
    calibration.write_text("image_width: 64\nimage_height: 32\n")
    with pytest.raises(ConfigError, match="camera.yaml: camera_matrix is missing"):
        RecordingDataset.from_config(config([bag], tmp_path, intrinsics=str(calibration)),
                                     "train")
    with pytest.raises(ConfigError, match="data.truth_topics: recordings hold no edges"):
        RecordingDataset.from_config(config([bag], tmp_path, truth_topics={"edges": "/e"}),
                                     "train")
