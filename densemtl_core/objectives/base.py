"""What every training objective is to the trainer: a loss for one training step, and its own
parameters."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from torch import Tensor, nn

from ..config import OptimConfig

Outputs = dict[str, dict[int, Tensor]]
"""Raw network outputs: ``outputs[task][scale]`` at 1/2^scale of the input size."""
Batch = dict[str, Tensor]
"""One collated batch of samples (see ``densemtl_core.data``)."""


@dataclass
class Step:
    """One training step as the objectives see it.

    ``source`` is the batch of the training data (labelled, or frame triplets) and ``outputs``
    the network's on its images. ``target`` is the batch of unlabelled target-domain images when
    the run adapts to a target (``ExperimentConfig.target``): images only, never labels. The
    network's outputs on the target are computed on first use and shared by the objectives that
    ask; ``forward`` runs the network (training mode, with the gradient) on any other view, such
    as a strongly augmented one.
    """

    source: Batch
    outputs: Outputs
    forward: Callable[[Tensor], Outputs]
    target: Batch | None = None

    @cached_property
    def target_outputs(self) -> Outputs:
        if self.target is None:
            raise ValueError("this objective needs target images: give the run a target "
                             "(the config's target section)")
        return self.forward(self.target["image"])


class Objective(nn.Module):
    """One training signal composed into the trainer (supervised, photometric, adversarial,
    self-training).

    ``loss`` returns the weighted loss it adds at a training step and the values to log (plain
    floats, unweighted); an objective of the source batch alone implements
    ``forward(outputs, batch)`` and inherits ``loss``. Parameters an objective owns (a pose
    network, learnt task weights) are trained with the model's, in the optimiser groups
    ``param_groups`` names; a group listed in ``learning_rates`` uses that rate instead of
    ``optim.lr``. Parameters trained apart from the network (discriminators, with an optimiser
    and schedule of their own) are listed by ``own_optimizer``. ``after_step`` runs after every
    optimiser step (an EMA teacher follows the network there). Its ``state_dict`` is saved with
    the training state, so a resumed run continues it.
    """

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {}

    def learning_rates(self) -> dict[str, float]:
        return {}

    def own_optimizer(self) -> tuple[list[nn.Parameter], OptimConfig] | None:
        """Parameters the trainer steps with an optimiser of their own, built from the
        returned settings (their rate, betas and schedule), or None."""
        return None

    def loss(self, step: Step) -> tuple[Tensor, dict[str, float]]:
        return self(step.outputs, step.source)

    def after_step(self, network: nn.Module) -> None:
        """Called after each optimiser step with the network just updated."""

    def forward(self, outputs: Outputs, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError(f"{type(self).__name__} overrides loss(step) instead")
