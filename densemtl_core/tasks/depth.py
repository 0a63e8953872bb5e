"""Depth: an inverse-depth code in the head, metres from the graph on."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from ..colormaps import colorize_depth
from ..config import ModelConfig
from ..depth_coding import decode_inverse_depth, encode_inverse_depth
from ..metrics import DepthMeter
from .spec import (PublishedImage, StudyColumn, TaskSpec, channels_last, plain_map, tensor_of,
                   wrong_truth_encoding)
from .upsampling import Size, resize_maps


def berhu_loss(pred: Tensor, target: Tensor, mask: Tensor, threshold: float = 0.2) -> Tensor:
    """Reverse Huber loss of METHOD.md section 3.1.

    e = |target - pred| on masked pixels (0 elsewhere), c = ``threshold`` * max(e) over the whole
    batch, treated as a constant; the loss is e below c and (e^2 + c^2) / (2c) above, averaged
    over *all* pixels, so masked pixels count as zeros. When every error is zero (c = 0) the
    quadratic branch is never taken and its denominator is kept away from zero, so neither the
    value nor the gradient is NaN.
    """
    error = torch.where(mask.bool(), (target - pred).abs(), torch.zeros_like(pred))
    c = threshold * error.max().detach()
    quadratic = (error.square() + c.square()) / (2.0 * c).clamp_min(torch.finfo(pred.dtype).tiny)
    return torch.where(error <= c, error, quadratic).mean()


def depth_loss(pred_code: Tensor, depth_m: Tensor, threshold: float = 0.2) -> Tensor:
    """BerHu on normalised inverse depth; the metric target is encoded here, depth 0 is masked."""
    valid = depth_m > 0
    return berhu_loss(pred_code, encode_inverse_depth(depth_m), valid, threshold)


def disparity_to_depth(disparity: Tensor, min_depth: float, max_depth: float) -> Tensor:
    """Depth of a sigmoid disparity in [0, 1], which spans inverse depths from 1 / max_depth to
    1 / min_depth linearly (the method's self-supervised head, after Monodepth2)."""
    low, high = 1.0 / max_depth, 1.0 / min_depth
    return (low + (high - low) * disparity).reciprocal()


def _decode(raw: Tensor, cfg: ModelConfig) -> Tensor:
    """Depth in the model's units (``cfg.depth_units``: metres unless learnt without scale) from
    either head parameterisation. ``paper_compat`` changes how depth is scored (the meter),
    never what a model predicts or a runtime publishes."""
    if cfg.depth_output == "disparity":
        return disparity_to_depth(torch.sigmoid(raw), cfg.min_depth, cfg.max_depth)
    return decode_inverse_depth(raw).clamp(cfg.min_depth, cfg.max_depth)


def finish(depth: Tensor, size: Size, _: bool) -> dict[str, np.ndarray]:
    """Inverse depth is interpolated (1/z is affine in image coordinates across a plane, so
    planes stay planes), then inverted back to metres."""
    if tuple(depth.shape[-2:]) == tuple(size):
        return {"depth": depth[0].clone().numpy()}  # never a view of the backend's buffer
    return {"depth": resize_maps(depth.reciprocal(), size)[0].reciprocal_().numpy()}


def _agreement(expected: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    gap = np.abs(actual - expected)
    return {"mean_abs_rel": float(np.mean(gap / expected)), "max_abs_m": float(gap.max())}


def depth_as_published(depth: np.ndarray, depth_range: tuple[float, float]) -> np.ndarray:
    """Predicted depth as published (REP 118): float32 metres, NaN where invalid.

    The network's depth is clamped to the model's ``depth_range``, so a pixel at either limit
    is a measurement the model could not make: it is marked invalid rather than reported at
    the limit.
    """
    low, high = depth_range
    valid = (depth > low * (1 + 1e-4)) & (depth < high * (1 - 1e-4))
    return np.where(valid, depth, np.float32(np.nan)).astype(np.float32, copy=False)


def read_truth(depth: np.ndarray, encoding: str) -> np.ndarray:
    """Metres with NaN where invalid, from 32FC1 metres or 16UC1 millimetres (0: invalid)."""
    if encoding == "32FC1":
        return depth.astype(np.float32, copy=False)
    if encoding == "16UC1":
        metres = depth.astype(np.float32) * 1e-3
        metres[depth == 0] = np.nan
        return metres
    raise wrong_truth_encoding("depth", "must be 32FC1 (m) or 16UC1 (mm)", encoding)


def meter_inputs(depth: np.ndarray, target: np.ndarray) -> tuple[Tensor, Tensor]:
    """A NaN prediction (published as invalid) turns its pixel's target into the meter's
    invalid marker 0, so the pixel is left out instead of poisoning the sums."""
    target = np.where(np.isnan(depth), 0.0, target).astype(np.float32)
    return tensor_of(depth, np.float32)[None], torch.from_numpy(target)[None]


def _render(depth: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
    return colorize_depth(depth, *info["depth_range"])


SPEC = TaskSpec(
    name="depth", title="depth", field="depth",
    channels=lambda cfg: 1,
    loss=lambda output, target, cfg: depth_loss(output, target, cfg.berhu_threshold),
    decode=_decode,
    meter=DepthMeter,
    meter_arguments=lambda cfg: {"max_depth": cfg.max_depth, "paper_compat": cfg.paper_compat,
                                 "median_scaling": cfg.depth_units == "relative"},
    update_meter=lambda meter, depth, target: meter.update(depth, target),
    render=_render,
    to_display=channels_last,
    finish=finish,
    tolerance=(1e-4, 1e-4),
    agreement=_agreement,
    as_decoded=plain_map("depth"),
    images=(PublishedImage("depth", lambda depth, _: (depth, "32FC1")),),
    meter_inputs=meter_inputs,
    read_truth=read_truth,
    publish=lambda depth, cfg: depth_as_published(depth, (cfg.min_depth, cfg.max_depth)),
    study_column=StudyColumn("depth RMSE m ↓"),
)
"""Tolerance: metres within 1e-4 relative (the inverse-depth decoding scales errors with depth)
plus 1e-4 m."""
