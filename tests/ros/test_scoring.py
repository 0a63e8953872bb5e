"""Scoring published maps against bag ground truth: hand-computed metrics, label mapping, stamp
matching, reports and mosaics."""
import csv
import json
import math

import numpy as np
import pytest
import torch

from densemtl_core.checkpoint import ModelMetadata
from densemtl_core.config import ExperimentConfig, ModelConfig
from densemtl_core.labels import IGNORE_INDEX
from densemtl_core.metrics import DepthMeter, EdgeMeter, NormalsMeter, SegmentationMeter
from densemtl_core.recordings.label_map import LabelMapping
from densemtl_ros.published import PublishedMaps
from densemtl_ros.bag_tools.report import REPORT_FORMAT, frame_mosaic, summary, worst_and_best, write_report
from densemtl_ros.bag_tools.scoring import (NO_VALID_TRUTH, NOTHING_TO_SCORE, FrameScore, FrameScorer,
                                  GroundTruth)
from densemtl_core.recordings.stamp_matching import match_by_stamp, pair_by_stamp
from tests.strict_json import strict_json

CLASS_NAMES = ("wall", "floor", "chair")
CLASS_COLORS = ((200, 0, 0), (0, 200, 0), (0, 0, 200))
UP = np.array([0.0, 0.0, 1.0], dtype=np.float32)
RIGHT = np.array([1.0, 0.0, 0.0], dtype=np.float32)


def metadata(tasks=("semseg", "depth", "normals", "edges")):
    model = ModelConfig(tasks=tasks, num_classes=3, min_depth=0.1, max_depth=10.0)
    return ModelMetadata(ExperimentConfig(model=model), CLASS_NAMES, CLASS_COLORS)


def normals_map(height=4, width=4, vector=UP):
    return np.broadcast_to(vector, (height, width, 3)).copy()


def depth_frame(pred, target):
    return PublishedMaps(depth=np.asarray(pred, np.float32)), GroundTruth(
        depth=np.asarray(target, np.float32))


# -- Hand-computed metrics -----------------------------------------------------------------------

def test_perfect_predictions_score_perfectly():
    labels = np.array([[0, 1, 2, 2]] * 4, dtype=np.uint8)
    depth = np.full((4, 4), 2.5, dtype=np.float32)
    depth[0, :2] = np.nan  # invalid in the ground truth, and so published as NaN
    edges = np.eye(4, dtype=np.uint8)
    maps = PublishedMaps(segmentation=labels, depth=depth, normals=normals_map(),
                         edges=edges * 255)
    truth = GroundTruth(segmentation=labels, depth=depth, normals=normals_map(), edges=edges)
    metrics = FrameScorer(metadata()).score(0, 0, maps, truth)
    assert metrics["semseg"]["miou"] == 1.0
    assert metrics["semseg"]["pixel_acc"] == 1.0
    assert metrics["depth"]["rmse"] == 0.0
    assert metrics["depth"]["abs_rel"] == 0.0
    assert metrics["depth"]["delta1"] == 1.0
    assert metrics["depth"]["coverage"] == 1.0
    assert metrics["normals"]["mean"] == 0.0
    assert metrics["edges"]["f1"] == 1.0


def test_segmentation_with_two_wrong_pixels():
    truth = np.array([[0, 0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1], [2, 2, 2, 2]], dtype=np.uint8)
    pred = truth.copy()
    pred[0, 0] = 1  # a wall pixel called floor
    pred[3, 3] = 1  # a chair pixel called floor
    metrics = FrameScorer(metadata()).score(
        0, 0, PublishedMaps(segmentation=pred), GroundTruth(segmentation=truth))["semseg"]
    # IoU: wall 5/(6+5-5) = 5/6, floor 6/(8+6-6) = 6/8, chair 3/(3+4-3) = 3/4.
    assert metrics["miou"] == pytest.approx((5 / 6 + 3 / 4 + 3 / 4) / 3)
    assert metrics["pixel_acc"] == pytest.approx(14 / 16)
    assert metrics["mean_class_acc"] == pytest.approx((5 / 6 + 1 + 3 / 4) / 3)


def test_ignored_ground_truth_pixels_are_not_counted():
    truth = np.array([[0, 1], [IGNORE_INDEX, IGNORE_INDEX]], dtype=np.uint8)
    pred = np.array([[0, 1], [2, 2]], dtype=np.uint8)
    metrics = FrameScorer(metadata()).score(
        0, 0, PublishedMaps(segmentation=pred), GroundTruth(segmentation=truth))["semseg"]
    assert metrics["miou"] == 1.0  # chair is in neither counted truth nor counted prediction


def test_depth_off_by_half_on_half_the_pixels():
    target = np.full((4, 4), 2.0)
    pred = target.copy()
    pred[:2] = 3.0  # 1.5 x the truth: |error| 1 m, relative error 0.5, ratio 1.5 > 1.25
    metrics = FrameScorer(metadata()).score(0, 0, *depth_frame(pred, target))["depth"]
    assert metrics["abs_rel"] == pytest.approx(0.25)
    assert metrics["sq_rel"] == pytest.approx(0.25)  # (1 m)^2 / 2 m on half the pixels
    assert metrics["rmse"] == pytest.approx(math.sqrt(0.5))
    assert metrics["delta1"] == pytest.approx(0.5)
    assert metrics["delta2"] == 1.0
    assert metrics["coverage"] == 1.0


def test_nan_predictions_are_excluded_and_coverage_counts_them():
    target = np.full((4, 4), 2.0)
    target[3, 3] = np.nan  # invalid truth: neither scored nor counted in coverage
    target[3, 2] = 0.0  # invalid truth too
    pred = target.copy()
    pred[0, :3] = np.nan  # 3 valid truth pixels without a prediction
    pred[3, 3] = np.nan
    pred[1:3] = 3.0  # the 8 remaining scored pixels of rows 1-2 off by 1.5x, 3 scored are exact
    scorer = FrameScorer(metadata())
    metrics = scorer.score(0, 0, *depth_frame(pred, target))["depth"]
    assert metrics["coverage"] == pytest.approx(11 / 14)
    assert metrics["abs_rel"] == pytest.approx(8 * 0.5 / 11)
    assert metrics["rmse"] == pytest.approx(math.sqrt(8 / 11))
    nothing_predicted = scorer.score(1, 0, *depth_frame(np.full((2, 2), np.nan),
                                                        np.full((2, 2), 2.0)))
    assert nothing_predicted["depth"]["coverage"] == 0.0
    assert math.isnan(nothing_predicted["depth"]["rmse"])
    dataset = scorer.metrics()["depth"]
    assert dataset["coverage"] == pytest.approx(11 / 18)
    assert dataset["abs_rel"] == pytest.approx(8 * 0.5 / 11)  # the empty frame is not an image


def test_zero_ground_truth_normals_are_ignored():
    pred = normals_map()
    pred[0] = RIGHT  # 4 pixels at 90 degrees
    pred[3, 3] = RIGHT  # wrong too, but its ground truth is invalid
    truth = normals_map()
    truth[3, 2:] = 0.0
    metrics = FrameScorer(metadata()).score(
        0, 0, PublishedMaps(normals=pred), GroundTruth(normals=truth))["normals"]
    assert metrics["mean"] == pytest.approx(90 * 4 / 14)


def test_normals_quarter_rotated_mean_median_rmse():
    pred = normals_map()
    pred[:, 0] = RIGHT  # 4 of 16 pixels at 90 degrees
    metrics = FrameScorer(metadata()).score(
        0, 0, PublishedMaps(normals=pred), GroundTruth(normals=normals_map()))["normals"]
    assert metrics["mean"] == pytest.approx(22.5)
    assert metrics["median"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["rmse"] == pytest.approx(45.0)  # sqrt(90^2 / 4)
    assert metrics["within_11_25"] == pytest.approx(75.0)


def test_edges_are_scored_from_0_255_maps_against_0_1_truth():
    truth = np.zeros((4, 4), dtype=np.uint8)
    truth[1, :] = 1
    pred = np.zeros((4, 4), dtype=np.uint8)
    pred[1, :2] = 255
    pred[1, 2] = 127  # 127/255 < 0.5: not an edge; 128/255 would be
    pred[2, 0] = 128  # a false edge
    metrics = FrameScorer(metadata()).score(
        0, 0, PublishedMaps(edges=pred), GroundTruth(edges=truth))["edges"]
    # edge: TP 2, FN 2, FP 1 -> 4/7; background: TP 11, FN 1, FP 2 -> 22/25.
    assert metrics["f1"] == pytest.approx((4 / 7 + 22 / 25) / 2)


def test_float_edges_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        FrameScorer(metadata()).score(0, 0, PublishedMaps(edges=np.zeros((2, 2), np.float32)),
                                      GroundTruth(edges=np.zeros((2, 2), np.uint8)))


def test_shape_mismatch_names_both_shapes_and_accumulates_nothing():
    scorer = FrameScorer(metadata())
    labels = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match=r"depth.*\(4, 5\).*\(4, 4\)"):
        scorer.score(0, 0, PublishedMaps(segmentation=labels, depth=np.ones((4, 5), np.float32)),
                     GroundTruth(segmentation=labels, depth=np.ones((4, 4), np.float32)))
    assert scorer.frames == [] and scorer.frames_scored()["semseg"] == 0


def test_tasks_without_both_sides_are_not_scored_and_empty_frames_are_skipped():
    scorer = FrameScorer(metadata(tasks=("semseg", "depth")))
    labels = np.zeros((2, 2), np.uint8)
    metrics = scorer.score(7, 70, PublishedMaps(segmentation=labels, depth=np.ones((2, 2))),
                           GroundTruth(segmentation=labels, normals=normals_map(2, 2)))
    assert set(metrics) == {"semseg"}
    assert scorer.score(8, 80, PublishedMaps(depth=np.ones((2, 2))), GroundTruth()) == {}
    assert scorer.frames_scored() == {"semseg": 1, "depth": 0}
    assert [(s.index, s.stamp_ns, s.reason) for s in scorer.skipped] == [(8, 80, NOTHING_TO_SCORE)]
    assert set(scorer.metrics()) == {"semseg"}


def test_a_task_whose_ground_truth_has_no_valid_pixel_is_not_scored():
    """Labels all outside the model's classes (ignored), depth all out of range, zero normals:
    no number to report, so the task is not scored there; a frame left with none is skipped."""
    scorer = FrameScorer(metadata(tasks=("semseg", "depth", "normals")))
    labels = np.zeros((2, 2), np.uint8)
    ignored = np.full((2, 2), IGNORE_INDEX, np.uint8)
    maps = PublishedMaps(segmentation=labels, depth=np.ones((2, 2), np.float32),
                         normals=normals_map(2, 2))
    metrics = scorer.score(0, 0, maps, GroundTruth(segmentation=ignored,
                                                   depth=np.full((2, 2), 2.0, np.float32)))
    assert set(metrics) == {"depth"}
    assert scorer.score(1, 10, maps, GroundTruth(
        segmentation=ignored, depth=np.full((2, 2), 50.0, np.float32),
        normals=np.zeros((2, 2, 3), np.float32))) == {}
    assert scorer.frames_scored() == {"semseg": 0, "depth": 1, "normals": 0}
    assert [(s.index, s.reason) for s in scorer.skipped] == [(1, NO_VALID_TRUTH)]
    assert set(scorer.metrics()) == {"depth"}
    # No prediction where the ground truth is valid is a result (coverage 0), not nothing.
    metrics = scorer.score(2, 20, PublishedMaps(depth=np.full((2, 2), np.nan, np.float32)),
                           GroundTruth(depth=np.full((2, 2), 2.0, np.float32)))
    assert metrics["depth"]["coverage"] == 0.0 and math.isnan(metrics["depth"]["rmse"])


def test_dataset_metrics_equal_meters_fed_every_frame():
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(3):
        target_labels = rng.integers(0, 3, (6, 8)).astype(np.uint8)
        truth = GroundTruth(
            segmentation=target_labels,
            depth=rng.uniform(0.5, 9.0, (6, 8)).astype(np.float32),
            normals=rng.normal(size=(6, 8, 3)).astype(np.float32),
            edges=(rng.random((6, 8)) < 0.2).astype(np.uint8))
        noisy = np.where(rng.random((6, 8)) < 0.3, rng.integers(0, 3, (6, 8)), target_labels)
        maps = PublishedMaps(
            segmentation=noisy.astype(np.uint8),
            depth=(truth.depth * rng.uniform(0.7, 1.3, (6, 8))).astype(np.float32),
            normals=truth.normals + rng.normal(scale=0.3, size=(6, 8, 3)).astype(np.float32),
            edges=rng.integers(0, 256, (6, 8)).astype(np.uint8))
        frames.append((maps, truth))
    scorer = FrameScorer(metadata())
    per_frame = [scorer.score(i, i, maps, truth) for i, (maps, truth) in enumerate(frames)]

    def stack(side, field, dtype):
        return torch.from_numpy(np.stack([getattr(f[side], field) for f in frames]).astype(dtype))

    expected = {"semseg": SegmentationMeter(3), "depth": DepthMeter(max_depth=10.0),
                "normals": NormalsMeter(), "edges": EdgeMeter()}
    expected["semseg"].update(stack(0, "segmentation", np.int64),
                              stack(1, "segmentation", np.int64))
    expected["depth"].update(stack(0, "depth", np.float32), stack(1, "depth", np.float32))
    expected["normals"].update(stack(0, "normals", np.float32).permute(0, 3, 1, 2),
                               stack(1, "normals", np.float32).permute(0, 3, 1, 2))
    expected["edges"].update(stack(0, "edges", np.float32) / 255, stack(1, "edges", np.uint8))
    dataset = scorer.metrics()
    for task, meter in expected.items():
        assert dataset[task] == pytest.approx({**meter.compute(), **(
            {"coverage": 1.0} if task == "depth" else {})}), task
    mean_of_frames = np.mean([m["semseg"]["miou"] for m in per_frame])
    assert abs(dataset["semseg"]["miou"] - mean_of_frames) > 1e-6  # confusion matrix, not mean


# -- Label mapping -------------------------------------------------------------------------------

def test_inline_mapping_with_ids_and_class_names():
    mapping = LabelMapping.parse(" 3:1, 4:2,7:floor ", 3, CLASS_NAMES)
    assert mapping.pairs == {3: 1, 4: 2, 7: 1}
    labels = np.array([[3, 4, 7, 0], [65535, 250, 1, 7]], dtype=np.uint16)
    assert mapping.apply(labels).tolist() == [[1, 2, 1, 250], [250, 250, 250, 1]]
    assert mapping.apply(labels).dtype == np.uint8


def test_mapping_files(tmp_path):
    yaml_file = tmp_path / "map.yaml"
    yaml_file.write_text("3: 1\n5: chair\n12: 0\n")
    json_file = tmp_path / "map.json"
    json_file.write_text('{"3": 1, "5": "chair"}')
    assert LabelMapping.parse(str(yaml_file), 3, CLASS_NAMES).pairs == {3: 1, 5: 2, 12: 0}
    assert LabelMapping.parse(json_file, 3, CLASS_NAMES).pairs == {3: 1, 5: 2}


def test_identity_mapping_ignores_unknown_ids():
    labels = np.array([0, 1, 2, 3, 250, 255], dtype=np.int32)
    assert LabelMapping.identity(3).apply(labels).tolist() == [0, 1, 2, 250, 250, 250]


@pytest.mark.parametrize("spec, message", [
    ("3-1", "bad label mapping entry '3-1'"),
    ("3:1,", "bad label mapping entry ''"),
    ("x:1", "dataset id 'x'"),
    ("3:1,3:2", "mapped twice"),
    ("3:3", r"model id 3 .*\[0, 3\)"),
    ("3:sofa", "unknown class name 'sofa'.*wall, floor, chair"),
    ("70000:1", "outside"),
    ("missing.yaml", "does not exist"),
])
def test_bad_mappings_are_refused_clearly(spec, message):
    with pytest.raises(ValueError, match=message):
        LabelMapping.parse(spec, 3, CLASS_NAMES)


def test_mapping_file_must_hold_a_mapping(tmp_path):
    path = tmp_path / "map.yml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        LabelMapping.parse(path, 3)


def test_labels_outside_uint16_are_refused():
    with pytest.raises(ValueError, match="65535"):
        LabelMapping.identity(3).apply(np.array([-1, 2]))


# -- Stamp matching ------------------------------------------------------------------------------

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000  # a realistic epoch stamp: differences must not overflow


def test_match_with_jitter_and_missing_ground_truth():
    images = [T0 + i * 33 * MS for i in range(5)]
    truth = [images[0] + 3 * MS, images[1] - 3 * MS, images[3] + 2 * MS, images[4] - 1 * MS]
    assert match_by_stamp(images, truth, 5 * MS) == [0, 1, None, 2, 3]


def test_match_tolerance_is_inclusive():
    assert match_by_stamp([T0], [T0 + 5 * MS], 5 * MS) == [0]
    assert match_by_stamp([T0], [T0 + 5 * MS + 1], 5 * MS) == [None]
    assert match_by_stamp([T0, T0 + 1], [T0], 0) == [0, None]


def test_match_ties_go_to_the_earlier_message():
    assert match_by_stamp([T0 + 10], [T0 + 15, T0 + 5], 10) == [1]
    assert match_by_stamp([T0 + 10], [T0 + 12, T0 + 12, T0 + 30], 10) == [0]
    assert match_by_stamp([T0 + 10], [T0 + 30, T0 + 8, T0 + 8], 10) == [1]


def test_match_unsorted_inputs_and_out_of_range_images():
    truth = [T0 + 200, T0 + 0, T0 + 100]
    images = [T0 + 101, T0 - 4, T0 + 205, T0 + 1000]
    assert match_by_stamp(images, truth, 5) == [2, 1, 0, None]
    assert match_by_stamp(images, [], 5) == [None] * 4
    with pytest.raises(ValueError):
        match_by_stamp(images, truth, -1)


def test_equal_stamps_pair_by_message_order_when_as_many_share_them():
    pairs = pair_by_stamp([0, 0, 0], [0, 0, 0], 5 * MS)
    assert pairs.indices == [0, 1, 2] and pairs.by_order == {0, 1, 2} and not pairs.ambiguous
    # Two frames stamped alike among distinct ones, and their ground truth likewise.
    images = [T0, T0 + 100 * MS, T0 + 100 * MS, T0 + 300 * MS]
    truth = [T0 + 1 * MS, T0 + 100 * MS, T0 + 100 * MS, T0 + 299 * MS]
    pairs = pair_by_stamp(images, truth, 5 * MS)
    assert pairs.indices == [0, 1, 2, 3] and pairs.by_order == {1, 2}


def test_equal_stamps_in_other_numbers_leave_the_images_without_ground_truth():
    """Never a neighbour's ground truth: with all stamps 0 and one message missing, nearest
    stamp matching gave every image the first message."""
    assert match_by_stamp([0, 0, 0], [0, 0], 5 * MS) == [0, 0, 0]
    pairs = pair_by_stamp([0, 0, 0], [0, 0], 5 * MS)
    assert pairs.indices == [None] * 3 and pairs.ambiguous == {0, 1, 2} and not pairs.by_order
    pairs = pair_by_stamp([T0, T0, T0 + 100 * MS], [T0, T0 + 100 * MS], 5 * MS)  # two images
    assert pairs.indices == [None, None, 1] and pairs.ambiguous == {0, 1}
    pairs = pair_by_stamp([T0, T0 + 100 * MS], [T0, T0, T0 + 100 * MS], 5 * MS)  # two truths
    assert pairs.indices == [None, 2] and pairs.ambiguous == {0}


def test_unreadable_stamps_pair_with_nothing():
    pairs = pair_by_stamp([None, T0, None], [None, T0, None], 5 * MS)
    assert pairs.indices == [None, 1, None] and not pairs.ambiguous and not pairs.by_order


# -- Reports -------------------------------------------------------------------------------------

def scored_session():
    scorer = FrameScorer(metadata(tasks=("semseg", "depth")))
    labels = np.array([[0, 1], [2, 2]], dtype=np.uint8)
    scorer.score(0, T0, PublishedMaps(segmentation=labels, depth=np.full((2, 2), 2.0)),
                 GroundTruth(segmentation=labels, depth=np.full((2, 2), 4.0)))
    scorer.score(1, T0 + 33 * MS, PublishedMaps(depth=np.full((2, 2), np.nan)),
                 GroundTruth(depth=np.full((2, 2), 4.0)))  # nothing predicted: errors unknown
    for index in range(2, 7):
        scorer.skip(index, T0 + index * 33 * MS, "no ground truth within tolerance")
    scorer.skip(7, T0 + 7 * 33 * MS, "bad image encoding")
    return scorer


def test_summary_and_written_report_round_trip(tmp_path):
    report = summary(scored_session(), latencies_ms=[10.0, 20.0, 30.0, 40.0],
                     source={"checkpoint": "model.safetensors", "bag": "run1"})
    assert report["format"] == REPORT_FORMAT and report["format_version"] == 2
    assert report["metrics"]["depth"]["abs_rel"] == pytest.approx(0.5)
    assert report["frames_scored"] == {"semseg": 1, "depth": 2}
    assert report["frames"][1]["metrics"]["depth"]["rmse"] is None  # no pixel to average: null
    assert report["frames"][1]["metrics"]["depth"]["coverage"] == 0.0
    assert report["metrics"]["depth"]["coverage"] == 0.5
    assert report["skipped"]["counts"] == {"no ground truth within tolerance": 5,
                                           "bad image encoding": 1}
    assert [e["index"] for e in report["skipped"]["examples"]] == [2, 3, 4, 7]
    timing = report["timing"]
    assert (timing["latency_ms_p50"], timing["latency_ms_p95"]) == pytest.approx((25.0, 38.5))
    assert timing["fps"] == pytest.approx(40.0)

    json_path, csv_path = write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text()) == report
    with csv_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:4] == ["index", "stamp_ns", "semseg_miou", "semseg_pixel_acc"]
    assert "depth_coverage" in rows[0] and len(rows) == 3
    assert rows[1][:3] == ["0", str(T0), "1.0"]
    assert rows[2][rows[0].index("semseg_miou")] == ""  # segmentation not scored in frame 1
    assert rows[2][rows[0].index("depth_rmse")] == ""  # null
    assert rows[2][rows[0].index("depth_coverage")] == "0.0"


def test_written_reports_hold_no_nan_anywhere(tmp_path):
    """Not only metrics: any figure a report carries may be NaN or infinite (a live run's
    difference of two unknowns, a rate over no time); JSON and CSV get null and an empty cell."""
    report = summary(scored_session(), source={"bag": "run1"})
    report["live"] = {"agreement": {"largest_difference": math.nan}, "rates": [1.0, math.inf]}
    report["frames"][0]["metrics"]["depth"]["rmse"] = -math.inf
    json_path, csv_path = write_report(report, tmp_path / "out")
    written = strict_json(json_path.read_text())
    assert written["live"] == {"agreement": {"largest_difference": None}, "rates": [1.0, None]}
    assert written["frames"][0]["metrics"]["depth"]["rmse"] is None
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["depth_rmse"] == "" and "nan" not in csv_path.read_text().lower()


def test_summary_without_latencies_has_no_timing():
    assert summary(scored_session())["timing"] is None


def test_worst_and_best_for_a_lower_is_better_metric():
    frames = [FrameScore(i, 0, {"depth": {"rmse": rmse}})
              for i, rmse in zip((10, 11, 12, 13, 14), (0.5, 0.1, 0.9, math.nan, 0.3))]
    frames.append(FrameScore(15, 0, {"semseg": {"miou": 0.2}}))
    assert worst_and_best(frames, "depth", 2) == ([12, 10], [11, 14])


def test_worst_and_best_for_a_higher_is_better_metric():
    frames = [FrameScore(i, 0, {"semseg": {"miou": miou}})
              for i, miou in enumerate((0.5, 0.9, 0.1))]
    assert worst_and_best(frames, "semseg", 1) == ([2], [1])


def test_frame_mosaic_shows_every_task_with_invalid_depth_black():
    rgb = np.full((8, 12, 3), 128, dtype=np.uint8)
    labels = np.zeros((8, 12), np.uint8)
    depth = np.full((8, 12), 3.0, np.float32)
    depth[0, 0] = np.nan
    maps = PublishedMaps(segmentation=labels, depth=depth, normals=normals_map(8, 12),
                         edges=np.full((8, 12), 255, np.uint8))
    truth = GroundTruth(segmentation=labels, depth=depth)
    picture = frame_mosaic(rgb, maps, truth, metadata())
    # 5 rows (input, 4 tasks) of 14 px caption + 8 px tile + 2 px gap; widest row 2 tiles + gap.
    assert picture.shape == (5 * 24, 12 + 2 + 12, 3) and picture.dtype == np.uint8
    depth_row = 2 * 24 + 14
    assert picture[depth_row, 0].tolist() == [0, 0, 0]  # the NaN pixel
    assert picture[depth_row, 1].tolist() != [0, 0, 0]
    assert picture[24 + 14, 0].tolist() == list(CLASS_COLORS[0])
    assert picture[4 * 24 + 14, 0].tolist() == [255, 255, 255]  # edge probability 1
