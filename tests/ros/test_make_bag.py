"""densemtl-make-bag: the recorded topics hold exactly the synthetic frames, stamped 1/rate apart."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from densemtl_core.data.synthetic import SHIFTED_DOMAIN, render_trajectory, scene_seed
from densemtl_core.geometry import rotation_from_quaternion
from densemtl_core.recordings.bags import header_stamp_ns, open_bag
from densemtl_core.recordings.encodings import compressed_to_rgb, message_to_array
from densemtl_ros.bag_tools.make_bag import (
    CAMERA_INFO_TOPIC, COMPRESSED_TOPIC, DEPTH_TOPIC, FRAME_ID, IMAGE_TOPIC, NORMALS_TOPIC,
    ODOMETRY_FRAME, ODOMETRY_TOPIC, SEGMENTATION_TOPIC, START_NS, TF_TOPIC, main, sample_topics,
    write_sample_bag)

REPO = Path(__file__).resolve().parents[2]
FRAMES, SIZE, RATE, SEED = 8, (60, 80), 4.0, 3
ENCODINGS = {IMAGE_TOPIC: "rgb8", SEGMENTATION_TOPIC: "mono8", DEPTH_TOPIC: "32FC1",
             NORMALS_TOPIC: "32FC3"}


@pytest.fixture(scope="module")
def frames() -> list[dict[str, np.ndarray]]:
    return list(render_trajectory(scene_seed(0, "test", SEED), FRAMES, SIZE))


def _stamped(message) -> object:
    """The message with the header: a TFMessage's one transform, else the message itself."""
    return message.transforms[0] if message.__msgtype__ == "tf2_msgs/msg/TFMessage" else message


def _read(path: Path) -> dict[str, list]:
    """topic -> its messages in order, each checked for an error."""
    with open_bag(path) as bag:
        assert bag.topics == sample_topics(compressed=COMPRESSED_TOPIC in bag.topics)
        assert bag.message_counts == {topic: FRAMES for topic in bag.topics}
        messages: dict[str, list] = {topic: [] for topic in bag.topics}
        for item in bag.messages():
            assert item.error is None
            assert item.log_time_ns == header_stamp_ns(_stamped(item.message))
            messages[item.topic].append(item.message)
    return messages


@pytest.mark.parametrize("storage, compressed", [("mcap", True), ("sqlite3", False)])
def test_every_topic_holds_the_rendered_frames(tmp_path, frames, storage, compressed):
    path = write_sample_bag(tmp_path / "sample", storage, FRAMES, SIZE, RATE, SEED, compressed)
    assert path == tmp_path / "sample"
    messages = _read(path)
    assert (COMPRESSED_TOPIC in messages) == compressed
    for topic, per_frame in messages.items():
        stamped = [_stamped(message) for message in per_frame]
        stamps = [header_stamp_ns(message) for message in stamped]
        assert stamps == [START_NS + i * 250_000_000 for i in range(FRAMES)], topic
        parent = ODOMETRY_FRAME if topic in (ODOMETRY_TOPIC, TF_TOPIC) else FRAME_ID
        assert {message.header.frame_id for message in stamped} == {parent}
    for topic, encoding in ENCODINGS.items():
        assert {message.encoding for message in messages[topic]} == {encoding}
    for index, frame in enumerate(frames):
        image = message_to_array(messages[IMAGE_TOPIC][index])
        np.testing.assert_array_equal(image, frame["image"])
        np.testing.assert_array_equal(message_to_array(messages[SEGMENTATION_TOPIC][index]),
                                      frame["semseg"])
        np.testing.assert_array_equal(message_to_array(messages[NORMALS_TOPIC][index]),
                                      frame["normals"])
        depth = message_to_array(messages[DEPTH_TOPIC][index])
        np.testing.assert_array_equal(depth, np.where(frame["depth"] > 0, frame["depth"], np.nan))
        info = messages[CAMERA_INFO_TOPIC][index]
        assert (info.height, info.width) == SIZE
        np.testing.assert_array_equal(info.k.reshape(3, 3), frame["intrinsics"])
        np.testing.assert_array_equal(info.p.reshape(3, 4)[:, :3], frame["intrinsics"])
        if compressed:
            jpeg = compressed_to_rgb(messages[COMPRESSED_TOPIC][index], max_pixels=SIZE[0] * 80)
            # JPEG at quality 90 of a noisy image: ~5 grey levels off; swapped channels: ~40.
            assert np.abs(jpeg.astype(int) - image).mean() < 8


def _pose(position, orientation) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rotation_from_quaternion([orientation.x, orientation.y, orientation.z,
                                             orientation.w])
    pose[:3, 3] = [position.x, position.y, position.z]
    return pose


def test_odometry_and_tf_hold_the_rendered_camera_poses(tmp_path, frames):
    messages = _read(write_sample_bag(tmp_path / "odometry", "mcap", FRAMES, SIZE, RATE, SEED))
    assert len(messages[ODOMETRY_TOPIC]) == len(messages[TF_TOPIC]) == FRAMES
    for frame, odometry, tf in zip(frames, messages[ODOMETRY_TOPIC], messages[TF_TOPIC]):
        assert odometry.child_frame_id == FRAME_ID
        pose = odometry.pose.pose
        np.testing.assert_allclose(_pose(pose.position, pose.orientation), frame["pose"],
                                   atol=1e-6)
        (transform,) = tf.transforms
        assert transform.child_frame_id == FRAME_ID
        np.testing.assert_allclose(_pose(transform.transform.translation,
                                         transform.transform.rotation), frame["pose"], atol=1e-6)
    # The recorded motion is the walk's: about 5 cm per frame.
    positions = np.array([[m.pose.pose.position.x, m.pose.pose.position.y,
                           m.pose.pose.position.z] for m in messages[ODOMETRY_TOPIC]])
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    assert np.all((steps > 0.03) & (steps < 0.08))


def test_the_frames_move_and_the_ground_truth_is_valid(frames):
    assert not np.array_equal(frames[0]["image"], frames[-1]["image"])
    assert all((frame["depth"] > 0).all() for frame in frames)  # no NaN: every pixel valid


def test_the_same_arguments_write_the_same_bytes(tmp_path):
    contents = []
    for run in ("first", "second"):
        path = write_sample_bag(tmp_path / run / "sample", frames=2, size=(12, 16), seed=SEED)
        contents.append({file.name: file.read_bytes() for file in path.iterdir()})
    assert contents[0] == contents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "densemtl_ros.bag_tools.make_bag", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_the_command_line_writes_a_bag_and_refuses_to_overwrite_it(tmp_path):
    out = tmp_path / "cli"
    done = _cli("--out", str(out), "--frames", "2", "--size", "12x16", "--storage", "sqlite3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out}: 2 frames of 12x16 at 10 Hz, ")
    assert done.stdout.rstrip().endswith("MB (sqlite3)")
    with open_bag(out) as bag:
        assert bag.message_counts == {topic: 2 for topic in sample_topics(compressed=False)}
        assert bag.duration_s == pytest.approx(0.1)
    again = _cli("--out", str(out))
    assert again.returncode == 2
    assert again.stderr.strip() == f"densemtl-make-bag: {out} exists already; bags are never " \
                                   f"overwritten"


def test_an_unwritable_output_is_one_line(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "sample"
    assert main(["--out", str(out), "--frames", "1", "--size", "12x16"]) == 2
    assert capsys.readouterr().err == f"densemtl-make-bag: cannot write {out}: Not a directory\n"


@pytest.mark.parametrize("args, message", [
    (["--size", "240by320"], "argument --size: expected HEIGHTxWIDTH in pixels, e.g. 240x320, "
                             "got '240by320'"),
    (["--size", "0x320"], "argument --size: expected HEIGHTxWIDTH"),
    (["--frames", "0"], "argument --frames: expected a positive int, got '0'"),
    (["--rate", "nan"], "argument --rate: expected a positive float, got 'nan'"),
    (["--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (["--storage", "rosbag1"], "argument --storage: invalid choice: 'rosbag1'"),
    (["--domain", "real"], "argument --domain: invalid choice: 'real'"),
])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        main(["--out", str(tmp_path / "never"), *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def _images(path: Path) -> list[np.ndarray]:
    with open_bag(path) as bag:
        return [message_to_array(item.message) for item in bag.messages([IMAGE_TOPIC])]


def test_the_shifted_domain_is_recorded_from_the_command_line(tmp_path):
    shifted, source = tmp_path / "shifted", tmp_path / "source"
    common = ["--frames", "2", "--size", "24x32", "--seed", str(SEED)]
    assert main(["--out", str(shifted), "--domain", "shifted", *common]) == 0
    assert main(["--out", str(source), *common]) == 0
    expected = render_trajectory(scene_seed(0, "test", SEED), 2, (24, 32), domain=SHIFTED_DOMAIN)
    recorded = _images(shifted)
    assert len(recorded) == 2
    for image, frame in zip(recorded, expected):
        np.testing.assert_array_equal(image, frame["image"])
    assert all(not np.array_equal(one, other) for one, other in zip(recorded, _images(source)))
