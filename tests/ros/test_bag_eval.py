"""densemtl-bag-eval end to end: real bags (rosbag2 MCAP and SQLite 3, ROS 1) written here, the
shipped model on ONNX Runtime, and the live path through a node process over Fast DDS.

Ground truth is built from the model's own published maps, so perfect scores are known exactly,
and corrupted in known ways, so every metric is computed by hand. The shipped checkpoint is
exported to an ONNX file once (what ``load_predictor(None, backend="onnxruntime")`` runs, in
memory) and passed as ``--model`` to save the export on every run; one run uses the default.
"""
from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from densemtl_core.checkpoint import load_checkpoint
from densemtl_core.pretrained import DEFAULT_MODEL
from densemtl_core.strict_json import write_json
from tests.strict_json import strict_json
from densemtl_core.recordings.bags import BagWriter, header_stamp_ns, open_bag
from densemtl_core.recordings.calibration import Calibration
from densemtl_core.recordings.encodings import message_to_array
from densemtl_core.runtime import load_predictor
from densemtl_core.runtime.onnx_graph import onnx_model_bytes
from densemtl_ros.bag_tools.bag_eval import main
from densemtl_ros.bag_tools.bag_evaluation import NO_MATCHED_TRUTH
from densemtl_ros.bag_tools.bag_frames import ambiguous_truth
from densemtl_ros.published import published_maps
from densemtl_ros.bag_tools.make_bag import (CAMERA_INFO_TOPIC, DEPTH_TOPIC, IMAGE_TOPIC,
                                             NORMALS_TOPIC, SEGMENTATION_TOPIC, write_sample_bag)
from densemtl_ros.demo import node_speed
from densemtl_ros.bag_tools.report import REPORT_FORMAT, REPORT_FORMAT_VERSION
from densemtl_ros.bag_tools.scoring import NO_VALID_TRUTH
from densemtl_core.recordings.stamp_matching import STAMP_RULE
from tests.ros.bag_fixtures import (Recording, Truth, frame_stamps, node_processes,
                                    render_frames, with_header_stamps)

FRAMES, SIZE = 8, (60, 80)
TRUTH_ARGS = ["--gt-segmentation-topic", SEGMENTATION_TOPIC, "--gt-depth-topic", DEPTH_TOPIC,
              "--gt-normals-topic", NORMALS_TOPIC]
SCORED_TASKS = ("semseg", "depth", "normals")
PERFECT = {"semseg": {"miou": 1.0, "pixel_acc": 1.0, "mean_class_acc": 1.0},
           "depth": {"abs_rel": 0.0, "sq_rel": 0.0, "rmse": 0.0, "rmse_log": 0.0,
                     "delta1": 1.0, "delta2": 1.0, "delta3": 1.0, "coverage": 1.0}}
OUTPUT_ENCODINGS = {"/densemtl/image": "rgb8", "/densemtl/segmentation": "mono8",
                    "/densemtl/segmentation/color": "rgb8", "/densemtl/depth": "32FC1",
                    "/densemtl/normals": "32FC3", "/densemtl/normals/color": "rgb8",
                    "/densemtl/edges": "mono8"}
DROPPED = "dropped by the node"
REPOSITORY = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def predictor():
    return load_predictor(None, backend="onnxruntime")


@pytest.fixture(scope="module")
def scene():
    return render_frames(FRAMES, SIZE)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, predictor, scene) -> Path:
    """The shipped checkpoint as the ONNX file load_predictor exports in memory."""
    model, metadata = load_checkpoint(DEFAULT_MODEL, device="cpu")
    path = tmp_path_factory.mktemp("model") / "shipped.onnx"
    path.write_bytes(onnx_model_bytes(model, metadata, dynamic_batch=True))
    from_file = load_predictor(path, backend="onnxruntime").predict(scene[0]["image"])
    default = predictor.predict(scene[0]["image"])
    for name in ("segmentation", "depth", "normals", "edges"):
        np.testing.assert_array_equal(getattr(from_file, name), getattr(default, name))
    return path


@pytest.fixture(scope="module")
def predicted(predictor, scene):
    """The maps the node would publish for each frame of the scene."""
    return [published_maps(predictor.predict(frame["image"]), predictor.metadata)
            for frame in scene]


@pytest.fixture(scope="module")
def perfect(predicted) -> dict[str, Truth]:
    """Ground truth equal to the published maps (NaN depth would stay NaN: invalid; the model's
    depth on these frames lies inside its range, so it has none)."""
    assert all(maps.depth.dtype == np.float32 for maps in predicted)
    return {SEGMENTATION_TOPIC: Truth("mono8", [maps.segmentation for maps in predicted]),
            DEPTH_TOPIC: Truth("32FC1", [maps.depth for maps in predicted]),
            NORMALS_TOPIC: Truth("32FC3", [maps.normals for maps in predicted])}


def recording(scene, truth: dict[str, Truth], period_ns: int = 100_000_000,
              **options) -> Recording:
    return Recording([frame["image"] for frame in scene], frame_stamps(len(scene), period_ns),
                     scene[0]["intrinsics"], truth, **options)


@pytest.fixture(scope="module")
def perfect_bag(tmp_path_factory, scene, perfect) -> Path:
    return recording(scene, perfect).write(tmp_path_factory.mktemp("perfect") / "bag")


def evaluate(bag: Path, out: Path, *extra: str, model: Path | None = None,
             truth: list[str] = TRUTH_ARGS, camera_info: bool = True
             ) -> tuple[int, dict | None]:
    """Run the command line; its exit code and report (None when it wrote none)."""
    argv = ["--bag", str(bag), "--image-topic", IMAGE_TOPIC,
            *(["--camera-info-topic", CAMERA_INFO_TOPIC] if camera_info else []),
            *truth, "--out", str(out), "--backend", "onnxruntime", "--no-progress", *extra]
    if model is not None:
        argv += ["--model", str(model)]
    code = main(argv)
    path = out / "report.json"
    return code, (json.loads(path.read_text()) if path.is_file() else None)


def assert_metrics(metrics: dict, expected: dict, tolerance: float = 1e-5) -> None:
    for task, values in expected.items():
        for name, value in values.items():
            assert metrics[task][name] == pytest.approx(value, abs=tolerance), (task, name)


def assert_perfect(report: dict) -> None:
    assert report["frames_scored"] == {**{task: FRAMES for task in SCORED_TASKS}, "edges": 0}
    assert report["skipped"]["total"] == 0
    assert_metrics(report["metrics"], PERFECT, tolerance=0.0)
    normals = report["metrics"]["normals"]
    assert normals["mean"] < 0.01 and normals["within_11_25"] == 100.0
    assert "edges" not in report["metrics"]  # no edge ground truth in bags


# ---------------------------------------------------------------------------------------------
# Sample bags, both rosbag2 storages


@pytest.fixture(scope="module")
def sample_runs(tmp_path_factory, model_file):
    """Sample bags evaluated once per storage; the MCAP run uses the shipped default model (no
    --model) and writes --output-bag."""
    runs = {}
    for storage in ("mcap", "sqlite3"):
        folder = tmp_path_factory.mktemp(f"sample_{storage}")
        bag = write_sample_bag(folder / "bag", storage, frames=6, size=SIZE, seed=2)
        if storage == "mcap":
            code, report = evaluate(bag, folder / "out", "--output-bag",
                                    str(folder / "predictions"))
        else:
            code, report = evaluate(bag, folder / "out", model=model_file)
        runs[storage] = (code, report, bag, folder)
    return runs


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_sample_bags_of_both_storages_are_scored_frame_by_frame(sample_runs, predictor, storage):
    code, report, bag, folder = sample_runs[storage]
    assert code == 0
    assert (report["format"], report["format_version"]) == (REPORT_FORMAT, REPORT_FORMAT_VERSION)
    assert report["source"]["mode"] == "offline" and report["source"]["frames_in_bag"] == 6
    assert (report["source"]["model"] == "shipped default") == (storage == "mcap")
    assert report["source"]["model_trained_on"] == {
        "source": {"dataset": "synthetic", "domain": "source"}, "target": None}
    assert report["frames_scored"] == {"semseg": 6, "depth": 6, "normals": 6, "edges": 0}
    assert report["skipped"]["total"] == 0 and report["timing"]["frames"] == 6
    with open_bag(bag) as reader:
        images = [item.message for item in reader.messages([IMAGE_TOPIC])]
    with (folder / "out" / "frames.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["index"]) for row in rows] == list(range(6))
    assert [int(row["stamp_ns"]) for row in rows] == [header_stamp_ns(m) for m in images]
    # Each frame's pixel accuracy and depth RMSE, computed here from the rendered ground truth.
    for row, message, frame in zip(rows, images, render_frames(6, SIZE, seed=2)):
        np.testing.assert_array_equal(message_to_array(message), frame["image"])
        maps = published_maps(predictor.predict(frame["image"]), predictor.metadata)
        accuracy = (maps.segmentation == frame["semseg"]).mean()
        assert float(row["semseg_pixel_acc"]) == pytest.approx(accuracy, abs=1e-9)
        error = maps.depth.astype(np.float64) - frame["depth"]
        assert float(row["depth_rmse"]) == pytest.approx(np.sqrt(np.mean(error ** 2)), rel=1e-6)
        assert float(row["depth_coverage"]) == 1.0 and float(row["normals_mean"]) > 0.0
    assert len(report["mosaics"]) == 2
    for path in map(Path, report["mosaics"]):
        assert path.parent == folder / "out"
        assert path.name in ("worst_semseg.png", "best_semseg.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# Known ground truth: perfect, and corrupted by hand


def test_ground_truth_equal_to_the_predictions_scores_perfectly(perfect_bag, tmp_path,
                                                                model_file):
    code, report = evaluate(perfect_bag, tmp_path / "out", model=model_file)
    assert code == 0
    assert_perfect(report)
    assert report["source"]["corrupt_messages"] == {}
    # Every frame ties: the same frames are the worst and the best, and both mosaics show them.
    assert sorted(Path(path).name for path in report["mosaics"]) == ["best_semseg.png",
                                                                     "worst_semseg.png"]
    assert all(frame["metrics"]["depth"]["coverage"] == 1.0 for frame in report["frames"])


def test_known_corruption_gives_the_hand_computed_metrics(tmp_path, scene, predicted,
                                                          model_file, predictor):
    """Per frame: depth NaN (invalid) on row 0, the other 59 x 80 pixels scaled by 1.5 on a
    checkerboard (exactly half of them); labels wrong on rows 0-9 and an id the identity map
    ignores on rows 10-19; normals reversed (180 degrees) on rows 20-34 and zero (invalid) on
    rows 35-39."""
    height, width = SIZE
    rows, columns = np.indices(SIZE)
    scaled = ((rows + columns) % 2 == 0) & (rows > 0)
    labels, depths, normals = [], [], []
    squared, sq_rel = [], []
    num_classes = predictor.metadata.config.model.num_classes
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for maps in predicted:
        assert not np.isnan(maps.depth).any() and np.nanmax(maps.depth) * 1.5 < 20.0
        depth = np.where(scaled, maps.depth * np.float32(1.5), maps.depth).astype(np.float32)
        depth[0] = np.nan
        valid = rows > 0
        assert scaled.sum() * 2 == valid.sum()
        error = depth[valid].astype(np.float64) - maps.depth[valid]
        squared.append(np.mean(error ** 2))
        sq_rel.append(np.mean(error ** 2 / depth[valid]))
        depths.append(depth)
        label = maps.segmentation.copy()
        label[:10] = (label[:10] + 1) % num_classes
        label[10:20] = 200  # not a model class: ignored
        labels.append(label)
        confusion += np.bincount(label[20:].astype(np.int64).ravel() * num_classes
                                 + maps.segmentation[20:].ravel(),
                                 minlength=num_classes ** 2).reshape(num_classes, num_classes)
        confusion += np.bincount(label[:10].astype(np.int64).ravel() * num_classes
                                 + maps.segmentation[:10].ravel(),
                                 minlength=num_classes ** 2).reshape(num_classes, num_classes)
        normal = maps.normals.copy()
        normal[20:35] *= -1.0
        normal[35:40] = 0.0
        normals.append(normal)
    truth = {SEGMENTATION_TOPIC: Truth("mono8", labels), DEPTH_TOPIC: Truth("32FC1", depths),
             NORMALS_TOPIC: Truth("32FC3", normals)}
    bag = recording(scene, truth).write(tmp_path / "bag", "sqlite3")
    code, report = evaluate(bag, tmp_path / "out", model=model_file)
    assert code == 0
    assert report["frames_scored"] == {"semseg": FRAMES, "depth": FRAMES, "normals": FRAMES,
                                       "edges": 0}
    hits, union = np.diag(confusion), confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    iou = hits[union > 0] / union[union > 0]  # classes in neither are left out
    reversed_share = 15 * width / ((height - 5) * width)  # of the valid normals
    assert_metrics(report["metrics"], {
        "semseg": {"pixel_acc": (height - 20) * width / ((height - 10) * width),  # 0.8
                   "miou": iou.mean()},
        "depth": {"abs_rel": 0.5 * (0.5 / 1.5), "delta1": 0.5, "delta2": 1.0, "delta3": 1.0,
                  "rmse_log": math.log(1.5) / math.sqrt(2.0), "rmse": math.sqrt(np.mean(squared)),
                  "sq_rel": np.mean(sq_rel), "coverage": 1.0},
        "normals": {"mean": 180.0 * reversed_share, "median": 0.0,
                    "rmse": 180.0 * math.sqrt(reversed_share),
                    "within_11_25": 100.0 * (1 - reversed_share),
                    "within_22_5": 100.0 * (1 - reversed_share),
                    "within_30": 100.0 * (1 - reversed_share)}})
    assert report["metrics"]["semseg"]["pixel_acc"] == pytest.approx(0.8, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Stamps and labels


@pytest.fixture(scope="module")
def jittered_bag(tmp_path_factory, scene, perfect) -> Path:
    """Perfect ground truth stamped 2 ms after, then 2 ms before, each image (so half of it is
    logged before its image)."""
    offsets = [2_000_000 if index % 2 == 0 else -2_000_000 for index in range(FRAMES)]
    stamps = [stamp + offset for stamp, offset in zip(frame_stamps(FRAMES), offsets)]
    truth = {topic: Truth(value.encoding, value.arrays, stamps) for topic, value in perfect.items()}
    return recording(scene, truth).write(tmp_path_factory.mktemp("jitter") / "bag")


def test_ground_truth_within_the_stamp_tolerance_is_matched(jittered_bag, tmp_path, model_file):
    code, report = evaluate(jittered_bag, tmp_path / "out", "--stamp-tolerance-ms", "5",
                            model=model_file)
    assert code == 0
    assert_perfect(report)  # each image got its own ground truth, not a neighbour's


def test_ground_truth_outside_the_stamp_tolerance_is_not_scored(jittered_bag, tmp_path,
                                                                model_file, capsys):
    code, report = evaluate(jittered_bag, tmp_path / "out", "--stamp-tolerance-ms", "1",
                            model=model_file)
    assert code == 1  # a report, but no score
    assert capsys.readouterr().err.strip() == (
        f"densemtl-bag-eval: warning: no frame was scored: {NO_MATCHED_TRUTH} ({FRAMES})")
    assert report["source"]["stamp_tolerance_ms"] == 1.0
    assert report["frames_scored"] == {task: 0 for task in (*SCORED_TASKS, "edges")}
    assert report["metrics"] == {} and report["frames"] == [] and report["mosaics"] == []
    assert report["skipped"]["total"] == FRAMES
    assert report["skipped"]["counts"] == {NO_MATCHED_TRUTH: FRAMES}
    assert [example["stamp_ns"] for example in report["skipped"]["examples"]] == \
        frame_stamps(FRAMES)[:3]
    with (tmp_path / "out" / "frames.csv").open() as handle:
        assert handle.read().splitlines() == ["index,stamp_ns"]


@pytest.mark.parametrize("stamps", ["all zero", "two alike"])
def test_equal_stamps_pair_frames_with_their_own_ground_truth_by_order(
        tmp_path, scene, perfect, model_file, capsys, stamps):
    """A driver that does not stamp (every header 0), or stamps frames 3 and 4 alike: stamps
    cannot tell those frames apart, message order can (as many images as ground truth)."""
    header = ([0] * FRAMES if stamps == "all zero" else
              frame_stamps(FRAMES)[:4] + frame_stamps(FRAMES)[3:7])
    shared = FRAMES if stamps == "all zero" else 2
    bag = with_header_stamps(recording(scene, perfect), header).write(tmp_path / "bag")
    code, report = evaluate(bag, tmp_path / "out", model=model_file)
    assert code == 0
    assert_perfect(report)  # each frame scored against its own ground truth
    assert [frame["stamp_ns"] for frame in report["frames"]] == header
    matching = report["stamp_matching"]
    assert matching["rule"] == STAMP_RULE and matching["images_sharing_a_stamp"] == shared
    assert matching["paired_by_order"] == {"segmentation": shared, "depth": shared,
                                           "normals": shared}
    assert matching["ambiguous"] == {"segmentation": 0, "depth": 0, "normals": 0}
    error = capsys.readouterr().err
    assert f"warning: {shared} image(s) share their header stamp with another image" in error
    assert (f"warning: frames paired with ground truth by message order among equal stamps: "
            f"segmentation {shared}, depth {shared}, normals {shared}") in error


def test_equal_stamps_with_a_message_missing_leave_that_ground_truth_unscored(
        tmp_path, scene, perfect, model_file, capsys):
    """All stamps 0 and frame 5's depth not recorded: 8 images and 7 depth maps at stamp 0
    cannot be paired, so no frame gets depth (not frame 0's for all, as nearest-stamp
    matching gave); segmentation and normals still pair by order."""
    kept = [index for index in range(FRAMES) if index != 5]
    depth = perfect[DEPTH_TOPIC]
    truth = {**perfect, DEPTH_TOPIC: Truth(depth.encoding, [depth.arrays[i] for i in kept],
                                           [frame_stamps(FRAMES)[i] for i in kept])}
    bag = with_header_stamps(recording(scene, truth), [0] * FRAMES,
                             {DEPTH_TOPIC: [0] * len(kept)}).write(tmp_path / "bag")
    code, report = evaluate(bag, tmp_path / "out", model=model_file)
    assert code == 0
    assert report["frames_scored"] == {"semseg": FRAMES, "depth": 0, "normals": FRAMES,
                                       "edges": 0}
    assert_metrics(report["metrics"], {"semseg": PERFECT["semseg"]}, tolerance=0.0)
    assert report["skipped"]["counts"] == {ambiguous_truth("depth"): FRAMES}
    assert report["stamp_matching"]["ambiguous"] == {"segmentation": 0, "depth": FRAMES,
                                                     "normals": 0}
    error = capsys.readouterr().err
    assert (f"warning: frames left unscored: ground truth ambiguous among equal stamps: "
            f"depth {FRAMES}") in error


def test_label_map_turns_dataset_ids_into_model_classes(tmp_path, scene, predicted, perfect,
                                                        model_file, predictor, capsys):
    """Dataset id = model id + 10; the most frequent non-zero class is left out of the map, and
    rows 0-4 hold an id no one maps: both are ignored, not counted wrong."""
    counts = np.bincount(np.concatenate([m.segmentation.ravel() for m in predicted]),
                         minlength=8)
    unmapped = int(np.argmax(counts[1:])) + 1
    assert counts[unmapped] > 0
    labels = []
    for maps in predicted:
        label = maps.segmentation + np.uint8(10)
        label[:5] = 99
        labels.append(label)
    bag = recording(scene, {**perfect, SEGMENTATION_TOPIC: Truth("mono8", labels)}).write(
        tmp_path / "bag")
    names = predictor.metadata.class_names  # odd classes by name, even ones by id
    pairs = [f"{model_id + 10}:{names[model_id] if model_id % 2 else model_id}"
             for model_id in range(8) if model_id != unmapped]
    code, report = evaluate(bag, tmp_path / "out", "--label-map", ",".join(pairs),
                            model=model_file)
    assert code == 0
    assert report["source"]["label_map"] == {str(i + 10): i for i in range(8) if i != unmapped}
    assert report["frames_scored"]["semseg"] == FRAMES
    assert_metrics(report["metrics"], {"semseg": PERFECT["semseg"]}, tolerance=0.0)
    # Without the map every id is >= 10: nothing is labelled, nothing is right or wrong, and
    # segmentation is not scored (depth and normals are).
    capsys.readouterr()
    code, plain = evaluate(bag, tmp_path / "plain", model=model_file)
    assert code == 0 and "semseg" not in plain["metrics"]
    assert plain["frames_scored"] == {"semseg": 0, "depth": FRAMES, "normals": FRAMES,
                                      "edges": 0}
    assert (f"warning: segmentation ground truth on {SEGMENTATION_TOPIC} scored no frame; if "
            f"its ids are not the model's classes, map them with --label-map"
            in capsys.readouterr().err)


# ---------------------------------------------------------------------------------------------
# Errors


def test_a_missing_topic_names_it_and_what_the_bag_has(perfect_bag, tmp_path, capsys,
                                                       model_file):
    code, _ = evaluate(perfect_bag, tmp_path / "out", "--gt-depth-topic", "/camera/nope",
                       model=model_file, truth=[])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("densemtl-bag-eval: error: ")
    assert "topic /camera/nope is not in" in error
    for topic in (IMAGE_TOPIC, CAMERA_INFO_TOPIC, SEGMENTATION_TOPIC, DEPTH_TOPIC, NORMALS_TOPIC):
        assert f"{topic} (sensor_msgs/msg/" in error
    assert f"(sensor_msgs/msg/Image, {FRAMES} messages)" in error
    assert not (tmp_path / "out" / "report.json").exists()


@pytest.mark.parametrize("name, message", [
    ("missing.mcap", "does not exist"),
    ("random.mcap", "as a bag"),
    ("random.db3", "as a bag"),
    ("random.txt", "is not a bag"),
])
def test_what_is_no_bag_is_refused_with_a_clear_message(tmp_path, capsys, model_file, name,
                                                        message):
    path = tmp_path / name
    if name.startswith("random"):
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    code, report = evaluate(path, tmp_path / "out", model=model_file)
    assert (code, report) == (2, None)
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"densemtl-bag-eval: error: {path}") or \
        error.startswith(f"densemtl-bag-eval: error: cannot read {path}")
    assert message in error and "Traceback" not in error


@pytest.fixture
def broken_model(tmp_path) -> Path:
    """A model file that fails to load: an error about anything else came before loading."""
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"no model in here " * 64)
    return path


def refused_before_the_model(capsys, code: int) -> str:
    """The one-line error of a run refused before its model was loaded."""
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1, error
    assert error.startswith("densemtl-bag-eval: error: ") and "broken.onnx" not in error
    return error.strip()


def test_bag_problems_are_found_before_the_model_is_loaded(perfect_bag, tmp_path, capsys,
                                                           broken_model):
    code, _ = evaluate(perfect_bag, tmp_path / "out", model=broken_model,
                       truth=["--gt-depth-topic", "/camera/nope"])
    assert "topic /camera/nope is not in" in refused_before_the_model(capsys, code)
    code, _ = evaluate(perfect_bag, tmp_path / "out", model=broken_model,
                       truth=["--gt-depth-topic", SEGMENTATION_TOPIC, "--gt-normals-topic",
                              NORMALS_TOPIC, "--gt-segmentation-topic", DEPTH_TOPIC,
                              "--image-topic", CAMERA_INFO_TOPIC, "--camera-info-topic",
                              "/camera/other_info"])
    error = refused_before_the_model(capsys, code)
    assert f"topic {CAMERA_INFO_TOPIC} has type sensor_msgs/msg/CameraInfo, expected" in error
    assert not (tmp_path / "out" / "report.json").exists()


def test_bag_problems_come_before_torch_is_even_imported(perfect_bag, tmp_path):
    """A mistake in the command costs neither the model nor importing torch and the runtime
    (seconds on a small computer): the command line checks with light modules first."""
    argv = ["--bag", str(perfect_bag), "--image-topic", IMAGE_TOPIC, "--gt-depth-topic",
            "/camera/nope", "--out", str(tmp_path / "out")]
    script = (f"import sys\nfrom densemtl_ros.bag_tools.bag_eval import main\n"
              f"code = main({argv!r})\n"
              f"assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(code)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=REPOSITORY, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "topic /camera/nope is not in" in result.stderr


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_truncated_mcap_says_how_to_recover_it(perfect_bag, tmp_path, capsys, broken_model,
                                                 where):
    """The recording's MCAP file cut 1000 bytes short, as a killed recorder leaves it."""
    (source,) = perfect_bag.glob("*.mcap")
    if where == "folder":
        bag = tmp_path / "bag"
        shutil.copytree(perfect_bag, bag)
        (truncated,) = bag.glob("*.mcap")
    else:
        bag = truncated = tmp_path / "recording.mcap"
    truncated.write_bytes(source.read_bytes()[:-1000])
    code, _ = evaluate(bag, tmp_path / "out", model=broken_model)
    error = refused_before_the_model(capsys, code)
    recovered = truncated.with_name(f"{truncated.stem}_recovered.mcap")
    assert f"{truncated} is cut short" in error
    assert f"`mcap recover {truncated} -o {recovered}`" in error


@pytest.mark.parametrize("roles", [
    {"--gt-depth-topic": IMAGE_TOPIC},
    {"--gt-segmentation-topic": CAMERA_INFO_TOPIC},
    {"--gt-depth-topic": NORMALS_TOPIC, "--gt-normals-topic": NORMALS_TOPIC},
], ids=["depth=image", "segmentation=camera_info", "depth=normals"])
def test_one_topic_given_for_two_roles_is_refused(perfect_bag, tmp_path, capsys, broken_model,
                                                  roles):
    """Each would drop a task, or score a task against another's data, without a word."""
    truth = [item for pair in roles.items() for item in pair]
    code, _ = evaluate(perfect_bag, tmp_path / "out", model=broken_model, truth=truth)
    error = refused_before_the_model(capsys, code)
    (topic,) = set(roles.values())
    assert f"topic {topic} is given as both the " in error
    assert "each needs a topic of its own" in error


@pytest.mark.parametrize("make", ["file", "inside a file"])
def test_a_report_folder_that_cannot_be_written_is_refused_first(perfect_bag, tmp_path, capsys,
                                                                 broken_model, make):
    (tmp_path / "taken").write_text("the user's")
    out = tmp_path / "taken" if make == "file" else tmp_path / "taken" / "out"
    code, _ = evaluate(perfect_bag, out, model=broken_model)
    error = refused_before_the_model(capsys, code)
    assert error.startswith(f"densemtl-bag-eval: error: results folder {out} ")
    assert ("is a file, not a folder" if make == "file" else "cannot be written") in error
    assert (tmp_path / "taken").read_text() == "the user's"


def test_an_output_bag_that_cannot_be_written_is_refused_first(perfect_bag, tmp_path, capsys,
                                                               broken_model):
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "metadata.yaml").write_text("the user's")
    (tmp_path / "file").write_text("the user's")
    for path, problem in ((tmp_path / "earlier", "exists already"),
                          (tmp_path / "file" / "bag", "cannot write")):
        code, _ = evaluate(perfect_bag, tmp_path / "out", "--output-bag", str(path),
                           model=broken_model)
        assert problem in refused_before_the_model(capsys, code)
    assert (tmp_path / "earlier" / "metadata.yaml").read_text() == "the user's"


def test_an_earlier_run_is_refused_and_replaced_only_when_asked(perfect_bag, tmp_path, capsys,
                                                                 model_file):
    """A second run into the same folder would leave the first one's segmentation mosaics
    beside a report that scored depth only."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    code, first = evaluate(perfect_bag, out, model=model_file)
    assert code == 0 and str(out / "best_semseg.png") in first["mosaics"]
    depth_only = ["--gt-depth-topic", DEPTH_TOPIC]
    written = {path.name: path.read_bytes() for path in out.iterdir()}
    capsys.readouterr()
    code, _ = evaluate(perfect_bag, out, model=model_file, truth=depth_only)
    error = capsys.readouterr().err.strip()
    assert code == 2 and error == (
        f"densemtl-bag-eval: error: results folder {out} holds an earlier run's results "
        f"(report.json, frames.csv, worst_semseg.png, best_semseg.png); choose another folder, "
        f"or replace them with --overwrite")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == written
    code, second = evaluate(perfect_bag, out, "--overwrite", model=model_file, truth=depth_only)
    assert code == 0 and second["frames_scored"]["semseg"] == 0
    assert sorted(path.name for path in out.iterdir()) == [
        "best_depth.png", "frames.csv", "notes.txt", "report.json", "worst_depth.png"]
    assert (out / "notes.txt").read_text() == "the user's"


def test_a_finished_output_bag_outlives_a_picture_that_cannot_be_written(perfect_bag, tmp_path,
                                                                         capsys, model_file):
    """The best frames' mosaic cannot be written (a folder holds its name)."""
    (tmp_path / "out" / "best_semseg.png").mkdir(parents=True)
    code, _ = evaluate(perfect_bag, tmp_path / "out", "--output-bag",
                       str(tmp_path / "predictions"), model=model_file)
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith("densemtl-bag-eval: error: cannot write ")
    assert "best_semseg.png" in error and "\n" not in error
    with open_bag(tmp_path / "predictions") as output:
        assert output.message_counts["/densemtl/depth"] == FRAMES
        assert sum(1 for item in output.messages() if item.error is None) == \
            output.message_count


def test_an_empty_bag_warns_and_fails(tmp_path, capsys, model_file):
    with BagWriter(tmp_path / "bag") as bag:
        bag.add_topic(IMAGE_TOPIC, "sensor_msgs/msg/Image")
        bag.add_topic(DEPTH_TOPIC, "sensor_msgs/msg/Image")
    code, report = evaluate(tmp_path / "bag", tmp_path / "out", model=model_file,
                            truth=["--gt-depth-topic", DEPTH_TOPIC], camera_info=False)
    assert code == 1 and report["source"]["frames_in_bag"] == 0
    assert capsys.readouterr().err.strip() == (
        f"densemtl-bag-eval: warning: the bag has no message on {IMAGE_TOPIC}")


@pytest.mark.parametrize("invalid", ["labels outside the model's classes", "no valid depth"])
def test_ground_truth_with_nothing_valid_warns_and_fails(tmp_path, scene, predicted, capsys,
                                                         model_file, invalid):
    if invalid == "no valid depth":
        topic, truth = DEPTH_TOPIC, Truth("32FC1", [np.full(SIZE, np.nan, np.float32)] * FRAMES)
    else:
        topic, truth = SEGMENTATION_TOPIC, Truth(
            "mono8", [maps.segmentation + np.uint8(100) for maps in predicted])
    bag = recording(scene, {topic: truth}).write(tmp_path / "bag")
    option = "--gt-depth-topic" if topic == DEPTH_TOPIC else "--gt-segmentation-topic"
    code, report = evaluate(bag, tmp_path / "out", model=model_file, truth=[option, topic])
    assert code == 1 and report["metrics"] == {} and report["frames"] == []
    assert report["skipped"]["counts"] == {NO_VALID_TRUTH: FRAMES}
    assert capsys.readouterr().err.strip() == (
        f"densemtl-bag-eval: warning: no frame was scored: {NO_VALID_TRUTH} ({FRAMES})")
    assert "NaN" not in (tmp_path / "out" / "report.json").read_text()


def test_a_corrupt_image_message_skips_its_frame_only(tmp_path, scene, perfect, model_file):
    bag = recording(scene, perfect, corrupt_images=frozenset({2})).write(tmp_path / "bag")
    code, report = evaluate(bag, tmp_path / "out", model=model_file)
    assert code == 0
    assert report["source"]["corrupt_messages"] == {IMAGE_TOPIC: 1}
    assert report["frames_scored"] == {**{task: FRAMES - 1 for task in SCORED_TASKS}, "edges": 0}
    assert [frame["index"] for frame in report["frames"]] == [0, 1, 3, 4, 5, 6, 7]
    assert report["skipped"]["total"] == 1
    (reason,) = report["skipped"]["counts"]
    assert reason == "corrupt image message"
    assert report["skipped"]["examples"] == [
        {"index": 2, "stamp_ns": frame_stamps(FRAMES)[2], "reason": reason}]
    assert_metrics(report["metrics"], PERFECT, tolerance=0.0)  # the others keep their truth


def test_an_image_in_an_unsupported_encoding_is_skipped_naming_the_encoding(tmp_path, scene,
                                                                             perfect, model_file):
    source = recording(scene, perfect)
    with BagWriter(tmp_path / "bag", "mcap") as bag:
        for topic, msgtype in source.topics().items():
            bag.add_topic(topic, msgtype)
        for stamp, topic, message in source.messages(bag.typestore):
            if topic == IMAGE_TOPIC and stamp == frame_stamps(FRAMES)[2]:
                message = replace(message, encoding="bgr10")
            bag.write(topic, message, stamp)
    code, report = evaluate(tmp_path / "bag", tmp_path / "out", model=model_file)
    assert code == 0
    assert report["skipped"]["counts"] == {"image refused: unsupported encoding (bgr10)": 1}


# ---------------------------------------------------------------------------------------------
# Output bag and ROS 1


def test_the_output_bag_holds_every_prediction_topic_with_the_input_stamps(sample_runs,
                                                                           predictor):
    code, _, bag, folder = sample_runs["mcap"]
    assert code == 0
    with open_bag(bag) as reader:
        inputs = [item.message for item in reader.messages([IMAGE_TOPIC])]
        info = next(item.message for item in reader.messages([CAMERA_INFO_TOPIC]))
    stamps = [header_stamp_ns(message) for message in inputs]
    expected = [published_maps(predictor.predict(message_to_array(message)), predictor.metadata)
                for message in inputs]
    with open_bag(folder / "predictions") as output:
        assert output.topics == {**{topic: "sensor_msgs/msg/Image" for topic in OUTPUT_ENCODINGS},
                                 "/densemtl/camera_info": "sensor_msgs/msg/CameraInfo"}
        assert output.message_counts == {topic: len(inputs) for topic in output.topics}
        received: dict[str, list] = {topic: [] for topic in output.topics}
        for item in output.messages():
            assert item.error is None and item.log_time_ns == header_stamp_ns(item.message)
            received[item.topic].append(item.message)
    for topic, messages in received.items():
        assert [header_stamp_ns(message) for message in messages] == stamps, topic
        if topic in OUTPUT_ENCODINGS:
            assert {message.encoding for message in messages} == {OUTPUT_ENCODINGS[topic]}
            assert {(m.height, m.width) for m in messages} == {SIZE}
    for index, maps in enumerate(expected):
        def array(topic):
            return message_to_array(received[topic][index])
        np.testing.assert_array_equal(array("/densemtl/image"), message_to_array(inputs[index]))
        np.testing.assert_array_equal(array("/densemtl/segmentation"), maps.segmentation)
        np.testing.assert_array_equal(array("/densemtl/depth"), maps.depth)  # NaN where NaN
        np.testing.assert_array_equal(array("/densemtl/normals"), maps.normals)
        np.testing.assert_array_equal(array("/densemtl/edges"), maps.edges)
    for out_info in received["/densemtl/camera_info"]:  # the first frame's included
        assert (out_info.height, out_info.width) == SIZE
        np.testing.assert_allclose(out_info.k, info.k)  # same resolution: same intrinsics


STEREO_LEFT = Calibration(
    SIZE[0], SIZE[1], "rational_polynomial",
    np.array([0.1, -0.2, 0.001, 0.002, 0.03, 0.4, 0.5, 0.6]),
    np.array([[50.0, 0.0, 39.5], [0.0, 52.0, 29.5], [0.0, 0.0, 1.0]]),
    np.array([[0.999, -0.0447, 0.0], [0.0447, 0.999, 0.0], [0.0, 0.0, 1.0]]),
    np.array([[51.0, 0.0, 40.5, -5.1], [0.0, 53.0, 30.5, 0.0], [0.0, 0.0, 1.0, 0.0]]))
"""A calibrated stereo camera's left eye at 60x80: distortion, a rectifying R, P with Tx."""


def test_the_output_bag_keeps_the_frame_id_and_the_whole_calibration_scaled(
        tmp_path, scene, predictor, model_file):
    """Ground truth at half the camera's resolution: the outputs are scored and written at
    30x40, and their camera_info describes that size (K and P halved about pixel centres),
    with the recording's distortion model, D and R and the image's frame_id."""
    half = (SIZE[0] // 2, SIZE[1] // 2)
    depths = [published_maps(predictor.predict(frame["image"], output_size=half),
                             predictor.metadata).depth for frame in scene]
    bag = replace(recording(scene, {DEPTH_TOPIC: Truth("32FC1", depths)}),
                  calibration=STEREO_LEFT, frame_id="left_camera_optical").write(tmp_path / "bag")
    code, report = evaluate(bag, tmp_path / "out", "--output-bag", str(tmp_path / "predictions"),
                            model=model_file, truth=["--gt-depth-topic", DEPTH_TOPIC])
    assert code == 0 and report["frames_scored"]["depth"] == FRAMES
    with open_bag(tmp_path / "predictions") as output:
        messages = {topic: [item.message for item in output.messages([topic])]
                    for topic in output.topics}
    for topic, received in messages.items():
        assert len(received) == FRAMES, topic
        assert {message.header.frame_id for message in received} == {"left_camera_optical"}
    assert report["output_bag"]["camera_info_left_out"] == 0
    for info in messages["/densemtl/camera_info"]:
        assert (info.height, info.width, info.distortion_model) == (*half, "rational_polynomial")
        np.testing.assert_array_equal(info.d, STEREO_LEFT.d)
        np.testing.assert_array_equal(info.r, STEREO_LEFT.r.reshape(-1))
        np.testing.assert_allclose(info.k, [25.0, 0.0, 19.5, 0.0, 26.0, 14.5, 0.0, 0.0, 1.0])
        np.testing.assert_allclose(info.p, [25.5, 0.0, 20.0, -2.55, 0.0, 26.5, 15.0, 0.0,
                                            0.0, 0.0, 1.0, 0.0])
    assert {(m.height, m.width) for m in messages["/densemtl/depth"]} == {half}


def test_an_unusable_camera_info_leaves_only_camera_info_out_of_the_output_bag(
        tmp_path, scene, perfect, model_file, capsys):
    """camera_info of size 0x0 with K all zero (an uncalibrated driver)."""
    uncalibrated = Calibration(0, 0, "", np.zeros(0), np.zeros((3, 3)), np.zeros((3, 3)),
                               np.zeros((3, 4)))
    bag = replace(recording(scene, perfect), calibration=uncalibrated).write(tmp_path / "bag")
    code, report = evaluate(bag, tmp_path / "out", "--output-bag", str(tmp_path / "predictions"),
                            model=model_file)
    assert code == 0
    assert_perfect(report)
    assert report["output_bag"]["camera_info_left_out"] == FRAMES
    assert "camera_info size is 0x0" in report["output_bag"]["camera_info_problem"]
    assert f"camera_info left out of {FRAMES} frame(s)" in capsys.readouterr().err
    with open_bag(tmp_path / "predictions") as output:
        assert output.message_counts["/densemtl/camera_info"] == 0
        assert output.message_counts["/densemtl/depth"] == FRAMES


def test_a_ros1_bag_is_evaluated(tmp_path, scene, perfect, model_file):
    bag = recording(scene, perfect).write_ros1(tmp_path / "camera.bag")
    code, report = evaluate(bag, tmp_path / "out", "--output-bag", str(tmp_path / "predictions"),
                            model=model_file)
    assert code == 0
    assert_perfect(report)
    assert [frame["stamp_ns"] for frame in report["frames"]] == frame_stamps(FRAMES)
    with open_bag(tmp_path / "predictions") as output:
        infos = [item.message for item in output.messages(["/densemtl/camera_info"])]
    assert len(infos) == FRAMES  # ROS 1 spells the intrinsics K
    np.testing.assert_allclose(infos[0].k.reshape(3, 3), scene[0]["intrinsics"])


def test_node_speed_holds_only_numbers_or_null(tmp_path):
    """Before its first frame the node reports "nan"; a rate over no time is "inf"."""
    report = {"timing": None, "live": {
        "frames_sent": 2, "frames_answered": 0, "frames_dropped": 2,
        "node_diagnostics": {"output rate (Hz)": "inf", "added latency p50 (ms)": "nan",
                             "added latency p95 (ms)": "NaN", "network p50 (ms)": "12.5",
                             "backend": "onnxruntime"}}}
    speed = node_speed(report)
    assert speed["node_output_rate_hz"] is None and speed["node_network_ms"]["p50"] == 12.5
    assert speed["node_added_latency_ms"] == {"p50": None, "p95": None}
    text = write_json(tmp_path / "node_speed.json", speed).read_text()
    assert strict_json(text) == speed


# ---------------------------------------------------------------------------------------------
# Live, through a node process started by the command line


@pytest.fixture(scope="module")
def live_bag(tmp_path_factory, scene, perfect) -> Path:
    """The perfect recording at 100 Hz, so that at --rate 4 frames come every 2.5 ms."""
    return recording(scene, perfect, period_ns=10_000_000).write(
        tmp_path_factory.mktemp("live") / "bag")


def run_live(bag: Path, out: Path, rate: str, model: Path) -> dict:
    before = set(node_processes())
    code, report = evaluate(bag, out, "--live", "--start-node", "--rate", rate, model=model)
    assert code == 0
    assert set(node_processes()) - before == set(), "the node process outlived the run"
    assert (out / "node.log").stat().st_size > 0  # the node did run, and logged
    assert report["source"]["mode"] == "live"
    return report


def test_live_scores_equal_the_offline_scores(live_bag, tmp_path, model_file):
    code, offline = evaluate(live_bag, tmp_path / "offline", model=model_file)
    assert code == 0
    assert_perfect(offline)
    report = run_live(live_bag, tmp_path / "live", "0", model_file)
    live = report["live"]
    assert (live["frames_sent"], live["frames_answered"], live["frames_dropped"]) == (FRAMES,
                                                                                      FRAMES, 0)
    assert live["agreement"]["agree"] is True
    assert report["frames_scored"] == offline["frames_scored"]
    assert report["skipped"]["total"] == 0
    for metrics in (report["metrics"], live["offline_same_frames"]):
        assert metrics.keys() == offline["metrics"].keys()
        assert_metrics(metrics, offline["metrics"], tolerance=1e-3)
    assert live["node_diagnostics"]["model"] == str(model_file)  # the node got --model


def test_live_with_equal_stamps_scores_each_frame_against_its_own_outputs(
        tmp_path, scene, perfect, model_file):
    """All stamps 0: the node's outputs, keyed by the stamp they carry, could not be told apart;
    the replay stamps each image by its position, and live agrees with offline."""
    bag = with_header_stamps(recording(scene, perfect, period_ns=10_000_000),
                             [0] * FRAMES).write(tmp_path / "bag")
    report = run_live(bag, tmp_path / "live", "0", model_file)
    live = report["live"]
    assert report["frames_scored"] == {**{task: FRAMES for task in SCORED_TASKS}, "edges": 0}
    assert_metrics(report["metrics"], PERFECT, tolerance=1e-3)
    assert_metrics(live["offline_same_frames"], PERFECT, tolerance=0.0)
    assert live["agreement"]["agree"] is True and live["frames_answered"] == FRAMES
    assert live["restamped"] is True
    assert report["stamp_matching"]["images_sharing_a_stamp"] == FRAMES


def test_live_faster_than_real_time_counts_the_dropped_frames(live_bag, tmp_path, model_file):
    report = run_live(live_bag, tmp_path / "live", "4", model_file)
    live = report["live"]
    assert live["frames_sent"] == FRAMES
    assert live["frames_sent"] == live["frames_answered"] + live["frames_dropped"]
    # 2.5 ms between frames against tens of milliseconds of inference on a CPU.
    assert live["frames_dropped"] >= 1
    assert report["skipped"]["counts"].get(DROPPED, 0) == live["frames_dropped"]
    assert report["frames_scored"]["semseg"] == live["frames_answered"]
    assert live["agreement"]["agree"] is True
    assert_metrics(report["metrics"], PERFECT, tolerance=1e-3)
