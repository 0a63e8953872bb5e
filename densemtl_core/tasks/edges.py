"""Semantic edges: two-class logits in the head, the edge probability from the graph on."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..colormaps import colorize_edges
from ..metrics import EdgeMeter
from .spec import (PublishedImage, StudyColumn, TaskSpec, absolute_agreement, channels_last,
                   finish_by_interpolation, mono8_to_probability, plain_map, probability_to_mono8,
                   tensor_of)


def edge_loss(logits: Tensor, target: Tensor,
              class_weights: Sequence[float] = (0.05, 0.95)) -> Tensor:
    """Two-class cross-entropy, weights (background, edge), PyTorch's weighted mean."""
    weight = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
    return F.cross_entropy(logits, target.long(), weight=weight)


SPEC = TaskSpec(
    name="edges", title="edges", field="edges",
    channels=lambda cfg: 2,
    loss=lambda output, target, cfg: edge_loss(output, target, cfg.edge_class_weights),
    decode=lambda raw, _: raw.softmax(dim=1)[:, 1:2],
    meter=EdgeMeter,
    update_meter=lambda meter, prob, target: meter.update(prob[:, 0], target),
    render=lambda prob, _: colorize_edges(prob),
    to_display=channels_last,
    finish=finish_by_interpolation("edges"),
    tolerance=(0.0, 1e-4),
    agreement=absolute_agreement,
    as_decoded=plain_map("edges"),
    images=(PublishedImage("edges", lambda edges, _: (edges, "mono8")),),
    meter_inputs=lambda pred, target: (torch.from_numpy(mono8_to_probability(pred))[None],
                                       tensor_of(target, np.int64)[None]),
    publish=lambda probability, _: probability_to_mono8(probability),
    published_display=mono8_to_probability,
    study_column=StudyColumn("edge F1 % ↑", 100, 1),
)
