"""Scoring a model on a recording, offline or through the live node: the work behind
``densemtl-bag-eval`` (:mod:`.bag_eval` is its command line).

Offline, the Predictor runs on every image; live, the bag is played to a running densemtl node
over ROS topics and what the node publishes is scored. Either way the maps are scored as the
node publishes them (depth NaN where invalid, edges as mono8), so the two agree on the frames
the node processed; the live report also gives the offline score of those frames and how many
the node dropped. :meth:`Evaluation.report` writes ``report.json``, ``frames.csv`` and mosaics
of the worst and best frames; an output bag gets the images and every prediction topic with
the original stamps, to play in Foxglove or RViz.
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from densemtl_core.checkpoint import ModelMetadata
from densemtl_core.recordings.bags import BagReader, BagWriter, calibration_message, image_message
from densemtl_core.recordings.calibration import Calibration
from densemtl_core.recordings.encodings import resize_rgb
from densemtl_core.recordings.label_map import LabelMapping
from densemtl_core.runtime import Predictor, load_predictor
from densemtl_core.tasks import TASKS
from densemtl_core.viz import mosaic, save_png

from ..depth_units import SCALE_PARAMETER, DepthPublishing, depth_publishing
from .bag_frames import BagFrame, BagFrames
from .bag_topics import BagTopics
from ..published import PublishedMaps, image_outputs, published_image, published_maps, topic_suffix
from .report import frame_mosaic, summary, worst_and_best, write_report
from .report_folder import MOSAIC_KINDS, mosaic_file
from .scoring import FrameScorer
from .settings import OUTPUT_NAMESPACE, EvaluationSettings, LiveSettings

if TYPE_CHECKING:  # the live mode's rclpy is imported only when it runs
    from .replay import LiveRecording

MOSAIC_FRAMES = 3
NO_MATCHED_TRUTH = "no ground truth within the stamp tolerance"
AGREEMENT_TOLERANCE = 1e-3
"""Largest difference between a live and an offline metric on the same frames that still
counts as agreement: the node's network runs on another thread count, so float sums differ in
the last bits and a handful of border pixels may flip."""


def _output_size(frame: BagFrame) -> tuple[int, int] | None:
    """The ground truth's resolution (the maps are scored there), or None if it disagrees."""
    shapes = {array.shape[:2] for array in frame.truth.maps().values()}
    if len(shapes) > 1:
        return None
    return shapes.pop() if shapes else frame.rgb.shape[:2]


class PredictionBag:
    """``--output-bag``: the input as rgb8 (what the model saw), camera_info, and every image
    output of the node with its encoding, under the node's topic names, with the input's stamps
    and frame_id. camera_info is the input's whole calibration (distortion model, D, R, P)
    described at the output resolution, as the node publishes it; a calibration that cannot
    describe the images is left out and counted. The outputs of ``withheld_tasks`` are left
    out, as the node withholds them (a relative depth without a scale)."""

    def __init__(self, writer: BagWriter, metadata: ModelMetadata,
                 withheld_tasks: frozenset[str] = frozenset()) -> None:
        self.writer, self.metadata = writer, metadata
        self.outputs = [output for output, (spec, _) in image_outputs().items()
                        if spec.name not in withheld_tasks]
        self.frames_written = 0
        self.camera_info_refused = 0
        self.camera_info_problem: str | None = None
        writer.add_topic(f"{OUTPUT_NAMESPACE}/camera_info", "sensor_msgs/msg/CameraInfo")
        for name in ("image", *map(topic_suffix, self.outputs)):
            writer.add_topic(f"{OUTPUT_NAMESPACE}/{name}", "sensor_msgs/msg/Image")

    def write(self, frame: BagFrame, rgb: np.ndarray, maps: PublishedMaps) -> None:
        store, stamp, time_ns = self.writer.typestore, frame.stamp_ns, frame.log_time_ns
        images = {"image": (rgb, "rgb8")}
        for output in self.outputs:
            image = published_image(output, maps, rgb, self.metadata.class_colors)
            if image is not None:
                images[topic_suffix(output)] = image
        for name, (array, encoding) in images.items():
            message = image_message(store, array, encoding, stamp, frame.frame_id)
            self.writer.write(f"{OUTPUT_NAMESPACE}/{name}", message, time_ns)
        self.frames_written += 1
        if frame.camera_info is None:
            return
        calibration = Calibration.of_message(frame.camera_info)
        problem = calibration.problem(*frame.rgb.shape[:2])
        if problem is not None:
            self.camera_info_refused += 1
            self.camera_info_problem = problem
            return
        message = calibration_message(store, calibration.scaled(*rgb.shape[:2]), stamp,
                                      frame.frame_id)
        self.writer.write(f"{OUTPUT_NAMESPACE}/camera_info", message, time_ns)

    def summary(self) -> dict:
        """For the report: where the bag is, what it holds, and camera_info left out."""
        return {"path": str(self.writer.path), "frames": self.frames_written,
                "camera_info_left_out": self.camera_info_refused,
                "camera_info_problem": self.camera_info_problem}


class Evaluation:
    """One pass over the bag's frames: predicting (or looking up the node's outputs) and
    scoring; then its report."""

    def __init__(self, predictor: Predictor, frames: BagFrames, settings: EvaluationSettings,
                 depth: DepthPublishing, *, output_bag: PredictionBag | None = None) -> None:
        self.predictor, self.frames, self.settings = predictor, frames, settings
        self.depth = depth
        """How the depth is published, and so scored: as metres, scaled metres, or (relative
        and unpublished) offline with per-image median scaling and live not at all."""
        self.output_bag = output_bag
        self.offline = self.scorer()
        self.scored = self.offline
        """The scores reported: offline, or the node's after :meth:`run_live`."""
        self.latencies_ms: list[float] = []
        self.recording: LiveRecording | None = None

    def predict(self, frame: BagFrame, size: tuple[int, int]) -> PublishedMaps:
        began = time.perf_counter()
        prediction = self.predictor.predict(frame.rgb, output_size=size)
        self.latencies_ms.append((time.perf_counter() - began) * 1e3)
        return published_maps(prediction, self.predictor.metadata, self.depth.scale)

    def scorer(self) -> FrameScorer:
        """A scorer of the maps :meth:`predict` gives: scaled depth is metres."""
        return FrameScorer(self.predictor.metadata,
                           depth_units="metres" if self.depth.scaled else None)

    def usable(self, frame: BagFrame, scorer: FrameScorer) -> tuple[int, int] | None:
        """The scoring size, or None after recording why the frame is skipped."""
        if frame.rgb is None:
            scorer.skip(frame.index, frame.stamp_ns, frame.problems[0])
            return None
        size = _output_size(frame)
        if size is None:
            scorer.skip(frame.index, frame.stamp_ns, "ground-truth topics differ in size")
        return size

    def run_offline(self) -> None:
        for frame in tqdm(self.frames, total=len(self.frames), desc="evaluating", unit="frame",
                          disable=not self.settings.progress):
            size = self.usable(frame, self.offline)
            if size is None:
                continue
            maps = self.predict(frame, size)
            _score(self.offline, frame, maps)
            if self.output_bag is not None:
                self.output_bag.write(frame, _resized(frame.rgb, size), maps)

    def maps_of(self, frame: BagFrame, size: tuple[int, int]) -> PublishedMaps | None:
        """What the node published for the frame (after :meth:`run_live`), or the Predictor's
        maps."""
        if self.recording is None:
            return self.predict(frame, size)
        return self.recording.maps(frame.index)

    def run_live(self, recording: LiveRecording) -> None:
        """Score the node's outputs, and the offline prediction of the same frames."""
        self.recording = recording
        live = self.scored = self.scorer()
        for frame in tqdm(self.frames, total=len(self.frames), desc="scoring", unit="frame",
                          disable=not self.settings.progress):
            size = self.usable(frame, live)
            if size is None:
                self.offline.skip(frame.index, frame.stamp_ns, "not scored live")
                continue
            maps = self.maps_of(frame, size)
            if maps is None:
                live.skip(frame.index, frame.stamp_ns, "dropped by the node")
                self.offline.skip(frame.index, frame.stamp_ns, "dropped by the node")
                continue
            if _map_size(maps) != tuple(size):
                live.skip(frame.index, frame.stamp_ns,
                          f"node outputs are {_map_size(maps)}, ground truth {tuple(size)}")
                continue
            _score(live, frame, maps)
            _score(self.offline, frame, self.predict(frame, size))
            if self.output_bag is not None:  # what the node published
                self.output_bag.write(frame, _resized(frame.rgb, size), maps)

    def report(self, out_dir: Path) -> dict:
        """Write ``report.json``, ``frames.csv`` and the mosaics into ``out_dir`` (checked by
        :func:`.report_folder.check_report_folder`); the report."""
        report = summary(self.scored, latencies_ms=self._latencies(), source=self._source())
        report["stamp_matching"] = self.frames.stamp_matching()
        if "depth" in self.predictor.tasks:
            report["depth"] = self._depth_section()
        if self.recording is not None:
            report["live"] = self._live_section(report["metrics"])
        if self.output_bag is not None:
            report["output_bag"] = self.output_bag.summary()
        report["mosaics"] = [str(path) for path in self.mosaics(out_dir)]
        write_report(report, out_dir)
        return report

    def _latencies(self) -> list[float]:
        """Per frame, ms: the Predictor's, or live from publishing to the last output."""
        if self.recording is None:
            return self.latencies_ms
        return [seconds * 1e3 for seconds in self.recording.latencies()]

    def _source(self) -> dict:
        frames, settings = self.frames, self.settings
        return {"bag": str(frames.bag.path),
                "mode": "offline" if self.recording is None else "live",
                "model": settings.model or "shipped default",
                "model_trained_on": self.predictor.metadata.trained_on(),
                "backend": self.predictor.backend.name, "tasks": list(self.predictor.tasks),
                "topics": {"image": frames.topics.image,
                           "camera_info": frames.topics.camera_info,
                           **frames.topics.ground_truth},
                "label_map": {str(key): value for key, value in frames.mapping.pairs.items()},
                "stamp_tolerance_ms": settings.stamp_tolerance_ms, "frames_in_bag": len(frames),
                "corrupt_messages": frames.corrupt}

    def _depth_section(self) -> dict:
        """The model's depth units and how its depth was scored, and why."""
        depth = self.depth
        if depth.units != "relative":
            scoring, detail = "metric", "the model's depth is metres"
        elif depth.published:
            scoring, detail = "metric", (f"relative depth times {depth.scale:g} metres per "
                                         f"unit ({SCALE_PARAMETER})")
        elif self.recording is None:
            scoring, detail = "median-scaled", (
                "relative depth: each image's prediction is scaled by the median of its ground "
                "truth over the median of the prediction before scoring")
        else:
            scoring, detail = "not scored", (
                f"the node publishes no depth for a relative-depth model without "
                f"{SCALE_PARAMETER}; give --relative-depth-scale (metres per model unit) to "
                f"score it as metres, or evaluate offline to score it median-scaled")
        return {"units": depth.units,
                "relative_depth_scale": depth.scale if depth.scaled else None,
                "scoring": scoring, "detail": detail}

    def _live_section(self, live_metrics: dict) -> dict:
        """How the replay went, and the offline score of the frames the node answered."""
        recording = self.recording
        offline = summary(self.offline)["metrics"]
        return {
            "frames_sent": len(recording.sent), "frames_answered": len(recording.answered),
            "frames_dropped": len(recording.sent) - len(recording.answered),
            "replay_seconds": recording.wall_seconds, "rate": recording.rate,
            "restamped": recording.restamped, "node_diagnostics": recording.diagnostics,
            "offline_same_frames": offline, "agreement": _agreement(live_metrics, offline)}

    def mosaics(self, out_dir: Path) -> list[Path]:
        """PNG mosaics of the worst and best frames by the first scored task's main metric."""
        scorer = self.scored
        scored = [task for task in TASKS if scorer.frames_scored().get(task)]
        if not scored:
            return []
        chosen = dict(zip(MOSAIC_KINDS, worst_and_best(scorer.frames, scored[0],
                                                       MOSAIC_FRAMES)))
        tiles: dict[str, list[tuple[str, np.ndarray]]] = {kind: [] for kind in MOSAIC_KINDS}
        for frame in self.frames:
            kinds = [kind for kind, indices in chosen.items() if frame.index in indices]
            if kinds:  # a frame may be among both when few were scored
                size = _output_size(frame)
                picture = frame_mosaic(_resized(frame.rgb, size), self.maps_of(frame, size),
                                       frame.truth, self.predictor.metadata)
                for kind in kinds:
                    tiles[kind].append((f"frame {frame.index}", picture))
        paths = []
        for name, pictures in tiles.items():
            if pictures:
                path = mosaic_file(out_dir, name, scored[0])
                save_png(path, mosaic([[tile] for tile in pictures]))
                paths.append(path)
        return paths


def _score(scorer: FrameScorer, frame: BagFrame, maps: PublishedMaps) -> None:
    for problem in frame.problems:
        scorer.skip(frame.index, frame.stamp_ns, problem)
    if frame.matched_nothing:
        scorer.skip(frame.index, frame.stamp_ns, NO_MATCHED_TRUTH)
    elif not (frame.problems and frame.truth.is_empty()):  # else its problems said why
        scorer.score(frame.index, frame.stamp_ns, maps, frame.truth)


def _resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return rgb if rgb.shape[:2] == tuple(size) else resize_rgb(rgb, size)


def _map_size(maps: PublishedMaps) -> tuple[int, int] | None:
    for array in maps.maps().values():
        return tuple(array.shape[:2])
    return None


def _agreement(live: dict, offline: dict) -> dict:
    differences = {f"{task}.{name}": abs(value - offline[task][name])
                   for task, metrics in live.items() for name, value in metrics.items()
                   if value is not None and offline.get(task, {}).get(name) is not None}
    largest = max(differences.values(), default=0.0)
    return {"largest_difference": largest, "tolerance": AGREEMENT_TOLERANCE,
            "agree": largest <= AGREEMENT_TOLERANCE}


def evaluate(bag: BagReader, topics: BagTopics, settings: EvaluationSettings, *,
             writer: BagWriter | None = None, live: LiveSettings | None = None) -> Evaluation:
    """Load the model and score every frame of ``bag`` (offline, or through a node with
    ``live``), writing the output bag to ``writer`` if given; then
    :meth:`Evaluation.report` writes the results (after ``writer`` is closed, so that a
    picture that cannot be written never costs a finished bag)."""
    predictor = load_predictor(settings.model, backend=settings.backend, device=settings.device)
    metadata = predictor.metadata
    num_classes = metadata.config.model.num_classes
    mapping = (LabelMapping.parse(settings.label_map, num_classes, metadata.class_names)
               if settings.label_map else LabelMapping.identity(num_classes))
    depth = depth_publishing(predictor.depth_units, settings.relative_depth_scale)
    withheld = depth.withheld_tasks
    frames = BagFrames(bag, topics, mapping, round(settings.stamp_tolerance_ms * 1e6))
    output_bag = PredictionBag(writer, metadata, withheld) if writer is not None else None
    evaluation = Evaluation(predictor, frames, settings, depth, output_bag=output_bag)
    if live is None:
        evaluation.run_offline()
    else:
        fields = [TASKS[task].field for task in predictor.tasks if task not in withheld]
        evaluation.run_live(_replay(bag, topics, settings, live, fields,
                                    restamp=frames.shared_image_stamps() > 0))
    return evaluation


def _replay(bag: BagReader, topics: BagTopics, settings: EvaluationSettings,
            live: LiveSettings, fields: list[str], restamp: bool) -> LiveRecording:
    """Play the bag to the node (started here if asked); what it published of the maps
    ``fields``. ``restamp``: images share stamps, so each is published with one of its own."""
    from .node_process import NodeProcess, node_arguments
    from .replay import replay_through_node
    from ..resources import dds_profile

    with ExitStack() as stack:
        if live.start_node:
            parameters: dict[str, object] = {"model.backend": settings.backend}
            if settings.relative_depth_scale:
                parameters[SCALE_PARAMETER] = settings.relative_depth_scale
            if settings.model:
                parameters["model.path"] = str(Path(settings.model).resolve())
            stack.enter_context(NodeProcess(
                node_arguments(topics.image, topics.camera_info, parameters),
                log_path=live.node_log,
                environment_defaults={"FASTDDS_DEFAULT_PROFILES_FILE": str(dds_profile())}))
        with tqdm(total=bag.message_counts.get(topics.image, 0), desc="replaying",
                  unit="frame", disable=not settings.progress) as bar:
            return replay_through_node(bag, topics.image, topics.camera_info,
                                       node_name=live.node, rate=live.rate, restamp=restamp,
                                       outputs=fields, progress=bar)


# -- What a report says went wrong ---------------------------------------------------------------

def nothing_scored(report: dict) -> str | None:
    """Why the report holds no score although it should, or None: the bag had no image, or
    ground truth was given and no frame had any of it to score."""
    source = report["source"]
    if source["frames_in_bag"] == 0:
        return f"the bag has no message on {source['topics']['image']}"
    given = set(source["topics"]) - {"image", "camera_info"}
    if given and not any(report["frames_scored"].values()):
        reasons = ", ".join(f"{reason} ({count})"
                            for reason, count in report["skipped"]["counts"].items())
        return f"no frame was scored: {reasons or 'no task of the model has ground truth'}"
    return None


def warnings(report: dict) -> list[str]:
    """What the console should warn about: equal stamps, camera_info left out of the output
    bag, a ground-truth topic that scored nothing while others did, depth ground truth the
    node's withheld depth could not score."""
    return [*_stamp_warnings(report["stamp_matching"]), *_camera_info_warnings(report),
            *_unscored_ground_truth(report), *_unscored_depth(report)]


def _unscored_depth(report: dict) -> list[str]:
    """Why depth ground truth was not scored, when the depth was withheld."""
    depth = report.get("depth")
    if not (depth and depth["scoring"] == "not scored" and "depth" in report["source"]["topics"]):
        return []
    return [f"depth not scored: {depth['detail']}"]


def _camera_info_warnings(report: dict) -> list[str]:
    output_bag = report.get("output_bag")
    if not (output_bag and output_bag["camera_info_left_out"]):
        return []
    return [f"camera_info left out of {output_bag['camera_info_left_out']} frame(s) of "
            f"{output_bag['path']}: {output_bag['camera_info_problem']}"]


def _unscored_ground_truth(report: dict) -> list[str]:
    """A line for each ground-truth topic that scored no frame while others did."""
    scored, topics = report["frames_scored"], report["source"]["topics"]
    if not any(scored.values()):
        return []
    lines = []
    for task, spec in TASKS.items():
        name = spec.field
        if name in topics and scored.get(task) == 0:
            hint = ("; if its ids are not the model's classes, map them with --label-map"
                    if spec.class_ids else "")
            lines.append(f"{name} ground truth on {topics[name]} scored no frame{hint}")
    return lines


def _stamp_warnings(matching: dict) -> list[str]:
    """What equal header stamps did to the pairing with ground truth, if anything."""
    lines = []
    if matching["images_sharing_a_stamp"]:
        lines.append(f"{matching['images_sharing_a_stamp']} image(s) share their header stamp "
                     f"with another image (a driver that stamps 0, or twice alike)")
    for key, what in (("paired_by_order", "paired with ground truth by message order"),
                      ("ambiguous", "left unscored: ground truth ambiguous")):
        counts = {name: count for name, count in matching[key].items() if count}
        if counts:
            lines.append(f"frames {what} among equal stamps: " + ", ".join(
                f"{name} {count}" for name, count in counts.items()))
    return lines
