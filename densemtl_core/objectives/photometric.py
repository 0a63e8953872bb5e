"""Depth learnt without depth labels: the method's self-supervised objective (METHOD.md 7.1)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ModelConfig, PhotometricConfig
from ..models.pose import PoseNetwork, relative_poses
from ..photometric import IDENTITY_TIE_BREAK, photometric_loss
from .base import Batch, Objective, Outputs

TEMPORAL_KEYS = ("image", "image_prev", "image_next", "intrinsics")
OFFSETS = (-1, 1)
"""Source frames by offset; ``travel[:, i]`` is the distance to the frame at ``OFFSETS[i]``."""


def translation_length(pose: Tensor) -> Tensor:
    """B metres between the two cameras of B x 4 x 4 transforms (finite gradient at zero)."""
    return (pose[:, :3, 3].square().sum(dim=1) + 1e-12).sqrt()


class PhotometricObjective(Objective):
    """The neighbouring frames, warped into the current one through the depth head's disparity
    and a pose network's motion, must reproduce it (see ``photometric.photometric_loss``).

    Owns the pose network (optimiser group ``pose``, at ``cfg.pose_lr`` when set). The batch is
    temporal: ``image``, ``image_prev``, ``image_next``, ``intrinsics`` and, for
    ``metric_scale == "odometry"``, ``travel``. With odometry the pose network's translation
    lengths are pulled towards the travelled distances (L1, over the known ones), which fixes
    the scale the photometric loss leaves free, so depth comes out in metres. The auto-mask's
    random tie-break is drawn in training mode only, so the loss of a module in ``eval`` mode
    is deterministic.
    """

    def __init__(self, cfg: PhotometricConfig, model: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.depth_range = (model.min_depth, model.max_depth)
        self.pose_net = PoseNetwork(cfg.pose_backbone, cfg.pose_width)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"pose": list(self.pose_net.parameters())}

    def learning_rates(self) -> dict[str, float]:
        return {} if self.cfg.pose_lr is None else {"pose": self.cfg.pose_lr}

    def predicted_poses(self, batch: Batch) -> dict[int, Tensor]:
        """B x 4 x 4 transforms from the current camera's frame to each source's, by offset."""
        return relative_poses(self.pose_net, batch["image_prev"], batch["image"],
                              batch["image_next"])

    def forward(self, outputs: Outputs, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """``cfg.weight`` times the loss, and its unweighted terms: ``photometric``,
        ``smoothness``, ``automasked`` (fraction of pixels) and, with odometry where the batch
        has a known travel, ``odometry`` (mean metres of translation-length error)."""
        needed = TEMPORAL_KEYS + (("travel",) if self.cfg.metric_scale == "odometry" else ())
        missing = [key for key in needed if key not in batch]
        if missing:
            raise KeyError(f"the photometric objective needs temporal batches; missing {missing}")
        poses = self.predicted_poses(batch)
        disparities = {s: torch.sigmoid(outputs["depth"][s]) for s in self.cfg.scales}
        sources = {-1: batch["image_prev"], 1: batch["image_next"]}
        terms = photometric_loss(disparities, batch["image"], sources, batch["intrinsics"], poses,
                                 self.cfg, self.depth_range,
                                 IDENTITY_TIE_BREAK if self.training else 0.0)
        loss = terms.loss
        logged = {"photometric": terms.photometric, "smoothness": terms.smoothness,
                  "automasked": terms.automasked}
        if self.cfg.metric_scale == "odometry":
            travel = batch["travel"].to(loss.dtype)
            predicted = torch.stack([translation_length(poses[k]) for k in OFFSETS], dim=1)
            known = torch.isfinite(travel)
            if known.any():
                logged["odometry"] = (predicted[known] - travel[known]).abs().mean()
                loss = loss + self.cfg.odometry_weight * logged["odometry"]
        # One device-to-host copy for the whole log.
        values = torch.stack(list(logged.values())).detach().tolist()
        return self.cfg.weight * loss, dict(zip(logged, values))
