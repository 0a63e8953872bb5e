"""The method's output-space adversarial alignment: discriminator inputs, the two losses and
which parameters each one trains, and its configuration."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from densemtl_core.config import (AdversarialConfig, ConfigError, ExperimentConfig, ModelConfig,
                                  load_config, validate)
from densemtl_core.depth_coding import encode_inverse_depth
from densemtl_core.models.discriminator import TaskDiscriminators
from densemtl_core.objectives.adversarial import (SOURCE_LABEL, TARGET_LABEL,
                                                  discriminator_input, discriminator_inputs,
                                                  discriminator_loss, generator_loss,
                                                  self_information, source_depth_range)

MODEL = ModelConfig(tasks=("semseg", "depth"), num_classes=3)
CHANNELS = {"semseg": 3, "depth": 1}
SIZE = (32, 64)
CODE = float(encode_inverse_depth(torch.tensor(10.0)))
"""Inverse-depth code of 10 m, where the stand-in network's depth head starts."""


def test_labels_are_advents() -> None:
    assert (SOURCE_LABEL, TARGET_LABEL) == (0.0, 1.0)


def test_self_information_of_a_uniform_pixel_sums_to_one() -> None:
    maps = discriminator_input("semseg", torch.zeros(1, 4, 2, 2), MODEL, (2, 2))
    assert torch.allclose(maps, torch.full((1, 4, 2, 2), 0.25))  # -1/4 log2(1/4) / log2 4
    assert torch.allclose(maps.sum(dim=1), torch.ones(1, 2, 2))


def test_self_information_of_a_certain_pixel_is_zero() -> None:
    one_hot = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.equal(self_information(one_hot), torch.zeros(1, 3, 1, 1))
    confident = discriminator_input("semseg", 100 * one_hot, MODEL, (1, 1))
    assert confident.abs().max() < 1e-6


def test_self_information_of_a_hand_computed_pixel() -> None:
    logits = torch.tensor([0.7, 0.2, 0.1]).log().view(1, 3, 1, 1)  # softmax gives them back
    maps = discriminator_input("semseg", logits, MODEL, (1, 1))
    # -p log2 p / log2 3 for p = 0.7, 0.2, 0.1
    expected = torch.tensor([0.2272617, 0.2929947, 0.2095903]).view(1, 3, 1, 1)
    assert torch.allclose(maps, expected, atol=1e-6)


def test_maps_are_up_sampled_before_they_are_transformed() -> None:
    raw = torch.randn(2, 3, 4, 8)
    maps = discriminator_input("semseg", raw, MODEL, SIZE)
    assert maps.shape == (2, 3, *SIZE)
    # Entropy of the up-sampled logits, not up-sampled entropy: a pixel lies in [0, 1] summed.
    assert torch.all(maps.sum(dim=1) <= 1 + 1e-6)


def test_normals_become_unit_vectors() -> None:
    raw = torch.tensor([3.0, 0.0, 4.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    maps = discriminator_input("normals", raw, MODEL, (4, 4))
    assert torch.allclose(maps, torch.tensor([0.6, 0.0, 0.8]).view(1, 3, 1, 1).expand(1, 3, 4, 4))


def test_depth_is_decoded_and_normalised_with_the_source_range() -> None:
    truth = torch.tensor([[0.0, 2.0], [10.0, 0.0]]).view(1, 1, 2, 2)  # 0: invalid
    low, high = source_depth_range(truth)
    assert (float(low), float(high)) == (2.0, 10.0)
    raw = encode_inverse_depth(torch.tensor([2.0, 5.0, 10.0, 14.0]).view(1, 1, 1, 4))
    maps = discriminator_input("depth", raw, MODEL, (1, 4), (low, high))
    assert torch.allclose(maps.flatten(), torch.tensor([0.0, 0.375, 1.0, 1.5]), atol=1e-4)
    disparity = ModelConfig(tasks=("semseg", "depth"), depth_output="disparity",
                            min_depth=1.0, max_depth=4.0)
    # sigmoid(0) = 1/2: inverse depth halfway between 1/4 and 1, 1.6 m, normalised in [1, 4].
    maps = discriminator_input("depth", torch.zeros(1, 1, 1, 1), disparity, (1, 1), (1.0, 4.0))
    assert torch.allclose(maps, torch.tensor(0.6 / 3.0))


def test_depth_needs_a_range_and_edges_have_no_input() -> None:
    with pytest.raises(ValueError, match="source depth range"):
        discriminator_input("depth", torch.zeros(1, 1, 2, 2), MODEL, (2, 2))
    with pytest.raises(ValueError, match="no valid depth"):
        source_depth_range(torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="edges"):
        discriminator_input("edges", torch.zeros(1, 1, 2, 2), MODEL, (2, 2))


def _softplus(value: float) -> float:
    return math.log1p(math.exp(value))


def _bce(logits: dict, label: float) -> float:
    """BCE with logits by hand: -log(1 - sigmoid z) = softplus(z) for label 0, softplus(-z)
    for label 1; mean per map, then over maps."""
    sign = 1.0 if label == 0.0 else -1.0
    means = [sum(_softplus(sign * z) for z in value.flatten().tolist()) / value.numel()
             for value in logits.values()]
    return sum(means) / len(means)


class _Network(nn.Module):
    """A stand-in generator: raw semseg and depth outputs at two scales from an image."""

    def __init__(self) -> None:
        super().__init__()
        self.semseg = nn.Conv2d(3, 3, 3, padding=1)
        self.depth = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, image: torch.Tensor) -> dict[str, dict[int, torch.Tensor]]:
        half = nn.functional.avg_pool2d(image, 2)
        return {"semseg": {0: self.semseg(image), 1: self.semseg(half)},
                "depth": {0: self.depth(image) + CODE, 1: self.depth(half) + CODE}}


def _setup() -> tuple[_Network, TaskDiscriminators, dict, dict]:
    torch.manual_seed(0)
    network, discriminators = _Network(), TaskDiscriminators(CHANNELS, (0, 1), CHANNELS)
    depth_range = source_depth_range(torch.tensor([1.0, 30.0]))
    source = discriminator_inputs(network(torch.rand(2, 3, *SIZE)), discriminators.keys(), MODEL,
                                  SIZE, depth_range)
    target = discriminator_inputs(network(torch.rand(2, 3, *SIZE)), discriminators.keys(), MODEL,
                                  SIZE, depth_range)
    return network, discriminators, source, target


def test_losses_against_hand_computed_bce() -> None:
    _, discriminators, source, target = _setup()
    discriminators.eval()  # no flip: the logits below are the ones the losses see
    with torch.no_grad():
        source_logits, target_logits = discriminators(source), discriminators(target)
    assert len(target_logits) == 4 and target_logits["semseg", 1].shape == (2, 1, 1, 2)
    assert generator_loss(discriminators, target).item() == pytest.approx(
        _bce(target_logits, 0.0), rel=1e-5)
    assert discriminator_loss(discriminators, source, target).item() == pytest.approx(
        _bce(source_logits, 0.0) + _bce(target_logits, 1.0), rel=1e-5)


def _parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def test_the_generator_loss_trains_the_network_only() -> None:
    network, discriminators, _, target = _setup()
    before = _parameters(discriminators)
    optimiser = torch.optim.SGD(network.parameters(), lr=1.0)
    network_before = _parameters(network)
    generator_loss(discriminators, target).backward()
    assert all(p.grad is None for p in discriminators.parameters())
    assert all(p.requires_grad for p in discriminators.parameters())  # unfrozen after
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.parameters())
    optimiser.step()
    assert all(torch.equal(before[n], p) for n, p in discriminators.named_parameters())
    assert any(not torch.equal(network_before[n], p) for n, p in network.named_parameters())


def test_the_discriminator_loss_trains_the_discriminators_only() -> None:
    network, discriminators, source, target = _setup()
    before = _parameters(discriminators)
    optimiser = torch.optim.Adam(discriminators.parameters(), lr=1e-3)
    discriminator_loss(discriminators, source, target).backward()
    assert all(p.grad is None for p in network.parameters())  # the maps are detached
    assert all(p.grad is not None for p in discriminators.parameters())
    optimiser.step()
    assert all(not torch.equal(before[n], p) for n, p in discriminators.named_parameters())


def test_config_defaults_are_the_methods() -> None:
    adversarial = ExperimentConfig().objectives.adversarial
    assert adversarial == AdversarialConfig(enabled=False, weight=0.005, scales=(0, 1), lr=1e-4,
                                            betas=(0.9, 0.99), poly_power=0.9)
    config = load_config(None, ["objectives.adversarial.enabled=true",
                                "objectives.adversarial.scales=[0]", "target.domain=shifted"])
    validate(config)
    assert config.objectives.adversarial.enabled and config.objectives.adversarial.scales == (0,)


@pytest.mark.parametrize("override, message", [
    ("objectives.adversarial.scales=[2]", "model.output_scales"),
    ("objectives.adversarial.scales=[]", "model.output_scales"),
    ("objectives.adversarial.betas=[0.9,1.0]", "betas"),
    ("objectives.adversarial.lr=0", "lr"),
    ("objectives.adversarial.weight=-1", "weight"),
])
def test_config_validation(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(load_config(None, ["objectives.adversarial.enabled=true", override]))


def test_scales_are_free_while_disabled() -> None:
    validate(load_config(None, ["objectives.adversarial.scales=[3]"]))


def test_discriminator_width_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="objectives.adversarial.width must be positive"):
        validate(load_config(None, ["objectives.adversarial.width=0"]))
