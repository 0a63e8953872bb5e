"""Self-training on unlabelled target images (after DAFormer, Hoyer et al., CVPR 2022).

A teacher, the exponential moving average of the network, labels the target images as they
come (the weak view); the network learns those pseudo-labels on a strongly augmented view of
the same images, optionally with half the classes of a source image pasted on (ClassMix), so it
must agree with a steadier version of itself across appearance changes of the target domain.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from itertools import chain

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import LossConfig, ModelConfig, SelfTrainingConfig
from ..labels import IGNORE_INDEX
from ..losses import FixedWeighting, multiscale_loss, resize_to_label
from ..tasks import TASKS
from .augment import strong_view
from .base import Batch, Objective, Step

REGRESSION_TASKS = ("depth", "normals")
"""Tasks whose pseudo-targets are the teacher's decoded maps (0, the invalid marker, where not
learnt)."""


@dataclass
class PseudoLabels:
    """The student's targets on one batch of (possibly mixed) target images.

    ``targets[task]`` is in the layout of the task's labels: class ids for ``semseg``, metres
    (0: not learnt) for ``depth``, unit vectors (0: not learnt) for ``normals``.
    ``pixel_weight`` (B x H x W) weighs the segmentation loss of each pixel; ``confident`` is
    the B x H x W mask of pixels the teacher is sure of (None without segmentation).
    """

    targets: dict[str, Tensor]
    pixel_weight: Tensor | None
    confident: Tensor | None


def weighted_cross_entropy(logits: Tensor, labels: Tensor, weight: Tensor) -> Tensor:
    """Cross-entropy of each pixel times its weight, averaged over all pixels (as DAFormer);
    ``IGNORE_INDEX`` pixels count as zeros."""
    per_pixel = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")
    return (per_pixel * weight).mean()


def class_mix_masks(labels: Tensor, num_classes: int) -> Tensor:
    """B x H x W masks: per image, the pixels of ceil(n / 2) of the n classes present in its
    B x H x W ``labels`` (ids in [0, num_classes); others, such as ``IGNORE_INDEX``, are never
    picked), drawn at random. An image without any class gets an empty mask."""
    batch = labels.shape[0]
    flat = labels.flatten(1)
    ids = torch.where((flat >= 0) & (flat < num_classes), flat, num_classes)
    present = torch.zeros(batch, num_classes + 1, dtype=torch.bool, device=labels.device)
    present = present.scatter_(1, ids, True)[:, :num_classes]
    # Present classes get random scores below 2, absent ones 2: the first ranks are a random
    # order of the present classes.
    scores = torch.rand(batch, num_classes, device=labels.device).masked_fill(~present, 2.0)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    chosen = present & (ranks < (present.sum(dim=1, keepdim=True) + 1) // 2)
    chosen = torch.cat([chosen, chosen.new_zeros(batch, 1)], dim=1)
    return chosen.gather(1, ids).view_as(labels)


def source_truth(source: Batch, task: str) -> Tensor | None:
    """The source batch's labels of a regression task, zero (invalid) on samples whose
    ``has_<task>`` flag is False; None when the batch has none."""
    truth = source.get(task)
    if truth is None:
        return None
    labelled = source.get(f"has_{task}")
    if labelled is None:
        return truth
    return truth * labelled.view(-1, 1, 1, 1).to(truth.dtype)


def class_mix(images: Tensor, labels: PseudoLabels, source: Batch, num_classes: int
              ) -> tuple[Tensor, PseudoLabels]:
    """Target image i with half the classes of source image i pasted on (ClassMix), and the
    labels of the mix: the source's labels on the pasted pixels (segmentation weight 1 there),
    the pseudo-labels elsewhere."""
    for key in ("image", "semseg"):
        if key not in source:
            raise KeyError(f"class mixing pastes labelled source classes: the source batch has "
                           f"no {key!r}")
    if source["image"].shape != images.shape:
        raise ValueError(f"class mixing needs source and target batches of one shape, got "
                         f"source {list(source['image'].shape)} and target {list(images.shape)}")
    pasted = class_mix_masks(source["semseg"], num_classes)
    mixed_images = torch.where(pasted[:, None], source["image"], images)
    targets = {}
    for task, pseudo in labels.targets.items():
        truth = source["semseg"] if task == "semseg" else source_truth(source, task)
        if truth is None:
            truth = torch.zeros_like(pseudo)
        mask = pasted if pseudo.dim() == 3 else pasted[:, None]
        targets[task] = torch.where(mask, truth.to(pseudo.dtype), pseudo)
    weight = labels.pixel_weight
    if weight is not None:
        weight = torch.where(pasted, torch.ones_like(weight), weight)
    return mixed_images, PseudoLabels(targets, weight, labels.confident)


class SelfTrainingObjective(Objective):
    """The network learns its EMA teacher's pseudo-labels of the target images.

    Segmentation: the teacher's arg-max class, each image's loss weighted by the share of its
    pixels whose confidence (the top softmax probability) exceeds ``cfg.threshold``. Depth and
    normals: the teacher's decoded maps, learnt only where its segmentation is confident when
    the model segments: where the teacher is sure of what the scene holds it is more likely
    right about its geometry, and unlike a class a regressed value carries no confidence of
    its own. The task losses are the supervised ones, at the supervised scales, combined with
    ``loss.task_weights``.

    The teacher (``copy.deepcopy`` of the network) is a submodule, saved with the training
    state and moved with the objective, but never optimised (it is in no parameter group) and
    always in eval mode; ``after_step`` moves it towards the network.
    """

    def __init__(self, cfg: SelfTrainingConfig, model: ModelConfig, loss: LossConfig,
                 network: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.model_cfg = model
        self.loss_cfg = loss
        self.tasks = tuple(task for task in model.tasks if task in cfg.tasks)
        self.weighting = FixedWeighting(loss.task_weights)
        self.teacher = copy.deepcopy(network).eval().requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> SelfTrainingObjective:
        """The objective's mode; the teacher stays in eval mode (fixed batch statistics, no
        dropout), as its labels must not depend on the batch."""
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def after_step(self, network: nn.Module) -> None:
        """teacher = alpha * teacher + (1 - alpha) * network for parameters and floating-point
        buffers, alpha = min(cfg.ema, 1 - 1 / (updates + 1)): the first update copies the
        network, early ones follow it closely. Integer buffers are copied."""
        alpha = min(self.cfg.ema, 1.0 - 1.0 / (int(self.updates) + 1))
        current = dict(chain(network.named_parameters(), network.named_buffers()))
        for name, value in chain(self.teacher.named_parameters(), self.teacher.named_buffers()):
            if name not in current:
                raise ValueError(f"the network has no {name!r}: the teacher was built from "
                                 f"another network")
            new = current[name].detach()
            if value.is_floating_point():
                value.lerp_(new.to(value.dtype), 1.0 - alpha)
            else:
                value.copy_(new)
        self.updates += 1

    @torch.no_grad()
    def pseudo_labels(self, images: Tensor) -> PseudoLabels:
        """The teacher's labels of B x 3 x H x W target images, from its finest output scale."""
        outputs = self.teacher(images)
        finest = {task: resize_to_label(by_scale[min(by_scale)].float(), images.shape[-2:])
                  for task, by_scale in outputs.items()}
        targets, weight, confident = {}, None, None
        if "semseg" in finest:
            confidence, classes = finest["semseg"].softmax(dim=1).max(dim=1)
            confident = confidence > self.cfg.threshold
            quality = confident.float().mean(dim=(1, 2))
            weight = quality.view(-1, 1, 1).expand_as(confidence)
            if "semseg" in self.tasks:
                targets["semseg"] = classes
        for task in REGRESSION_TASKS:
            if task in self.tasks:
                decoded = TASKS[task].decode(finest[task], self.model_cfg)
                targets[task] = decoded if confident is None else decoded * confident[:, None]
        return PseudoLabels(targets, weight, confident)

    def loss(self, step: Step) -> tuple[Tensor, dict[str, float]]:
        """``cfg.weight`` times the task-weighted loss, and the unweighted ``self_training``,
        ``self_training_<task>`` and ``pseudo_confident`` (share of confident pixels)."""
        if step.target is None:
            raise ValueError("self-training learns from target images: give the run a target "
                             "(the config's target section)")
        images = step.target["image"]
        labels = self.pseudo_labels(images)
        if self.cfg.class_mix:
            images, labels = class_mix(images, labels, step.source, self.model_cfg.num_classes)
        outputs = step.forward(strong_view(images, self.cfg.color_jitter, self.cfg.blur))
        task_losses = {}
        for task in self.tasks:
            scales = self.loss_cfg.scales.get(task)
            by_scale = {s: o for s, o in outputs[task].items() if scales is None or s in scales}
            if task == "semseg":
                task_loss = partial(weighted_cross_entropy, weight=labels.pixel_weight)
            else:
                task_loss = partial(TASKS[task].loss, cfg=self.loss_cfg)
            task_losses[task] = multiscale_loss(task_loss, by_scale, labels.targets[task])
        total = self.weighting(task_losses)
        logged = {"self_training": total.detach(),
                  **{f"self_training_{task}": value.detach()
                     for task, value in task_losses.items()}}
        if labels.confident is not None:
            logged["pseudo_confident"] = labels.confident.float().mean()
        # One device-to-host copy for the whole log.
        values = torch.stack([value.float() for value in logged.values()]).tolist()
        return self.cfg.weight * total, dict(zip(logged, values))
