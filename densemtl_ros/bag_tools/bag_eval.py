"""``densemtl-bag-eval``: score a model on a recording, offline or through the live node.

    densemtl-bag-eval --bag run.mcap --image-topic /camera/image_raw \\
        [--gt-segmentation-topic T] [--gt-depth-topic T] [--gt-normals-topic T] --out DIR
        [--model PATH] [--backend auto] [--label-map SPEC] [--output-bag OUT.mcap]
        [--relative-depth-scale S] [--overwrite] [--live [--start-node] [--rate 1.0]]

The command line of :mod:`.bag_evaluation`. Everything that can be checked without the model
is checked first, before torch and the runtime are even imported (the topics, the report
folder, the output bag's path, the bag and its topics), so that a mistake comes within a second
and costs no model loading (an ONNX export, an engine build). Exit codes: 0 scored; 1 ran but
scored nothing that it should have (a warning says why); 2 refused (a one-line error).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from densemtl_core.recordings.bags import BagError, BagWriter, open_bag
from densemtl_core.results_folder import remove_results

from .bag_topics import BagTopics
from .report_folder import NODE_LOG_FILE, REPORT_FILE, check_report_folder
from .settings import OUTPUT_NAMESPACE, EvaluationSettings, LiveSettings


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
    parser.add_argument("--relative-depth-scale", type=_scale, default=0.0, metavar="S",
                        help="metres per unit of a relative-depth model's depth (the node's "
                             "relative_depth_scale): its depth is scored as metres times S; "
                             "without it such a depth is scored median-scaled offline and not "
                             "at all live (the node publishes none)")
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


def _scale(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def evaluate_bag(bag_path: Path, topics: BagTopics, out: Path, settings: EvaluationSettings, *,
                 live: LiveSettings | None = None, output_bag: Path | None = None,
                 storage: str = "mcap", overwrite: bool = False) -> dict:
    """Check the inputs and outputs, then evaluate; the report (also written into ``out``).

    Everything that needs no model comes first (the report folder, the bag and its topics, the
    output bag's path); an earlier run's results in ``out`` are refused, or with ``overwrite``
    removed once those checks have passed. Raises BagError or ValueError for what it refuses."""
    earlier = check_report_folder(out, overwrite=overwrite)
    with open_bag(bag_path) as bag:
        topics.require(bag)
        with BagWriter(output_bag, storage) if output_bag else nullcontext() as writer:
            if earlier:
                remove_results(earlier)
                print(f"replacing the earlier run's {', '.join(path.name for path in earlier)} "
                      f"in {out}", file=sys.stderr)
            # Only now torch, the runtime and the model.
            from .bag_evaluation import evaluate

            evaluation = evaluate(bag, topics, settings, writer=writer, live=live)
        return evaluation.report(out)  # the output bag is finished


def _runtime_errors() -> tuple[type[Exception], ...]:
    """The Predictor's refusals, once the runtime is loaded (the checks before it go without)."""
    runtime = sys.modules.get("densemtl_core.runtime")
    return (runtime.PredictorError,) if runtime is not None else ()


def print_summary(report: dict, out: Path) -> None:
    for task, metrics in report["metrics"].items():
        shown = ", ".join(f"{name} {value:.4g}" for name, value in metrics.items()
                          if value is not None)
        print(f"{task:>8}: {shown}")
    depth = report.get("depth")
    if depth and depth["units"] == "relative" and depth["scoring"] != "not scored":
        print(f"   depth: {depth['scoring']}: {depth['detail']}")
    skipped = report["skipped"]
    if skipped["total"]:
        print(f"skipped {skipped['total']} frame(s): " + ", ".join(
            f"{reason} ({count})" for reason, count in skipped["counts"].items()))
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
    args = build_parser().parse_args(argv)
    ground_truth = {name: topic for name, topic in (("segmentation", args.gt_segmentation_topic),
                                                     ("depth", args.gt_depth_topic),
                                                     ("normals", args.gt_normals_topic)) if topic}
    settings = EvaluationSettings(args.model, args.backend, args.device, args.label_map,
                                  args.stamp_tolerance_ms, not args.no_progress,
                                  args.relative_depth_scale)
    live = (LiveSettings(args.node, args.rate, args.start_node, args.out / NODE_LOG_FILE)
            if args.live else None)
    try:
        report = evaluate_bag(args.bag, BagTopics(args.image_topic, args.camera_info_topic,
                                                  ground_truth),
                              args.out, settings, live=live, output_bag=args.output_bag,
                              storage=args.storage, overwrite=args.overwrite)
    except (BagError, ValueError, TimeoutError, *_runtime_errors()) as error:
        print(f"densemtl-bag-eval: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a picture or the report could not be written
        print(f"densemtl-bag-eval: error: cannot write {error.filename or args.out}: "
              f"{error.strerror or error}", file=sys.stderr)
        return 2
    from .bag_evaluation import nothing_scored, warnings  # loaded by the run

    print_summary(report, args.out)
    for line in warnings(report):
        print(f"densemtl-bag-eval: warning: {line}", file=sys.stderr)
    problem = nothing_scored(report)
    if problem:
        print(f"densemtl-bag-eval: warning: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
