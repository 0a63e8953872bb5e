"""A recording's frames, found once and kept in a small JSON file beside the bag.

Training reads frames in random order, epoch after epoch; scanning a long bag for stamps and
matching its ground truth every time would cost minutes. One scan records, for each image, its
header stamp and where to find it again (its log time, and which of the topic's messages logged
at that instant it is), the ground-truth messages matched to it by stamp, the camera's position
from odometry and, when asked, how much the image changed since the previous one. Pixels are
not kept: samples decode them when read.

The file (``<bag name>.<key>.frames.json`` beside the bag, or in ``data.index_dir``; the key
hashes the bag's path and the topics) carries ``format_version`` and the bag's identity (path,
size, modification time); a file of another version, another bag state or other topics is
rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..config import ConfigError, DataConfig
from ..recordings.bags import BagError, BagReader, header_stamp_ns, open_bag
from ..recordings.calibration import Calibration
from ..recordings.encodings import ImageConversionError, camera_image_to_rgb
from ..recordings.odometry import ODOMETRY_TYPES, TF_TYPE, positions_at, stamped_positions
from ..recordings.stamp_matching import pair_by_stamp
from ..strict_json import finite_json
from .sequences import Timeline

INDEX_FORMAT = "densemtl-recording-index"
INDEX_FORMAT_VERSION = 1
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
TRUTH_TYPES = ("sensor_msgs/msg/Image",)
CAMERA_INFO_TYPES = ("sensor_msgs/msg/CameraInfo",)
TRUTH_TOLERANCE_NS = 5_000_000
"""Ground truth pairs with the image whose header stamp is within 5 ms (densemtl-bag-eval's
default): ground truth is stamped with its image."""
THUMBNAIL_SIZE = (24, 32)
"""(H, W) of the grey thumbnails compared for ``data.min_image_change``: area averaging removes
most sensor noise, which would otherwise count as change."""
MAX_PIXELS = 64_000_000
"""Largest image decoded (a message's header could claim any size)."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordingTopics:
    """Which topic of a recording holds what; ``truth``: task -> ground-truth topic."""

    image: str
    camera_info: str
    truth: Mapping[str, str] = field(default_factory=dict)
    odometry: str | None = None
    odometry_frame: str | None = None

    @classmethod
    def from_config(cls, cfg: DataConfig) -> RecordingTopics:
        if not cfg.image_topic:
            raise ConfigError("data.dataset=rosbag needs data.image_topic")
        return cls(cfg.image_topic, cfg.camera_info_topic or
                   default_camera_info_topic(cfg.image_topic), dict(cfg.truth_topics),
                   cfg.odometry_topic, cfg.odometry_frame)

    def as_dict(self) -> dict[str, Any]:
        return {"image": self.image, "camera_info": self.camera_info,
                "truth": dict(sorted(self.truth.items())), "odometry": self.odometry,
                "odometry_frame": self.odometry_frame}


def default_camera_info_topic(image_topic: str) -> str:
    """``camera_info`` in the image topic's namespace, as image_transport pairs them; a
    compressed transport topic (``.../image_raw/compressed``) belongs to ``.../image_raw``."""
    topic = image_topic.rstrip("/")
    if topic.endswith("/compressed"):
        topic = topic[: -len("/compressed")]
    return f"{topic.rpartition('/')[0]}/camera_info"


@dataclass(frozen=True)
class MessageRef:
    """Where a message is: its log time, and its rank among the topic's messages logged at
    that same time."""

    log_time_ns: int
    occurrence: int = 0


@dataclass
class RecordingIndex:
    """One bag's frames in stamp order (see the module docstring).

    ``calibration``: the first readable camera_info (None without one), ``distorted``: whether
    it has non-zero distortion coefficients; ``truth``: task -> per-frame message or None;
    ``positions``: (N, 3) odometry positions (NaN unknown) or None without odometry;
    ``image_change``: (N,) grey change from the previous frame, or None when not measured;
    ``dropped``: images left out of the index, per reason.
    """

    bag: Path
    compressed: bool
    calibration: Calibration | None
    distorted: bool
    stamps_ns: np.ndarray
    images: list[MessageRef]
    truth: dict[str, list[MessageRef | None]]
    positions: np.ndarray | None
    image_change: np.ndarray | None
    dropped: dict[str, int]

    def __len__(self) -> int:
        return len(self.images)

    def timeline(self) -> Timeline:
        return Timeline(self.stamps_ns, self.positions, self.image_change)

    def to_json(self, identity: Mapping[str, Any], topics: RecordingTopics) -> dict[str, Any]:
        calibration = self.calibration
        return finite_json({
            "format": INDEX_FORMAT, "format_version": INDEX_FORMAT_VERSION,
            "bag": dict(identity), "topics": topics.as_dict(), "compressed": self.compressed,
            "calibration": None if calibration is None else {
                "height": calibration.height, "width": calibration.width,
                "k": calibration.k.reshape(-1).tolist(), "distorted": self.distorted},
            "stamp_ns": self.stamps_ns.tolist(),
            "image": _refs_json(self.images),
            "truth": {task: _refs_json(refs) for task, refs in self.truth.items()},
            "positions": None if self.positions is None else self.positions.tolist(),
            "image_change": None if self.image_change is None else self.image_change.tolist(),
            "dropped": self.dropped})

    @classmethod
    def from_json(cls, bag: Path, values: Mapping[str, Any]) -> RecordingIndex:
        """The index a file holds; KeyError, TypeError or ValueError when it is not one."""
        stamps = np.asarray(values["stamp_ns"], dtype=np.int64).reshape(-1)
        count = len(stamps)
        images = [ref for ref in _refs(values["image"], count) if ref is not None]
        if len(images) != count:
            raise ValueError("an image without its message")
        stored = values["calibration"]
        calibration = None if stored is None else Calibration.pinhole(
            np.asarray(stored["k"], np.float64).reshape(3, 3), int(stored["height"]),
            int(stored["width"]))
        positions = values["positions"]
        if positions is not None:
            positions = np.array(positions, dtype=np.float64).reshape(count, 3)  # null: NaN
        change = values["image_change"]
        if change is not None:
            change = np.asarray(change, dtype=np.float64).reshape(count)
        return cls(bag, bool(values["compressed"]), calibration,
                   bool(stored and stored["distorted"]), stamps, images,
                   {task: _refs(refs, count) for task, refs in values["truth"].items()},
                   positions, change, {str(k): int(v) for k, v in values["dropped"].items()})


def _refs_json(refs: list[MessageRef | None]) -> dict[str, list[int | None]]:
    return {"log_time_ns": [None if ref is None else ref.log_time_ns for ref in refs],
            "occurrence": [None if ref is None else ref.occurrence for ref in refs]}


def _refs(values: Mapping[str, Any], count: int) -> list[MessageRef | None]:
    times, occurrences = values["log_time_ns"], values["occurrence"]
    if len(times) != count or len(occurrences) != count:
        raise ValueError("columns of different lengths")
    return [None if time is None else MessageRef(int(time), int(occurrence))
            for time, occurrence in zip(times, occurrences)]


# ---------------------------------------------------------------------------------------------
# The file


def bag_identity(bag: Path) -> dict[str, Any]:
    """What changes when the bag does: its resolved path, total size and latest modification
    time (of every file of a rosbag2 folder)."""
    files = sorted(p for p in bag.iterdir() if p.is_file()) if bag.is_dir() else [bag]
    stats = [file.stat() for file in files]
    return {"path": str(bag.resolve()), "size": sum(stat.st_size for stat in stats),
            "mtime_ns": max((stat.st_mtime_ns for stat in stats), default=0)}


def index_path(bag: Path, topics: RecordingTopics, index_dir: str | Path | None) -> Path:
    """Where the index of ``bag`` read through ``topics`` is kept."""
    key = hashlib.sha256(json.dumps([str(bag.resolve()), topics.as_dict()],
                                    sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(index_dir).expanduser() if index_dir else bag.resolve().parent
    return folder / f"{bag.resolve().name}.{key}.frames.json"


def load_index(bag: str | Path, topics: RecordingTopics, index_dir: str | Path | None = None,
               image_change: bool = False) -> RecordingIndex:
    """The index of ``bag``: read from its file when that file is current (same format
    version, bag identity and topics, and image change measured if ``image_change``), else
    scanned and written; a folder that cannot be written is logged and the scan used as is."""
    bag = Path(bag).expanduser()
    identity = bag_identity(bag) if bag.exists() else None
    path = index_path(bag, topics, index_dir)
    stored = _read_current(path, identity, topics)
    if stored is not None:
        try:
            index = RecordingIndex.from_json(bag, stored)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            _log.warning("rebuilding the frame index %s: %s", path, error)
        else:
            if index.image_change is not None or not image_change:
                return index
    index = scan_recording(bag, topics, image_change)
    for reason, count in index.dropped.items():
        _log.warning("%s: %d messages left out (%s)", bag, count, reason)
    _write_atomically(path, index.to_json(identity, topics))
    return index


def _read_current(path: Path, identity: Mapping[str, Any] | None, topics: RecordingTopics
                  ) -> dict[str, Any] | None:
    if identity is None or not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        _log.warning("rebuilding the unreadable frame index %s: %s", path, error)
        return None
    current = (isinstance(values, dict) and values.get("format") == INDEX_FORMAT
               and values.get("format_version") == INDEX_FORMAT_VERSION
               and values.get("bag") == dict(identity) and values.get("topics") == topics.as_dict())
    return values if current else None


def _write_atomically(path: Path, values: Mapping[str, Any]) -> None:
    """Write through a temporary file renamed into place, so that a reader (another process,
    a killed run) never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(values, file, separators=(",", ":"), allow_nan=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as any file the user writes (mkstemp gives 0600)
        os.replace(temporary, path)
    except OSError as error:
        _log.warning("cannot write the frame index %s (%s); the bag will be scanned again next "
                     "time: set data.index_dir to a writable folder", path, error)


# ---------------------------------------------------------------------------------------------
# The scan


def scan_recording(bag: str | Path, topics: RecordingTopics, image_change: bool = False
                   ) -> RecordingIndex:
    """Read every message of the topics once (see the module docstring)."""
    with open_bag(bag) as reader:
        _require(reader, topics)
        calibration = _first_calibration(reader, topics.camera_info)
        odometry_type = reader.topics.get(topics.odometry) if topics.odometry else None
        wanted = [topics.image, *topics.truth.values(), *filter(None, [topics.odometry])]
        images: list[tuple[int, MessageRef, np.ndarray | None]] = []
        truth: dict[str, list[tuple[int | None, MessageRef]]] = {t: [] for t in topics.truth}
        task_of = {topic: task for task, topic in topics.truth.items()}
        poses: list[tuple[int, tuple[float, float, float]]] = []
        dropped: dict[str, int] = {}
        last: dict[str, tuple[int, int]] = {}
        compressed = reader.topics[topics.image].endswith("CompressedImage")
        for item in reader.messages(wanted):
            time, occurrence = last.get(item.topic, (None, -1))
            occurrence = occurrence + 1 if time == item.log_time_ns else 0
            last[item.topic] = (item.log_time_ns, occurrence)
            ref = MessageRef(item.log_time_ns, occurrence)
            if item.topic == topics.odometry:
                if item.message is not None:
                    poses.extend(stamped_positions(item.message, item.msgtype,
                                                   topics.odometry_frame))
            elif item.message is None:
                reason = "undeserializable image" if item.topic == topics.image else \
                    f"undeserializable {task_of[item.topic]} ground truth"
                dropped[reason] = dropped.get(reason, 0) + 1
            elif item.topic == topics.image:
                thumbnail = None
                if image_change:
                    try:
                        thumbnail = grey_thumbnail(camera_image_to_rgb(
                            item.message, compressed=compressed, max_pixels=MAX_PIXELS))
                    except ImageConversionError:
                        dropped["undecodable image"] = dropped.get("undecodable image", 0) + 1
                        continue
                images.append((header_stamp_ns(item.message), ref, thumbnail))
            else:
                truth[task_of[item.topic]].append((header_stamp_ns(item.message), ref))
        if topics.odometry and not poses:
            what = (f"no transform with child frame {topics.odometry_frame}"
                    if odometry_type == TF_TYPE else "no readable message")
            raise BagError(f"{bag}: the odometry topic {topics.odometry} has {what}; "
                           f"{reader.describe_topics()}")
    order = sorted(range(len(images)), key=lambda i: (images[i][0], images[i][1].log_time_ns))
    stamps = np.array([images[i][0] for i in order], dtype=np.int64)
    matched = {task: pair_by_stamp(stamps.tolist(), [stamp for stamp, _ in found],
                                   TRUTH_TOLERANCE_NS).indices
               for task, found in truth.items()}
    return RecordingIndex(
        Path(bag), compressed, calibration[0] if calibration else None,
        bool(calibration and calibration[1]), stamps, [images[i][1] for i in order],
        {task: [None if j is None else truth[task][j][1] for j in indices]
         for task, indices in matched.items()},
        positions_at(stamps, poses) if topics.odometry else None,
        _changes([images[i][2] for i in order]) if image_change else None, dropped)


def _require(reader: BagReader, topics: RecordingTopics) -> None:
    """Refuse a bag without the topics asked for (camera_info may be missing: the intrinsics
    can come from data.intrinsics)."""
    wanted = {topics.image: IMAGE_TYPES, **{t: TRUTH_TYPES for t in topics.truth.values()}}
    if topics.camera_info in reader.topics:
        wanted[topics.camera_info] = CAMERA_INFO_TYPES
    if topics.odometry:
        wanted[topics.odometry] = ODOMETRY_TYPES
        if reader.topics.get(topics.odometry) == TF_TYPE and not topics.odometry_frame:
            raise ConfigError(f"data.odometry_topic={topics.odometry} is {TF_TYPE}: set "
                              f"data.odometry_frame to the moving frame (e.g. base_link)")
    reader.require(wanted)


def _first_calibration(reader: BagReader, topic: str) -> tuple[Calibration, bool] | None:
    """The first readable camera_info on ``topic`` and whether it has distortion, or None."""
    if topic not in reader.topics:
        return None
    for item in reader.messages([topic]):
        if item.message is not None:
            calibration = Calibration.of_message(item.message)
            return calibration, bool(np.any(calibration.d != 0))
    return None


def grey_thumbnail(rgb: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 image as a :data:`THUMBNAIL_SIZE` grey float32 thumbnail in [0, 1]."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, THUMBNAIL_SIZE[::-1], interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def _changes(thumbnails: list[np.ndarray | None]) -> np.ndarray:
    """Mean absolute change of each thumbnail from the previous one (0 for the first)."""
    change = np.zeros(len(thumbnails))
    for i in range(1, len(thumbnails)):
        change[i] = float(np.abs(thumbnails[i] - thumbnails[i - 1]).mean())
    return change
