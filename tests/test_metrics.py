import math

import numpy as np
import pytest
import torch

from densemtl_core.config import ModelConfig
from densemtl_core.depth_coding import encode_inverse_depth
from densemtl_core.labels import IGNORE_INDEX
from densemtl_core.metrics import (
    DepthMeter,
    EdgeMeter,
    NormalsMeter,
    SegmentationMeter,
    thin_edges,
)
from densemtl_core.tasks import TASKS, delta_m

NAN = math.nan


def approx(expected: dict[str, float], rel=1e-9, abs=1e-9):
    return pytest.approx(expected, rel=rel, abs=abs)


# --- semantic segmentation ------------------------------------------------------------------


def test_segmentation_hand_computed_with_ignored_pixel_and_absent_class():
    meter = SegmentationMeter(num_classes=3)
    # The ignored pixel is predicted as class 2, which must not create a false positive.
    meter.update(torch.tensor([[[0, 1], [1, 2]]]), torch.tensor([[[0, 0], [1, IGNORE_INDEX]]]))
    assert meter.compute() == approx({"miou": 0.5, "pixel_acc": 2 / 3, "mean_class_acc": 0.75})
    iou = meter.per_class_iou()
    assert iou[:2] == [0.5, 0.5] and math.isnan(iou[2])


def test_segmentation_accumulates_the_confusion_matrix_not_per_batch_means():
    first = (torch.tensor([[[0, 0, 0, 0]]]), torch.tensor([[[0, 0, 0, 1]]]))  # mIoU 0.375
    second = (torch.tensor([[[1, 1, 1, 1]]]), torch.tensor([[[1, 1, 1, 1]]]))  # mIoU 1
    meter = SegmentationMeter(num_classes=2)
    meter.update(*first)
    meter.update(*second)
    # Dataset: IoU_0 = 3 / 4, IoU_1 = 4 / 5; the mean of the batch mIoUs would be 0.6875.
    assert meter.compute()["miou"] == pytest.approx(0.775)
    concatenated = SegmentationMeter(num_classes=2)
    concatenated.update(torch.cat([first[0], second[0]]), torch.cat([first[1], second[1]]))
    assert concatenated.compute() == approx(meter.compute())


def test_segmentation_rejects_labels_outside_the_classes():
    with pytest.raises(ValueError, match="class ids"):
        SegmentationMeter(num_classes=2).update(torch.tensor([[0]]), torch.tensor([[2]]))


# --- depth ----------------------------------------------------------------------------------

# Image A: three valid pixels (the zero is invalid). Image B: 100 m is beyond max_depth and is
# ignored, and the prediction 100 for target 50 is clamped to 80. Image C: nothing valid.
DEPTH_PRED = torch.tensor([[[2.0, 2.0], [2.0, 5.0]],
                           [[1.5, 1.0], [7.0, 100.0]],
                           [[1.0, 1.0], [1.0, 1.0]]])
DEPTH_TARGET = torch.tensor([[[1.0, 2.0], [4.0, 0.0]],
                             [[1.0, 1.0], [100.0, 50.0]],
                             [[0.0, 0.0], [0.0, 0.0]]])
LN2, LN15, LN16 = math.log(2.0), math.log(1.5), math.log(1.6)
DEPTH_EXPECTED = {
    "abs_rel": ((1 + 0 + 0.5) / 3 + (0.5 + 0 + 30 / 50) / 3) / 2,
    "sq_rel": ((1 + 0 + 4 / 4) / 3 + (0.25 + 0 + 900 / 50) / 3) / 2,
    "rmse": math.sqrt(((1 + 0 + 4) / 3 + (0.25 + 0 + 900) / 3) / 2),
    "rmse_log": math.sqrt(((2 * LN2 ** 2) / 3 + (LN15 ** 2 + LN16 ** 2) / 3) / 2),
    "delta1": (1 / 3 + 1 / 3) / 2,  # ratios A: 2, 1, 2; B: 1.5, 1, 1.6
    "delta2": (1 / 3 + 2 / 3) / 2,
    "delta3": (1 / 3 + 1) / 2,
}


def test_depth_hand_computed_per_image_then_averaged_over_valid_images():
    meter = DepthMeter(max_depth=80.0)
    meter.update(DEPTH_PRED[:, None], DEPTH_TARGET[:, None])
    assert meter.compute() == approx(DEPTH_EXPECTED)


def test_depth_accumulates_images_not_per_batch_means():
    split = DepthMeter()
    split.update(DEPTH_PRED[[0, 1]], DEPTH_TARGET[[0, 1]])
    split.update(DEPTH_PRED[[1, 2]], DEPTH_TARGET[[1, 2]])
    # Valid images A, B, B: a mean over images, whereas per-batch means would weigh A by 1/4.
    abs_rel_a, abs_rel_b = 1.5 / 3, 1.1 / 3
    assert split.compute()["abs_rel"] == pytest.approx((abs_rel_a + 2 * abs_rel_b) / 3)
    together = DepthMeter()
    together.update(DEPTH_PRED[[0, 1, 1, 2]], DEPTH_TARGET[[0, 1, 1, 2]])
    assert split.compute() == approx(together.compute())


def test_depth_median_scaling():
    pred, target = torch.tensor([[[1.0, 2.0, 3.0]]]), torch.tensor([[[2.0, 4.0, 6.0]]])
    plain, scaled = DepthMeter(), DepthMeter(median_scaling=True)
    plain.update(pred, target)
    scaled.update(pred, target)
    assert plain.compute()["abs_rel"] == pytest.approx(0.5)
    assert scaled.compute()["abs_rel"] == pytest.approx(0.0)


def test_depth_without_valid_pixels_is_nan():
    meter = DepthMeter()
    meter.update(torch.ones(1, 2, 2), torch.zeros(1, 2, 2))
    assert all(math.isnan(value) for value in meter.compute().values())


def test_paper_compat_scores_a_perfect_prediction_perfectly():
    """Only the prediction used to be decoded 0.99 m short, so a perfect one scored RMSE 0.97."""
    cfg = ModelConfig(tasks=("depth",), max_depth=80.0, paper_compat=True)
    target = torch.tensor([[[[0.0, 0.5, 1.5, 2.0], [5.0, 10.0, 40.0, 79.0]]]])
    meter = TASKS["depth"].make_meter(cfg)
    decoded = TASKS["depth"].decode(encode_inverse_depth(target), cfg)
    TASKS["depth"].update_meter(meter, decoded, target)
    scores = meter.compute()
    assert scores["rmse"] < 1e-4 and scores["abs_rel"] < 1e-5
    assert scores["delta1"] == 1.0


def test_paper_compat_masks_and_clamps_on_the_released_codes_depth():
    """Both maps are decoded 655.36 / d - 1 (0.99 m short); the range mask and the clamp apply to
    that depth, as in the released code."""
    meter = DepthMeter(max_depth=80.0, paper_compat=True)
    # Targets: 0.5 m is -0.49 m there (out), 2 m -> 1.01, 80.5 m -> 79.51 (in), 81.5 m -> 80.51
    # (out), 0 is invalid. The prediction 85 m -> 84.01 is clamped to 80.
    pred = torch.tensor([[[1.0, 3.0, 85.0, 50.0, 7.0]]], dtype=torch.float64)
    target = torch.tensor([[[0.5, 2.0, 80.5, 81.5, 0.0]]], dtype=torch.float64)
    meter.update(pred, target)
    assert meter.compute() == approx({
        "abs_rel": (1.0 / 1.01 + 0.49 / 79.51) / 2,
        "sq_rel": (1.0 / 1.01 + 0.49 ** 2 / 79.51) / 2,
        "rmse": math.sqrt((1.0 + 0.49 ** 2) / 2),
        "rmse_log": math.sqrt((math.log(2.01 / 1.01) ** 2 + math.log(80 / 79.51) ** 2) / 2),
        "delta1": 0.5, "delta2": 0.5, "delta3": 0.5,  # ratios 1.99 and 1.006
    }, rel=1e-6, abs=1e-9)


# --- normals --------------------------------------------------------------------------------


def at_angle(degrees: float, length: float = 1.0) -> list[float]:
    """A vector at ``degrees`` from the camera-facing normal (0, 0, -1)."""
    theta = math.radians(degrees)
    return [length * math.sin(theta), 0.0, -length * math.cos(theta)]


def normals_image(vectors: list[list[float]]) -> torch.Tensor:
    """Four 3-vectors -> 3x2x2 in row-major pixel order."""
    return torch.tensor(vectors).T.reshape(3, 2, 2)


def test_normals_hand_computed_with_invalid_pixels():
    wall, invalid = at_angle(0), [0.0, 0.0, 0.0]
    # Image 1: errors 0 (unnormalised prediction), 20, 90 and an invalid pixel; image 2: one
    # valid pixel at 25 degrees; image 3: nothing valid.
    pred = torch.stack([
        normals_image([at_angle(0, 5.0), at_angle(20), [0.0, 1.0, 0.0], at_angle(45)]),
        normals_image([at_angle(25), at_angle(60), at_angle(60), at_angle(60)]),
        normals_image([at_angle(60)] * 4),
    ])
    target = torch.stack([
        normals_image([wall, wall, wall, invalid]),
        normals_image([wall, invalid, invalid, invalid]),
        normals_image([invalid] * 4),
    ])
    meter = NormalsMeter()
    meter.update(pred, target)
    assert meter.compute() == approx({
        "mean": ((0 + 20 + 90) / 3 + 25) / 2,
        "median": (20 + 25) / 2,
        "rmse": math.sqrt(((0 + 400 + 8100) / 3 + 625) / 2),
        "within_11_25": (100 / 3 + 0) / 2,
        "within_22_5": (200 / 3 + 0) / 2,
        "within_30": (200 / 3 + 100) / 2,
    }, rel=1e-6, abs=1e-6)


# --- edges ----------------------------------------------------------------------------------


def test_edge_f1_is_the_mean_of_background_and_edge_f1():
    meter = EdgeMeter()
    meter.update(torch.tensor([[[0.9, 0.6], [0.2, 0.1]]]), torch.tensor([[[1, 0], [0, 0]]]))
    # Edge: TP 1, FP 1, FN 0 -> 2/3. Background: TP 2, FP 0, FN 1 -> 4/5.
    assert meter.compute()["f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)


def vertical_lines(values_by_column: dict[int, float], size: int = 8) -> torch.Tensor:
    image = torch.zeros(1, size, size)
    for column, value in values_by_column.items():
        image[..., column] = value
    return image


def test_ods_tolerates_a_one_pixel_shift_only_with_a_tolerance():
    target = vertical_lines({3: 1}).long()
    shifted = vertical_lines({4: 0.9})
    scores = {}
    for tolerance in (0, 1, 2):
        meter = EdgeMeter(tolerance_px=tolerance)
        meter.update(shifted, target)
        scores[tolerance] = meter.compute()
    assert scores[1]["ods_f"] == pytest.approx(1.0)
    assert scores[2]["ods_f"] == pytest.approx(1.0)
    assert scores[1]["ods_threshold"] < 0.9
    assert scores[0]["ods_f"] == pytest.approx(0.0)
    assert scores[0]["f1"] < 0.5 < scores[1]["ods_f"]


def test_ods_sums_counts_over_the_dataset_before_picking_one_threshold():
    target = vertical_lines({3: 1}).long()
    first = vertical_lines({3: 0.7, 6: 0.4})  # a spurious line beyond the tolerance
    second = vertical_lines({3: 0.4})
    meter = EdgeMeter(thresholds=[0.3, 0.5, 0.8], tolerance_px=1)
    meter.update(first, target)
    meter.update(second, target)
    # t = 0.3: P = 16/24, R = 16/16 -> F = 0.8. t = 0.5: P = 8/8, R = 8/16 -> 2/3. t = 0.8: 0.
    result = meter.compute()
    assert result["ods_f"] == pytest.approx(0.8)
    assert result["ods_threshold"] == 0.3


def zhang_suen_reference(mask: np.ndarray) -> np.ndarray:
    """Pixel-by-pixel Zhang-Suen thinning, written from the algorithm's description."""
    image = np.pad(mask.astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for first_pass in (True, False):
            removable = []
            for r, c in zip(*np.nonzero(image)):
                p2, p3, p4, p5, p6, p7, p8, p9 = ring = [
                    image[r - 1, c], image[r - 1, c + 1], image[r, c + 1], image[r + 1, c + 1],
                    image[r + 1, c], image[r + 1, c - 1], image[r, c - 1], image[r - 1, c - 1]]
                rises = sum(ring[i] == 0 and ring[(i + 1) % 8] == 1 for i in range(8))
                if first_pass:
                    side = p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0
                else:
                    side = p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0
                if 2 <= sum(ring) <= 6 and rises == 1 and side:
                    removable.append((r, c))
            for r, c in removable:
                image[r, c] = 0
            changed |= bool(removable)
    return image[1:-1, 1:-1].astype(bool)


def test_thinning_matches_a_per_pixel_zhang_suen():
    rng = np.random.default_rng(0)
    masks = [rng.random((int(h), int(w))) < density
             for h, w, density in zip(rng.integers(3, 12, 20), rng.integers(3, 12, 20),
                                      rng.uniform(0.3, 0.9, 20))]
    for mask in masks:
        assert np.array_equal(thin_edges(torch.from_numpy(mask)).numpy(),
                              zhang_suen_reference(mask))


def test_thinning_reduces_a_thick_band_to_its_centre_line():
    band = torch.zeros(1, 9, 9, dtype=torch.bool)
    band[:, 1:8, 3:6] = True
    expected = torch.zeros_like(band)
    expected[:, 2:6, 4] = True  # Zhang-Suen also shortens the ends
    assert torch.equal(thin_edges(band), expected)
    line = torch.zeros(1, 9, 9, dtype=torch.bool)
    line[:, 1:8, 4] = True
    assert torch.equal(thin_edges(line), line)


def test_thinning_restores_precision_on_a_thick_prediction():
    target = vertical_lines({4: 1}, size=9).long()
    thick = vertical_lines({3: 0.9, 4: 0.9, 5: 0.9}, size=9)
    plain, thinned = EdgeMeter(tolerance_px=0), EdgeMeter(tolerance_px=0, thin=True)
    plain.update(thick, target)
    thinned.update(thick, target)
    assert plain.compute()["ods_f"] == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))  # P 1/3, R 1
    # Thinned to the centre column minus three end pixels: P = 1, R = 6/9.
    assert thinned.compute()["ods_f"] == pytest.approx(0.8)


# --- distributed merging --------------------------------------------------------------------


def _random_segmentation(generator):
    target = torch.randint(0, 4, (6, 8, 8), generator=generator)
    target[target == 3] = IGNORE_INDEX
    return torch.randint(0, 4, (6, 8, 8), generator=generator), target


def _random_depth(generator):
    target = torch.rand(6, 1, 8, 8, generator=generator) * 100
    target[:, :, :2] = 0
    target[5] = 0
    return torch.rand(6, 1, 8, 8, generator=generator) * 90, target


def _random_normals(generator):
    target = torch.nn.functional.normalize(torch.randn(6, 3, 8, 8, generator=generator), dim=1)
    target[:, :, :3] = 0
    return torch.randn(6, 3, 8, 8, generator=generator), target


def _random_edges(generator):
    target = (torch.rand(6, 8, 8, generator=generator) > 0.8).long()
    return torch.rand(6, 8, 8, generator=generator), target


@pytest.mark.parametrize("make_meter, make_data", [
    (lambda: SegmentationMeter(num_classes=4), _random_segmentation),
    (lambda: DepthMeter(median_scaling=True), _random_depth),
    (NormalsMeter, _random_normals),
    (lambda: EdgeMeter(thresholds=5, tolerance_px=1, thin=True), _random_edges),
])
def test_summed_states_of_a_split_dataset_equal_the_state_of_the_whole(make_meter, make_data):
    pred, target = make_data(torch.Generator().manual_seed(0))
    whole, left, right, merged = make_meter(), make_meter(), make_meter(), make_meter()
    whole.update(pred, target)
    left.update(pred[:2], target[:2])
    right.update(pred[2:], target[2:])
    left_state, right_state = left.state(), right.state()
    merged.load_state({name: left_state[name] + right_state[name] for name in left_state})
    for name, value in whole.state().items():
        torch.testing.assert_close(merged.state()[name], value)
    assert merged.compute() == approx(whole.compute())
    merged.reset()
    assert all(not value.any() for value in merged.state().values())


def test_load_state_rejects_a_foreign_state():
    with pytest.raises(KeyError):
        DepthMeter().load_state(NormalsMeter().state())


# --- multi-task gain ------------------------------------------------------------------------


def test_delta_m_signs_follow_the_metric_direction():
    baselines = {"semseg": 40.0, "depth": 0.5}
    # mIoU +10 % (better) and RMSE -10 % (better) -> +10; a worse RMSE cancels the mIoU gain.
    assert delta_m({"semseg": 44.0, "depth": 0.45}, baselines) == pytest.approx(10.0)
    assert delta_m({"semseg": 44.0, "depth": 0.55}, baselines) == pytest.approx(0.0)
    assert delta_m({"semseg": 36.0, "depth": 0.55}, baselines) == pytest.approx(-10.0)
    flipped = {"semseg": False, "depth": True}
    assert delta_m({"semseg": 44.0, "depth": 0.45}, baselines, flipped) == pytest.approx(-10.0)
    with pytest.raises(KeyError, match="normals"):
        delta_m({"normals": 20.0}, baselines)


def test_main_metrics_name_keys_the_meters_produce():
    results = {
        "semseg": SegmentationMeter(2).compute(),
        "depth": DepthMeter().compute(),
        "normals": NormalsMeter().compute(),
        "edges": EdgeMeter().compute(),
    }
    for task, spec in TASKS.items():
        assert spec.main_metric in results[task]
    assert [TASKS[t].higher_is_better for t in ("semseg", "depth", "normals", "edges")] == [
        True, False, False, True]


def test_ods_counts_equal_the_per_threshold_definition():
    """The one-histogram counting gives, threshold by threshold, the textbook counts."""
    torch.manual_seed(3)
    prob = torch.rand(2, 17, 23)
    truth = torch.rand(2, 17, 23) > 0.85
    meter = EdgeMeter(thresholds=9, tolerance_px=1)
    meter.update(prob, truth.long())
    state = meter.state()
    pool = torch.nn.functional.max_pool2d
    def grow(mask):
        return pool(mask[:, None].float(), 3, stride=1, padding=1)[:, 0].bool()
    for i, threshold in enumerate(meter.thresholds):
        edges = prob >= threshold
        assert state["matched_pred"][i] == (edges & grow(truth)).sum()
        assert state["total_pred"][i] == edges.sum()
        assert state["matched_gt"][i] == (truth & grow(edges)).sum()
        assert state["total_gt"][i] == truth.sum()
