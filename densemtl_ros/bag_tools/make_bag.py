"""densemtl-make-bag: write a short synthetic camera recording with ground truth as a rosbag2.

Bag evaluation, replay and their tests need a recording whose every pixel has known labels, and
the synthetic scenes give one without shipping data: a camera walks through one test-split scene
(a scene no model was trained on). Every frame is recorded as a camera driver publishes it
(image, camera_info and optionally JPEG), with the camera's exact pose as a robot's odometry
publishes it (``/odom`` and ``/tf``), plus ground-truth topics, all with the frame's header stamp
as stamp and log time: a complete stand-in for a robot's recording, to train from as well. The
clock starts at a fixed epoch, so the same arguments write the same bytes. ``--domain shifted``
records the scene as another camera sees it under other light (a target domain to adapt to).
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from densemtl_core.data.synthetic import (RENDER_DOMAINS, SOURCE_DOMAIN, RenderDomain,
                                          render_trajectory, scene_seed)
from densemtl_core.recordings.bags import (STORAGES, BagError, BagWriter, Message,
                                           camera_info_message, compressed_image_message,
                                           image_message, odometry_message, transform_message)

IMAGE_TOPIC = "/camera/image_raw"
"""rgb8 frames."""
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
"""The same frames as JPEG (only with ``compressed``)."""
CAMERA_INFO_TOPIC = "/camera/camera_info"
SEGMENTATION_TOPIC = "/camera/ground_truth/segmentation"
"""mono8 class ids into SYNTHETIC_CLASSES (the scenes label every pixel: no 250 = ignore)."""
DEPTH_TOPIC = "/camera/ground_truth/depth"
"""32FC1 metres along the optical axis, NaN where invalid (REP 118)."""
NORMALS_TOPIC = "/camera/ground_truth/normals"
"""32FC3 unit normals in the optical frame, zero where depth is invalid."""
ODOMETRY_TOPIC = "/odom"
"""nav_msgs/Odometry: the camera's pose (optical frame) in ``ODOMETRY_FRAME``, the room's frame
(z up)."""
TF_TOPIC = "/tf"
"""The same pose as the transform ``ODOMETRY_FRAME`` -> ``FRAME_ID``."""
FRAME_ID = "camera_optical_frame"
ODOMETRY_FRAME = "odom"
START_NS = 1_700_000_000 * 1_000_000_000
"""Header stamp of the first frame (2023-11-14): fixed, so bags are reproducible."""

IMAGE = "sensor_msgs/msg/Image"
TOPIC_TYPES = {
    IMAGE_TOPIC: IMAGE,
    COMPRESSED_TOPIC: "sensor_msgs/msg/CompressedImage",
    CAMERA_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
    SEGMENTATION_TOPIC: IMAGE,
    DEPTH_TOPIC: IMAGE,
    NORMALS_TOPIC: IMAGE,
    ODOMETRY_TOPIC: "nav_msgs/msg/Odometry",
    TF_TOPIC: "tf2_msgs/msg/TFMessage",
}
"""Every topic a sample bag may have, with its message type."""


def sample_topics(compressed: bool) -> dict[str, str]:
    """The topics of a sample bag, with their message types."""
    return {topic: msgtype for topic, msgtype in TOPIC_TYPES.items()
            if compressed or topic != COMPRESSED_TOPIC}


def frame_stamp_ns(index: int, rate: float) -> int:
    """Header stamp (and log time) of frame ``index`` recorded at ``rate`` frames per second."""
    return START_NS + round(index * 1e9 / rate)


def ground_truth_depth(depth: np.ndarray) -> np.ndarray:
    """Synthetic depth (0 where invalid) as a REP 118 depth image (NaN where invalid)."""
    return np.where(depth > 0, depth, np.float32(np.nan)).astype(np.float32, copy=False)


def write_sample_bag(path: str | Path, storage: Literal["mcap", "sqlite3"] = "mcap",
                     frames: int = 48, size: tuple[int, int] = (240, 320), rate: float = 10.0,
                     seed: int = 0, compressed: bool = False, *, progress: bool = False,
                     domain: RenderDomain = SOURCE_DOMAIN) -> Path:
    """Record ``frames`` frames of ``size`` (height, width) through test-split scene ``seed``
    rendered in ``domain`` into a new rosbag2 folder at ``path`` (a tqdm bar with ``progress``);
    returns the path."""
    if frames < 1 or rate <= 0 or min(size) < 1 or seed < 0:
        raise ValueError(f"need frames >= 1, rate > 0, a positive size and seed >= 0, got "
                         f"frames={frames}, rate={rate}, size={size}, seed={seed}")
    path = Path(path)
    with BagWriter(path, storage) as bag:
        for topic, msgtype in sample_topics(compressed).items():
            bag.add_topic(topic, msgtype)
        scene = render_trajectory(scene_seed(0, "test", seed), frames, size, domain=domain)
        for index, frame in enumerate(tqdm(scene, total=frames, unit="frame",
                                           desc=f"writing {path.name}", disable=not progress)):
            stamp = frame_stamp_ns(index, rate)
            for topic, message in _frame_messages(bag, frame, stamp, compressed).items():
                bag.write(topic, message, stamp)
    return path


def _frame_messages(bag: BagWriter, frame: dict[str, np.ndarray], stamp_ns: int,
                    compressed: bool) -> dict[str, Message]:
    """The message of every topic of :func:`sample_topics` for one rendered frame."""
    store = bag.typestore
    height, width = frame["depth"].shape

    def image(array: np.ndarray, encoding: str) -> Message:
        return image_message(store, array, encoding, stamp_ns, FRAME_ID)

    messages = {
        IMAGE_TOPIC: image(frame["image"], "rgb8"),
        CAMERA_INFO_TOPIC: camera_info_message(store, frame["intrinsics"], height, width,
                                               stamp_ns, FRAME_ID),
        SEGMENTATION_TOPIC: image(frame["semseg"], "mono8"),
        DEPTH_TOPIC: image(ground_truth_depth(frame["depth"]), "32FC1"),
        NORMALS_TOPIC: image(frame["normals"], "32FC3"),
        ODOMETRY_TOPIC: odometry_message(store, frame["pose"], stamp_ns, ODOMETRY_FRAME,
                                         FRAME_ID),
        TF_TOPIC: transform_message(store, frame["pose"], stamp_ns, ODOMETRY_FRAME, FRAME_ID),
    }
    if compressed:
        messages[COMPRESSED_TOPIC] = compressed_image_message(store, frame["image"], stamp_ns,
                                                              FRAME_ID)
    return messages


# ---------------------------------------------------------------------------------------------
# Command line


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    if not (height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH in pixels, e.g. 240x320, "
                                         f"got {text!r}")
    return int(height), int(width)


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: a finite number of ``kind`` above 0."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densemtl-make-bag",
                                     description=__doc__.splitlines()[0].partition(": ")[2])
    parser.add_argument("--out", type=Path, required=True,
                        help="the rosbag2 folder to create; it must not exist")
    parser.add_argument("--storage", choices=tuple(STORAGES), default="mcap")
    parser.add_argument("--frames", type=_positive(int), default=48)
    parser.add_argument("--size", type=_size, default=(240, 320), metavar="HEIGHTxWIDTH",
                        help="image size (default: 240x320)")
    parser.add_argument("--rate", type=_positive(float), default=10.0,
                        help="frames per second (default: 10)")
    parser.add_argument("--seed", type=_non_negative_int, default=0,
                        help="which test-split scene to walk through (default: 0)")
    parser.add_argument("--compressed", action="store_true",
                        help=f"also record the frames as JPEG on {COMPRESSED_TOPIC}")
    parser.add_argument("--domain", choices=tuple(RENDER_DOMAINS), default=SOURCE_DOMAIN.name,
                        help="look of the scene: source (the training scenes' renderer) or "
                             "shifted (another camera, light and materials; default: source)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = write_sample_bag(args.out, args.storage, args.frames, args.size, args.rate,
                                args.seed, args.compressed, progress=True,
                                domain=RENDER_DOMAINS[args.domain])
    except BagError as error:
        print(f"densemtl-make-bag: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the folder cannot be created or written (the bag is removed)
        print(f"densemtl-make-bag: cannot write {args.out}: {error.strerror or error}",
              file=sys.stderr)
        return 2
    megabytes = sum(f.stat().st_size for f in path.iterdir()) / 1e6
    print(f"wrote {path}: {args.frames} frames of {args.size[0]}x{args.size[1]} at "
          f"{args.rate:g} Hz, {megabytes:.1f} MB ({args.storage})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
