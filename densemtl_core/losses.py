"""Training losses: multi-scale supervision and task weighting.

Each task's own loss is its :class:`~densemtl_core.tasks.TaskSpec`'s ``loss`` (the functions
live beside the task table); it takes the raw network output already resized to the label
resolution and the batch target in the library's data conventions (METHOD.md sections 2 and 3).
``MultiTaskLoss``, the supervised training objective, resizes each supervised scale, averages
the scales of a task and combines the tasks through a :class:`TaskWeighting`.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import LossConfig
from .objectives.base import Batch, Objective, Outputs
from .tasks import TASKS


def resize_to_label(output: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinearly resize a BxCxhxw output to the label size (align_corners=True, as the method)."""
    if tuple(output.shape[-2:]) == tuple(size):
        return output
    return F.interpolate(output, size=tuple(size), mode="bilinear", align_corners=True)


def multiscale_loss(loss: Callable[[Tensor, Tensor], Tensor], outputs: Mapping[int, Tensor],
                    target: Tensor) -> Tensor:
    """Mean over the supervised scales of the loss of each output resized to the label size."""
    size = target.shape[-2:]
    per_scale = [loss(resize_to_label(output, size), target) for output in outputs.values()]
    return torch.stack(per_scale).mean()


class TaskWeighting(nn.Module):
    """Combines the per-task losses into the scalar that is back-propagated."""

    def forward(self, task_losses: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError


class FixedWeighting(TaskWeighting):
    """Total = sum_t w_t * L_t with constant weights; a task without a weight weighs 1."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__()
        self.weights = dict(weights)

    def forward(self, task_losses: dict[str, Tensor]) -> Tensor:
        return sum(self.weights.get(task, 1.0) * loss for task, loss in task_losses.items())


class UncertaintyWeighting(TaskWeighting):
    """Homoscedastic-uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018).

    One learned log-variance s_t = log sigma_t^2 per task, initialised to 0, and
    total = sum_t 1/2 * (exp(-s_t) * L_t + s_t), i.e. L_t / (2 sigma_t^2) + log sigma_t: the paper's
    regression form, used for every task. The s_t are ordinary parameters of this module (and so
    of :class:`MultiTaskLoss`), to be given to the optimiser.
    """

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.log_variance = nn.ParameterDict(
            {task: nn.Parameter(torch.zeros(())) for task in tasks})

    def forward(self, task_losses: dict[str, Tensor]) -> Tensor:
        return sum(0.5 * (torch.exp(-self.log_variance[task]) * loss + self.log_variance[task])
                   for task, loss in task_losses.items())


def build_weighting(loss_cfg: LossConfig, tasks: Sequence[str]) -> TaskWeighting:
    """The weighting named by ``loss_cfg.weighting`` (``fixed`` or ``uncertainty``)."""
    builders: dict[str, Callable[[], TaskWeighting]] = {
        "fixed": partial(FixedWeighting, loss_cfg.task_weights),
        "uncertainty": partial(UncertaintyWeighting, tasks),
    }
    if loss_cfg.weighting not in builders:
        raise ValueError(f"unknown task weighting {loss_cfg.weighting!r}; "
                         f"known: {sorted(builders)}")
    return builders[loss_cfg.weighting]()


class MultiTaskLoss(Objective):
    """The supervised objective, METHOD.md section 3.2: per task, the mean over its supervised
    output scales (``loss_cfg.scales``, default all); across tasks, the configured weighting.

    ``outputs[task][scale]`` is the raw output at 1/2^scale resolution, ``batch[task]`` its target.
    A batch of partly labelled data carries ``has_<task>`` flags per sample: a task's loss is
    taken over the samples that have its label, and a task no sample of the batch has adds
    nothing (and is not logged). Trainable weighting parameters (uncertainty weighting) are
    parameters of this module, in the optimiser group ``weighting``.
    """

    def __init__(self, tasks: Sequence[str], loss_cfg: LossConfig) -> None:
        super().__init__()
        unknown = [task for task in tasks if task not in TASKS]
        if unknown:
            raise ValueError(f"no loss for task(s) {unknown}; known: {sorted(TASKS)}")
        self.tasks = tuple(tasks)
        self.loss_cfg = loss_cfg
        self.weighting = build_weighting(loss_cfg, self.tasks)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"weighting": list(self.parameters())}

    def forward(self, outputs: Outputs, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Return the total loss and a log of the unweighted per-task losses plus ``total``."""
        missing = [task for task in self.tasks if task not in batch]
        if missing:
            raise KeyError(f"batch has no target for task(s) {missing}")
        task_losses = {}
        for task in self.tasks:
            scales = self.loss_cfg.scales.get(task)
            by_scale = {s: o for s, o in outputs[task].items() if scales is None or s in scales}
            target = batch[task]
            labelled = batch.get(f"has_{task}")
            if labelled is not None:
                if not labelled.any():
                    continue
                by_scale = {s: o[labelled] for s, o in by_scale.items()}
                target = target[labelled]
            task_losses[task] = multiscale_loss(partial(TASKS[task].loss, cfg=self.loss_cfg),
                                                by_scale, target)
        if not task_losses:  # a zero that still belongs to the graph, so backward runs
            some_output = next(iter(next(iter(outputs.values())).values()))
            return some_output.sum() * 0.0, {}
        total = self.weighting(task_losses)
        # One device-to-host copy for the whole log instead of one per task.
        values = torch.stack([*task_losses.values(), total]).detach().tolist()
        return total, dict(zip([*task_losses, "total"], values))
