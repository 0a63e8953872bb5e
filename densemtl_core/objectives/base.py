"""What every training objective is to the trainer: a loss for one batch, and its own parameters."""
from __future__ import annotations

from torch import Tensor, nn

Outputs = dict[str, dict[int, Tensor]]
"""Raw network outputs: ``outputs[task][scale]`` at 1/2^scale of the input size."""
Batch = dict[str, Tensor]
"""One collated batch of samples (see ``densemtl_core.data``)."""


class Objective(nn.Module):
    """One training signal composed into the trainer (supervised, photometric, ...).

    ``forward`` returns the weighted loss it adds for a batch and the values to log (plain
    floats, unweighted). Parameters an objective owns (a pose network, learnt task weights) are
    trained with the model's, in the optimiser groups ``param_groups`` names; a group listed in
    ``learning_rates`` uses that rate instead of ``optim.lr``. Its ``state_dict`` is saved with
    the training state, so a resumed run continues it.
    """

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {}

    def learning_rates(self) -> dict[str, float]:
        return {}

    def forward(self, outputs: Outputs, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError
