"""Camera frames of a bag with their ground truth, matched by header stamp.

Ground-truth topics are recorded next to the camera but not necessarily at the same instant
nor in the same order, so matching uses header stamps within a tolerance: a first pass reads
every stamp, a second decodes the messages in log order and hands out each frame as soon as
its matched ground truth has been read (memory stays bounded by the recording's lag, not its
length). Needs no ROS installation.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from densemtl_core.recordings.bags import BagReader, header_stamp_ns
from densemtl_core.recordings.encodings import (ImageConversionError, camera_image_to_rgb,
                                                message_to_array)
from densemtl_core.recordings.label_map import LabelMapping
from densemtl_core.recordings.stamp_matching import STAMP_RULE, StampPairs, pair_by_stamp
from densemtl_core.tasks import TASKS, TaskSpec

from .bag_topics import BagTopics
from .scoring import GroundTruth

MAX_PIXELS = 64_000_000


@dataclass
class BagFrame:
    """One camera image (decoded, or why not) and the ground truth matched to it."""

    index: int
    stamp_ns: int
    log_time_ns: int
    rgb: np.ndarray | None
    truth: GroundTruth
    camera_info: object | None = None
    frame_id: str = ""
    """The image header's frame_id (the output bag keeps it)."""
    problems: list[str] = field(default_factory=list)
    matched_nothing: bool = False
    """Ground-truth topics were given, but none had a message within the stamp tolerance."""


def ambiguous_truth(name: str) -> str:
    """The skip reason of a frame whose ``name`` ground truth equal stamps left ambiguous."""
    return (f"{name} ground truth ambiguous: its stamp is shared by a different number of "
            f"images and ground-truth messages")


def _truth_readers(topics: BagTopics) -> dict[str, TaskSpec]:
    """Ground-truth field -> the task that reads it back, for the topics given; refused when
    no task of the table reads recorded ground truth of that field."""
    tasks = {spec.field: spec for spec in TASKS.values() if spec.read_truth is not None}
    unknown = [name for name in topics.ground_truth if name not in tasks]
    if unknown:
        raise ValueError(f"no task reads recorded ground truth {', '.join(unknown)}; "
                         f"readable: {', '.join(tasks)}")
    return {name: tasks[name] for name in topics.ground_truth}


class BagFrames:
    """Iterates a bag's frames (see the module docstring). ``corrupt`` counts messages that
    could not be deserialised, per topic."""

    def __init__(self, bag: BagReader, topics: BagTopics, mapping: LabelMapping,
                 tolerance_ns: int) -> None:
        self._readers = _truth_readers(topics)
        topics.require(bag)
        self.bag, self.topics, self.mapping = bag, topics, mapping
        self.corrupt: dict[str, int] = {}
        stamps = self._stamps()
        self.image_stamps = stamps[topics.image]
        self._pairs: dict[str, StampPairs] = {
            name: pair_by_stamp(self.image_stamps, stamps[topic], tolerance_ns)
            for name, topic in topics.ground_truth.items()}
        self._matches = {name: pairs.indices for name, pairs in self._pairs.items()}

    def __len__(self) -> int:
        return len(self.image_stamps)

    def shared_image_stamps(self) -> int:
        """How many images share their header stamp with another image."""
        counts = Counter(stamp for stamp in self.image_stamps if stamp is not None)
        return sum(count for count in counts.values() if count > 1)

    def stamp_matching(self) -> dict:
        """How images were paired with ground truth, for the report: the rule, and per
        ground-truth topic the frames paired by message order and those left ambiguous."""
        return {"rule": STAMP_RULE, "images_sharing_a_stamp": self.shared_image_stamps(),
                "paired_by_order": {name: len(pairs.by_order)
                                    for name, pairs in self._pairs.items()},
                "ambiguous": {name: len(pairs.ambiguous) for name, pairs in self._pairs.items()}}

    def _stamps(self) -> dict[str, list[int | None]]:
        """Header stamps per topic, in log order; an unreadable message keeps its place with
        the stamp None, which matches nothing (a corrupt image message still counts as a
        frame)."""
        topics = [self.topics.image, *self.topics.ground_truth.values()]
        stamps: dict[str, list[int | None]] = {topic: [] for topic in topics}
        for item in self.bag.messages(topics):
            if item.message is None:
                self.corrupt[item.topic] = self.corrupt.get(item.topic, 0) + 1
                stamps[item.topic].append(None)  # keeps positions aligned
                continue
            stamps[item.topic].append(header_stamp_ns(item.message))
        return stamps

    def __iter__(self) -> Iterator[BagFrame]:
        topics = self.topics
        users = Counter((name, index) for name, matches in self._matches.items()
                        for index in matches if index is not None)
        waiting: dict[int, BagFrame] = {}
        truth: dict[tuple[str, int], np.ndarray] = {}
        problems: dict[tuple[str, int], str] = {}
        counters = {topic: 0 for topic in [topics.image, *topics.ground_truth.values()]}
        names = {topic: name for name, topic in topics.ground_truth.items()}
        # The latest camera_info; until one is read (it may be logged just after the first
        # image), the bag's first one, so that the first frames have intrinsics too.
        camera_info = next((item.message for item in self.bag.messages([topics.camera_info])
                            if item.message is not None), None) if topics.camera_info else None
        wanted = [*counters] + ([topics.camera_info] if topics.camera_info else [])
        for item in self.bag.messages(wanted):
            if item.topic == topics.camera_info:
                camera_info = item.message or camera_info
                continue
            position = counters[item.topic]
            counters[item.topic] += 1
            if item.topic == topics.image:
                waiting[position] = self._frame(position, item, camera_info)
            elif item.message is not None and users[(names[item.topic], position)]:
                name = names[item.topic]
                try:
                    truth[(name, position)] = self._read_truth(name, item.message)
                except ImageConversionError as error:
                    problems[(name, position)] = str(error)
            yield from self._ready(waiting, truth, problems, counters, users)
        yield from self._ready(waiting, truth, problems, counters, users, final=True)

    def _read_truth(self, name: str, message) -> np.ndarray:
        """A ground-truth message as its task reads it back (dataset class ids mapped)."""
        spec = self._readers[name]
        truth = spec.read_truth(message_to_array(message), message.encoding)
        return self.mapping.apply(truth) if spec.class_ids else truth

    def _frame(self, index: int, item, camera_info) -> BagFrame:
        # A message that did not deserialize has no readable stamp: its log time stands in.
        stamp = self.image_stamps[index] if item.message is not None else item.log_time_ns
        frame = BagFrame(index=index, stamp_ns=stamp,
                         log_time_ns=item.log_time_ns, rgb=None, truth=GroundTruth(),
                         camera_info=camera_info)
        if item.message is None:
            frame.problems.append("corrupt image message")  # rosbags' words vary per message
            return frame
        frame.frame_id = item.message.header.frame_id
        try:
            frame.rgb = camera_image_to_rgb(
                item.message, compressed=item.msgtype.endswith("CompressedImage"),
                max_pixels=MAX_PIXELS)
        except ImageConversionError as error:
            detail = f" ({error.detail})" if error.detail else ""  # e.g. the encoding's name
            frame.problems.append(f"image refused: {error.kind}{detail}")
        return frame

    def _ready(self, waiting: dict[int, BagFrame], truth: dict, problems: dict,
               counters: dict[str, int], users: Counter, final: bool = False
               ) -> Iterator[BagFrame]:
        """Frames whose matched ground truth has all been read (every waiting one at the end)."""
        for index in sorted(waiting):
            targets = {name: matches[index] for name, matches in self._matches.items()
                       if matches[index] is not None}
            read = all(counters[self.topics.ground_truth[name]] > target
                       for name, target in targets.items())
            if not (read or final):
                continue
            frame = waiting.pop(index)
            fields = {}
            for name, target in targets.items():
                if (name, target) in problems:
                    frame.problems.append(problems[(name, target)])
                fields[name] = truth.get((name, target))
            ambiguous = [name for name, pairs in self._pairs.items() if index in pairs.ambiguous]
            frame.problems.extend(map(ambiguous_truth, ambiguous))
            frame.truth = GroundTruth(**fields)
            frame.matched_nothing = bool(self._matches) and not targets and not ambiguous
            self._forget(targets, truth, users)
            yield frame

    def _forget(self, targets: dict[str, int], truth: dict, users: Counter) -> None:
        """Drop ground truth once every frame matched to it has been handed out."""
        for name, target in targets.items():
            users[(name, target)] -= 1
            if users[(name, target)] == 0:
                truth.pop((name, target), None)
