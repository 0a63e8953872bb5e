"""The method's output-space adversarial alignment (METHOD.md section 7.2, after ADVENT): what
the discriminators see of the network's outputs, and the two losses of the adversarial game.

Labels follow ADVENT: source maps are labelled ``SOURCE_LABEL`` (0), target maps
``TARGET_LABEL`` (1). The network (the generator) learns to make its target maps read as
source ones; the discriminators learn to tell the two apart.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import AdversarialConfig, ModelConfig, OptimConfig
from ..models.discriminator import TaskDiscriminators
from ..tasks import TASKS
from ..tasks.normals import unit_vectors
from .base import Objective, Outputs, Step

SOURCE_LABEL = 0.0
TARGET_LABEL = 1.0
ALIGNED_TASKS = ("semseg", "depth", "normals")
"""Tasks with a discriminator input (the method aligns these; edges are not aligned)."""

Maps = dict[tuple[str, int], Tensor]
"""Discriminator inputs by (task, scale)."""


def self_information(probabilities: Tensor) -> Tensor:
    """Pixel-wise self-information -p log2 p / log2 C of B x C x H x W class probabilities:
    C maps in [0, 1] whose sum is the normalised entropy (1 for a uniform pixel, 0 for a
    certain one)."""
    return -torch.xlogy(probabilities, probabilities) / math.log(probabilities.shape[1])


def source_depth_range(depth: Tensor) -> tuple[Tensor, Tensor]:
    """The smallest and largest valid (> 0) depth of a source batch's ground truth."""
    valid = depth[depth > 0]
    if valid.numel() == 0:
        raise ValueError("the source batch has no valid depth to normalise depth maps with")
    return valid.min(), valid.max()


def discriminator_input(task: str, raw_output: Tensor, model: ModelConfig,
                        size: tuple[int, int],
                        source_depth_range: tuple[Tensor | float, Tensor | float] | None = None,
                        ) -> Tensor:
    """What the discriminator of ``task`` sees of a B x C x h x w raw head output, up-sampled
    bilinearly to ``size`` (the method: the input size) before it is transformed.

    Segmentation: the self-information of the softmax. Normals: unit vectors. Depth: the
    prediction decoded by the task table into the model's depth units, then min-max normalised
    with ``source_depth_range`` (the source batch's ground truth, see
    :func:`source_depth_range`). The method takes ReLU of its raw output, which is depth in the
    units of its labels; here the raw output is a code or a disparity logit, so it is decoded
    to be comparable with the metric range (decoded depth is positive: the ReLU is implicit).
    """
    maps = F.interpolate(raw_output, size=size, mode="bilinear", align_corners=False)
    if task == "semseg":
        return self_information(maps.softmax(dim=1))
    if task == "normals":
        return unit_vectors(maps)
    if task == "depth":
        if source_depth_range is None:
            raise ValueError("the depth discriminator input needs the source depth range")
        low, high = source_depth_range
        depth = TASKS["depth"].decode(maps, model)
        span = torch.as_tensor(high - low, dtype=depth.dtype, device=depth.device)
        return (depth - low) / span.clamp_min(1e-6)
    raise ValueError(f"task {task!r} has no discriminator input; aligned tasks: "
                     f"{list(ALIGNED_TASKS)}")


def discriminator_inputs(outputs: Outputs, keys: Iterable[tuple[str, int]], model: ModelConfig,
                         size: tuple[int, int],
                         source_depth_range: tuple[Tensor | float, Tensor | float] | None = None,
                         ) -> Maps:
    """:func:`discriminator_input` of each (task, scale) in ``keys``."""
    return {(task, scale): discriminator_input(task, outputs[task][scale], model, size,
                                               source_depth_range)
            for task, scale in keys}


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters require no gradient inside the block (as they did after)."""
    flags = [(parameter, parameter.requires_grad) for parameter in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def _mean_bce(logits: Mapping[tuple[str, int], Tensor], label: float) -> Tensor:
    """BCE-with-logits of every map against ``label``, averaged over (task, scale)."""
    return torch.stack([F.binary_cross_entropy_with_logits(value, torch.full_like(value, label))
                        for value in logits.values()]).mean()


def generator_loss(discriminators: TaskDiscriminators, target_maps: Maps) -> Tensor:
    """The network's adversarial loss (unweighted): the discriminators' BCE on target maps
    against the source label. Its gradient reaches the maps only: the discriminators are
    frozen while they judge, so the loss leaves their gradients untouched."""
    with frozen(discriminators):
        return _mean_bce(discriminators(target_maps), SOURCE_LABEL)


def discriminator_loss(discriminators: TaskDiscriminators, source_maps: Maps,
                       target_maps: Maps) -> Tensor:
    """The discriminators' loss: BCE(source maps, source label) + BCE(target maps, target
    label), each averaged over (task, scale). The maps are detached, so it trains the
    discriminators only."""
    def detached(maps: Maps) -> Maps:
        return {key: value.detach() for key, value in maps.items()}

    return (_mean_bce(discriminators(detached(source_maps)), SOURCE_LABEL)
            + _mean_bce(discriminators(detached(target_maps)), TARGET_LABEL))


class AdversarialObjective(Objective):
    """The method's MTL-UDA: the network's maps of target images must pass as source maps.

    One discriminator per aligned task (segmentation, depth and normals the model has and
    learns from source labels: depth is normalised with the source batch's ground-truth range)
    and per ``cfg.scales``. The discriminators are trained by an optimiser of their own (Adam at
    ``cfg.lr`` with ``cfg.betas``, poly decay) in the same backward pass as the network, as the
    method accumulates every gradient and steps both together: the generator loss cannot reach
    the discriminators (frozen while they judge) and the discriminator loss cannot reach the
    network (detached maps).
    """

    def __init__(self, cfg: AdversarialConfig, model: ModelConfig,
                 supervised: Iterable[str]) -> None:
        super().__init__()
        self.cfg = cfg
        self.model_cfg = model
        self.tasks = tuple(task for task in ALIGNED_TASKS
                           if task in model.tasks and task in tuple(supervised))
        if not self.tasks:
            raise ValueError(f"no task to align: the adversarial objective aligns "
                             f"{list(ALIGNED_TASKS)} learnt from source labels")
        self.discriminators = TaskDiscriminators(
            self.tasks, cfg.scales, {task: TASKS[task].channels(model) for task in self.tasks},
            cfg.width)

    def own_optimizer(self) -> tuple[list[nn.Parameter], OptimConfig]:
        return list(self.discriminators.parameters()), OptimConfig(
            optimizer="adam", lr=self.cfg.lr, betas=self.cfg.betas, weight_decay=0.0,
            scheduler="poly", poly_power=self.cfg.poly_power, grad_clip=None)

    def loss(self, step: Step) -> tuple[Tensor, dict[str, float]]:
        """``cfg.weight`` times the generator loss plus the discriminator loss; logs both
        unweighted as ``adversarial`` and ``discriminator``."""
        size = tuple(step.source["image"].shape[-2:])
        depth_range = (source_depth_range(_labelled(step.source, "depth"))
                       if "depth" in self.tasks else None)
        keys = self.discriminators.keys()
        source = discriminator_inputs(step.outputs, keys, self.model_cfg, size, depth_range)
        target = discriminator_inputs(step.target_outputs, keys, self.model_cfg, size,
                                      depth_range)
        adversarial = generator_loss(self.discriminators, target)
        discriminator = discriminator_loss(self.discriminators, source, target)
        values = torch.stack([adversarial, discriminator]).detach().tolist()
        return (self.cfg.weight * adversarial + discriminator,
                dict(zip(("adversarial", "discriminator"), values)))


def _labelled(batch: Mapping[str, Tensor], task: str) -> Tensor:
    """The labels of ``task`` of the samples that have them (``has_<task>``)."""
    labels = batch[task]
    flags = batch.get(f"has_{task}")
    return labels if flags is None else labels[flags.bool()]
