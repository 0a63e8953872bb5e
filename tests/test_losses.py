import math

import pytest
import torch
import torch.nn.functional as F

from densemtl_core.config import LossConfig
from densemtl_core.depth_coding import encode_inverse_depth
from densemtl_core.labels import IGNORE_INDEX
from densemtl_core.losses import (
    FixedWeighting,
    MultiTaskLoss,
    UncertaintyWeighting,
    build_weighting,
    resize_to_label,
)
from densemtl_core.tasks.depth import berhu_loss, depth_loss
from densemtl_core.tasks.edges import edge_loss
from densemtl_core.tasks.normals import normals_loss, unit_vectors
from densemtl_core.tasks.semseg import semseg_loss

LN2 = math.log(2.0)


# --- semantic segmentation ------------------------------------------------------------------


def test_semseg_loss_is_mean_cross_entropy_over_labelled_pixels():
    # Three pixels, two classes (C x 1 x 3 logits): CE = ln 2, ignored, ln 4.
    logits = torch.tensor([[[[0.0, 5.0, math.log(3.0)]], [[0.0, 0.0, 0.0]]]])
    target = torch.tensor([[[0, IGNORE_INDEX, 1]]])
    assert semseg_loss(logits, target).item() == pytest.approx((LN2 + 2 * LN2) / 2)


def test_semseg_loss_without_labelled_pixels_is_zero_with_a_gradient():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = semseg_loss(logits, torch.full((1, 2, 2), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


# --- depth ----------------------------------------------------------------------------------


def test_berhu_is_l1_below_c_and_quadratic_above_with_masked_pixels_counted_as_zero():
    target = torch.zeros(1, 1, 2, 3)
    pred = torch.tensor([[[[0.1, 0.5, 1.0], [0.0, 3.0, 2.0]]]])
    mask = torch.tensor([[[[1, 1, 1], [1, 0, 0]]]])
    # Masked errors 3 and 2 do not set c: c = 0.2 * 1.0. Branches: 0.1 (L1),
    # (0.25 + 0.04) / 0.4 = 0.725, (1 + 0.04) / 0.4 = 2.6, 0; mean over all 6 pixels.
    expected = (0.1 + 0.725 + 2.6 + 0.0) / 6
    assert berhu_loss(pred, target, mask).item() == pytest.approx(expected)


def test_berhu_is_continuous_at_the_threshold():
    target = torch.zeros(1, 1, 1, 2)
    # c = 0.2 * 5 = 1: the first pixel sits exactly at c, then just above it.
    at_c = berhu_loss(torch.tensor([[[[1.0, 5.0]]]]), target, torch.ones_like(target))
    above_c = berhu_loss(torch.tensor([[[[1.0 + 1e-4, 5.0]]]]), target, torch.ones_like(target))
    far = (25.0 + 1.0) / 2.0
    assert at_c.item() == pytest.approx((1.0 + far) / 2)
    assert above_c.item() == pytest.approx(at_c.item(), abs=1e-4)


def test_berhu_threshold_is_a_constant_for_the_gradient():
    target = torch.zeros(1, 1, 1, 2)
    pred = torch.tensor([[[[0.1, 1.0]]]], requires_grad=True)
    berhu_loss(pred, target, torch.ones_like(target)).backward()
    # d/dp of (p^2 + c^2) / (2c) at p = 1, c = 0.2 fixed, is p / c = 5; mean over 2 pixels.
    assert pred.grad.flatten().tolist() == pytest.approx([0.5, 2.5])


def test_berhu_of_a_perfect_prediction_is_zero_without_nan():
    pred = torch.ones(1, 1, 2, 2, requires_grad=True)
    loss = berhu_loss(pred, torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(pred.grad).all()


def test_depth_loss_encodes_metric_target_and_masks_invalid_depth():
    depth = torch.tensor([[[[1.0, 0.0]]]])
    code_1m = 65536.0 / 101.0
    pred = torch.tensor([[[[code_1m + 1.0, 12345.0]]]])
    # e = (1, 0) -> c = 0.2, loss = ((1 + 0.04) / 0.4 + 0) / 2 pixels.
    assert depth_loss(pred, depth).item() == pytest.approx(1.3, rel=1e-5)
    assert depth_loss(encode_inverse_depth(depth), depth).item() == 0.0


# --- normals and edges ----------------------------------------------------------------------


def pixels_to_image(rows):
    """Four 3-vectors (4x3) -> a 1x3x2x2 image in row-major pixel order."""
    return rows.T.reshape(1, 3, 2, 2)


def test_normals_loss_is_one_minus_cosine_over_valid_pixels():
    target = torch.tensor([[0, 0, -1], [0, 0, -1], [0, 0, -1], [0, 0, 0]], dtype=torch.float32)
    pred = torch.tensor([[0, 0, -2], [1, 0, 0], [1, 0, -1], [5, 5, 5]], dtype=torch.float32)
    expected = (0.0 + 1.0 + (1.0 - 1.0 / math.sqrt(2.0))) / 3
    assert normals_loss(pixels_to_image(pred), pixels_to_image(target)).item() == pytest.approx(
        expected)


def test_edge_loss_is_the_class_weighted_mean():
    # Two edge pixels with CE ln 2 (weight 0.95), one background pixel with CE ln 4 (weight 0.05).
    logits = torch.tensor([[[[0.0, 0.0, 0.0]], [[0.0, 0.0, math.log(3.0)]]]])
    target = torch.tensor([[[1, 1, 0]]])
    expected = (0.95 * LN2 * 2 + 0.05 * 2 * LN2) / (0.95 * 2 + 0.05)
    assert edge_loss(logits, target).item() == pytest.approx(expected)
    assert edge_loss(logits, target, (1.0, 1.0)).item() == pytest.approx((LN2 * 2 + 2 * LN2) / 3)


# --- multi-scale supervision and weighting --------------------------------------------------


def test_outputs_are_resized_bilinearly_with_aligned_corners():
    resized = resize_to_label(torch.tensor([[[[0.0, 3.0]]]]), (1, 4))
    assert resized.flatten().tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0])


def test_task_loss_is_the_mean_of_the_per_scale_losses():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, 0, 0] = IGNORE_INDEX
    outputs = {"semseg": {0: torch.randn(2, 3, 8, 8), 1: torch.randn(2, 3, 4, 4)}}
    _, log = MultiTaskLoss(["semseg"], LossConfig())(outputs, {"semseg": target})
    upsampled = F.interpolate(outputs["semseg"][1], size=(8, 8), mode="bilinear",
                              align_corners=True)
    expected = (semseg_loss(outputs["semseg"][0], target) + semseg_loss(upsampled, target)) / 2
    assert log["semseg"] == pytest.approx(expected.item())


def _four_task_problem(batch_size=2, size=8):
    torch.manual_seed(1)
    normals = F.normalize(torch.randn(batch_size, 3, size, size), dim=1)
    batch = {
        "semseg": torch.randint(0, 4, (batch_size, size, size)),
        "depth": torch.rand(batch_size, 1, size, size) * 10 + 0.5,
        "normals": normals,
        "edges": (torch.rand(batch_size, size, size) > 0.8).long(),
    }
    channels = {"semseg": 4, "depth": 1, "normals": 3, "edges": 2}
    outputs = {task: {scale: torch.randn(batch_size, c, size >> scale, size >> scale,
                                         requires_grad=True) for scale in (0, 1)}
               for task, c in channels.items()}
    return outputs, batch


def test_fixed_weighted_total_and_gradients_reach_every_output():
    outputs, batch = _four_task_problem()
    cfg = LossConfig(task_weights={"semseg": 2.0, "normals": 0.5})
    total, log = MultiTaskLoss(list(batch), cfg)(outputs, batch)
    expected = 2.0 * log["semseg"] + log["depth"] + 0.5 * log["normals"] + log["edges"]
    assert log["total"] == pytest.approx(expected, rel=1e-6)
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert all(isinstance(value, float) for value in log.values())
    total.backward()
    for task, per_scale in outputs.items():
        for scale, output in per_scale.items():
            assert output.grad is not None and output.grad.abs().sum() > 0, (task, scale)
            assert torch.isfinite(output.grad).all(), (task, scale)


def test_missing_target_is_reported():
    outputs, batch = _four_task_problem()
    del batch["edges"]
    with pytest.raises(KeyError, match="edges"):
        MultiTaskLoss(list(outputs), LossConfig())(outputs, batch)


def test_uncertainty_weighting_value_and_gradient():
    weighting = UncertaintyWeighting(["semseg", "depth"])
    with torch.no_grad():
        weighting.log_variance["depth"].fill_(math.log(2.0))
    total = weighting({"semseg": torch.tensor(3.0), "depth": torch.tensor(4.0)})
    # 1/2 (e^-s L + s): semseg 1/2 (3 + 0), depth 1/2 (4/2 + ln 2).
    assert total.item() == pytest.approx(1.5 + 1.0 + LN2 / 2)
    total.backward()
    # d/ds = 1/2 (1 - e^-s L): semseg 1/2 (1 - 3) = -1, depth 1/2 (1 - 2) = -0.5.
    assert weighting.log_variance["semseg"].grad.item() == pytest.approx(-1.0)
    assert weighting.log_variance["depth"].grad.item() == pytest.approx(-0.5)


def test_build_weighting_and_trainable_parameters_of_the_loss():
    assert isinstance(build_weighting(LossConfig(), ["depth"]), FixedWeighting)
    fixed = FixedWeighting({"depth": 3.0})
    assert fixed({"depth": torch.tensor(2.0), "edges": torch.tensor(5.0)}).item() == 11.0
    loss = MultiTaskLoss(["semseg", "depth"], LossConfig(weighting="uncertainty"))
    assert isinstance(loss.weighting, UncertaintyWeighting)
    assert len(list(loss.parameters())) == 2
    assert list(MultiTaskLoss(["depth"], LossConfig()).parameters()) == []
    with pytest.raises(ValueError, match="weighting"):
        build_weighting(LossConfig(weighting="gradnorm"), ["depth"])


# --- partly labelled batches and supervised scales ---------------------------------------------


def test_each_task_is_learnt_from_the_samples_labelled_for_it_only():
    outputs, batch = _four_task_problem(batch_size=3)
    batch["has_semseg"] = torch.tensor([True, False, True])
    batch["has_depth"] = torch.tensor([False, False, False])
    batch["semseg"][1] = 0  # a filler map: it must not count
    objective = MultiTaskLoss(["semseg", "depth", "normals"], LossConfig())
    total, log = objective(outputs, batch)
    labelled = {"semseg": {s: o[[0, 2]] for s, o in outputs["semseg"].items()}}
    _, expected = MultiTaskLoss(["semseg"], LossConfig())(labelled,
                                                        {"semseg": batch["semseg"][[0, 2]]})
    assert log["semseg"] == pytest.approx(expected["semseg"])
    assert "depth" not in log  # no sample of the batch has depth: nothing learnt, nothing logged
    assert total.item() == pytest.approx(log["semseg"] + log["normals"], rel=1e-6)
    total.backward()
    assert outputs["semseg"][0].grad[1].abs().sum() == 0  # the unlabelled sample gets nothing
    assert outputs["depth"][0].grad is None


def test_a_batch_without_any_label_adds_a_zero_that_backpropagates():
    outputs, batch = _four_task_problem()
    batch["has_semseg"] = torch.tensor([False, False])
    total, log = MultiTaskLoss(["semseg"], LossConfig())(outputs, batch)
    assert total.item() == 0.0 and log == {}
    total.backward()


def test_a_task_is_supervised_on_its_configured_scales_only():
    outputs, batch = _four_task_problem()
    scale_zero = {"semseg": {0: outputs["semseg"][0]}}
    _, only_zero = MultiTaskLoss(["semseg"], LossConfig())(scale_zero, batch)
    _, log = MultiTaskLoss(["semseg"], LossConfig(scales={"semseg": (0,)}))(outputs, batch)
    _, both = MultiTaskLoss(["semseg"], LossConfig())(outputs, batch)
    assert log["semseg"] == pytest.approx(only_zero["semseg"])
    assert log["semseg"] != pytest.approx(both["semseg"])


def test_unit_vectors_are_f_normalize_with_a_finite_gradient_at_zero():
    vectors = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    vectors[0, :, 0, 0] = 0.0  # an all-zero prediction at one pixel
    vectors.requires_grad_(True)
    torch.testing.assert_close(unit_vectors(vectors),
                               F.normalize(vectors, dim=1))
    unit_vectors(vectors).sum().backward()
    assert torch.isfinite(vectors.grad).all()
