"""``densemtl-bag-eval``: score a model on a recording, offline or through the live node.

    densemtl-bag-eval --bag run.mcap --image-topic /camera/image_raw \\
        [--gt-segmentation-topic T] [--gt-depth-topic T] [--gt-normals-topic T] --out DIR
        [--model PATH] [--backend auto] [--label-map SPEC] [--output-bag OUT.mcap]
        [--live [--start-node] [--rate 1.0]]

Offline, the Predictor runs on every image; ``--live`` plays the bag to a running densemtl node
over ROS topics (``--start-node`` starts one) and scores what the node publishes. Either way the
maps are scored as the node publishes them (depth NaN where invalid, edges as mono8), so the two
agree on the frames the node processed; the live report also gives the offline score of those
frames and how many the node dropped. Writes ``report.json``, ``frames.csv`` and mosaics of the
worst and best frames; ``--output-bag`` writes the images and every prediction topic with the
original stamps, to play in Foxglove or RViz.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING
from contextlib import ExitStack, nullcontext
from pathlib import Path

import numpy as np
from tqdm import tqdm

from densemtl_core.checkpoint import ModelMetadata
from densemtl_core.metrics import MAIN_METRICS
from densemtl_core.runtime import Predictor, PredictorError, load_predictor
from densemtl_core.viz import mosaic, save_png

from .bag_frames import BagFrame, BagFrames, BagTopics
from .calibration import Calibration
from .bags import BagError, BagReader, BagWriter, calibration_message, image_message, open_bag
from .encodings import resize_rgb
from .published import (IMAGE_OUTPUTS, PublishedMaps, published_image, published_maps,
                        topic_suffix)
from .report_folder import (MOSAIC_KINDS, NODE_LOG_FILE, REPORT_FILE, check_report_folder,
                            mosaic_file, remove_results)
from .scoring import (TASK_FIELDS, FrameScorer, LabelMapping, frame_mosaic, summary,
                      worst_and_best, write_report)

if TYPE_CHECKING:  # the live mode's rclpy is imported only when it runs
    from .replay import LiveRecording

OUTPUT_NAMESPACE = "/densemtl"
MOSAIC_FRAMES = 3
NO_MATCHED_TRUTH = "no ground truth within the stamp tolerance"
AGREEMENT_TOLERANCE = 1e-3
"""Largest difference between a live and an offline metric on the same frames that still
counts as agreement: the node's network runs on another thread count, so float sums differ in
the last bits and a handful of border pixels may flip."""


def _output_size(frame: BagFrame) -> tuple[int, int] | None:
    """The ground truth's resolution (the maps are scored there), or None if it disagrees."""
    shapes = {array.shape[:2] for array in (frame.truth.segmentation, frame.truth.depth,
                                            frame.truth.normals) if array is not None}
    if len(shapes) > 1:
        return None
    return shapes.pop() if shapes else frame.rgb.shape[:2]


class PredictionBag:
    """``--output-bag``: the input as rgb8 (what the model saw), camera_info, and every image
    output of the node with its encoding, under the node's topic names, with the input's stamps
    and frame_id. camera_info is the input's whole calibration (distortion model, D, R, P)
    described at the output resolution, as the node publishes it; a calibration that cannot
    describe the images is left out and counted."""

    def __init__(self, writer: BagWriter, metadata: ModelMetadata) -> None:
        self.writer, self.metadata = writer, metadata
        self.frames_written = 0
        self.camera_info_refused = 0
        self.camera_info_problem: str | None = None
        writer.add_topic(f"{OUTPUT_NAMESPACE}/camera_info", "sensor_msgs/msg/CameraInfo")
        for name in ("image", *map(topic_suffix, IMAGE_OUTPUTS)):
            writer.add_topic(f"{OUTPUT_NAMESPACE}/{name}", "sensor_msgs/msg/Image")

    def write(self, frame: BagFrame, rgb: np.ndarray, maps: PublishedMaps) -> None:
        store, stamp, time_ns = self.writer.typestore, frame.stamp_ns, frame.log_time_ns
        images = {"image": (rgb, "rgb8")}
        for output in IMAGE_OUTPUTS:
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
    """One pass over the bag's frames: predicting (or looking up the node's outputs),
    scoring, and keeping what the mosaics need."""

    def __init__(self, predictor: Predictor, frames: BagFrames, *,
                 output_bag: PredictionBag | None = None) -> None:
        self.predictor, self.frames, self.output_bag = predictor, frames, output_bag
        self.offline = FrameScorer(predictor.metadata)
        self.latencies_ms: list[float] = []
        self.recording: LiveRecording | None = None

    def predict(self, frame: BagFrame, size: tuple[int, int]) -> PublishedMaps:
        began = time.perf_counter()
        prediction = self.predictor.predict(frame.rgb, output_size=size)
        self.latencies_ms.append((time.perf_counter() - began) * 1e3)
        return published_maps(prediction, self.predictor.metadata)

    def usable(self, frame: BagFrame, scorer: FrameScorer) -> tuple[int, int] | None:
        """The scoring size, or None after recording why the frame is skipped."""
        if frame.rgb is None:
            scorer.skip(frame.index, frame.stamp_ns, frame.problems[0])
            return None
        size = _output_size(frame)
        if size is None:
            scorer.skip(frame.index, frame.stamp_ns, "ground-truth topics differ in size")
        return size

    def run_offline(self, progress: bool) -> None:
        for frame in tqdm(self.frames, total=len(self.frames), desc="evaluating", unit="frame",
                          disable=not progress):
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

    def run_live(self, recording: LiveRecording, progress: bool) -> FrameScorer:
        """Score the node's outputs, and the offline prediction of the same frames."""
        self.recording = recording
        live = FrameScorer(self.predictor.metadata)
        for frame in tqdm(self.frames, total=len(self.frames), desc="scoring", unit="frame",
                          disable=not progress):
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
        return live

    def mosaics(self, scorer: FrameScorer, out_dir: Path) -> list[Path]:
        """PNG mosaics of the worst and best frames by the first scored task's main metric."""
        scored = [task for task in MAIN_METRICS if scorer.frames_scored().get(task)]
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
    for array in (maps.segmentation, maps.depth, maps.normals, maps.edges):
        if array is not None:
            return tuple(array.shape[:2])
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densemtl-bag-eval",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--bag", required=True, type=Path,
                        help="rosbag2 folder or .mcap/.db3 file, or ROS 1 .bag")
    parser.add_argument("--image-topic", required=True)
    parser.add_argument("--camera-info-topic")
    parser.add_argument("--gt-segmentation-topic", help="mono8/mono16 class ids")
    parser.add_argument("--gt-depth-topic", help="32FC1 metres or 16UC1 millimetres")
    parser.add_argument("--gt-normals-topic", help="32FC3 unit normals, camera optical frame")
    parser.add_argument("--out", required=True, type=Path, help="report folder")
    parser.add_argument("--model", help="checkpoint, ONNX file or engine (default: shipped)")
    parser.add_argument("--backend", default="auto",
                        choices=("auto", "torch", "onnxruntime", "tensorrt"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--label-map",
                        help="dataset id -> model class: a YAML/JSON file or '3:1,4:2,7:floor'; "
                             "unmapped ids are ignored")
    parser.add_argument("--stamp-tolerance-ms", type=float, default=5.0,
                        help="largest stamp difference between an image and its ground truth")
    parser.add_argument("--output-bag", type=Path,
                        help="also write the predictions (with --live: the node's outputs) "
                             "to this bag")
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    parser.add_argument("--live", action="store_true",
                        help="play the bag to a running densemtl node and score its outputs")
    parser.add_argument("--start-node", action="store_true",
                        help="with --live: start the node (same model and backend) first")
    parser.add_argument("--node", default=OUTPUT_NAMESPACE,
                        help="with --live: the node's name, where its outputs are")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="with --live: playback speed (1: as recorded); 0: each frame once "
                             "the node has answered the previous one")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run's results in --out (only the files this "
                             "tool writes; anything else there is left alone)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _source(args: argparse.Namespace, predictor: Predictor, frames: BagFrames, mode: str,
            mapping: LabelMapping) -> dict:
    return {"bag": str(args.bag), "mode": mode, "model": args.model or "shipped default",
            "backend": predictor.backend.name, "tasks": list(predictor.tasks),
            "topics": {"image": args.image_topic, "camera_info": args.camera_info_topic,
                       **frames.topics.ground_truth},
            "label_map": {str(key): value for key, value in mapping.pairs.items()},
            "stamp_tolerance_ms": args.stamp_tolerance_ms, "frames_in_bag": len(frames),
            "corrupt_messages": frames.corrupt}


def _agreement(live: dict, offline: dict) -> dict:
    differences = {f"{task}.{name}": abs(value - offline[task][name])
                   for task, metrics in live.items() for name, value in metrics.items()
                   if value is not None and offline.get(task, {}).get(name) is not None}
    largest = max(differences.values(), default=0.0)
    return {"largest_difference": largest, "tolerance": AGREEMENT_TOLERANCE,
            "agree": largest <= AGREEMENT_TOLERANCE}


def evaluate(args: argparse.Namespace) -> dict:
    """Run the evaluation the arguments describe; returns the report (also written).

    What can be checked without the model is checked first (the topics, the report folder, the
    output bag's path, the bag and its topics), so that a mistake costs no model loading (an
    ONNX export, an engine build) and comes within a second. The output bag is complete before
    any picture is written: a picture that cannot be written never costs it.
    """
    topics = BagTopics(args.image_topic, args.camera_info_topic, args.gt_segmentation_topic,
                       args.gt_depth_topic, args.gt_normals_topic)
    earlier = check_report_folder(args.out, overwrite=args.overwrite)
    progress = not args.no_progress
    with open_bag(args.bag) as bag:
        topics.require(bag)
        writer = BagWriter(args.output_bag, args.storage) if args.output_bag else nullcontext()
        with writer:
            if earlier:
                remove_results(earlier)
                print(f"replacing the earlier run's {', '.join(path.name for path in earlier)} "
                      f"in {args.out}", file=sys.stderr)
            predictor = load_predictor(args.model, backend=args.backend, device=args.device)
            metadata = predictor.metadata
            num_classes = metadata.config.model.num_classes
            mapping = (LabelMapping.parse(args.label_map, num_classes, metadata.class_names)
                       if args.label_map else LabelMapping.identity(num_classes))
            frames = BagFrames(bag, topics, mapping, round(args.stamp_tolerance_ms * 1e6))
            output_bag = PredictionBag(writer, metadata) if args.output_bag else None
            evaluation = Evaluation(predictor, frames, output_bag=output_bag)
            if args.live:
                recording = _replay(args, bag, topics,
                                    restamp=frames.shared_image_stamps() > 0)
                scorer = evaluation.run_live(recording, progress)
            else:
                evaluation.run_offline(progress)
                scorer = evaluation.offline
        mode = "live" if args.live else "offline"
        latencies = ([seconds * 1e3 for seconds in recording.latencies()] if args.live
                     else evaluation.latencies_ms)
        report = summary(scorer, latencies_ms=latencies,
                         source=_source(args, predictor, frames, mode, mapping))
        report["stamp_matching"] = frames.stamp_matching()
        if args.live:
            report["live"] = _live_section(args, recording, report, evaluation)
        if output_bag is not None:
            report["output_bag"] = output_bag.summary()
        report["mosaics"] = [str(path) for path in evaluation.mosaics(scorer, args.out)]
    write_report(report, args.out)
    return report


def _replay(args: argparse.Namespace, bag: BagReader, topics: BagTopics, restamp: bool
            ) -> LiveRecording:
    """Play the bag to the node (started here with ``--start-node``); what it published.
    ``restamp``: images share stamps, so each is published with one of its own."""
    from .replay import NodeProcess, replay_through_node

    with ExitStack() as stack:
        if args.start_node:
            parameters = {"model.backend": args.backend}
            if args.model:
                parameters["model.path"] = str(Path(args.model).resolve())
            stack.enter_context(NodeProcess(topics.image, topics.camera_info,
                                            parameters=parameters,
                                            log_path=args.out / NODE_LOG_FILE))
        with tqdm(total=bag.message_counts.get(topics.image, 0), desc="replaying",
                  unit="frame", disable=args.no_progress) as bar:
            return replay_through_node(bag, topics.image, topics.camera_info,
                                       node_name=args.node, rate=args.rate, restamp=restamp,
                                       progress=bar)


def _live_section(args: argparse.Namespace, recording: LiveRecording, report: dict,
                  evaluation: Evaluation) -> dict:
    """How the replay went, and the offline score of the frames the node answered."""
    offline = summary(evaluation.offline, latencies_ms=evaluation.latencies_ms)
    return {
        "frames_sent": len(recording.sent), "frames_answered": len(recording.answered),
        "frames_dropped": len(recording.sent) - len(recording.answered),
        "replay_seconds": recording.wall_seconds, "rate": args.rate,
        "restamped": recording.restamped,
        "node_diagnostics": recording.diagnostics,
        "offline_same_frames": offline["metrics"],
        "agreement": _agreement(report["metrics"], offline["metrics"])}


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


def unscored_ground_truth(report: dict) -> list[str]:
    """A line for each ground-truth topic that scored no frame while others did."""
    scored, topics = report["frames_scored"], report["source"]["topics"]
    if not any(scored.values()):
        return []
    lines = []
    for task, name in TASK_FIELDS.items():
        if name in topics and scored.get(task) == 0:
            hint = ("; if its ids are not the model's classes, map them with --label-map"
                    if name == "segmentation" else "")
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


def _print_summary(report: dict, out: Path) -> None:
    for task, metrics in report["metrics"].items():
        shown = ", ".join(f"{name} {value:.4g}" for name, value in metrics.items()
                          if value is not None)
        print(f"{task:>8}: {shown}")
    skipped = report["skipped"]
    if skipped["total"]:
        print(f"skipped {skipped['total']} frame(s): " + ", ".join(
            f"{reason} ({count})" for reason, count in skipped["counts"].items()))
    for line in _stamp_warnings(report["stamp_matching"]):
        print(f"warning: {line}", file=sys.stderr)
    output_bag = report.get("output_bag")
    if output_bag and output_bag["camera_info_left_out"]:
        print(f"warning: camera_info left out of {output_bag['camera_info_left_out']} frame(s) "
              f"of {output_bag['path']}: {output_bag['camera_info_problem']}", file=sys.stderr)
    if "live" in report:
        live = report["live"]
        if live["restamped"]:
            print("live: images sharing stamps were replayed with a stamp each (their position "
                  "in the bag), so that the node's outputs could be told apart")
        print(f"live: {live['frames_answered']} of {live['frames_sent']} frames answered, "
              f"{live['frames_dropped']} dropped; live and offline scores "
              f"{'agree' if live['agreement']['agree'] else 'DIFFER'} (largest difference "
              f"{live['agreement']['largest_difference']:.2g})")
    print(f"report: {out / REPORT_FILE}")


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 scored; 1 ran but scored nothing that it should have (a warning says
    why); 2 refused (a one-line error)."""
    args = build_parser().parse_args(argv)
    try:
        report = evaluate(args)
    except (BagError, PredictorError, ValueError, TimeoutError) as error:
        print(f"densemtl-bag-eval: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a picture or the report could not be written
        print(f"densemtl-bag-eval: error: cannot write {error.filename or args.out}: "
              f"{error.strerror or error}", file=sys.stderr)
        return 2
    _print_summary(report, args.out)
    for line in unscored_ground_truth(report):
        print(f"densemtl-bag-eval: warning: {line}", file=sys.stderr)
    problem = nothing_scored(report)
    if problem:
        print(f"densemtl-bag-eval: warning: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
