import math

import pytest
import torch
from torch import nn

from densemtl_core.config import LossConfig, ModelConfig, SelfTrainingConfig
from densemtl_core.depth_coding import encode_inverse_depth
from densemtl_core.labels import IGNORE_INDEX
from densemtl_core.models.network import build_model
from densemtl_core.objectives.augment import color_jitter, gaussian_blur, strong_view
from densemtl_core.objectives.base import Step
from densemtl_core.objectives.self_training import (PseudoLabels, SelfTrainingObjective,
                                                    class_mix, class_mix_masks)

SIZE = (32, 64)
TINY = ModelConfig(arch="mtl", tasks=("semseg", "depth"), num_classes=3, width=0.25,
                   backbone="resnet18", aspp_channels=16, decoder_channels=(8, 8, 8, 8, 8))


class ImagesOnly(dict):
    """A target batch that refuses every key but ``image``: no target label may be read."""

    def __getitem__(self, key):
        if key != "image":
            raise KeyError(f"target label {key!r} read")
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key]


class FixedOutputs(nn.Module):
    """A stand-in network whose raw outputs at scale 0 are fixed maps, whatever the image."""

    def __init__(self, **maps: torch.Tensor) -> None:
        super().__init__()
        self.tasks = tuple(maps)
        for task, value in maps.items():
            self.register_buffer(task, value)

    def forward(self, image: torch.Tensor) -> dict[str, dict[int, torch.Tensor]]:
        batch = image.shape[0]
        return {task: {0: getattr(self, task).expand(batch, -1, -1, -1)} for task in self.tasks}


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def objective_for(network: nn.Module, model: ModelConfig = TINY,
                  **settings) -> SelfTrainingObjective:
    return SelfTrainingObjective(SelfTrainingConfig(enabled=True, **settings), model, LossConfig(),
                                 network)


def perturb(network: nn.Module) -> None:
    with torch.no_grad():
        for value in network.parameters():
            value.add_(torch.randn_like(value))
        network[1].running_mean.add_(torch.randn(4))
        network[1].num_batches_tracked.add_(3)


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in module.state_dict().items()}


# --- the teacher ----------------------------------------------------------------------------


def test_the_first_update_copies_the_network_exactly():
    network = small_net()
    objective = objective_for(network)
    perturb(network)
    objective.after_step(network)
    for name, value in network.state_dict().items():
        assert torch.equal(objective.teacher.state_dict()[name], value), name
    assert int(objective.updates) == 1


def test_later_updates_follow_the_momentum_and_copy_integer_buffers():
    network = small_net()
    objective = objective_for(network, ema=0.6)
    objective.after_step(network)
    for updates, alpha in ((1, 0.5), (2, 0.6)):  # min(0.6, 1 - 1 / (updates + 1))
        before = state(objective.teacher)
        perturb(network)
        objective.after_step(network)
        after, current = objective.teacher.state_dict(), network.state_dict()
        for name in ("0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var"):
            expected = alpha * before[name] + (1 - alpha) * current[name]
            torch.testing.assert_close(after[name], expected, rtol=1e-6, atol=1e-6)
        assert torch.equal(after["1.num_batches_tracked"], current["1.num_batches_tracked"])
        assert int(objective.updates) == updates + 1


def test_the_teacher_is_saved_never_optimised_and_stays_in_eval_mode():
    objective = objective_for(small_net())
    objective.train()
    assert objective.training and not objective.teacher.training
    assert not any(p.requires_grad for p in objective.teacher.parameters())
    assert objective.param_groups() == {}
    keys = objective.state_dict()
    assert "updates" in keys and "teacher.0.weight" in keys


# --- pseudo-labels --------------------------------------------------------------------------


def test_pseudo_labels_are_thresholded_and_weighted_by_their_confident_share():
    # Two classes, logits (l, 0): confidence sigmoid(|l|); 3 -> 0.953, 1 -> 0.731.
    first = torch.tensor([[3.0, 1.0], [-3.0, -1.0]])
    logits = torch.stack([first, torch.zeros(2, 2)])[None]
    code = encode_inverse_depth(torch.full((1, 1, 2, 2), 5.0))
    normals = torch.tensor([0.0, 0.0, 2.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    model = ModelConfig(tasks=("semseg", "depth", "normals"), num_classes=2)
    objective = objective_for(FixedOutputs(semseg=logits, depth=code, normals=normals), model,
                              threshold=0.9)
    labels = objective.pseudo_labels(torch.rand(2, 3, 2, 2))
    assert labels.targets["semseg"].tolist() == [[[0, 0], [1, 1]]] * 2
    assert labels.confident.tolist() == [[[True, False], [True, False]]] * 2
    torch.testing.assert_close(labels.pixel_weight, torch.full((2, 2, 2), 0.5))
    depth = labels.targets["depth"]
    torch.testing.assert_close(depth[:, 0, :, 0], torch.full((2, 2), 5.0))
    assert (depth[:, 0, :, 1] == 0).all()  # not learnt where the teacher is unsure
    unit = labels.targets["normals"]
    assert (unit[:, 2, :, 0] == 1).all() and (unit[:, :, :, 1] == 0).all()


def test_without_segmentation_depth_is_learnt_on_every_pixel():
    code = encode_inverse_depth(torch.full((1, 1, 2, 2), 5.0))
    model = ModelConfig(tasks=("depth",))
    objective = objective_for(FixedOutputs(depth=code), model)
    labels = objective.pseudo_labels(torch.rand(1, 3, 2, 2))
    assert labels.confident is None and labels.pixel_weight is None
    torch.testing.assert_close(labels.targets["depth"], torch.full((1, 1, 2, 2), 5.0))


# --- ClassMix -------------------------------------------------------------------------------


def test_class_mix_masks_pick_half_of_the_source_classes():
    labels = torch.full((3, 4, 4), IGNORE_INDEX)
    labels[0, :2], labels[0, 2:, :2] = 0, 2  # classes 0 and 2, the rest ignored
    labels[1] = torch.arange(4) % 3  # classes 0, 1, 2
    for seed in range(10):
        torch.manual_seed(seed)
        masks = class_mix_masks(labels, num_classes=4)
        for image, count in ((0, 1), (1, 2)):  # ceil(n / 2) of n classes
            picked = labels[image][masks[image]].unique()
            assert len(picked) == count and set(picked.tolist()) <= {0, 1, 2}
            assert torch.equal(masks[image], torch.isin(labels[image], picked))
        assert not masks[2].any()  # no class: nothing pasted


def test_class_mix_pastes_source_pixels_with_their_labels():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 4, 4)
    source = {"image": torch.rand(2, 3, 4, 4), "semseg": torch.randint(0, 3, (2, 4, 4)),
              "depth": torch.rand(2, 1, 4, 4) + 1, "has_depth": torch.tensor([True, False])}
    pseudo = PseudoLabels({"semseg": torch.full((2, 4, 4), 2),
                           "depth": torch.full((2, 1, 4, 4), 7.0)},
                          torch.full((2, 4, 4), 0.25), None)
    torch.manual_seed(1)
    pasted = class_mix_masks(source["semseg"], 3)
    torch.manual_seed(1)
    images, mixed = class_mix(target, pseudo, source, 3)
    assert pasted.any() and not pasted.all()
    for i in range(2):
        m = pasted[i]
        assert torch.equal(images[i][:, m], source["image"][i][:, m])
        assert torch.equal(images[i][:, ~m], target[i][:, ~m])
        assert torch.equal(mixed.targets["semseg"][i][m], source["semseg"][i][m])
        assert (mixed.targets["semseg"][i][~m] == 2).all()
        assert (mixed.pixel_weight[i][m] == 1).all() and (mixed.pixel_weight[i][~m] == 0.25).all()
        assert (mixed.targets["depth"][i, 0][~m] == 7).all()
    assert torch.equal(mixed.targets["depth"][0, 0][pasted[0]], source["depth"][0, 0][pasted[0]])
    assert (mixed.targets["depth"][1, 0][pasted[1]] == 0).all()  # that source has no depth


# --- the strong view ------------------------------------------------------------------------


def test_the_strong_view_keeps_shape_and_range_and_is_the_identity_at_strength_zero():
    torch.manual_seed(0)
    images = torch.rand(3, 3, *SIZE)
    assert torch.equal(strong_view(images, 0.0, 0.0), images)
    assert torch.equal(color_jitter(images, 0.0), images)
    strong = strong_view(images, 0.5, 2.0)
    assert strong.shape == images.shape and not torch.equal(strong, images)
    assert strong.min() >= 0 and strong.max() <= 1


def test_the_blur_moves_no_pixel():
    image = torch.zeros(1, 3, 9, 9)
    image[..., 4, 4] = 1.0
    torch.manual_seed(0)
    blurred = gaussian_blur(image, 1.5)
    assert torch.equal(blurred[..., 4, 4], blurred.amax(dim=(2, 3)))  # the peak stays put
    torch.testing.assert_close(blurred, blurred.flip(-1).flip(-2))  # symmetric around it
    torch.testing.assert_close(blurred.sum(dim=(2, 3)), torch.ones(1, 3))
    flat = torch.full((2, 3, 8, 8), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 1.0), flat)


# --- the loss -------------------------------------------------------------------------------


def test_the_loss_reads_only_target_images_and_trains_only_the_student():
    torch.manual_seed(0)
    network = build_model(TINY).train()
    objective = objective_for(network, threshold=0.3).train()
    source = {"image": torch.rand(2, 3, *SIZE), "semseg": torch.randint(0, 3, (2, *SIZE)),
              "depth": torch.rand(2, 1, *SIZE) * 10 + 1}
    step = Step(source=source, outputs={}, forward=network,
                target=ImagesOnly(image=torch.rand(2, 3, *SIZE)))
    loss, logs = objective.loss(step)
    loss.backward()
    assert math.isfinite(loss.item())
    assert set(logs) == {"self_training", "self_training_semseg", "self_training_depth",
                         "pseudo_confident"}
    assert all(isinstance(value, float) for value in logs.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in network.parameters())
    assert all(p.grad is None for p in objective.teacher.parameters())
    assert not objective.teacher.training


def test_the_loss_needs_target_images():
    network = build_model(TINY)
    step = Step(source={}, outputs={}, forward=network)
    with pytest.raises(ValueError, match="target"):
        objective_for(network).loss(step)
