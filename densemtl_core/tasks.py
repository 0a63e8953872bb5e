"""The one place that knows each task: its channels, target, loss, decoding, metric and colours.

Everything else (network, loss, evaluator, visualisation, runtimes) iterates over ``TASKS``
instead of branching on task names, so a fifth task is one more entry here plus a head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import losses, metrics, viz
from .config import TASK_NAMES, LossConfig, ModelConfig
from .depth_coding import decode_inverse_depth


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    channels: Callable[[ModelConfig], int]
    """Raw output channels of the task's head."""
    loss: Callable[[torch.Tensor, torch.Tensor, LossConfig], torch.Tensor]
    """(raw output at label resolution, target) -> scalar loss."""
    decode: Callable[[torch.Tensor, ModelConfig], torch.Tensor]
    """Raw output (B,C,H,W) -> the user-facing prediction (B,C',H,W), differentiable where it can be."""
    make_meter: Callable[[ModelConfig], Any]
    update_meter: Callable[[Any, torch.Tensor, torch.Tensor], None]
    """(meter, decoded prediction, target) -> None."""
    render: Callable[[np.ndarray, dict[str, Any]], np.ndarray]
    """(one prediction or target in display layout, display info) -> HxWx3 uint8."""
    to_display: Callable[[torch.Tensor], np.ndarray]
    """One decoded prediction (C,H,W) -> display layout: HxW, or HxWx3 for normals."""


def _channels_last(decoded: torch.Tensor) -> np.ndarray:
    array = decoded.detach().float().cpu().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def _semseg_render(labels: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    return viz.colorize_segmentation(labels, info["class_colors"])


def _depth_render(depth: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    return viz.colorize_depth(depth, *info["depth_range"])


def _decode_normals(raw: torch.Tensor, _: ModelConfig) -> torch.Tensor:
    return F.normalize(raw, dim=1, eps=1e-6)


def _decode_depth(raw: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Metres, always: ``paper_compat`` changes how depth is scored (the meter), never what a
    model predicts or a runtime publishes."""
    return decode_inverse_depth(raw).clamp(cfg.min_depth, cfg.max_depth)


TASKS: dict[str, TaskSpec] = {
    "semseg": TaskSpec(
        name="semseg", title="segmentation",
        channels=lambda cfg: cfg.num_classes,
        loss=losses.TASK_LOSSES["semseg"],
        decode=lambda raw, _: raw.softmax(dim=1),
        make_meter=lambda cfg: metrics.SegmentationMeter(cfg.num_classes),
        update_meter=lambda meter, probs, target: meter.update(probs.argmax(dim=1), target),
        render=_semseg_render,
        to_display=lambda probs: probs.argmax(dim=0).cpu().numpy(),
    ),
    "depth": TaskSpec(
        name="depth", title="depth",
        channels=lambda cfg: 1,
        loss=losses.TASK_LOSSES["depth"],
        decode=_decode_depth,
        make_meter=lambda cfg: metrics.DepthMeter(max_depth=cfg.max_depth,
                                                  paper_compat=cfg.paper_compat),
        update_meter=lambda meter, depth, target: meter.update(depth, target),
        render=_depth_render,
        to_display=_channels_last,
    ),
    "normals": TaskSpec(
        name="normals", title="normals",
        channels=lambda cfg: 3,
        loss=losses.TASK_LOSSES["normals"],
        decode=_decode_normals,
        make_meter=lambda cfg: metrics.NormalsMeter(),
        update_meter=lambda meter, normals, target: meter.update(normals, target),
        render=lambda normals, _: viz.colorize_normals(normals),
        to_display=_channels_last,
    ),
    "edges": TaskSpec(
        name="edges", title="edges",
        channels=lambda cfg: 2,
        loss=losses.TASK_LOSSES["edges"],
        decode=lambda raw, _: raw.softmax(dim=1)[:, 1:2],
        make_meter=lambda cfg: metrics.EdgeMeter(),
        update_meter=lambda meter, prob, target: meter.update(prob[:, 0], target),
        render=lambda prob, _: viz.colorize_edges(prob),
        to_display=_channels_last,
    ),
}
assert tuple(TASKS) == TASK_NAMES


def decode_outputs(raw: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Raw outputs of one scale, keyed by task -> each task's user-facing prediction."""
    return {task: TASKS[task].decode(value, cfg) for task, value in raw.items()}
