"""Training data from a robot's own recordings (``data.dataset: rosbag``).

One or more bags (rosbag2 MCAP or SQLite 3, ROS 1 ``.bag``, read through
:mod:`densemtl_core.recordings`) give camera frames, raw or compressed, with:

* intrinsics from the recording's camera_info (default topic: ``camera_info`` beside the
  image topic) or from ``data.intrinsics`` (a camera_info YAML file, which wins), scaled to
  ``data.image_size`` (METHOD.md section 9.6);
* ground truth where the recording has it (``data.truth_topics``: semseg mono8/16 mapped by
  ``data.label_map``, depth 32FC1 metres or 16UC1 millimetres, normals 32FC3), paired by header
  stamp. Every sample has the keys of every configured task; a frame without a label gets the
  unlabelled filler (``IGNORE_INDEX``, 0) and ``has_<task>`` False;
* the distance travelled to the neighbouring frames (``travel``, metres) from odometry
  (``data.odometry_topic``: nav_msgs/Odometry, or /tf with ``data.odometry_frame``).

``sequence=True`` gives the triplets of :mod:`.sequences` (training with the photometric
objective); ``sequence=False`` single frames of the split (validation, evaluation, supervised
training), only the labelled ones when the split has any. Frames are indexed once
(:mod:`.recording_index`) and decoded when read; memory holds a few decoded frames and one
open reader per bag per process (opened on first use, so DataLoader workers open their own).

Classes: the model's default class set (:data:`~.synthetic.SYNTHETIC_CLASSES`, what
``densemtl-make-bag`` records); ``data.label_map`` maps a recording's own class ids to them, by
id or by name, and ids it does not list are ignored.

A frame whose image does not decode (a corrupt message) skips its sample only: the next sample
in order that decodes takes its place, the first failure is logged and all are counted in
``skipped``.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import ConfigError, DataConfig
from ..recordings.bags import BagError, BagReader, open_bag
from ..recordings.calibration import Calibration
from ..recordings.calibration_yaml import read_calibration_yaml
from ..recordings.encodings import ImageConversionError, camera_image_to_rgb, message_to_array
from ..tasks import TASKS
from .common import (UNLABELLED, configured_label_mapping, label_tensor, resize_sample,
                     with_unlabelled)
from .frame_samples import FrameSamples, UnreadableFrame
from .recording_index import MAX_PIXELS, MessageRef, RecordingTopics, load_index
from .sequences import FrameRef, SplitPlan, plan_split
from .synthetic import SYNTHETIC_CLASSES, SYNTHETIC_COLORS
from .transforms import Sample

CACHED_FRAMES = 8
"""Decoded frames kept per process: neighbouring triplets share frames."""

_log = logging.getLogger(__name__)


class RecordingDataset(FrameSamples):
    """Samples of one split of recordings (see the module docstring)."""

    num_classes = len(SYNTHETIC_CLASSES)
    class_names = SYNTHETIC_CLASSES
    class_colors = SYNTHETIC_COLORS

    def __init__(self, cfg: DataConfig, split: str,
                 transform: Callable[[Sample], Sample] | None = None,
                 sequence: bool = False) -> None:
        if not cfg.bag:
            raise ConfigError("data.dataset=rosbag needs data.bag (one or more recordings)")
        _check_truth_tasks(cfg.truth_topics)
        self.size = (int(cfg.image_size[0]), int(cfg.image_size[1]))
        self.split, self.sequence, self.transform = split, sequence, transform
        self.topics = RecordingTopics.from_config(cfg)
        self.tasks = tuple(cfg.truth_topics)
        measure_change = sequence and cfg.min_image_change > 0 and not cfg.odometry_topic
        self.recordings = [load_index(bag, self.topics, cfg.index_dir, measure_change)
                           for bag in cfg.bag]
        self.calibrations = self._calibrations(cfg.intrinsics)
        self.intrinsics = [torch.from_numpy(calibration.scaled(*self.size).k).float()
                           for calibration in self.calibrations]
        self.mapping = configured_label_mapping(cfg.label_map, self.class_names)
        self.has_odometry = cfg.odometry_topic is not None
        plan = plan_split([recording.timeline() for recording in self.recordings], split, cfg)
        samples: list[tuple[FrameRef, ...]] = (
            list(plan.triplets) if sequence else [(frame,) for frame in self._frames(plan)])
        if not samples:
            raise ConfigError(self._no_samples(cfg, plan))
        super().__init__(samples, transform)
        self._checked: set[int] = set()
        self._readers: dict[int, BagReader] = {}
        self._pid = os.getpid()
        self._cache: OrderedDict[FrameRef, dict[str, Tensor]] = OrderedDict()

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str,
                    transform: Callable[[Sample], Sample] | None = None,
                    sequence: bool = False) -> RecordingDataset:
        return cls(cfg, split, transform, sequence)

    # -- construction -------------------------------------------------------------------------

    def _calibrations(self, override: str | None) -> list[Calibration]:
        """Each recording's calibration: ``data.intrinsics`` when given, else its camera_info;
        a recording with neither is refused, naming the topic to record and the option."""
        if override is not None:
            return [read_calibration_yaml(override)] * len(self.recordings)
        found = []
        for recording in self.recordings:
            if recording.calibration is None:
                raise BagError(
                    f"{recording.bag} has no camera_info on {self.topics.camera_info}, and the "
                    f"intrinsics are needed: record {self.topics.camera_info} "
                    f"(sensor_msgs/msg/CameraInfo) with the images, set data.camera_info_topic "
                    f"to the topic that has them, or give a camera_info YAML file as "
                    f"data.intrinsics")
            if recording.distorted:
                _log.warning("%s: camera_info on %s has distortion coefficients, but frames are "
                             "used as they are (a pinhole camera): prefer a rectified image "
                             "topic", recording.bag, self.topics.camera_info)
            found.append(recording.calibration)
        return found

    def _frames(self, plan: SplitPlan) -> list[FrameRef]:
        """The split's frames, only those with a label when any has one."""
        labelled = [(r, f) for r, f in plan.frames
                    if any(self.recordings[r].truth[task][f] is not None for task in self.tasks)]
        return labelled or plan.frames

    def _no_samples(self, cfg: DataConfig, plan: SplitPlan) -> str:
        frames = sum(len(recording) for recording in self.recordings)
        duration = sum((r.stamps_ns[-1] - r.stamps_ns[0]) / 1e9 for r in self.recordings if len(r))
        kind = "frame triplets" if self.sequence else "frames"
        return (f"no {self.split} {kind} in data.bag {', '.join(cfg.bag)}: {frames} frames on "
                f"{self.topics.image} over {duration:.1f} s, {len(plan.frames)} of them in the "
                f"{self.split} blocks (data.split_block={cfg.split_block} s, data.val_fraction="
                f"{cfg.val_fraction}); shorten data.split_block, or lower data.frame_stride, "
                f"data.min_motion or data.min_image_change, or raise data.max_gap")

    # -- samples ------------------------------------------------------------------------------

    def nothing_decodes(self) -> Exception:
        return BagError(f"no frame of {', '.join(str(r.bag) for r in self.recordings)} on "
                        f"{self.topics.image} could be decoded")

    def describe(self, frames: tuple[FrameRef, ...]) -> str:
        return str(self.recordings[frames[0][0]].bag)

    def make_sample(self, frames: tuple[FrameRef, ...]) -> Sample:
        centre = frames[len(frames) // 2]
        decoded = [self._frame(frame) for frame in frames]
        sample = {**decoded[len(frames) // 2], "intrinsics": self.intrinsics[centre[0]].clone()}
        if self.sequence:
            sample["image_prev"], sample["image_next"] = decoded[0]["image"], decoded[2]["image"]
            sample["travel"] = self._travel(*frames)
        return sample

    def _travel(self, previous: FrameRef, centre: FrameRef, following: FrameRef) -> Tensor:
        positions = self.recordings[centre[0]].positions
        if positions is None:
            return torch.full((2,), float("nan"))
        here = positions[centre[1]]
        return torch.tensor([np.linalg.norm(positions[previous[1]] - here),
                             np.linalg.norm(positions[following[1]] - here)],
                            dtype=torch.float32)

    def _frame(self, frame: FrameRef) -> dict[str, Tensor]:
        """One frame's image and ground truth at the training size (a small LRU cache)."""
        if frame in self._cache:
            self._cache.move_to_end(frame)
        else:
            self._cache[frame] = self._decode(frame)
            if len(self._cache) > CACHED_FRAMES:
                self._cache.popitem(last=False)
        return {key: value.clone() for key, value in self._cache[frame].items()}

    def _decode(self, frame: FrameRef) -> dict[str, Tensor]:
        number, position = frame
        recording = self.recordings[number]
        message = self._message(number, self.topics.image, recording.images[position])
        try:
            rgb = camera_image_to_rgb(message, compressed=recording.compressed,
                                      max_pixels=MAX_PIXELS)
        except ImageConversionError as error:
            raise UnreadableFrame(str(error)) from error
        self._check_calibration(number, rgb.shape[:2])
        maps = {"image": torch.from_numpy(np.array(rgb)).permute(2, 0, 1)
                .float().div_(255.0)}
        flags = {}
        for task in self.tasks:
            truth = self._truth(number, task, recording.truth[task][position])
            flags[f"has_{task}"] = torch.tensor(truth is not None)
            if truth is not None:
                maps[task] = truth
        return {**with_unlabelled(resize_sample(maps, self.size), self.tasks, self.size),
                **flags}

    def _truth(self, number: int, task: str, ref: MessageRef | None) -> Tensor | None:
        """A ground-truth map as the sample holds it, or None when the frame has none or its
        message cannot be read (then the frame counts as unlabelled)."""
        if ref is None:
            return None
        try:
            message = self._message(number, self.topics.truth[task], ref)
            values = TASKS[task].read_truth(message_to_array(message), message.encoding)
        except ImageConversionError as error:
            _log.warning("%s: %s ground truth at log time %d unusable (%s); the frame is "
                         "unlabelled", self.recordings[number].bag, task, ref.log_time_ns, error)
            return None
        return label_tensor(task, values, self.mapping)

    def _check_calibration(self, number: int, image_size: tuple[int, int]) -> None:
        """Refuse intrinsics of another picture than the recording's images (once a bag)."""
        if number in self._checked:
            return
        problem = self.calibrations[number].problem(*image_size)
        if problem is not None:
            raise BagError(f"{self.recordings[number].bag}: {problem} on {self.topics.image}; "
                           f"give the intrinsics of these images as data.intrinsics")
        self._checked.add(number)

    def _message(self, number: int, topic: str, ref: MessageRef) -> Any:
        """The message at ``ref``; a message that does not deserialize is an
        ImageConversionError (a corrupt frame, skipped like one)."""
        reader = self._reader(number)
        found = [item for item in reader.messages([topic], start_ns=ref.log_time_ns,
                                                  stop_ns=ref.log_time_ns + 1)]
        if len(found) <= ref.occurrence:
            raise BagError(f"{self.recordings[number].bag} changed while it was read: no "
                           f"{topic} message at log time {ref.log_time_ns}")
        item = found[ref.occurrence]
        if item.message is None:
            raise ImageConversionError(f"{topic} message at log time {ref.log_time_ns} does not "
                                       f"deserialize: {item.error}", kind="corrupt message")
        return item.message

    def _reader(self, number: int) -> BagReader:
        """This process's reader of recording ``number``, opened on first use."""
        if self._pid != os.getpid():  # a DataLoader worker: the parent's readers are not ours
            self._readers, self._pid = {}, os.getpid()
        if number not in self._readers:
            self._readers[number] = open_bag(self.recordings[number].bag)
        return self._readers[number]

    def close(self) -> None:
        """Close the bags this process opened."""
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for DataLoader workers without open readers or cached frames."""
        return {**self.__dict__, "_readers": {}, "_cache": OrderedDict()}


def _check_truth_tasks(truth_topics: dict[str, str]) -> None:
    unreadable = [task for task in truth_topics if task not in UNLABELLED]
    if unreadable:
        raise ConfigError(f"data.truth_topics: recordings hold no {', '.join(unreadable)} ground "
                          f"truth; readable: {', '.join(UNLABELLED)}")
