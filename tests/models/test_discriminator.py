"""The output-space discriminators: shapes per (task, scale), spectral norm, training-only flip."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from densemtl_core.models.discriminator import OutputDiscriminator, TaskDiscriminators

CHANNELS = {"semseg": 7, "depth": 1, "normals": 3}


def _convolutions(discriminator: OutputDiscriminator) -> list[nn.Conv2d]:
    return [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]


def test_one_discriminator_per_task_and_scale_with_five_halvings() -> None:
    discriminators = TaskDiscriminators(CHANNELS, (0, 1), CHANNELS).eval()
    assert discriminators.keys() == [(t, s) for t in CHANNELS for s in (0, 1)]
    maps = {(t, s): torch.rand(2, c, 64, 128) for t, c in CHANNELS.items() for s in (0, 1)}
    logits = discriminators(maps)
    assert set(logits) == set(maps)
    for value in logits.values():
        assert value.shape == (2, 1, 2, 4)  # 64 x 128 halved five times
    # Each (task, scale) has its own weights.
    first = _convolutions(discriminators.discriminators["semseg/0"])[0]
    second = _convolutions(discriminators.discriminators["semseg/1"])[0]
    assert first is not second and not torch.equal(first.weight, second.weight)


def test_layers_are_the_methods() -> None:
    discriminator = OutputDiscriminator(5)
    convolutions = _convolutions(discriminator)
    assert [c.out_channels for c in convolutions] == [64, 128, 256, 512, 1]
    assert convolutions[0].in_channels == 5
    for conv in convolutions:
        assert conv.kernel_size == (4, 4) and conv.stride == (2, 2) and conv.padding == (1, 1)
        assert parametrize.is_parametrized(conv, "weight")
        assert type(conv.parametrizations.weight[0]).__name__ == "_SpectralNorm"
    activations = [m for m in discriminator.layers if isinstance(m, nn.LeakyReLU)]
    assert len(activations) == 4 and all(a.negative_slope == 0.2 for a in activations)
    assert discriminator.layers[-1] is convolutions[-1]  # logits: nothing after the last


def test_width_scales_every_convolution_but_the_logit() -> None:
    narrow = _convolutions(OutputDiscriminator(5, width=0.25))
    assert [c.out_channels for c in narrow] == [16, 32, 64, 128, 1]
    discriminators = TaskDiscriminators(["depth"], (0,), CHANNELS, width=0.125)
    assert [c.out_channels for c in _convolutions(discriminators.discriminators["depth/0"])] \
        == [8, 16, 32, 64, 1]


def test_spectral_norm_bounds_the_largest_singular_value() -> None:
    torch.manual_seed(0)
    discriminator = OutputDiscriminator(3)
    for _ in range(30):  # power iterations run in training mode
        discriminator(torch.rand(1, 3, 64, 64))
    discriminator.eval()
    for conv in _convolutions(discriminator)[:-1]:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert 0.9 < float(sigma) < 1.1


def _first_inputs(discriminator: OutputDiscriminator, maps: torch.Tensor,
                  calls: int) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    handle = discriminator.layers[0].register_forward_pre_hook(
        lambda _, args: seen.append(args[0].clone()))
    for _ in range(calls):
        discriminator(maps)
    handle.remove()
    return seen


def test_flips_the_whole_batch_in_training_mode_only() -> None:
    torch.manual_seed(0)
    discriminator = OutputDiscriminator(3)
    maps = torch.rand(2, 3, 32, 64)
    seen = _first_inputs(discriminator, maps, 40)
    flipped = [torch.equal(x, maps.flip(-1)) for x in seen]
    assert all(f or torch.equal(x, maps) for f, x in zip(flipped, seen))
    assert 5 < sum(flipped) < 35  # about half, whole batches
    discriminator.eval()
    assert all(torch.equal(x, maps) for x in _first_inputs(discriminator, maps, 20))
