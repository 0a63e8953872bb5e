"""densemtl_core.recordings.bags: real bags written with rosbags (rosbag2 MCAP and SQLite 3,
ROS 1) and read back, and everything that is not a bag refused with a reason."""
from __future__ import annotations

import os
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from densemtl_core.recordings.bags import (BagError, BagWriter, calibration_message,
                                           camera_info_message, compressed_image_message,
                                           header_stamp_ns, image_message, open_bag)
from densemtl_core.recordings.calibration import Calibration, RegionOfInterest
from densemtl_core.recordings.encodings import compressed_to_rgb, message_to_array

KILTED = get_typestore(Stores.ROS2_KILTED)
IMAGE, CAMERA_INFO = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
START_NS = 1_700_000_000_123_456_789
PERIOD_NS = 100_000_000
FRAMES = 3
K = np.array([[50.0, 0.0, 39.5], [0.0, 52.0, 29.5], [0.0, 0.0, 1.0]])


def _arrays(index: int) -> dict[str, tuple[str, np.ndarray]]:
    """topic -> (encoding, pixels) of frame ``index``: every encoding the builders write."""
    rng = np.random.default_rng(index)
    depth = rng.uniform(0.5, 20.0, (6, 8)).astype(np.float32)
    depth[0, :3] = np.nan
    return {
        "/rgb": ("rgb8", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)),
        "/bgr": ("bgr8", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)),
        "/labels": ("mono8", rng.integers(0, 8, (6, 8), dtype=np.uint8)),
        "/mono16": ("mono16", rng.integers(0, 65536, (6, 8), dtype=np.uint16)),
        "/depth": ("32FC1", depth),
        "/depth_mm": ("16UC1", rng.integers(0, 20000, (6, 8), dtype=np.uint16)),
        "/normals": ("32FC3", rng.normal(size=(6, 8, 3)).astype(np.float32)),
    }


def _stamp(index: int) -> int:
    return START_NS + index * PERIOD_NS


def _write_bag(path: Path, storage: str) -> Path:
    """FRAMES frames of every topic of :func:`_arrays`, camera info and a PNG."""
    with BagWriter(path, storage) as bag:
        for topic in _arrays(0):
            bag.add_topic(topic, IMAGE)
        bag.add_topic("/camera_info", CAMERA_INFO)
        bag.add_topic("/png", COMPRESSED)
        for index in range(FRAMES):
            stamp = _stamp(index)
            for topic, (encoding, pixels) in _arrays(index).items():
                bag.write(topic, image_message(KILTED, pixels, encoding, stamp, "cam"), stamp)
            bag.write("/camera_info", camera_info_message(KILTED, K, 6, 8, stamp, "cam"), stamp)
            bag.write("/png", compressed_image_message(KILTED, _arrays(index)["/rgb"][1], stamp,
                                                      "cam", kind="png"), stamp)
    return path


def _check_contents(path: Path) -> None:
    with open_bag(path) as bag:
        assert bag.topics == {**{topic: IMAGE for topic in sorted(_arrays(0))},
                              "/camera_info": CAMERA_INFO, "/png": COMPRESSED}
        assert bag.message_counts == {topic: FRAMES for topic in bag.topics}
        assert (bag.start_ns, bag.end_ns) == (_stamp(0), _stamp(FRAMES - 1))
        assert bag.duration_s == pytest.approx((FRAMES - 1) * PERIOD_NS / 1e9)
        seen: dict[str, list[int]] = {}
        for item in bag.messages():
            assert item.error is None and item.message.header.frame_id == "cam"
            stamp = header_stamp_ns(item.message)
            assert item.log_time_ns == stamp
            index = len(seen.setdefault(item.topic, []))
            seen[item.topic].append(stamp)
            if item.topic == "/camera_info":
                np.testing.assert_array_equal(item.message.k.reshape(3, 3), K)
            elif item.topic == "/png":
                np.testing.assert_array_equal(compressed_to_rgb(item.message, max_pixels=48),
                                              _arrays(index)["/rgb"][1])
            else:
                encoding, pixels = _arrays(index)[item.topic]
                assert item.message.encoding == encoding
                out = message_to_array(item.message)
                assert out.dtype == pixels.dtype
                np.testing.assert_array_equal(out, pixels)  # NaN where NaN
        assert seen == {topic: [_stamp(i) for i in range(FRAMES)] for topic in bag.topics}


@pytest.mark.parametrize("storage, suffix", [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_round_trip_keeps_pixels_stamps_topics_and_types(tmp_path, storage, suffix):
    path = _write_bag(tmp_path / "bag", storage)
    assert sorted(p.name for p in path.iterdir()) == ["bag" + suffix, "metadata.yaml"]
    _check_contents(path)
    _check_contents(path / f"bag{suffix}")  # the storage file on its own


def test_messages_of_some_topics_come_in_log_time_order(tmp_path):
    with open_bag(_write_bag(tmp_path / "bag", "mcap")) as bag:
        items = list(bag.messages(["/depth", "/camera_info"]))
    assert sorted(item.topic for item in items) == ["/camera_info"] * 3 + ["/depth"] * 3
    assert [item.log_time_ns for item in items] == sorted(item.log_time_ns for item in items)


def test_the_same_messages_give_the_same_bytes(tmp_path):
    contents = []
    for run in ("first", "second"):
        path = _write_bag(tmp_path / run / "bag", "mcap")
        contents.append({p.name: p.read_bytes() for p in path.iterdir()})
    assert contents[0] == contents[1]


def test_a_ros1_bag_is_read_with_its_own_definitions(tmp_path):
    noetic = get_typestore(Stores.ROS1_NOETIC)  # its Header has a seq field, Kilted's has not
    path = tmp_path / "camera.bag"
    depth = np.linspace(0.5, 9.5, 48, dtype=np.float32).reshape(6, 8)
    with Ros1Writer(path) as writer:
        image = writer.add_connection("/camera/depth", IMAGE, typestore=noetic)
        info = writer.add_connection("/camera/camera_info", CAMERA_INFO, typestore=noetic)
        for index in range(FRAMES):
            stamp = _stamp(index)
            writer.write(image, stamp, noetic.serialize_ros1(
                image_message(noetic, depth + index, "32FC1", stamp, "cam"), IMAGE))
            writer.write(info, stamp, noetic.serialize_ros1(
                camera_info_message(noetic, K, 6, 8, stamp, "cam"), CAMERA_INFO))
    with open_bag(path) as bag:
        assert bag.topics == {"/camera/camera_info": CAMERA_INFO, "/camera/depth": IMAGE}
        assert (bag.start_ns, bag.end_ns) == (_stamp(0), _stamp(FRAMES - 1))
        items = list(bag.messages())
    assert [item.error for item in items] == [None] * 2 * FRAMES
    assert [header_stamp_ns(item.message) for item in items] == [
        _stamp(i) for i in range(FRAMES) for _ in range(2)]
    assert all(item.message.header.seq == 0 for item in items)
    images = [item.message for item in items if item.topic == "/camera/depth"]
    for index, message in enumerate(images):
        np.testing.assert_array_equal(message_to_array(message), depth + index)
    infos = [item.message for item in items if item.topic == "/camera/camera_info"]
    assert len(infos) == FRAMES
    np.testing.assert_array_equal(infos[0].K.reshape(3, 3), K)  # ROS 1 names: D, K, R, P
    np.testing.assert_array_equal(infos[0].P.reshape(3, 4)[:, :3], K)


def test_a_corrupt_message_is_yielded_with_its_error_and_reading_goes_on(tmp_path):
    path = tmp_path / "bag"
    with BagWriter(path) as bag:
        bag.add_topic("/depth", IMAGE)
        for index in range(3):
            if index == 1:
                bag.write_serialized("/depth", b"\x00\x01\x00\x00garbage", _stamp(index))
            else:
                depth = np.full((2, 2), index, np.float32)
                bag.write("/depth", image_message(KILTED, depth, "32FC1", _stamp(index), "c"),
                          _stamp(index))
    with open_bag(path) as bag:
        items = list(bag.messages(["/depth"]))
    assert [item.message is None for item in items] == [False, True, False]
    assert "Could not deserialize 'sensor_msgs/msg/Image'" in items[1].error
    assert (items[1].topic, items[1].log_time_ns) == ("/depth", _stamp(1))
    np.testing.assert_array_equal(message_to_array(items[2].message), np.full((2, 2), 2))


def test_a_bag_without_definitions_is_read_with_the_default_typestore(tmp_path):
    """As Humble's SQLite 3 bags are: types Kilted defines read, others come with an error."""
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg("int32 value", "my_msgs/msg/Thing"))
    path = tmp_path / "bag"
    with BagWriter(path, "sqlite3", typestore=store) as bag:
        bag.add_topic("/thing", "my_msgs/msg/Thing")
        bag.add_topic("/labels", IMAGE)
        bag.write("/thing", store.types["my_msgs/msg/Thing"](value=7), START_NS)
        labels = np.arange(6, dtype=np.uint8).reshape(2, 3)
        bag.write("/labels", image_message(store, labels, "mono8", START_NS, "c"), START_NS + 1)
    with sqlite3.connect(path / "bag.db3") as database:
        database.execute("DELETE FROM message_definitions")
    with open_bag(path) as bag:
        thing, image = bag.messages()
    assert (thing.topic, thing.message) == ("/thing", None)
    assert thing.error == "no definition of my_msgs/msg/Thing in bag or the default typestore"
    assert image.error is None
    np.testing.assert_array_equal(message_to_array(image.message), labels)


# ---------------------------------------------------------------------------------------------
# Topics asked for


@pytest.fixture
def small_bag(tmp_path) -> Path:
    with BagWriter(tmp_path / "small.mcap") as bag:
        bag.add_topic("/camera/image_raw", IMAGE)
        bag.add_topic("/camera/camera_info", CAMERA_INFO)
        bag.write("/camera/image_raw",
                  image_message(KILTED, np.zeros((2, 2), np.uint8), "mono8", START_NS, "c"),
                  START_NS)
    return tmp_path / "small.mcap"


def test_require_accepts_any_of_the_types_given(small_bag):
    with open_bag(small_bag) as bag:
        bag.require({"/camera/image_raw": (IMAGE, COMPRESSED), "/camera/camera_info": (
            CAMERA_INFO,)})


def test_require_names_every_problem_and_what_the_bag_has(small_bag):
    with open_bag(small_bag) as bag, pytest.raises(BagError) as raised:
        bag.require({"/camera/depth": (IMAGE,), "/camera/camera_info": (IMAGE, COMPRESSED),
                     "/camera/image_raw": (IMAGE,)})
    assert str(raised.value) == (
        f"{small_bag}: topic /camera/depth is not in small.mcap; topic /camera/camera_info "
        f"has type {CAMERA_INFO}, expected {IMAGE} or {COMPRESSED}; it has: "
        f"/camera/camera_info ({CAMERA_INFO}, 0 messages), /camera/image_raw ({IMAGE}, "
        f"1 messages)")


def test_messages_of_a_missing_topic_are_refused(small_bag):
    with open_bag(small_bag) as bag, pytest.raises(
            BagError, match=r"no topic /camera/depth in it; it has: /camera/camera_info"):
        bag.messages(["/camera/image_raw", "/camera/depth"])


def test_no_topics_asked_for_gives_no_messages(small_bag):
    with open_bag(small_bag) as bag:
        assert list(bag.messages([])) == []
        assert [item.topic for item in bag.messages()] == ["/camera/image_raw"]


def test_a_bag_without_messages_has_zero_times(tmp_path):
    with BagWriter(tmp_path / "empty"):
        pass
    with open_bag(tmp_path / "empty") as bag:
        assert (bag.topics, bag.message_count, bag.start_ns, bag.end_ns) == ({}, 0, 0, 0)
        assert bag.describe_topics() == "it has no topics"


def test_header_stamp_of_a_message_without_header_is_refused():
    message = KILTED.types["std_msgs/msg/String"](data="hello")
    with pytest.raises(ValueError, match="std_msgs/msg/String messages have no header stamp"):
        header_stamp_ns(message)


# ---------------------------------------------------------------------------------------------
# Not bags


def _not_bags(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, the reason expected in the error)."""
    (root / "empty").mkdir()
    (root / "loose").mkdir()
    (root / "loose" / "notes.txt").write_text("no bag here")
    for name in ("random.mcap", "random.db3", "random.bag"):
        (root / name).write_bytes(os.urandom(4096))
    (root / "notes.txt").write_text("a text file")
    (root / "broken").mkdir()
    (root / "broken" / "metadata.yaml").write_text("rosbag2_bagfile_information: [")
    return {
        "missing": (root / "missing.mcap", "does not exist"),
        "empty folder": (root / "empty", "is a folder without metadata.yaml, so no rosbag2 "
                                         "bag; it is empty"),
        "folder of other files": (root / "loose", "without metadata.yaml, so no rosbag2 bag; "
                                                  "it holds: notes.txt"),
        "random mcap": (root / "random.mcap", "cannot read .* as a bag: File magic is invalid"),
        "random db3": (root / "random.db3", "cannot read .* as a bag: .*not a database"),
        "random ros1": (root / "random.bag", "cannot read .* as a bag"),
        "text file": (root / "notes.txt", "is not a bag: expected a rosbag2 folder, a .mcap or "
                                          ".db3 file or a ROS 1 .bag file"),
        "broken metadata": (root / "broken", "cannot read .* as a bag: Could not load YAML"),
    }


def test_what_is_not_a_bag_is_refused_with_the_reason(tmp_path):
    for name, (path, reason) in _not_bags(tmp_path).items():
        with pytest.raises(BagError, match=reason) as raised:
            open_bag(path)
        assert str(path) in str(raised.value), name


# ---------------------------------------------------------------------------------------------
# Writing refusals


def test_an_existing_output_is_never_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "file.mcap").write_text("mine")
    for path in (tmp_path / "taken", tmp_path / "file.mcap"):
        with pytest.raises(BagError, match=f"{path} exists already; bags are never overwritten"):
            BagWriter(path)
    assert (tmp_path / "file.mcap").read_text() == "mine"


def test_writer_refusals_name_the_problem(tmp_path):
    with pytest.raises(BagError, match="unknown storage 'rosbag1'; choose one of mcap, sqlite3"):
        BagWriter(tmp_path / "a", "rosbag1")
    with BagWriter(tmp_path / "b") as bag:
        with pytest.raises(BagError, match="the typestore does not define 'my_msgs/msg/Thing'"):
            bag.add_topic("/thing", "my_msgs/msg/Thing")
        bag.add_topic("/image", IMAGE)
        with pytest.raises(BagError, match="topic /image was added already"):
            bag.add_topic("/image", IMAGE)
        info = camera_info_message(KILTED, K, 6, 8, START_NS, "c")
        with pytest.raises(BagError, match="topic /info was not added; added: /image"):
            bag.write("/info", info, START_NS)
        with pytest.raises(BagError, match=f"topic /image holds {IMAGE}, got a {CAMERA_INFO}"):
            bag.write("/image", info, START_NS)


def test_a_failed_write_leaves_no_folder_behind(tmp_path):
    with pytest.raises(RuntimeError, match="interrupted"), BagWriter(tmp_path / "bag") as bag:
        bag.add_topic("/image", IMAGE)
        raise RuntimeError("interrupted")
    assert not (tmp_path / "bag").exists()


def test_camera_info_is_an_undistorted_pinhole():
    info = camera_info_message(KILTED, K, 6, 8, START_NS + 5, "cam")
    assert (info.height, info.width, info.distortion_model) == (6, 8, "plumb_bob")
    np.testing.assert_array_equal(info.d, np.zeros(5))
    np.testing.assert_array_equal(info.r, np.eye(3).reshape(-1))
    np.testing.assert_array_equal(info.p.reshape(3, 4), np.hstack([K, np.zeros((3, 1))]))
    assert header_stamp_ns(info) == START_NS + 5
    with pytest.raises(ValueError, match=r"K must be 3x3, got shape \(9,\)"):
        camera_info_message(KILTED, K.reshape(-1), 6, 8, START_NS, "cam")


# ---------------------------------------------------------------------------------------------
# Calibration: read from any CameraInfo, checked, scaled


def _calibration() -> Calibration:
    """A 640x480 camera with distortion, a rectifying rotation, a stereo P and an ROI."""
    rotation = np.array([[0.999, -0.0447, 0.0], [0.0447, 0.999, 0.0], [0.0, 0.0, 1.0]])
    return Calibration(
        480, 640, "rational_polynomial", np.array([0.1, -0.2, 0.001, 0.002, 0.03, 0.4, 0.5, 0.6]),
        np.array([[500.0, 0.0, 319.5], [0.0, 480.0, 239.5], [0.0, 0.0, 1.0]]), rotation,
        np.array([[510.0, 0.0, 321.5, -51.0], [0.0, 490.0, 241.5, 4.9], [0.0, 0.0, 1.0, 0.0]]),
        binning_x=1, binning_y=1, roi=RegionOfInterest(100, 50, 300, 401, True))


@pytest.mark.parametrize("store", [KILTED, get_typestore(Stores.ROS1_NOETIC)],
                         ids=["ros2", "ros1"])
def test_a_calibration_message_round_trips_every_field(store):
    calibration = _calibration()
    message = calibration_message(store, calibration, START_NS, "left_optical")
    read = Calibration.of_message(message)
    assert message.header.frame_id == "left_optical"
    for name in ("height", "width", "distortion_model", "binning_x", "binning_y", "roi"):
        assert getattr(read, name) == getattr(calibration, name), name
    for name in ("d", "k", "r", "p"):
        np.testing.assert_array_equal(getattr(read, name), getattr(calibration, name))


@pytest.mark.parametrize("height, width, k, p", [
    (240, 320, [250.0, 0.0, 159.5, 0.0, 240.0, 119.5, 0.0, 0.0, 1.0],
     [255.0, 0.0, 160.5, -25.5, 0.0, 245.0, 120.5, 2.45, 0.0, 0.0, 1.0, 0.0]),
    (960, 1280, [1000.0, 0.0, 639.5, 0.0, 960.0, 479.5, 0.0, 0.0, 1.0],
     [1020.0, 0.0, 643.5, -102.0, 0.0, 980.0, 483.5, 9.8, 0.0, 0.0, 1.0, 0.0]),
])
def test_scaling_moves_k_and_p_with_the_pixels_and_keeps_the_lens(height, width, k, p):
    """Pixel centres at integers: c' = (c + 0.5) * s - 0.5; D, R and the model unchanged."""
    calibration = _calibration()
    scaled = calibration.scaled(height, width)
    assert (scaled.height, scaled.width, scaled.binning_x, scaled.binning_y) == (
        height, width, 0, 0)
    np.testing.assert_allclose(scaled.k.reshape(-1), k, rtol=1e-12)
    np.testing.assert_allclose(scaled.p.reshape(-1), p, rtol=1e-12)
    assert scaled.distortion_model == "rational_polynomial"
    np.testing.assert_array_equal(scaled.d, calibration.d)
    np.testing.assert_array_equal(scaled.r, calibration.r)
    np.testing.assert_array_equal(calibration.k, _calibration().k)  # the original is untouched


def test_scaling_keeps_an_unset_projection_and_roi_unset():
    halved = _calibration().scaled(240, 320)
    assert halved.roi == RegionOfInterest(50, 25, 150, 200, True)
    unset = replace(_calibration(), p=np.zeros((3, 4)), roi=RegionOfInterest())
    scaled = unset.scaled(240, 320)
    assert not scaled.p.any() and scaled.roi == RegionOfInterest()


@pytest.mark.parametrize("change, problem", [
    ({"height": 0, "width": 0}, "camera_info size is 0x0"),
    ({"k": np.zeros((3, 3))}, "focal length is fx 0, fy 0"),
    ({"k": np.diag([-500.0, 480.0, 1.0])}, "focal length is fx -500"),
    ({"k": np.diag([np.nan, 480.0, 1.0])}, "focal length is fx nan"),
    ({"k": np.diag([np.inf, 480.0, 1.0])}, "focal length is fx inf"),
    ({"height": 240, "width": 640}, "is 240x640, another aspect ratio than the 480x640 image"),
])
def test_a_calibration_that_cannot_describe_the_image_says_why(change, problem):
    assert _calibration().problem(480, 640) is None
    assert _calibration().problem(240, 320) is None  # the same camera, half the resolution
    assert problem in replace(_calibration(), **change).problem(480, 640)
    with pytest.raises(ValueError, match="cannot scale a 0x0 calibration"):
        replace(_calibration(), height=0, width=0).scaled(240, 320)
